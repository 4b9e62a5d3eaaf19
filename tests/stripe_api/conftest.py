"""The real `farthing serve` (see tests/http/conftest.py) driven by the official stripe SDK.

One server per database kind for the session; every test makes its own tenant, so tests share
nothing but the process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import stripe

from farthing.ledger_service import LedgerService
from farthing.stripe_api._request import Partition
from farthing.stripe_api.payments import PaymentsLedger, check_partition
from tests.conftest import JOURNAL_KEY
from tests.http import conftest as http_conftest
from tests.http.conftest import Server, new_tenant, serving

VAULT_KEY = bytes.fromhex("5c" * 32)


def server_env_with(**variables: str) -> dict[str, str]:
    """The HTTP suite's server environment plus FARTHING_* variables of the /v1 suite."""
    return http_conftest.server_env() | variables


@contextlib.contextmanager
def serving_v1(kind: str, directory: Path) -> Iterator[Server]:
    """`farthing serve` with the card vault's key, on a new database of ``kind``."""
    # tests/http's environment (shared by the ledger suite) has no vault key, so the /v1 servers
    # start with one added. Popen copies the environment at start-up.
    env = server_env_with(FARTHING_VAULT_KEY=VAULT_KEY.hex())
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            started = stack.enter_context(serving(kind, directory))
        yield started


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def v1_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with serving_v1(request.param, tmp_path_factory.mktemp(f"v1-{request.param}")) as started:
        yield started


def sdk(server: Server, secret: str) -> stripe.StripeClient:
    """The SDK pointed at the server, without touching the module's global settings."""
    return stripe.StripeClient(secret, base_addresses={"api": server.base_url})


@dataclass(frozen=True, slots=True)
class Account:
    """A tenant as the SDK sees it: one client per mode."""

    id: str
    test_secret: str
    test: stripe.StripeClient
    live: stripe.StripeClient


def new_account(server: Server) -> Account:
    tenant = new_tenant(server, name="stripe tenant")
    tenant.client.close()  # The httpx client is not needed here; each test uses its own.
    return Account(
        id=tenant.id,
        test_secret=tenant.test_secret,
        test=sdk(server, tenant.test_secret),
        live=sdk(server, tenant.live_secret),
    )


@pytest.fixture
def account(v1_server: Server) -> Account:
    return new_account(v1_server)


def assert_consistent(server: Server, *scopes: Partition) -> None:
    """The ledger verifies (hash chain, balances, holds) and each scope's /v1 money rows agree
    with one another and with the payments ledger (what `farthing verify` checks)."""
    ledger = LedgerService(server.engine, journal_key=JOURNAL_KEY)
    ledger.verify()
    payments_ledger = PaymentsLedger(ledger)
    with server.engine.connect() as connection:
        for scope in scopes:
            check_partition(connection, payments_ledger, scope)


def scope_of(account: Account, mode: str = "test") -> Partition:
    return Partition(tenant_id=account.id, mode=mode, platform_id=account.id)
