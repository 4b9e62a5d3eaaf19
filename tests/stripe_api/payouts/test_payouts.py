"""External bank accounts and payouts over the simulated bank rail: each scenario ends with the
ledger verified and the balances reconciled."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast
from unittest import mock

import pytest
import sqlalchemy as sa
import stripe

from farthing.db.schema import metadata as schema
from farthing.db.schema import stripe_payouts as payouts
from farthing.stripe_api._request import Partition
from tests.http import conftest as http_conftest
from tests.http.conftest import Server, serving
from tests.stripe_api.conftest import (
    VAULT_KEY,
    Account,
    assert_consistent,
    new_account,
    scope_of,
    server_env_with,
)
from tests.stripe_api.transfers.conftest import balance, connected, fund

SUCCEEDS = "000123456789"
NO_ACCOUNT = "000111111116"
RAIL_DELAY_S = 30


def _bank(number: str = SUCCEEDS, **extra: str) -> dict[str, Any]:
    return {
        "object": "bank_account", "country": "US", "currency": "usd",
        "account_number": number, "routing_number": "110000000",
        "account_holder_name": "Jenny Rosen",
    } | extra  # fmt: skip


def _add_bank(account: Account, number: str = SUCCEEDS, owner: str | None = None) -> Any:
    return account.test.v1.accounts.external_accounts.create(
        owner or account.id, params=cast("Any", {"external_account": _bank(number)})
    )


def _payout(account: Account, amount: int, **extra: Any) -> stripe.Payout:
    params = {"amount": amount, "currency": "usd"} | extra
    return account.test.v1.payouts.create(params=cast("Any", params))


def test_bank_accounts_keep_no_account_number(v1_server: Server, account: Account) -> None:
    first = _add_bank(account)
    assert first.id.startswith("ba_")
    assert (first.object, first.last4, first.account) == ("bank_account", "6789", account.id)
    assert first.default_for_currency is True
    second = _add_bank(account, NO_ACCOUNT)
    assert second.default_for_currency is False
    assert second.fingerprint != first.fingerprint
    banks = account.test.v1.accounts.external_accounts
    assert [b.id for b in banks.list(account.id).auto_paging_iter()] == [second.id, first.id]
    assert banks.retrieve(account.id, first.id).last4 == "6789"
    deleted = banks.delete(account.id, first.id)
    assert deleted.deleted is True
    assert banks.retrieve(account.id, second.id).default_for_currency is True
    with pytest.raises(stripe.InvalidRequestError):
        banks.retrieve(account.id, first.id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _add_bank(account, "123456789012")
    assert "test bank account number" in str(refused.value.user_message)
    # No table holds a full account number (nor the idempotency layer's copy of the request).
    with v1_server.engine.connect() as connection:
        for table in schema.sorted_tables:
            for row in connection.execute(sa.select(table)).all():
                # The refusal above names Stripe's public test number as a hint; that is all.
                text = " ".join(str(value) for value in row).replace("Try " + SUCCEEDS, "")
                assert SUCCEEDS not in text, table.name
                assert NO_ACCOUNT not in text, table.name


def test_sdk_create_external_account(
    v1_server: Server, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tokenless form of the SDK's Account.create_external_account."""
    seller = connected(v1_server, account)
    monkeypatch.setattr(stripe, "api_base", v1_server.base_url)
    bank = stripe.Account.create_external_account(
        seller.tenant_id, api_key=account.test_secret, external_account=cast("Any", _bank())
    )
    assert (bank.object, bank.account) == ("bank_account", seller.tenant_id)
    assert account.test.v1.accounts.external_accounts.list(account.id).data == []
    with pytest.raises(stripe.InvalidRequestError):
        _add_bank(account, owner=new_account(v1_server).id)


def test_payout_is_paid_on_a_later_read(v1_server: Server, account: Account) -> None:
    available = fund(account)
    bank = _add_bank(account)
    payout = _payout(account, 1_000, metadata={"run": "1"}, statement_descriptor="FARTHING")
    assert payout.id.startswith("po_")
    assert (payout.status, payout.destination, payout.method) == ("pending", bank.id, "standard")
    assert (payout.automatic, payout.type, payout.livemode) == (False, "bank_account", False)
    assert balance(v1_server, scope_of(account)) == (available - 1_000, 0)
    paid = account.test.v1.payouts.retrieve(payout.id)
    assert paid.status == "paid"
    assert paid.failure_code is None
    assert balance(v1_server, scope_of(account)) == (available - 1_000, 0)
    txn = account.test.v1.balance_transactions.retrieve(str(payout.balance_transaction))
    assert (txn.type, txn.amount, txn.reporting_category) == ("payout", -1_000, "payout")
    listed = account.test.v1.payouts.list(params={"status": "paid"})
    assert [p.id for p in listed.data] == [payout.id]
    assert account.test.v1.payouts.list(params={"status": "failed"}).data == []
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payouts.cancel(payout.id)
    assert_consistent(v1_server, scope_of(account))


def test_failed_payout_returns_the_funds(v1_server: Server, account: Account) -> None:
    available = fund(account)
    bank = _add_bank(account, NO_ACCOUNT)
    payout = _payout(account, 2_000, destination=bank.id)
    assert balance(v1_server, scope_of(account)) == (available - 2_000, 0)
    (failed,) = account.test.v1.payouts.list().data
    assert (failed.id, failed.status, failed.failure_code) == (payout.id, "failed", "no_account")
    assert failed.failure_message
    assert balance(v1_server, scope_of(account)) == (available, 0)
    txn = account.test.v1.balance_transactions.retrieve(str(failed.failure_balance_transaction))
    assert (txn.type, txn.amount, txn.reporting_category) == (
        "payout_failure",
        2_000,
        "payout_reversal",
    )
    assert_consistent(v1_server, scope_of(account))


def test_refusals(v1_server: Server, account: Account) -> None:
    with pytest.raises(stripe.InvalidRequestError) as no_bank:
        _payout(account, 100)
    assert no_bank.value.param == "destination"
    available = fund(account, 1_000)
    _add_bank(account)
    with pytest.raises(stripe.InvalidRequestError) as short:
        _payout(account, available + 1)
    assert short.value.code == "balance_insufficient"
    assert account.test.v1.payouts.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as live:
        account.live.v1.payouts.create(params={"amount": 100, "currency": "usd"})
    assert live.value.code == "bank_rail_not_configured"
    assert balance(v1_server, scope_of(account)) == (available, 0)
    assert_consistent(v1_server, scope_of(account), scope_of(account, "live"))


def test_connected_account_payout_funds_come_from_a_transfer(
    v1_server: Server, account: Account
) -> None:
    """A transfer funds a connected account; its bank account is added by the platform."""
    seller = connected(v1_server, account)
    fund(account)
    account.test.v1.transfers.create(
        params={"amount": 3_000, "currency": "usd", "destination": seller.tenant_id}
    )
    bank = _add_bank(account, owner=seller.tenant_id)
    assert bank.account == seller.tenant_id
    assert balance(v1_server, seller) == (3_000, 0)
    as_seller = cast("Any", {"stripe_account": seller.tenant_id})
    payout = account.test.v1.payouts.create(
        params={"amount": 1_200, "currency": "usd"}, options=as_seller
    )
    assert payout.destination == bank.id
    assert balance(v1_server, seller) == (1_800, 0)
    assert account.test.v1.payouts.retrieve(payout.id, options=as_seller).status == "paid"
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payouts.retrieve(payout.id)  # The platform's own payouts: not there.
    assert_consistent(v1_server, scope_of(account), seller)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def slow_rail(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server whose bank rail takes RAIL_DELAY_S per step, so payouts stay pending."""
    env = server_env_with(
        FARTHING_VAULT_KEY=VAULT_KEY.hex(), FARTHING_PAYOUT_DELAY_S=str(RAIL_DELAY_S)
    )
    directory = tmp_path_factory.mktemp(f"rail-{request.param}")
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            started = stack.enter_context(serving(request.param, directory))
        yield started


def test_cancel_while_pending(slow_rail: Server) -> None:
    account = new_account(slow_rail)
    available = fund(account)
    _add_bank(account)
    payout = _payout(account, 1_500)
    assert payout.arrival_date == payout.created + 2 * RAIL_DELAY_S
    assert account.test.v1.payouts.retrieve(payout.id).status == "pending"
    assert balance(slow_rail, scope_of(account)) == (available - 1_500, 0)
    canceled = account.test.v1.payouts.cancel(payout.id)
    assert canceled.status == "canceled"
    assert balance(slow_rail, scope_of(account)) == (available, 0)
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payouts.cancel(payout.id)
    assert_consistent(slow_rail, scope_of(account))


def test_rail_moves_in_transit_then_paid(slow_rail: Server) -> None:
    account = new_account(slow_rail)
    fund(account)
    _add_bank(account)
    payout = _payout(account, 500)
    scope = scope_of(account)
    _shift(slow_rail, scope, RAIL_DELAY_S)
    assert account.test.v1.payouts.retrieve(payout.id).status == "in_transit"
    _shift(slow_rail, scope, RAIL_DELAY_S)
    assert account.test.v1.payouts.retrieve(payout.id).status == "paid"
    assert_consistent(slow_rail, scope)


def _shift(server: Server, scope: Partition, seconds: int) -> None:
    """Bring the scope's payouts' rail times ``seconds`` closer instead of waiting."""
    delta = seconds * 10**9 + 1
    with server.engine.begin() as connection:
        connection.execute(
            payouts.update()
            .where(payouts.c.tenant_id == scope.tenant_id)
            .values(
                in_transit_at_ns=payouts.c.in_transit_at_ns - delta,
                arrive_at_ns=payouts.c.arrive_at_ns - delta,
            )
        )
