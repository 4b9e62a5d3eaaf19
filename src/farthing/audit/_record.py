"""Audit records and their keyed hash chain (no I/O).

A record answers PCI DSS 10.2.2: who (an API key's id or an operator, never a secret), what (an
action and the ids of the objects it touched), when, from where, and the outcome. Its MAC is
HMAC-SHA256(audit key, previous MAC || seq || canonical record), so someone who can write to the
database but lacks the key cannot edit, delete or reorder records undetected.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from farthing.ledger import GENESIS_MAC, JOURNAL_KEY_LENGTH_MIN, encode_record

__all__ = [
    "ACTOR_KINDS",
    "GENESIS_MAC",
    "AuditRecord",
    "audit_key_from",
    "clean_id",
    "clean_text",
    "record_mac",
    "safe_id",
    "safe_text",
]

ACTOR_KINDS = frozenset({"api_key", "operator", "anonymous"})
OUTCOMES = frozenset({"success", "failure"})
ACTOR_LENGTH_MAX = 120
ACTION_LENGTH_MAX = 200
OBJECT_IDS_LENGTH_MAX = 1000
OBJECT_IDS_COUNT_MAX = 15  # 15 ids of at most 64 characters fit the 1000-character column
ORIGIN_LENGTH_MAX = 64
SHORT_LENGTH_MAX = 64
# Twelve digits or more in a row could be (part of) a card number: never let one into the trail,
# whoever put it in a path or header.
_LONG_DIGITS = re.compile(r"\d{12,}")
_UNSAFE = re.compile(r"[^\x20-\x7e]")  # Printable ASCII only: ids, routes, addresses.
_AUDIT_KEY_LABEL = b"farthing audit trail v1"


def safe_text(text: str, *, length_max: int) -> str:
    """Text of our own making (ids Farthing issued) fit to record: printable ASCII only, so the
    record encoding's separators never occur, and bounded."""
    assert length_max > 0
    return _UNSAFE.sub("?", text[:length_max])


def clean_text(text: str, *, length_max: int) -> str:
    """Text a client sent (paths, headers) fit to record: ``safe_text`` with every run of 12 or
    more digits masked, since it could hold a card number."""
    assert length_max > 0
    cleaned = _LONG_DIGITS.sub("[digits]", _UNSAFE.sub("?", text[: length_max * 2]))
    return cleaned[:length_max]


def clean_id(text: str) -> str:
    """An id a client sent, fit to record: ``clean_text`` without spaces (ids are stored
    space-separated). An id of ours with a long digit run is masked too when it comes this way;
    the id of the object answered is recorded as well, unmasked (``safe_id``)."""
    return clean_text(text, length_max=SHORT_LENGTH_MAX).replace(" ", "?")


def safe_id(text: str) -> str:
    """An id of our own making, fit to record (``safe_text`` without spaces)."""
    return safe_text(text, length_max=SHORT_LENGTH_MAX).replace(" ", "?")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One audited event, before it is numbered and chained."""

    occurred_at_ns: int
    actor_kind: str
    actor: str
    action: str
    origin: str
    outcome: str
    status: int
    tenant_id: str | None = None
    mode: str | None = None
    on_behalf_of: str | None = None
    object_ids: tuple[str, ...] = ()
    request_id: str | None = None

    def __post_init__(self) -> None:
        assert self.occurred_at_ns > 0
        assert self.actor_kind in ACTOR_KINDS, self.actor_kind
        assert self.outcome in OUTCOMES, self.outcome
        assert 100 <= self.status <= 599 or self.status == 0  # HTTP statuses; 0: no HTTP (operator)
        assert self.mode in {None, "test", "live"}
        assert len(self.object_ids) <= OBJECT_IDS_COUNT_MAX
        for text, length_max in self._texts():
            assert text == safe_text(text, length_max=length_max), text
        for object_id in self.object_ids:
            assert object_id == safe_id(object_id), object_id

    def _texts(self) -> tuple[tuple[str, int], ...]:
        optional = (self.tenant_id, self.on_behalf_of, self.request_id)
        return (
            (self.actor, ACTOR_LENGTH_MAX),
            (self.action, ACTION_LENGTH_MAX),
            (self.origin, ORIGIN_LENGTH_MAX),
            *((text, SHORT_LENGTH_MAX) for text in optional if text is not None),
        )

    @property
    def object_ids_text(self) -> str | None:
        """Stored space-separated (ids never hold a space), None when there are none."""
        return " ".join(self.object_ids) or None

    def encoded(self, seq: int) -> str:
        """The canonical text the MAC covers: every stored field, in a fixed order."""
        assert seq >= 1
        return encode_record(
            "U",
            (
                seq,
                self.occurred_at_ns,
                self.actor_kind,
                self.actor,
                self.tenant_id,
                self.mode,
                self.on_behalf_of,
                self.action,
                self.object_ids_text,
                self.origin,
                self.outcome,
                self.status,
                self.request_id,
            ),
        )


def record_mac(key: bytes, *, previous_mac: str, seq: int, encoded: str) -> str:
    """The chain link: binds this record to the one before it under the audit key."""
    assert len(key) >= JOURNAL_KEY_LENGTH_MIN
    assert len(previous_mac) == len(GENESIS_MAC)
    message = f"{previous_mac}|{seq}|{encoded}"
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def audit_key_from(journal_key: bytes) -> bytes:
    """The audit chain's key, derived from the journal key so that one secret guards both
    chains, and domain-separated so a MAC of one chain never verifies in the other."""
    assert len(journal_key) >= JOURNAL_KEY_LENGTH_MIN
    return hmac.new(journal_key, _AUDIT_KEY_LABEL, hashlib.sha256).digest()
