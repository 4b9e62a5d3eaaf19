"""Guards of the HTTP API on the real server: keys, tenant isolation, size limits, bad input."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from farthing.auth import Mode, create_key, revoke_key
from farthing.http import BODY_BYTES_MAX
from farthing.ledger import BATCH_EVENTS_MAX
from tests.http.conftest import (
    Server,
    Tenant,
    assert_error,
    key_id_of,
    new_tenant,
    raw_exchange,
    serving,
)

V1 = "/ledger/v1"

# One request per route, with a plausible body: without a valid key each must answer 401.
EVERY_ROUTE: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/accounts", {"accounts": [{"id": "a", "currency": "USD"}]}),
    ("POST", "/transfers", {"transfers": [{"id": "t", "amount": 1}]}),
    ("POST", "/accounts/lookup", {"ids": ["a"]}),
    ("POST", "/transfers/lookup", {"ids": ["t"]}),
    ("GET", "/accounts/a", None),
    ("GET", "/transfers/t", None),
    ("POST", "/accounts/a/limit", {"limit": 1}),
    ("GET", "/accounts/a/transfers", None),
    ("GET", "/accounts/a/balance?at=1", None),
]


def results(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["result"] for r in response.json()["results"]]


# -------------------------------------------------------------------------------------------------
# API keys


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Basic dXNlcjpwYXNz", "Bearer", "Token sk_test_abc", "sk_test_abc"],
)
def test_missing_key_is_401(server: Server, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with server.client() as client:
        for method, path, body in EVERY_ROUTE:
            response = client.request(method, V1 + path, json=body, headers=headers)
            error = assert_error(
                response, 401, type_="authentication_error", code="api_key_missing"
            )
            assert "param" not in error


@pytest.mark.parametrize(
    "secret",
    [
        "not-a-key",
        "sk_test_" + "A" * 43,
        "sk_live_" + secrets.token_urlsafe(32),
        "x" * 5000,
        "sk_test_\u00e9\u00e8",
    ],
    # Fixed names: parallel workers (pytest -n) must collect the same test ids.
    ids=["not-a-key", "unknown-test", "random-live", "overlong", "non-ascii"],
)
def test_unknown_or_malformed_key_is_401(server: Server, secret: str) -> None:
    with server.client() as client:
        for method, path, body in EVERY_ROUTE:
            response = client.request(
                method,
                V1 + path,
                json=body,
                headers={b"Authorization": f"Bearer {secret}".encode()},
            )
            assert_error(response, 401, type_="authentication_error", code="api_key_invalid")
            assert secret not in response.text


def test_bearer_scheme_is_case_insensitive(tenant: Tenant) -> None:
    with httpx.Client(base_url=str(tenant.client.base_url)) as client:
        for scheme in ("bearer", "BEARER", "Bearer"):
            response = client.get(
                f"{V1}/accounts/nope", headers={"Authorization": f"{scheme} {tenant.test_secret}"}
            )
            assert_error(response, 404, type_="invalid_request_error", code="resource_missing")


def test_revoked_key_is_401(server: Server, tenant: Tenant) -> None:
    c = tenant.client
    assert results(
        c.post(f"{V1}/accounts", json={"accounts": [{"id": "a", "currency": "USD"}]})
    ) == ["ok"]
    key_id = key_id_of(server.engine, tenant.test_secret)
    with server.engine.begin() as connection:
        revoke_key(connection, key_id)
        other_test_secret = create_key(connection, tenant_id=tenant.id, mode=Mode.test)
    for method, path, body in EVERY_ROUTE:
        response = c.request(method, V1 + path, json=body)
        assert_error(response, 401, type_="authentication_error", code="api_key_invalid")
    refused = c.post(f"{V1}/accounts", json={"accounts": [{"id": "b", "currency": "USD"}]})
    assert_error(refused, 401, type_="authentication_error", code="api_key_invalid")
    # The tenant's data is intact and reachable with its other keys; the refused write never ran.
    with server.client(other_test_secret) as other:
        found = other.post(f"{V1}/accounts/lookup", json={"ids": ["a", "b"]}).json()
        assert [a["id"] for a in found] == ["a"]
    with server.client(tenant.live_secret) as live:
        assert live.post(f"{V1}/accounts/lookup", json={"ids": ["a"]}).json() == []


def test_expired_key_is_401(server: Server, tenant: Tenant) -> None:
    with server.engine.begin() as connection:
        expired = create_key(
            connection, tenant_id=tenant.id, mode=Mode.test, expires_at_ns=time.time_ns() - 1
        )
        valid = create_key(
            connection,
            tenant_id=tenant.id,
            mode=Mode.test,
            expires_at_ns=time.time_ns() + 3600 * 10**9,
        )
    with server.client(expired) as client:
        response = client.post(f"{V1}/accounts/lookup", json={"ids": ["a"]})
        assert_error(response, 401, type_="authentication_error", code="api_key_invalid")
    with server.client(valid) as client:
        assert client.post(f"{V1}/accounts/lookup", json={"ids": ["a"]}).json() == []


# -------------------------------------------------------------------------------------------------
# Tenant isolation


@pytest.fixture
def victim(server: Server, tenant: Tenant) -> tuple[Tenant, dict[str, Any]]:
    """A tenant whose test ledger holds accounts, a posted transfer and an open hold."""
    c = tenant.client
    accounts = [
        {"id": "a1", "currency": "USD"},
        {"id": "a2", "currency": "USD", "flags": ["credits_must_not_exceed_debits"], "limit": 99},
    ]
    assert results(c.post(f"{V1}/accounts", json={"accounts": accounts})) == ["ok", "ok"]
    transfers = [
        {"id": "t1", "debit_account_id": "a1", "credit_account_id": "a2", "amount": 10},
        {
            "id": "h1",
            "debit_account_id": "a1",
            "credit_account_id": "a2",
            "amount": 5,
            "flags": ["pending"],
        },
    ]
    assert results(c.post(f"{V1}/transfers", json={"transfers": transfers})) == ["ok", "ok"]
    return tenant, snapshot(c)


def snapshot(client: httpx.Client) -> dict[str, Any]:
    return {
        "accounts": client.post(f"{V1}/accounts/lookup", json={"ids": ["a1", "a2"]}).json(),
        "transfers": client.post(f"{V1}/transfers/lookup", json={"ids": ["t1", "h1"]}).json(),
        "history": client.get(f"{V1}/accounts/a1/transfers").json(),
        "balance": client.get(f"{V1}/accounts/a1/balance", params={"at": 2**63 - 1}).json(),
    }


@pytest.fixture(params=["other tenant", "same tenant live mode"])
def intruder(
    request: pytest.FixtureRequest, server: Server, victim: tuple[Tenant, dict[str, Any]]
) -> Iterator[httpx.Client]:
    tenant, _ = victim
    if request.param == "same tenant live mode":
        secret = tenant.live_secret
    else:
        secret = new_tenant(server, "intruder").test_secret
    with server.client(secret) as client:
        yield client


def test_other_ledgers_cannot_read_the_tenants_objects(
    victim: tuple[Tenant, dict[str, Any]], intruder: httpx.Client
) -> None:
    for path in (
        "/accounts/a1",
        "/accounts/a2",
        "/transfers/t1",
        "/transfers/h1",
        "/accounts/a1/transfers",
        "/accounts/a1/balance?at=9223372036854775807",
    ):
        assert_error(
            intruder.get(V1 + path), 404, type_="invalid_request_error", code="resource_missing"
        )
    assert intruder.post(f"{V1}/accounts/lookup", json={"ids": ["a1", "a2"]}).json() == []
    assert intruder.post(f"{V1}/transfers/lookup", json={"ids": ["t1", "h1"]}).json() == []


def test_other_ledgers_cannot_write_to_the_tenants_objects(
    victim: tuple[Tenant, dict[str, Any]], intruder: httpx.Client
) -> None:
    tenant, before = victim
    response = intruder.post(f"{V1}/accounts/a2/limit", json={"limit": 1000})
    assert_error(response, 404, type_="invalid_request_error", code="resource_missing")
    steal = [
        {"id": "s1", "debit_account_id": "a1", "credit_account_id": "a2", "amount": 1},
        {"id": "s2", "pending_id": "h1", "flags": ["post_pending"]},
        {"id": "s3", "pending_id": "h1", "flags": ["void_pending"]},
    ]
    assert results(intruder.post(f"{V1}/transfers", json={"transfers": steal})) == [
        "debit_account_not_found",
        "pending_transfer_not_found",
        "pending_transfer_not_found",
    ]
    # Same ids in the intruder's own ledger are independent objects.
    own_accounts = [{"id": "a1", "currency": "EUR"}, {"id": "a2", "currency": "EUR"}]
    assert results(intruder.post(f"{V1}/accounts", json={"accounts": own_accounts})) == ["ok", "ok"]
    own = [{"id": "t1", "debit_account_id": "a2", "credit_account_id": "a1", "amount": 777}]
    assert results(intruder.post(f"{V1}/transfers", json={"transfers": own})) == ["ok"]
    assert intruder.get(f"{V1}/transfers/t1").json()["amount"] == 777
    assert intruder.get(f"{V1}/accounts/a1/transfers").json()["data"][0]["id"] == "t1"
    # Nothing of the victim's ledger changed, and it does not see the intruder's objects.
    assert snapshot(tenant.client) == before
    assert tenant.client.get(f"{V1}/transfers/t1").json()["amount"] == 10
    assert tenant.client.get(f"{V1}/accounts/a1").json()["currency"] == "USD"
    assert results(
        tenant.client.post(
            f"{V1}/transfers",
            json={"transfers": [{"id": "p1", "pending_id": "h1", "flags": ["post_pending"]}]},
        )
    ) == ["ok"]


# -------------------------------------------------------------------------------------------------
# Batch and body size limits


def test_full_batch_is_accepted_and_one_more_event_is_400(tenant: Tenant) -> None:
    c = tenant.client
    full = [{"id": f"acc{n}", "currency": "USD"} for n in range(BATCH_EVENTS_MAX)]
    assert results(c.post(f"{V1}/accounts", json={"accounts": full})) == ["ok"] * BATCH_EVENTS_MAX
    over = [{"id": f"more{n}", "currency": "USD"} for n in range(BATCH_EVENTS_MAX + 1)]
    error = assert_error(
        c.post(f"{V1}/accounts", json={"accounts": over}),
        400,
        type_="invalid_request_error",
        code="parameter_invalid",
    )
    assert error["param"] == "accounts"
    assert (
        c.post(f"{V1}/accounts/lookup", json={"ids": ["more0", f"more{BATCH_EVENTS_MAX}"]}).json()
        == []
    )
    transfers = [
        {"id": f"t{n}", "debit_account_id": "acc0", "credit_account_id": "acc1", "amount": 1}
        for n in range(BATCH_EVENTS_MAX + 1)
    ]
    error = assert_error(
        c.post(f"{V1}/transfers", json={"transfers": transfers}),
        400,
        type_="invalid_request_error",
        code="parameter_invalid",
    )
    assert error["param"] == "transfers"
    assert c.get(f"{V1}/accounts/acc0").json()["balances"]["debits_posted"] == 0
    for name in ("accounts", "transfers"):
        assert_error(c.post(f"{V1}/{name}", json={name: []}), 400, type_="invalid_request_error")


def _head(server: Server, secret: str, framing: str) -> bytes:
    host = httpx.URL(server.base_url).netloc.decode()
    return (
        f"POST {V1}/accounts/lookup HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n{framing}\r\n"
    ).encode()


def _padded_body(size: int) -> bytes:
    """A valid JSON request of exactly `size` bytes."""
    start, end = b'{"ids": ["x"]', b"}"
    return start + b" " * (size - len(start) - len(end)) + end


def _pieces(body: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _chunk_frames(body: bytes) -> Iterator[bytes]:
    """Transfer-Encoding: chunked framing of `body`, for a raw socket (no terminating chunk)."""
    for piece in _pieces(body):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


def test_declared_oversized_body_is_413_before_it_is_sent(server: Server, tenant: Tenant) -> None:
    # Only the headers go out: the server must refuse without waiting for (or buffering) the body.
    for secret in (tenant.test_secret, "sk_test_unknown"):
        head = _head(server, secret, f"Content-Length: {BODY_BYTES_MAX + 1}\r\n")
        response = raw_exchange(server.base_url, iter([head]))
        assert response.status == 413
        error = orjson.loads(response.body)["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "body_too_large"
        assert str(BODY_BYTES_MAX) in error["message"]
        assert response.headers["content-type"] == "application/json"


def test_body_of_exactly_the_limit_is_accepted(tenant: Tenant) -> None:
    body = _padded_body(BODY_BYTES_MAX)
    assert len(body) == BODY_BYTES_MAX
    headers = {"Content-Type": "application/json"}
    response = tenant.client.post(f"{V1}/accounts/lookup", content=body, headers=headers)
    assert (response.status_code, response.json()) == (200, [])
    # Chunked (no Content-Length), same size: also accepted.
    response = tenant.client.post(f"{V1}/accounts/lookup", content=_pieces(body), headers=headers)
    assert "content-length" not in response.request.headers
    assert (response.status_code, response.json()) == (200, [])


def test_chunked_oversized_body_is_413(server: Server, tenant: Tenant) -> None:
    # Send exactly one byte over the limit and no terminating chunk: the server has read every
    # byte sent when it answers, so the exchange is deterministic.
    body = _padded_body(BODY_BYTES_MAX) + b" "
    chunks = [_head(server, tenant.test_secret, "Transfer-Encoding: chunked\r\n")]
    chunks += _chunk_frames(body[:-1])
    chunks.append(b"1\r\n \r\n")
    response = raw_exchange(server.base_url, iter(chunks))
    assert response.status == 413, response.body
    assert orjson.loads(response.body)["error"]["code"] == "body_too_large"


# -------------------------------------------------------------------------------------------------
# Bad input: 400 in the error format, nothing written


def _t(**fields: Any) -> dict[str, Any]:
    return {"id": "bad", "debit_account_id": "a", "credit_account_id": "b", "amount": 1} | fields


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b'{"transfers": [', None),
        (b"", None),
        (b"\xff\xfe\x00garbage", None),
        (b"[" * 100_000 + b"]" * 100_000, None),
        (b"null", None),
        (b"[]", None),
        (b'"transfers"', None),
        (b"{}", "transfers"),
        (orjson.dumps({"transfers": [_t(amount=1.0)]}), "transfers.0.amount"),
        (orjson.dumps({"transfers": [_t(amount=1.5)]}), "transfers.0.amount"),
        (orjson.dumps({"transfers": [_t(amount="1")]}), "transfers.0.amount"),
        (orjson.dumps({"transfers": [_t(amount=True)]}), "transfers.0.amount"),
        (orjson.dumps({"transfers": [_t(amount=[1])]}), "transfers.0.amount"),
        (b'{"transfers": [{"id": "bad", "amount": 1e2}]}', "transfers.0.amount"),
        (b'{"transfers": [{"id": "bad", "amount": NaN}]}', None),
        (orjson.dumps({"transfers": [_t(code="7")]}), "transfers.0.code"),
        (orjson.dumps({"transfers": [_t(timeout=0.5)]}), "transfers.0.timeout"),
        (orjson.dumps({"transfers": [_t(memo="hi")]}), "transfers.0.memo"),
        (orjson.dumps({"transfers": [_t()], "dry_run": True}), "dry_run"),
        (orjson.dumps({"transfers": [_t(flags=["expire_pending"])]}), "transfers.0.flags.0"),
        (orjson.dumps({"transfers": [_t(flags="pending")]}), "transfers.0.flags"),
        (orjson.dumps({"transfers": [_t(metadata={"k": 1})]}), "transfers.0.metadata.k"),
        (orjson.dumps({"transfers": [_t(id="x" * 257)]}), "transfers.0.id"),
        (orjson.dumps({"transfers": [_t(id=None)]}), "transfers.0.id"),
        (orjson.dumps({"transfers": [_t(), _t(id="ok2"), _t(id="bad2", amount=2.0)]}), None),
    ],
)
def test_invalid_transfer_requests_are_400_without_stack_trace(
    tenant: Tenant, content: bytes, param: str | None
) -> None:
    c = tenant.client
    accounts = [{"id": "a", "currency": "USD"}, {"id": "b", "currency": "USD"}]
    assert results(c.post(f"{V1}/accounts", json={"accounts": accounts})) == ["ok", "ok"]
    response = c.post(
        f"{V1}/transfers", content=content, headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400, type_="invalid_request_error")
    if param is not None:
        assert error["param"] == param, error
    # The whole request was refused: no event of it was applied.
    assert c.post(f"{V1}/transfers/lookup", json={"ids": ["bad", "ok2", "bad2"]}).json() == []
    assert c.get(f"{V1}/accounts/a").json()["balances"]["debits_posted"] == 0


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/accounts",
            {"accounts": [{"id": "a", "currency": "USD", "limit": 1.0}]},
            "accounts.0.limit",
        ),
        (
            "/accounts",
            {"accounts": [{"id": "a", "currency": "USD", "limit": "1"}]},
            "accounts.0.limit",
        ),
        (
            "/accounts",
            {"accounts": [{"id": "a", "currency": "USD", "owner": "x"}]},
            "accounts.0.owner",
        ),
        ("/accounts", {"accounts": [{"id": "a"}]}, "accounts.0.currency"),
        (
            "/accounts",
            {"accounts": [{"id": "a", "currency": "USD", "flags": ["pending"]}]},
            "accounts.0.flags.0",
        ),
        ("/accounts/lookup", {"ids": [1]}, "ids.0"),
        ("/accounts/lookup", {"ids": ["a"], "expand": True}, "expand"),
        ("/transfers/lookup", {"id": "a"}, "ids"),
    ],
)
def test_invalid_account_and_lookup_requests_are_400(
    tenant: Tenant, path: str, body: dict[str, Any], param: str
) -> None:
    error = assert_error(
        tenant.client.post(V1 + path, json=body), 400, type_="invalid_request_error"
    )
    assert error["param"] == param
    assert tenant.client.post(f"{V1}/accounts/lookup", json={"ids": ["a"]}).json() == []


def test_out_of_range_integers_are_per_event_results(tenant: Tenant) -> None:
    """Integers too large for the database are the engine's to judge, never a 500."""
    c = tenant.client
    big = 2**64
    accounts = [
        {"id": "a", "currency": "USD"},
        {"id": "b", "currency": "USD", "flags": ["debits_must_not_exceed_credits"]},
        {"id": "c", "currency": "USD", "code": big},
        {"id": "d", "currency": "USD", "flags": ["debits_must_not_exceed_credits"], "limit": big},
    ]
    assert results(c.post(f"{V1}/accounts", json={"accounts": accounts})) == [
        "ok",
        "ok",
        "code_invalid",
        "limit_invalid",
    ]
    transfers = [_t(amount=big), _t(id="t2", code=big), _t(id="t3", timeout=big, flags=["pending"])]
    assert results(c.post(f"{V1}/transfers", json={"transfers": transfers})) == [
        "amount_invalid",
        "code_invalid",
        "timeout_invalid",
    ]
    response = c.post(f"{V1}/accounts/b/limit", json={"limit": big})
    assert (response.status_code, response.json()) == (200, {"result": "limit_invalid"})


# -------------------------------------------------------------------------------------------------
# Routing


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/", 404, "resource_missing"),
        ("GET", "/nothing/here", 404, "resource_missing"),
        ("POST", "/ledger/v2/accounts", 404, "resource_missing"),
        ("GET", "/ledger/v1/", 404, "resource_missing"),
        ("GET", "/ledger/v1/accounts", 405, "method_not_allowed"),
        ("DELETE", "/ledger/v1/accounts/a", 405, "method_not_allowed"),
        ("GET", "/docs", 404, "resource_missing"),
        ("GET", "/redoc", 404, "resource_missing"),
    ],
)
def test_unknown_routes_answer_json_errors(
    tenant: Tenant, method: str, path: str, status: int, code: str
) -> None:
    assert_error(
        tenant.client.request(method, path), status, type_="invalid_request_error", code=code
    )
    with httpx.Client(base_url=str(tenant.client.base_url)) as anonymous:
        response = anonymous.request(method, path)
        assert_error(response, status, type_="invalid_request_error", code=code)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /ledger/v1/accounts/a HTTP/1.1\r\nHost: x\r\nX-Bad\x01Name: y\r\n\r\n",
        b"GET /ledger/v1/accounts/a HTTP/1.1\r\nHost: x\r\nX-Value: a\x00b\r\n\r\n",
        b"NOT AN HTTP REQUEST LINE\r\n\r\n",
        b"GET /ledger/v1/accounts/a HTTP/1.1\r\n : no name\r\n\r\n",
    ],
    ids=["control-byte-in-name", "nul-in-value", "request-line", "empty-header-name"],
)
def test_unparseable_requests_answer_the_json_error_format(
    server: Server, request_bytes: bytes
) -> None:
    """These never reach the application: the HTTP parser refuses them, in our format."""
    response = raw_exchange(server.base_url, iter([request_bytes]))
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    error = orjson.loads(response.body)["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "malformed_http_request"
    assert "\x01" not in error["message"]


def test_json_syntax_error_names_no_bogus_param(tenant: Tenant) -> None:
    response = tenant.client.post(
        f"{V1}/transfers", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    error = assert_error(response, 400, type_="invalid_request_error")
    assert "param" not in error, error


# -------------------------------------------------------------------------------------------------
# Hostile ids (NUL, refused by PostgreSQL's text type) and their neighbours, on a server of
# their own.


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp(f"bug-server-{request.param}")
    with serving(request.param, directory, clean_log=False) as started:
        yield started


def test_nul_characters_in_ids_are_not_server_errors(
    request: pytest.FixtureRequest, hostile_server: Server
) -> None:
    tenant = new_tenant(hostile_server)
    with tenant.client as c:
        accounts = [{"id": "a", "currency": "USD"}, {"id": "b", "currency": "USD"}]
        assert results(c.post(f"{V1}/accounts", json={"accounts": accounts})) == ["ok", "ok"]
        assert c.post(f"{V1}/accounts/lookup", json={"ids": ["a\0"]}).json() == []
        assert c.post(f"{V1}/transfers/lookup", json={"ids": ["t\0"]}).json() == []
        for path in ("/accounts/a%00", "/transfers/t%00", "/accounts/a%00/transfers"):
            assert_error(c.get(V1 + path), 404, type_="invalid_request_error")
        response = c.get(f"{V1}/accounts/a%00/balance", params={"at": 1})
        assert_error(response, 404, type_="invalid_request_error")
        response = c.post(f"{V1}/accounts/a%00/limit", json={"limit": 1})
        assert_error(response, 404, type_="invalid_request_error")
        bad_account = {"accounts": [{"id": "c\0", "currency": "USD"}]}
        assert results(c.post(f"{V1}/accounts", json=bad_account)) == ["id_invalid"]
        transfers = [
            _t(id="t\0"),
            _t(id="t1", debit_account_id="a\0"),
            _t(id="t2", credit_account_id="b\0"),
            {"id": "t3", "pending_id": "p\0", "flags": ["post_pending"]},
        ]
        assert results(c.post(f"{V1}/transfers", json={"transfers": transfers})) == [
            "id_invalid",
            "debit_account_id_invalid",
            "credit_account_id_invalid",
            "pending_id_invalid",
        ]


def test_one_tenants_bad_request_does_not_fail_other_tenants_writes(
    request: pytest.FixtureRequest, hostile_server: Server
) -> None:
    victim, attacker = new_tenant(hostile_server, "victim"), new_tenant(hostile_server, "attacker")
    accounts = {"accounts": [{"id": "v1", "currency": "USD"}, {"id": "v2", "currency": "USD"}]}
    assert results(victim.client.post(f"{V1}/accounts", json=accounts)) == ["ok", "ok"]
    clients = [hostile_server.client(victim.test_secret) for _ in range(24)]
    statuses: list[int] = []
    try:
        for round_ in range(2):
            start = threading.Barrier(len(clients) + 1)

            def write(index: int, round_: int = round_, start: threading.Barrier = start) -> int:
                transfer = _t(
                    id=f"r{round_}-{index}", debit_account_id="v1", credit_account_id="v2"
                )
                start.wait()
                response = clients[index].post(f"{V1}/transfers", json={"transfers": [transfer]})
                return response.status_code

            def poison(start: threading.Barrier = start) -> None:
                start.wait()
                attacker.client.post(
                    f"{V1}/accounts", json={"accounts": [{"id": "x\0", "currency": "USD"}]}
                )

            with ThreadPoolExecutor(len(clients) + 1) as pool:
                futures = [pool.submit(write, index) for index in range(len(clients))]
                pool.submit(poison).result()
                statuses += [future.result() for future in futures]
    finally:
        for client in clients:
            client.close()
        victim.client.close()
        attacker.client.close()
    assert statuses == [200] * len(statuses)
