"""Driver-level SQL of the write path, one class per database.

The hot path bypasses SQLAlchemy's statement layer and talks to the DBAPI connection it pools:
SQLite gets ``executemany`` and ``json_each`` look-ups; PostgreSQL gets ``= ANY`` look-ups,
``COPY`` and ``UPDATE ... FROM unnest``. Both take the same row tuples.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from farthing.ledger_service._records import (
    ACCOUNT_RECORD_COLUMNS,
    TRANSFER_COLUMNS,
    TRANSFER_LINK_COLUMNS,
)

__all__ = [
    "INSERT_ACCOUNT_COLUMNS",
    "INSERT_TRANSFER_COLUMNS",
    "PostgresOps",
    "SqlOps",
    "SqliteOps",
    "storable",
]

Row = tuple[Any, ...]

ACCOUNT_COLUMNS = (
    "pk, ledger_id, id, currency, code, flags, limit_minor, limit_initial_minor, metadata, "
    "debits_pending, debits_posted, credits_pending, credits_posted, "
    "last_transfer_ts, transfers_count"
)
STORED_TRANSFER_COLUMNS = (
    "t.ts, t.ledger_id, t.id, da.id, ca.id, t.amount, t.pending_id, t.timeout_s, "
    "t.expires_at_ns, t.code, t.flags, t.metadata, h.state"
)
_TRANSFER_JOINS = (
    "JOIN ledger_accounts da ON da.pk = t.debit_pk "
    "JOIN ledger_accounts ca ON ca.pk = t.credit_pk "
    "LEFT JOIN ledger_holds h ON h.transfer_ts = t.ts"
)
_TRANSFER_FROM = f"ledger_transfers t {_TRANSFER_JOINS}"
_INSERT_ACCOUNT_COLUMNS = (
    *ACCOUNT_RECORD_COLUMNS[1:],
    "limit_minor",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "last_transfer_ts",
    "transfers_count",
)
INSERT_TRANSFER_COLUMNS = (*TRANSFER_COLUMNS, *TRANSFER_LINK_COLUMNS)


def _copy_field(value: object) -> str:
    """A value in COPY's text format: ``\\N`` is NULL, and text escapes its backslashes and the
    characters COPY uses as separators (ids and JSON metadata rarely hold any)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return (
                value.replace("\\", "\\\\")
                .replace("\t", "\\t")
                .replace("\n", "\\n")
                .replace("\r", "\\r")
            )
        return value
    assert isinstance(value, int)
    assert not isinstance(value, bool)
    return str(value)


class SqlOps(Protocol):
    """The statements of one commit, for one database."""

    def begin(self, cursor: Any) -> None: ...
    def lock_accounts(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]: ...
    def transfers_by_id(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]: ...
    def transfers_by_ts(self, cursor: Any, timestamps: Sequence[int]) -> list[Row]: ...
    def failed_by_id(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]: ...
    def lock_head(self, cursor: Any) -> Row: ...
    def insert_transfers(self, cursor: Any, rows: Sequence[Row]) -> None: ...
    def update_balances(self, cursor: Any, rows: Sequence[Row]) -> None: ...


# Id lists travel as one text parameter joined by US (0x1f), which no storable id holds:
# psycopg's list adaptation is Python code and costs more than the look-up itself at batch
# sizes, and `= ANY(array)` keeps PostgreSQL on the unique index.
_IDS = "ANY(string_to_array(%s, chr(31)))"
_US = "\x1f"
# Look-ups by (ledger_id, id) probe the unique index once per id. Written as `id = ANY(...)`, the
# planner, without fresh statistics (a new or fast-growing table: autovacuum analyzes only after
# a minute), guessed that `ledger_id = ?` alone was selective, scanned the ledger's every row and
# filtered by id; psycopg then kept that plan for the connection's life. On a new database the
# single-transfer benchmark ran 857 instead of 5,981 transfers/s. LIMIT 1 keeps the planner from
# merging the probe into a join it could run as a scan.
_BY_ID = (
    "FROM unnest(string_to_array(%s, chr(31))) AS ids(id) CROSS JOIN LATERAL "
    "(SELECT * FROM {table} WHERE ledger_id = %s AND id = ids.id LIMIT 1) {alias}"
)


_UPDATE_BALANCES = (
    "UPDATE ledger_accounts a SET debits_pending = v.dp, debits_posted = v.dpo, "
    "credits_pending = v.cp, credits_posted = v.cpo, limit_minor = v.lim, "
    "last_transfer_ts = NULLIF(v.last, -1), transfers_count = v.n FROM unnest("
    "string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[], "
    "string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[], "
    "string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[], "
    "string_to_array(%s, ',')::bigint[], string_to_array(%s, ',')::bigint[]"
    ") AS v(dp, dpo, cp, cpo, lim, last, n, pk) WHERE a.pk = v.pk"
)


def storable(value: str) -> bool:
    """False for text no row can hold (no valid id has control characters): PostgreSQL refuses
    NUL in text even in a look-up, and US separates ids in one parameter."""
    return "\x00" not in value and _US not in value


def _placeholders(count: int, mark: str) -> str:
    return ", ".join([mark] * count)


class SqliteOps:
    """SQLite: one writer at a time (BEGIN IMMEDIATE), so no row locks are needed."""

    mark = "?"

    def begin(self, cursor: Any) -> None:
        cursor.execute("BEGIN IMMEDIATE")

    def lock_accounts(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]:
        cursor.execute(
            f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts WHERE ledger_id = ? "  # noqa: S608
            "AND id IN (SELECT value FROM json_each(?))",
            (ledger_id, json.dumps(list(ids))),
        )
        return list(cursor.fetchall())

    def transfers_by_id(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]:
        cursor.execute(
            f"SELECT {STORED_TRANSFER_COLUMNS} FROM {_TRANSFER_FROM} "  # noqa: S608
            "WHERE t.ledger_id = ? AND t.id IN (SELECT value FROM json_each(?))",
            (ledger_id, json.dumps(list(ids))),
        )
        return list(cursor.fetchall())

    def transfers_by_ts(self, cursor: Any, timestamps: Sequence[int]) -> list[Row]:
        cursor.execute(
            f"SELECT {STORED_TRANSFER_COLUMNS} FROM {_TRANSFER_FROM} "  # noqa: S608
            "WHERE t.ts IN (SELECT value FROM json_each(?))",
            (json.dumps(list(timestamps)),),
        )
        return list(cursor.fetchall())

    def failed_by_id(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]:
        cursor.execute(
            "SELECT id, result FROM ledger_failed_transfers WHERE ledger_id = ? "
            "AND id IN (SELECT value FROM json_each(?))",
            (ledger_id, json.dumps(list(ids))),
        )
        return list(cursor.fetchall())

    def lock_head(self, cursor: Any) -> Row:
        cursor.execute("SELECT seq, ts, mac FROM ledger_journal_head WHERE id = 1")
        row: Row = cursor.fetchone()
        return row

    def insert_transfers(self, cursor: Any, rows: Sequence[Row]) -> None:
        columns = ", ".join(INSERT_TRANSFER_COLUMNS)
        marks = _placeholders(len(INSERT_TRANSFER_COLUMNS), "?")
        cursor.executemany(
            f"INSERT INTO ledger_transfers ({columns}) VALUES ({marks})",  # noqa: S608
            rows,
        )

    def update_balances(self, cursor: Any, rows: Sequence[Row]) -> None:
        cursor.executemany(
            "UPDATE ledger_accounts SET debits_pending = ?, debits_posted = ?, "
            "credits_pending = ?, credits_posted = ?, limit_minor = ?, last_transfer_ts = ?, "
            "transfers_count = ? WHERE pk = ?",
            rows,
        )


class PostgresOps:
    """PostgreSQL: accounts locked in primary-key order, so concurrent writers never deadlock."""

    mark = "%s"

    def begin(self, cursor: Any) -> None:
        del cursor  # psycopg opens the transaction with the first statement.

    def lock_accounts(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]:
        cursor.execute(
            f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts "  # noqa: S608
            f"WHERE ledger_id = %s AND id = {_IDS} ORDER BY pk FOR UPDATE",
            (ledger_id, _US.join(ids)),
        )
        return list(cursor.fetchall())

    def transfers_by_id(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]:
        probe = _BY_ID.format(table="ledger_transfers", alias="t")
        cursor.execute(
            f"SELECT {STORED_TRANSFER_COLUMNS} {probe} {_TRANSFER_JOINS}",
            (_US.join(ids), ledger_id),
        )
        return list(cursor.fetchall())

    def transfers_by_ts(self, cursor: Any, timestamps: Sequence[int]) -> list[Row]:
        cursor.execute(
            f"SELECT {STORED_TRANSFER_COLUMNS} FROM {_TRANSFER_FROM} "  # noqa: S608
            "WHERE t.ts = ANY(string_to_array(%s, ',')::bigint[])",
            (",".join(map(str, timestamps)),),
        )
        return list(cursor.fetchall())

    def failed_by_id(self, cursor: Any, ledger_id: int, ids: Sequence[str]) -> list[Row]:
        probe = _BY_ID.format(table="ledger_failed_transfers", alias="f")
        cursor.execute(f"SELECT f.id, f.result {probe}", (_US.join(ids), ledger_id))
        return list(cursor.fetchall())

    def lock_head(self, cursor: Any) -> Row:
        cursor.execute("SELECT seq, ts, mac FROM ledger_journal_head WHERE id = 1 FOR UPDATE")
        row: Row = cursor.fetchone()
        return row

    def insert_transfers(self, cursor: Any, rows: Sequence[Row]) -> None:
        columns = ", ".join(INSERT_TRANSFER_COLUMNS)
        # One text block in COPY's text format: psycopg's write_row costs more per row than
        # formatting the row ourselves, and transfer rows hold only integers, NULLs and text.
        lines = ["\t".join(map(_copy_field, row)) for row in rows]
        with cursor.copy(f"COPY ledger_transfers ({columns}) FROM STDIN") as copy:
            copy.write("\n".join(lines) + "\n")

    def update_balances(self, cursor: Any, rows: Sequence[Row]) -> None:
        # Integer columns travel as comma-joined text: psycopg's list adaptation is Python code
        # and costs more than the UPDATE itself at batch sizes.
        # An account without transfers has no last_transfer_ts (NULL): -1 stands for it, since
        # no timestamp is negative.
        columns = [
            ",".join("-1" if value is None else str(value) for value in column)
            for column in zip(*rows, strict=True)
        ]
        cursor.execute(_UPDATE_BALANCES, columns)


INSERT_ACCOUNT_COLUMNS = _INSERT_ACCOUNT_COLUMNS
