"""`farthing verify`'s second half: the /v1 money rows agree with one another and with the
payments ledger, for every account and mode.

The ledger is MAC-chained; the /v1 tables are not. These checks tie them to it: every balance
transaction's net is its amount less its fee, the nets of each account add up to its ledger
balances, and each money-moving object agrees with its balance transaction (and
a charge with its payment intent and refunds). A row edited alone then breaks a check; what is
left undetected is a consistent rewrite of several rows that moves no money in the ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from farthing._errors import IntegrityError
from farthing.db.schema import stripe_balance_transactions as transactions
from farthing.db.schema import (
    stripe_charges,
    stripe_payment_intents,
    stripe_payouts,
    stripe_refunds,
    stripe_transfer_reversals,
    stripe_transfers,
    tenants,
)
from farthing.stripe_api._request import Partition
from farthing.stripe_api.payments._balance import ledger_balance
from farthing.stripe_api.payments._ledger import PaymentsLedger

__all__ = ["check_partition", "check_payments"]

_MODES = ("test", "live")
CHARGES_PER_FETCH_MAX = 5000
# Refund states whose amount counts in the charge's amount_refunded.
_REFUNDED_STATES = ("pending", "succeeded")


def partitions(connection: sa.Connection) -> Iterator[Partition]:
    """Every account and mode that can hold money: each top-level account in both modes, each
    connected account in its own (its money is in its platform's payments ledger)."""
    rows = connection.execute(
        sa.select(tenants.c.id, tenants.c.parent_id, tenants.c.mode).order_by(tenants.c.id)
    )
    for tenant_id, parent_id, mode in rows:
        if parent_id is None:
            for each in _MODES:
                yield Partition(tenant_id=tenant_id, mode=each, platform_id=tenant_id)
        else:
            yield Partition(tenant_id=tenant_id, mode=mode, platform_id=parent_id)


def check_payments(
    engine: sa.Engine,
    ledger: PaymentsLedger,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Check every partition in one snapshot; IntegrityError names the first that fails.
    Returns the number of partitions checked."""
    checked = 0
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        for scope in partitions(connection):
            check_partition(connection, ledger, scope)
            checked += 1
            if progress is not None:
                progress(checked)
        connection.rollback()
    return checked


def check_partition(connection: sa.Connection, ledger: PaymentsLedger, scope: Partition) -> None:
    """IntegrityError unless the scope's /v1 money rows agree with each other and the ledger."""
    where = f"{scope.tenant_id} ({scope.mode})"
    _check_nets(connection, scope, where)
    _check_balances(connection, ledger, scope, where)
    for table, column, sign in _SOURCES:
        _check_sources(connection, scope, where, table, column, sign)
    _check_charges(connection, scope, where)


def _scoped(table: sa.Table, scope: Partition) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.tenant_id == scope.tenant_id, table.c.mode == scope.mode)


def _check_nets(connection: sa.Connection, scope: Partition, where: str) -> None:
    t = transactions
    bad = connection.execute(
        sa.select(t.c.id)
        .where(
            _scoped(t, scope),
            sa.or_(t.c.net != t.c.amount - t.c.fee, t.c.status.not_in(("available", "pending"))),
        )
        .order_by(t.c.seq)
        .limit(1)
    ).scalar()
    if bad is not None:
        msg = f"{where}: balance transaction {bad}: net is not amount less fee, or bad status"
        raise IntegrityError(msg)


def _check_balances(
    connection: sa.Connection, ledger: PaymentsLedger, scope: Partition, where: str
) -> None:
    """Per currency, the nets of available and of pending transactions are the ledger's
    available and pending balances (``_balance``'s invariant)."""
    t = transactions
    sums = connection.execute(
        sa.select(t.c.currency, t.c.status, sa.func.coalesce(sa.func.sum(t.c.net), 0))
        .where(_scoped(t, scope))
        .group_by(t.c.currency, t.c.status)
    ).all()
    from_transactions: dict[str, list[int]] = {}
    for currency, status, total in sums:
        nets = from_transactions.setdefault(currency, [0, 0])
        nets[0 if status == "available" else 1] += int(total)
    balances = ledger_balance(connection, ledger, scope)
    unread = sorted(from_transactions.keys() - balances.keys())
    if unread:  # Past CURRENCIES_PER_ACCOUNT_MAX, balances are not read for every currency.
        msg = f"{where}: balance transactions in currencies whose balance was not read: {unread}"
        raise IntegrityError(msg)
    for currency, (available, pending) in balances.items():
        expected = from_transactions.get(currency, [0, 0])
        if [available, pending] != expected:
            msg = (
                f"{where} {currency}: ledger {available}/{pending} available/pending, "
                f"balance transactions {expected[0]}/{expected[1]}"
            )
            raise IntegrityError(msg)


# (object table, its balance transaction column, sign of the transaction's amount)
_SOURCES: tuple[tuple[sa.Table, str, int], ...] = (
    (stripe_refunds, "balance_transaction_id", -1),
    (stripe_transfers, "balance_transaction_id", -1),
    (stripe_transfer_reversals, "balance_transaction_id", 1),
    (stripe_payouts, "balance_transaction_id", -1),
    (stripe_payouts, "failure_balance_transaction_id", 1),
)


def _check_sources(  # noqa: PLR0913 - one join, spelled out
    connection: sa.Connection,
    scope: Partition,
    where: str,
    table: sa.Table,
    column: str,
    sign: int,
) -> None:
    """Each object's balance transaction is its own: same account, source, currency, amount."""
    t = transactions
    link = table.c[column]
    bad = connection.execute(
        sa.select(table.c.id)
        .select_from(table.outerjoin(t, t.c.id == link))
        .where(
            _scoped(table, scope),
            link.is_not(None),
            sa.or_(
                t.c.id.is_(None),
                t.c.tenant_id != table.c.tenant_id,
                t.c.mode != table.c.mode,
                t.c.source_id != table.c.id,
                t.c.currency != table.c.currency,
                t.c.amount != sign * table.c.amount,
            ),
        )
        .order_by(table.c.seq)
        .limit(1)
    ).scalar()
    if bad is not None:
        msg = f"{where}: {bad} differs from its balance transaction ({column})"
        raise IntegrityError(msg)


def _check_charges(connection: sa.Connection, scope: Partition, where: str) -> None:
    """A charge's captured amount and fee are its balance transaction's; a succeeded charge's
    amount is its intent's; what it says was refunded is what its refunds add up to."""
    c, t, pi, r = stripe_charges, transactions, stripe_payment_intents, stripe_refunds
    refunded = (
        sa.select(sa.func.coalesce(sa.func.sum(r.c.amount), 0))
        .where(
            # The account and mode first: the refunds index leads with them (a probe per charge,
            # not a scan of every refund).
            r.c.tenant_id == c.c.tenant_id,
            r.c.mode == c.c.mode,
            r.c.charge_id == c.c.id,
            r.c.status.in_(_REFUNDED_STATES),
        )
        .scalar_subquery()
    )
    statement = (
        sa.select(
            c.c.id,
            c.c.status,
            c.c.currency,
            c.c.amount,
            c.c.amount_captured,
            c.c.amount_refunded,
            c.c.fee,
            c.c.balance_transaction_id,
            refunded.label("refunded"),
            pi.c.tenant_id.label("pi_tenant"),
            pi.c.mode.label("pi_mode"),
            pi.c.currency.label("pi_currency"),
            pi.c.amount.label("pi_amount"),
            t.c.tenant_id.label("t_tenant"),
            t.c.mode.label("t_mode"),
            t.c.source_id.label("t_source"),
            t.c.currency.label("t_currency"),
            t.c.amount.label("t_amount"),
            t.c.fee.label("t_fee"),
        )
        .select_from(
            c.outerjoin(t, t.c.id == c.c.balance_transaction_id).outerjoin(
                pi, pi.c.id == c.c.payment_intent_id
            )
        )
        .where(_scoped(c, scope))
        .order_by(c.c.seq)
    )
    # Closed on the first failure too (a server-side cursor on PostgreSQL).
    with connection.execute(
        statement, execution_options={"yield_per": CHARGES_PER_FETCH_MAX}
    ) as rows:
        for row in rows:
            problem = _charge_problem(row, scope)
            if problem is not None:
                msg = f"{where}: charge {row.id}: {problem}"
                raise IntegrityError(msg)


def _charge_problem(row: Any, scope: Partition) -> str | None:
    owner = (row.pi_tenant, row.pi_mode, row.pi_currency)
    # An uncaptured remainder that was released counts as refunded, as on Stripe.
    released = row.amount_refunded - row.refunded
    transaction = (row.t_tenant, row.t_mode, row.t_source, row.t_currency, row.t_amount, row.t_fee)
    checks = (
        (owner == (scope.tenant_id, scope.mode, row.currency), "its intent is missing or differs"),
        (row.status != "succeeded" or row.pi_amount == row.amount, "its intent's amount differs"),
        (0 <= row.amount_captured <= row.amount, "captured more than its amount"),
        (released in (0, row.amount - row.amount_captured), "its refunds add up to another sum"),
        (
            row.balance_transaction_id is None
            or transaction
            == (scope.tenant_id, scope.mode, row.id, row.currency, row.amount_captured, row.fee),
            "its balance transaction is missing or differs (account, amount, fee)",
        ),
    )
    return next((problem for holds, problem in checks if not holds), None)
