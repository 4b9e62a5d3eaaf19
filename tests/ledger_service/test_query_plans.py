"""An account's history is read by key look-ups (history marks, then transfers by primary key),
never by scanning every transfer or every mark.

The statements are the ones the service really sends (captured while it answers), explained by
the database itself. PostgreSQL is told not to scan sequentially, so that a missing index shows
as a failure even on a small table, where a scan would be the planner's honest choice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from farthing.auth import Mode, create_tenant, ledger_id_for
from farthing.db.engine import create_engine
from farthing.ledger import AccountEvent, AccountFlags, CreateTransferResult, TransferEvent
from farthing.ledger_service import CreateAccounts, CreateTransfers, LedgerService
from farthing.ledger_service._sql import PostgresOps
from tests.conftest import JOURNAL_KEY, explain

Captured = list[tuple[str, Any]]


@pytest.fixture
def history(service: LedgerService, ledger_id: int) -> None:
    accounts = tuple(AccountEvent(id=f"a{index}", currency="USD") for index in range(3))
    service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)])
    transfers = tuple(
        TransferEvent(
            id=f"t{index}",
            debit_account_id=f"a{index % 3}",
            credit_account_id=f"a{(index + 1) % 3}",
            amount_minor=index + 1,
        )
        for index in range(300)  # Enough for marks: 200 transfers per account.
    )
    (results,) = service.commit([CreateTransfers(ledger_id=ledger_id, events=transfers)])
    assert results == [CreateTransferResult.ok] * len(transfers)


@pytest.fixture
def captured(engine: sa.Engine) -> Iterator[Captured]:
    statements: Captured = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        touches = "ledger_transfers" in statement or "ledger_history_marks" in statement
        if touches and not statement.startswith("EXPLAIN"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    yield statements
    event.remove(engine, "before_cursor_execute", capture)


_SCANS = re.compile(
    r"\bSCAN (ledger_transfers|t|ledger_history_marks)\b"  # SQLite
    r"|Seq Scan on (ledger_transfers|ledger_history_marks)\b"  # PostgreSQL
)


def _assert_keyed(engine: sa.Engine, statements: Captured) -> str:
    """Every captured statement reads by key; returns their plans, joined."""
    assert statements, "no statement read ledger_transfers"
    plans = []
    for statement, parameters in statements:
        plan = explain(engine, statement, parameters)
        assert _SCANS.search(plan) is None, plan
        plans.append(plan)
    return "\n".join(plans)


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize("newest_first", [False, True])
def test_listing_an_account_reads_by_key(
    engine: sa.Engine,
    service: LedgerService,
    ledger_id: int,
    captured: Captured,
    newest_first: bool,
) -> None:
    page = service.list_account_transfers(
        ledger_id, "a1", since_ns=1, until_ns=2**62, limit=5, newest_first=newest_first
    )
    assert page is not None
    assert len(page.transfers) == 5
    plans = _assert_keyed(engine, captured)
    assert "ledger_history_marks" in plans, plans


@pytest.mark.usefixtures("history")
def test_balance_at_a_moment_reads_by_key(
    engine: sa.Engine, service: LedgerService, ledger_id: int, captured: Captured
) -> None:
    balances = service.balance_at(ledger_id, "a1", 2**62)
    assert balances is not None
    assert balances.debits_posted + balances.credits_posted > 0
    plans = _assert_keyed(engine, captured)
    assert "ledger_history_marks" in plans, plans


class _Explaining:
    """A DBAPI cursor that explains each statement's generic plan instead of running it: the
    plan psycopg's prepared statements get after five executions, and keep."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, statement: str, parameters: Any) -> None:
        numbered = statement
        for index in range(1, len(parameters) + 1):
            numbered = numbered.replace("%s", f"${index}", 1)
        self._cursor.execute("SET plan_cache_mode = force_generic_plan")
        self._cursor.execute("DEALLOCATE ALL")
        types = ", ".join("text" if isinstance(value, str) else "bigint" for value in parameters)
        self._cursor.execute(f"PREPARE explained ({types}) AS {numbered}")
        # EXPLAIN EXECUTE takes no bound parameters: literals (ids here are plain text).
        literals = ", ".join(
            "'" + value.replace("'", "''") + "'" if isinstance(value, str) else str(int(value))
            for value in parameters
        )
        self._cursor.execute(f"EXPLAIN EXECUTE explained({literals})")

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())


def test_id_lookups_probe_the_unique_index_without_statistics(postgres_url: str) -> None:
    """Statistics taken while the table was empty (a new database, before autovacuum's first
    analyze) once led PostgreSQL to scan a ledger's every transfer for each id look-up."""
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE ledger_transfers")
            connection.exec_driver_sql("ANALYZE ledger_failed_transfers")
            connection.exec_driver_sql("ANALYZE ledger_accounts")
            tenant = create_tenant(connection, name="plans", journal_key=JOURNAL_KEY)
            ledger_id = ledger_id_for(connection, tenant, Mode.test)
        service = LedgerService(engine, journal_key=JOURNAL_KEY)
        limited = AccountEvent(
            id="limited", currency="USD", flags=AccountFlags.debits_must_not_exceed_credits
        )
        service.commit([CreateAccounts(ledger_id=ledger_id, events=(limited,))])
        accounts = tuple(AccountEvent(id=f"a{index}", currency="USD") for index in range(3000))
        service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)])
        # 3000 committed transfers and 3000 refused ones (exceeds_credits), after the analyze.
        for prefix, debit, expected in (
            ("t", "a1", CreateTransferResult.ok),
            ("r", "limited", CreateTransferResult.exceeds_credits),
        ):
            events = tuple(
                TransferEvent(
                    id=f"{prefix}{index}",
                    debit_account_id=debit,
                    credit_account_id="a2",
                    amount_minor=1,
                )
                for index in range(3000)
            )
            (results,) = service.commit([CreateTransfers(ledger_id=ledger_id, events=events)])
            assert results == [expected] * len(events)
        raw = engine.raw_connection()
        try:
            cursor = _Explaining(raw.cursor())
            ops = PostgresOps()
            for lookup in (ops.transfers_by_id, ops.failed_by_id, ops.lock_accounts):
                ids = ["a1", "a2"] if lookup == ops.lock_accounts else ["t1", "r2"]
                plan = "\n".join(row[0] for row in lookup(cursor, ledger_id, ids))
                assert re.search(r"Index Cond: .*\(id\)::text = ", plan), plan
                assert not re.search(r"Filter: .*\(id\)::text", plan), plan
                scanned = (
                    r"Seq Scan on (ledger_transfers|ledger_failed_transfers|ledger_accounts)\b"
                )
                assert not re.search(scanned, plan), plan
        finally:
            raw.close()
    finally:
        engine.dispose()
