"""What every /v1 route shares, checked on the wire: Request-Id, Stripe-Version, the form body,
authentication and the error envelope."""

from __future__ import annotations

from tests.http.conftest import Server, assert_error
from tests.stripe_api.conftest import Account


def test_request_id_on_every_response_and_any_stripe_version(
    v1_server: Server, account: Account
) -> None:
    with v1_server.client(account.test_secret) as http:
        ok = http.get("/v1/customers", headers={"Stripe-Version": "2020-08-27"})
        missing = http.get("/v1/customers/cus_nope")
        unrouted = http.get("/v1/no_such_resource")
    assert ok.status_code == 200
    assert_error(missing, 404, type_="invalid_request_error", code="resource_missing")
    assert missing.json()["error"]["param"] == "id"
    assert_error(unrouted, 404, type_="invalid_request_error")
    ids = {r.headers["request-id"] for r in (ok, missing, unrouted)}
    assert len(ids) == 3
    assert all(request_id.startswith("req_") for request_id in ids)


def test_missing_and_unknown_keys(v1_server: Server) -> None:
    with v1_server.client() as http:
        assert_error(http.get("/v1/customers"), 401, type_="authentication_error")
    with v1_server.client("sk_live_unknown") as http:
        response = http.get("/v1/customers")
    assert_error(response, 401, type_="authentication_error")
    assert "request-id" in response.headers


def test_curl_style_appended_lists_and_bad_forms(v1_server: Server, account: Account) -> None:
    with v1_server.client(account.test_secret) as http:
        created = http.post(
            "/v1/customers",
            content=b"name=Curl+User&expand[]=x&metadata[a]=1",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert created.status_code == 200, created.text
        assert created.json()["metadata"] == {"a": "1"}
        duplicated = http.post(
            "/v1/customers",
            content=b"name=a&name=b",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert_error(duplicated, 400, type_="invalid_request_error")
        deep = http.post(
            "/v1/customers",
            content=b"metadata" + b"[a]" * 20 + b"=1",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert_error(deep, 400, type_="invalid_request_error")
        as_json = http.post("/v1/customers", json={"name": "x"})
        assert_error(as_json, 400, type_="invalid_request_error")
        bad_limit = http.get("/v1/customers", params={"limit": "ten"})
        assert_error(bad_limit, 400, type_="invalid_request_error")
        assert bad_limit.json()["error"]["param"] == "limit"
        unknown = http.get("/v1/customers", params={"colour": "red"})
        assert_error(unknown, 400, type_="invalid_request_error", code="parameter_unknown")
