"""Row tuples as stored, and their canonical journal records.

The write path and ``farthing verify`` both go through these functions, so the bytes that are
hashed when a commit is written are exactly the bytes recomputed from the database later.
"""

from __future__ import annotations

from collections.abc import Sequence

from farthing.ledger import encode_record

__all__ = [
    "ACCOUNT_RECORD_COLUMNS",
    "LIMIT_CHANGE_COLUMNS",
    "TRANSFER_COLUMNS",
    "account_record",
    "limit_change_record",
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


def account_record(row: Sequence[object]) -> str:
    assert len(row) == len(ACCOUNT_RECORD_COLUMNS)
    return encode_record("A", row)


def limit_change_record(row: Sequence[object]) -> str:
    assert len(row) == len(LIMIT_CHANGE_COLUMNS)
    return encode_record("L", row)


def transfer_record(row: Sequence[object]) -> str:
    assert len(row) == len(TRANSFER_COLUMNS)
    return encode_record("T", row)
