"""Row tuples as stored, and their canonical journal records.

The write path and ``farthing verify`` both go through these functions, so the bytes that are
hashed when a commit is written are exactly the bytes recomputed from the database later. Every
field is encoded with its type (``farthing.ledger.encode_field``); verify first checks that each
stored value has the type its column promises, so a changed type cannot keep the same encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from farthing.ledger import encode_record, has_separator

__all__ = [
    "ACCOUNT_RECORD_COLUMNS",
    "FAILED_COLUMNS",
    "LIMIT_CHANGE_COLUMNS",
    "TRANSFER_COLUMNS",
    "TRANSFER_LINK_COLUMNS",
    "account_record",
    "failed_record",
    "limit_change_record",
    "row_type_error",
    "transfer_record",
]

# Immutable columns of an account: its creation record (balances and limit_minor change).
ACCOUNT_RECORD_COLUMNS = (
    "pk",
    "ledger_id",
    "id",
    "currency",
    "code",
    "flags",
    "limit_initial_minor",
    "metadata",
    "created_ns",
    "journal_seq",
)
LIMIT_CHANGE_COLUMNS = ("ts", "account_pk", "limit_minor", "previous_limit_minor", "journal_seq")
FAILED_COLUMNS = ("ts", "ledger_id", "id", "result", "journal_seq")
TRANSFER_COLUMNS = (
    "ts",
    "ledger_id",
    "id",
    "debit_pk",
    "credit_pk",
    "amount",
    "currency",
    "pending_id",
    "timeout_s",
    "expires_at_ns",
    "code",
    "flags",
    "metadata",
    "journal_seq",
    "dr_debits_pending",
    "dr_debits_posted",
    "dr_credits_pending",
    "dr_credits_posted",
    "cr_debits_pending",
    "cr_debits_posted",
    "cr_credits_pending",
    "cr_credits_posted",
)
# Stored after TRANSFER_COLUMNS and not journaled: the transfer's links in its accounts'
# histories, derived data that `farthing verify` rebuilds and compares (``_history``).
TRANSFER_LINK_COLUMNS = ("dr_previous_ts", "cr_previous_ts")

# Column types per record kind: i integer, s text, S text or NULL, I integer or NULL.
_TYPES = {
    "A": "iissiiiSii",
    "L": "iiiii",
    "F": "iissi",
    "T": "iisiiisSiIiiSiiiiiiiii",
}
assert len(_TYPES["A"]) == len(ACCOUNT_RECORD_COLUMNS)
assert len(_TYPES["L"]) == len(LIMIT_CHANGE_COLUMNS)
assert len(_TYPES["F"]) == len(FAILED_COLUMNS)
assert len(_TYPES["T"]) == len(TRANSFER_COLUMNS)


def row_type_error(kind: str, row: Sequence[object]) -> str | None:
    """Why a stored row cannot be one the writer wrote (wrong type, NULL, separator), or None."""
    for index, (code, value) in enumerate(zip(_TYPES[kind], row, strict=True)):
        if value is None:
            if code in "SI":
                continue
            return f"column {index} is NULL"
        if code in "sS":
            if not isinstance(value, str):
                return f"column {index} is not text"
            if has_separator(value):
                return f"column {index} holds a reserved character"
        elif not isinstance(value, int) or isinstance(value, bool):
            return f"column {index} is not an integer"
    return None


def account_record(row: Sequence[object]) -> str:
    assert len(row) == len(ACCOUNT_RECORD_COLUMNS)
    return encode_record("A", row)


def limit_change_record(row: Sequence[object]) -> str:
    assert len(row) == len(LIMIT_CHANGE_COLUMNS)
    return encode_record("L", row)


def failed_record(row: Sequence[object]) -> str:
    assert len(row) == len(FAILED_COLUMNS)
    return encode_record("F", row)


def transfer_record(row: Sequence[Any]) -> str:
    """Same as ``encode_record("T", row)``, spelled out: it runs once per transfer. A stored row
    may go on with its ``TRANSFER_LINK_COLUMNS``, which are not part of the record."""
    assert len(row) in {len(TRANSFER_COLUMNS), len(TRANSFER_COLUMNS) + len(TRANSFER_LINK_COLUMNS)}
    return (
        f"T\x1f{row[0]}\x1f{row[1]}\x1f'{row[2]}\x1f{row[3]}\x1f{row[4]}\x1f{row[5]}\x1f'{row[6]}"
        f"\x1f{_text(row[7])}\x1f{row[8]}\x1f{_integer(row[9])}\x1f{row[10]}\x1f{row[11]}"
        f"\x1f{_text(row[12])}\x1f{row[13]}\x1f{row[14]}\x1f{row[15]}\x1f{row[16]}"
        f"\x1f{row[17]}\x1f{row[18]}\x1f{row[19]}\x1f{row[20]}\x1f{row[21]}"
    )


def _text(value: str | None) -> str:
    return "~" if value is None else "'" + value


def _integer(value: int | None) -> str:
    return "~" if value is None else str(value)
