"""A refund of a charge that has just come due, racing settlements of the same account: both
lock the account's due balance transactions, in one order, so neither waits for the other in a
cycle (PostgreSQL once aborted one of them as a deadlock: a 500)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import sqlalchemy as sa

from farthing.db.schema import stripe_balance_transactions
from tests.http.conftest import Server
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
