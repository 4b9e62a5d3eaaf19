"""Tamper-evident journal: canonical record encoding and the keyed hash chain.

Each commit appends one journal entry. Its digest is SHA-256 over the canonical encoding of every
record the commit wrote (accounts, limit changes, transfers), and its MAC is
HMAC-SHA256(key, previous MAC || entry fields). Someone who can write to the database but lacks
the key cannot recompute the MACs, so any edit, deletion or reordering of records or entries is
detected by recomputing the chain. Truncating the newest entries together with the head is only
caught by comparing the head with a copy kept elsewhere (``farthing verify --expect-head``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

from farthing.ledger._model import Metadata

__all__ = [
    "GENESIS_MAC",
    "JOURNAL_KEY_LENGTH_MIN",
    "digest_records",
    "encode_field",
    "encode_metadata",
    "encode_record",
    "entry_mac",
    "has_separator",
    "owner_mac",
]

JOURNAL_KEY_LENGTH_MIN = 32
GENESIS_MAC = "0" * 64
_UNIT = "\x1f"
_RECORD = "\x1e"


def encode_metadata(metadata: Metadata) -> str | None:
    """Canonical JSON of metadata (sorted keys, escaped control characters); None when empty."""
    if not metadata:
        return None
    return json.dumps(dict(metadata), separators=(",", ":"), sort_keys=True)


def encode_field(value: object) -> str:
    """Typed and unambiguous: ``~`` is NULL, ``'`` starts text, anything else is an integer.

    Text never holds the separators (verify refuses rows whose text does), so the encoding of a
    record determines every field, its type and NULL-ness.
    """
    if value is None:
        return "~"
    if isinstance(value, str):
        return "'" + value
    assert isinstance(value, int)
    assert not isinstance(value, bool)
    return str(value)


def encode_record(kind: str, fields: Iterable[object]) -> str:
    """One record as text: its kind, then each field, separated by US (0x1f)."""
    assert len(kind) == 1
    return kind + _UNIT + _UNIT.join(encode_field(value) for value in fields)


def has_separator(text: str) -> bool:
    """True if text holds a character the record encoding reserves (or a NUL)."""
    return _UNIT in text or _RECORD in text or "\x00" in text


def digest_records(records: Iterable[str]) -> str:
    """SHA-256 over the records of one journal entry, in order."""
    return hashlib.sha256(_RECORD.join(records).encode()).hexdigest()


def entry_mac(  # noqa: PLR0913
    key: bytes,
    *,
    previous_mac: str,
    seq: int,
    timestamp_ns: int,
    counts: tuple[int, int, int, int],
    digest: str,
) -> str:
    """The chain link: binds this entry to the one before it under the secret key."""
    assert len(key) >= JOURNAL_KEY_LENGTH_MIN
    assert seq >= 1
    assert len(counts) == 4  # accounts, limit changes, transfers, failures
    count_text = "|".join(str(count) for count in counts)
    message = f"{previous_mac}|{seq}|{timestamp_ns}|{count_text}|{digest}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def owner_mac(key: bytes, *, ledger_id: int, tenant_id: str, mode: str, purpose: str) -> str:
    """Binds a ledger to the account, mode and purpose that own it, under the journal key: a
    ledger handed to another account or mode (a row of ``ledgers`` edited) no longer verifies.
    The label keeps it apart from the chain's MACs, whose messages start with a MAC."""
    assert len(key) >= JOURNAL_KEY_LENGTH_MIN
    assert ledger_id >= 1
    message = f"ledger-owner|{ledger_id}|{tenant_id}|{mode}|{purpose}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
