"""A refund of a charge that has just come due, racing settlements of the same account: both
lock the account's due balance transactions, in one order, so neither waits for the other in a
cycle (PostgreSQL once aborted one of them as a deadlock: a 500). And settlements of one account
take turns, whatever each has due by its own clock."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import sqlalchemy as sa

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_balance_transactions
from farthing.ledger_service import LedgerService
from farthing.stripe_api.payments import PaymentsLedger, settle_due
from tests.conftest import JOURNAL_KEY, waiting_on_a_lock
from tests.http.conftest import Server, poll_until
from tests.stripe_api.conftest import Account, assert_consistent, scope_of

ROUNDS = 15
CHARGES_PER_ROUND = 4


def _pay(account: Account, amount: int) -> str:
    return account.test.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "usd",
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    ).id


def _race(server: Server, account: Account) -> list[int]:
    """Charges come due; then two refunds and two balance reads start at once."""
    intents = [_pay(account, 1_000 + n) for n in range(CHARGES_PER_ROUND)]
    with server.engine.begin() as connection:
        # Time passes: the pending charges come due, unsettled until the next write.
        connection.execute(
            stripe_balance_transactions.update()
            .where(
                stripe_balance_transactions.c.tenant_id == account.id,
                stripe_balance_transactions.c.status == "pending",
            )
            .values(available_on=1)
        )
    start = threading.Barrier(4)
    headers = {"Authorization": f"Bearer {account.test_secret}"}

    def refund(intent_id: str) -> int:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            start.wait()
            data = {"payment_intent": intent_id, "amount": "100"}
            return client.post("/v1/refunds", data=data, headers=headers).status_code

    def balance() -> int:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            start.wait()
            return client.get("/v1/balance", headers=headers).status_code

    with ThreadPoolExecutor(4) as pool:
        racing = [
            pool.submit(refund, intents[-1]),
            pool.submit(refund, intents[-2]),
            pool.submit(balance),
            pool.submit(balance),
        ]
        return [future.result() for future in racing]


def test_refunds_and_settlements_racing_never_deadlock(v1_server: Server, account: Account) -> None:
    statuses = [status for _ in range(ROUNDS) for status in _race(v1_server, account)]
    assert statuses == [200] * len(statuses)
    with v1_server.engine.connect() as connection:
        pending = connection.execute(
            sa.select(sa.func.count()).where(
                stripe_balance_transactions.c.tenant_id == account.id,
                stripe_balance_transactions.c.status == "pending",
            )
        ).scalar_one()
    assert pending == 0
    assert_consistent(v1_server, scope_of(account))


# SQLite has one writer at a time anyway.
@pytest.mark.parametrize("v1_server", ["postgresql"], indirect=True)
def test_a_settlement_waits_for_one_in_progress(v1_server: Server, account: Account) -> None:
    """Settlements of one account take turns even when their due rows differ: one that runs at
    a later second holds a charge that an earlier refund is about to lock. Here the first has
    locked a charge due by its clock; a balance read with nothing due by its own must wait."""
    intent = _pay(account, 1_000)
    charge = account.test.v1.charges.list(params={"payment_intent": intent}).data[0]
    later_s = int(time.time()) + 3600
    with v1_server.engine.begin() as connection:
        connection.execute(
            stripe_balance_transactions.update()
            .where(stripe_balance_transactions.c.id == charge.balance_transaction)
            .values(available_on=later_s)
        )
    payments = PaymentsLedger(LedgerService(v1_server.engine, journal_key=JOURNAL_KEY))
    scope = scope_of(account)
    headers = {"Authorization": f"Bearer {account.test_secret}"}
    with ThreadPoolExecutor(1) as pool, begin_write(v1_server.engine) as connection:
        movement = payments.movement(connection, scope)
        settle_due(connection, movement, scope, now_s=later_s)  # Holds the charge's row.
        reading = pool.submit(
            httpx.get, f"{v1_server.base_url}/v1/balance", headers=headers, timeout=60
        )
        poll_until(lambda: waiting_on_a_lock(v1_server.engine), deadline_s=30)
        assert not reading.done()
        connection.rollback()
    assert reading.result().status_code == 200
    assert_consistent(v1_server, scope)
