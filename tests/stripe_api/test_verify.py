"""`farthing verify` checks the /v1 money rows against each other and the payments ledger: a
row edited in the database (not through the API) fails it, naming the object; undone, it passes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
import sqlalchemy as sa

from farthing._errors import IntegrityError
from farthing.db.schema import (
    stripe_balance_transactions,
    stripe_charges,
    stripe_payouts,
    stripe_refunds,
    stripe_transfers,
)
from farthing.ledger_service import LedgerService
from farthing.stripe_api.payments import PaymentsLedger, check_payments
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import Server
from tests.stripe_api.conftest import new_account, serving_v1
from tests.stripe_api.transfers.conftest import connected, fund
from tests.test_cli import farthing


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def moved(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    """A server whose platform was paid, refunded part, paid a seller and paid out; the ids."""
    directory = tmp_path_factory.mktemp(f"verify-{request.param}")
    with serving_v1(request.param, directory) as server:
        account = new_account(server)
        fund(account, 10_000)
        intent = account.test.v1.payment_intents.list().data[0]
        charge_id = cast("str", intent.latest_charge)
        refund = account.test.v1.refunds.create(params={"charge": charge_id, "amount": 1_200})
        seller = connected(server, account)
        transfer = account.test.v1.transfers.create(
            params={"amount": 2_000, "currency": "usd", "destination": seller.tenant_id}
        )
        bank = {"object": "bank_account", "country": "US", "currency": "usd",
                "account_number": "000123456789", "routing_number": "110000000"}  # fmt: skip
        account.test.v1.accounts.external_accounts.create(
            account.id, params=cast("Any", {"external_account": bank})
        )
        payout = account.test.v1.payouts.create(params={"amount": 1_000, "currency": "usd"})
        ids = {
            "charge": charge_id,
            "refund": refund.id,
            "transfer": transfer.id,
            "payout": payout.id,
        }
        yield server, ids


def _check(server: Server) -> int:
    """What `farthing verify` runs after the journal's replay."""
    return check_payments(
        server.engine, PaymentsLedger(LedgerService(server.engine, journal_key=JOURNAL_KEY))
    )


def _edit(server: Server, table: sa.Table, row_id: str, column: str, delta: int) -> None:
    with server.engine.begin() as connection:
        updated = connection.execute(
            table.update().where(table.c.id == row_id).values({column: table.c[column] + delta})
        )
        assert updated.rowcount == 1


def test_verify_fails_on_an_edited_charge_and_passes_once_undone(
    moved: tuple[Server, dict[str, str]],
) -> None:
    server, ids = moved
    verified = farthing("verify", "--database-url", server.database_url).stderr
    assert "ok: payments of 3 accounts and modes agree with the ledger" in verified
    _edit(server, stripe_charges, ids["charge"], "amount", 100)
    try:
        failed = farthing("verify", "--database-url", server.database_url, expect=1).stderr
    finally:
        _edit(server, stripe_charges, ids["charge"], "amount", -100)
    assert f"charge {ids['charge']}: its intent's amount differs" in failed, failed
    farthing("verify", "--database-url", server.database_url)


@pytest.mark.parametrize(
    ("table", "kind", "column"),
    [
        (stripe_charges, "charge", "amount_captured"),
        (stripe_charges, "charge", "amount_refunded"),
        (stripe_charges, "charge", "fee"),
        (stripe_refunds, "refund", "amount"),
        (stripe_transfers, "transfer", "amount"),
        (stripe_payouts, "payout", "amount"),
    ],
)
def test_an_edited_object_fails_verify(
    moved: tuple[Server, dict[str, str]], table: sa.Table, kind: str, column: str
) -> None:
    server, ids = moved
    _edit(server, table, ids[kind], column, 100)
    try:
        with pytest.raises(IntegrityError, match=ids[kind]):
            _check(server)
    finally:
        _edit(server, table, ids[kind], column, -100)
    assert _check(server) == 3


@pytest.mark.parametrize("column", ["net", "amount", "fee"])
def test_an_edited_balance_transaction_fails_verify(
    moved: tuple[Server, dict[str, str]], column: str
) -> None:
    server, ids = moved
    with server.engine.connect() as connection:
        txn_id = connection.execute(
            sa.select(stripe_charges.c.balance_transaction_id).where(
                stripe_charges.c.id == ids["charge"]
            )
        ).scalar_one()
    _edit(server, stripe_balance_transactions, txn_id, column, 100)
    try:
        with pytest.raises(IntegrityError):
            _check(server)
    finally:
        _edit(server, stripe_balance_transactions, txn_id, column, -100)
    assert _check(server) == 3


def test_a_balance_transaction_moved_to_pending_fails_verify(
    moved: tuple[Server, dict[str, str]],
) -> None:
    """Its net still adds up to its amount less fee: only the balances tell."""
    server, ids = moved
    t = stripe_balance_transactions
    with server.engine.begin() as connection:
        txn_id = connection.execute(
            sa.select(stripe_charges.c.balance_transaction_id).where(
                stripe_charges.c.id == ids["charge"]
            )
        ).scalar_one()
        connection.execute(t.update().where(t.c.id == txn_id).values(status="pending"))
    try:
        with pytest.raises(IntegrityError, match=r"ledger .* available/pending, balance trans"):
            _check(server)
    finally:
        with server.engine.begin() as connection:
            connection.execute(t.update().where(t.c.id == txn_id).values(status="available"))
    assert _check(server) == 3
