"""Hardening: no internals in answers, security headers, CORS closed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from farthing.config import Settings
from farthing.http import create_app
from tests.conftest import _migrate
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account

ORIGIN = "https://evil.example"


def test_an_unexpected_error_answers_500_without_internals(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception nobody expected: the client learns nothing of it, not even its type."""
    url = f"sqlite:///{tmp_path}/farthing.db"
    _migrate(url)
    monkeypatch.setenv("FARTHING_VAULT_KEY_FILE", f"{tmp_path}/absent.key")
    app = create_app(Settings.from_env(database_url=url))

    @app.get("/v1/boom")
    def boom() -> None:
        msg = "password=hunter2 at /srv/farthing/db.py line 42"
        raise RuntimeError(msg)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/v1/boom")

    answer = asyncio.run(call())
    assert answer.status_code == 500
    assert answer.json()["error"]["type"] == "api_error"
    for leak in ("hunter2", "RuntimeError", "Traceback", "db.py", "/srv"):
        assert leak not in answer.text


@pytest.mark.parametrize("path", ["/v1/customers", "/ledger/v1/accounts/x", "/v1/nowhere"])
def test_cors_is_closed(v1_server: Server, account: Account, path: str) -> None:
    preflight = httpx.options(
        v1_server.base_url + path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code in {401, 404, 405}
    assert preflight.json()["error"]["type"]
    with v1_server.client(account.test_secret) as client:
        answer = client.get(path, headers={"Origin": ORIGIN})
    for response in (preflight, answer):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_security_headers_on_every_answer(v1_server: Server, account: Account) -> None:
    with v1_server.client(account.test_secret) as client:
        answers = [
            client.get("/v1/balance"),
            client.get("/v1/customers/cus_missing"),
            httpx.get(v1_server.base_url + "/v1/balance"),  # 401
            httpx.get(v1_server.base_url + "/openapi.json"),
        ]
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"


def test_page_sizes_are_bounded(v1_server: Server, account: Account) -> None:
    with v1_server.client(account.test_secret) as client:
        too_big = client.get("/v1/customers", params={"limit": "101"})
        ledger = client.get("/ledger/v1/accounts/a/transfers", params={"limit": "100000"})
    assert too_big.status_code == 400
    assert too_big.json()["error"]["param"] == "limit"
    assert ledger.status_code == 400
