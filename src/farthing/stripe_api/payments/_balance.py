"""Balance transactions and balances.

Every movement of an account's balance is a balance transaction (``txn_``) whose ``net`` is what
the movement did to the account's balance, and one or more ledger transfers that did it. While
a transaction is ``pending`` its net sits in the account's pending ledger account; at
``available_on`` a settlement transfer moves it to the available one (one transfer for the sum of
an account's due nets per currency, so a refund settles with its charge). Hence, per account and
currency, at every commit:

    sum(net of available transactions) == available ledger balance
    sum(net of pending transactions)   == pending ledger balance

`farthing verify` checks exactly this (``_integrity``); the tests run it after every scenario.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_balance_transactions as transactions
from farthing.ledger import Account, TransferEvent
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._request import Partition
from farthing.stripe_api.events import emit
from farthing.stripe_api.payments._ledger import (
    Movement,
    PaymentsLedger,
    TransferCode,
    available_account,
    pending_account,
)

__all__ = [
    "BalanceEntry",
    "balance_object",
    "balance_transaction_object",
    "ledger_balance",
    "record",
    "settle_due",
]

CURRENCIES_PER_ACCOUNT_MAX = 50
_SOURCE_TYPE = "card"


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceEntry:
    """A balance transaction to record: signed amounts in minor units, as Stripe shows them."""

    amount: int
    currency: str
    fee: int
    fee_details: tuple[tuple[str, int, str], ...]  # (type, amount, description)
    type: str
    reporting_category: str
    source_id: str | None
    available_on: int
    description: str | None = None
    payout_id: str | None = None

    @property
    def net(self) -> int:
        return self.amount - self.fee


def record(
    connection: sa.Connection,
    scope: Partition,
    entry: BalanceEntry,
    *,
    now_s: int,
    available: bool = False,
) -> str:
    """Insert a transaction. ``available``: its transfers moved the available balance directly;
    otherwise they moved the pending balance and `settle_due` makes it available later (in the
    same effect, when ``available_on`` has come already)."""
    assert entry.fee == sum(amount for _type, amount, _description in entry.fee_details)
    txn_id = objects.new_id("txn_")
    objects.insert(
        connection,
        transactions,
        scope,
        {
            "id": txn_id,
            "created": now_s,
            "amount": entry.amount,
            "currency": entry.currency,
            "fee": entry.fee,
            "fee_details": _encode_fee_details(entry),
            "net": entry.net,
            "status": "available" if available else "pending",
            "available_on": entry.available_on,
            "type": entry.type,
            "reporting_category": entry.reporting_category,
            "source_id": entry.source_id,
            "payout_id": entry.payout_id,
            "description": entry.description,
        },
    )
    return txn_id


def _encode_fee_details(entry: BalanceEntry) -> str:
    import json  # noqa: PLC0415 - only here

    return json.dumps(
        [
            {"amount": amount, "currency": entry.currency, "description": text, "type": kind}
            for kind, amount, text in entry.fee_details
        ]
    )


def settle_due(
    connection: sa.Connection, movement: Movement, scope: Partition, *, now_s: int
) -> None:
    """Add settlement transfers for the scope's due pending transactions to ``movement`` and mark
    them available (the caller posts the movement in the same transaction).

    All of them or none: the transactions of one charge (its refunds, a destination charge's
    transfer line) share its ``available_on`` but not its place in any order, and only together
    is their net never negative. A cut between them would settle a charge's net and leave its
    refund to take back from an available balance that a payout may have emptied meanwhile.
    One statement marks them, returning four small fields each; how many there are is bounded by
    what came due since the scope's last write.

    Settlements of one account take turns (its tenant row, locked until the transaction ends):
    each locks the rows due by its own clock, in no set order, and a refund then locks its
    charge's row, so two at once deadlocked on PostgreSQL. Callers that settle a platform and
    one of its connected accounts settle the platform first."""
    objects.lock_account(connection, scope)
    due = (
        transactions.update()
        .where(
            transactions.c.tenant_id == scope.tenant_id,
            transactions.c.mode == scope.mode,
            transactions.c.status == "pending",
            transactions.c.available_on <= now_s,
        )
        .values(status="available")
        .returning(
            transactions.c.currency, transactions.c.net, transactions.c.seq, transactions.c.id
        )
    )
    # On PostgreSQL the update locks each row; a concurrent settlement waits, then skips it.
    # Per currency: the sum of the nets, and the first transaction (its id names the transfer).
    totals: dict[str, tuple[int, tuple[int, str]]] = {}
    for currency, net, seq, txn_id in connection.execute(due):
        total, first = totals.get(currency, (0, (seq, txn_id)))
        totals[currency] = (total + net, min(first, (seq, txn_id)))
    for currency, (total, (_seq, first_id)) in sorted(totals.items()):
        _settle(movement, scope, currency, total, f"{first_id}.settle")
    if totals:
        movement.after_post.append(
            lambda connection: emit(
                connection,
                scope,
                "balance.available",
                balance_object(connection, movement.ledger, scope),
            )
        )


def _settle(
    movement: Movement, scope: Partition, currency: str, net: int, transfer_id: str
) -> None:
    movement.involve(scope.tenant_id, currency)
    if net == 0:
        return
    pending = pending_account(scope.tenant_id, currency)
    available = available_account(scope.tenant_id, currency)
    movement.add(
        TransferEvent(
            id=transfer_id,
            debit_account_id=pending if net > 0 else available,
            credit_account_id=available if net > 0 else pending,
            amount_minor=abs(net),
            code=TransferCode.settle,
        )
    )


def _spendable(account: Account | None) -> int:
    if account is None:
        return 0
    b = account.balances
    return b.credits_posted - b.debits_posted - b.debits_pending


def _currencies(connection: sa.Connection, scope: Partition) -> list[str]:
    rows = connection.execute(
        sa.select(transactions.c.currency)
        .where(transactions.c.tenant_id == scope.tenant_id, transactions.c.mode == scope.mode)
        .distinct()
        .order_by(transactions.c.currency)
        .limit(CURRENCIES_PER_ACCOUNT_MAX)
    ).scalars()
    return list(rows)


def ledger_balance(
    connection: sa.Connection, ledger: PaymentsLedger, scope: Partition
) -> dict[str, tuple[int, int]]:
    """Per currency: (available, pending) as the payments ledger holds them."""
    currencies = _currencies(connection, scope)
    ids = [
        name
        for currency in currencies
        for name in (
            available_account(scope.tenant_id, currency),
            pending_account(scope.tenant_id, currency),
        )
    ]
    accounts = ledger.accounts(connection, scope, ids) if ids else {}
    return {
        currency: (
            _spendable(accounts.get(available_account(scope.tenant_id, currency))),
            _spendable(accounts.get(pending_account(scope.tenant_id, currency))),
        )
        for currency in currencies
    }


def balance_object(
    connection: sa.Connection, ledger: PaymentsLedger, scope: Partition
) -> dict[str, Any]:
    amounts = ledger_balance(connection, ledger, scope)
    if not amounts:
        amounts = {"usd": (0, 0)}

    def entries(index: int) -> list[dict[str, Any]]:
        return [
            {
                "amount": pair[index],
                "currency": currency,
                "source_types": {_SOURCE_TYPE: pair[index]},
            }
            for currency, pair in amounts.items()
        ]

    return {
        "object": "balance",
        "available": entries(0),
        "pending": entries(1),
        "livemode": scope.livemode,
    }


def balance_transaction_object(row: objects.ObjectRow, *, livemode: bool) -> dict[str, Any]:
    import json  # noqa: PLC0415 - only here

    del livemode  # Balance transactions carry no livemode field in Stripe's API.
    return {
        "id": row["id"],
        "object": "balance_transaction",
        "amount": row["amount"],
        "available_on": row["available_on"],
        "created": row["created"],
        "currency": row["currency"],
        "description": row["description"],
        "exchange_rate": None,
        "fee": row["fee"],
        "fee_details": json.loads(row["fee_details"]),
        "net": row["net"],
        "reporting_category": row["reporting_category"],
        "source": row["source_id"],
        "status": row["status"],
        "type": row["type"],
    }


def now_s() -> int:
    return int(time.time())
