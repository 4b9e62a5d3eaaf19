"""Frozen value objects of the ledger: events the client sends, records the ledger keeps."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import NamedTuple

from farthing.ledger._limits import (
    ID_LENGTH_MAX,
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_LENGTH_MAX,
)

__all__ = [
    "Account",
    "AccountEvent",
    "AccountFlags",
    "Balances",
    "HoldState",
    "LimitChange",
    "Metadata",
    "Transfer",
    "TransferEvent",
    "TransferFlags",
    "is_valid_id",
    "is_valid_metadata",
]

# Metadata is a sorted tuple of (key, value) pairs: hashable, canonical, never a mutable dict.
Metadata = tuple[tuple[str, str], ...]

_ID_PATTERN = re.compile(rf"[A-Za-z0-9_.\-]{{1,{ID_LENGTH_MAX}}}")


def is_valid_id(value: str) -> bool:
    """Client-chosen ids are 1..64 characters of letters, digits, ``_``, ``.`` and ``-``."""
    return _ID_PATTERN.fullmatch(value) is not None


def is_valid_metadata(metadata: Metadata) -> bool:
    """Bounded string pairs with unique, sorted keys (the canonical form)."""
    if len(metadata) > METADATA_KEYS_MAX:
        return False
    previous_key = ""
    for key, value in metadata:
        if not 0 < len(key) <= METADATA_KEY_LENGTH_MAX:
            return False
        if len(value) > METADATA_VALUE_LENGTH_MAX:
            return False
        if key <= previous_key:
            return False
        previous_key = key
    return True


class AccountFlags(enum.IntFlag):
    """Bit flags of an account (stored as an integer)."""

    none = 0
    linked = 1
    debits_must_not_exceed_credits = 2
    credits_must_not_exceed_debits = 4


class TransferFlags(enum.IntFlag):
    """Bit flags of a transfer (stored as an integer).

    ``expire_pending`` is never accepted from a client: the ledger writes it when it releases the
    hold of a pending transfer whose timeout passed.
    """

    none = 0
    linked = 1
    pending = 2
    post_pending = 4
    void_pending = 8
    expire_pending = 16


class HoldState(enum.IntEnum):
    """State of a pending transfer's hold."""

    pending = 0
    posted = 1
    voided = 2
    expired = 3


class Balances(NamedTuple):
    """The four balances of an account, in minor units of its currency."""

    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEvent:
    """A request to create an account."""

    id: str
    currency: str
    code: int = 0
    flags: AccountFlags = AccountFlags.none
    limit_minor: int = 0
    metadata: Metadata = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """An account as the ledger keeps it."""

    id: str
    currency: str
    code: int
    flags: AccountFlags
    # Overdraft allowance: how far debits (or credits) may exceed the other side.
    limit_minor: int
    limit_initial_minor: int
    metadata: Metadata
    balances: Balances
    timestamp_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferEvent:
    """A request to create a transfer; post and void may leave accounts and amount empty."""

    id: str
    debit_account_id: str | None = None
    credit_account_id: str | None = None
    amount_minor: int | None = None
    pending_id: str | None = None
    timeout_s: int = 0
    code: int = 0
    flags: TransferFlags = TransferFlags.none
    metadata: Metadata = ()


class Transfer(NamedTuple):
    """A committed transfer, with both accounts' balances right after it (the history).

    A NamedTuple rather than a frozen dataclass: a full batch creates thousands of these, and
    tuple construction is several times cheaper. ``flags`` holds ``TransferFlags`` bits.
    """

    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    currency: str
    pending_id: str | None
    timeout_s: int
    expires_at_ns: int | None
    code: int
    flags: int
    metadata: Metadata
    # Position inside its commit; the commit turns it into a unique, increasing timestamp.
    ordinal: int
    debit_balances: Balances
    credit_balances: Balances


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitChange:
    """An adjustment of an account's overdraft allowance; every change is recorded."""

    account_id: str
    limit_minor: int
    previous_limit_minor: int
    # How many of the commit's transfers came before this change: the journal keeps that order.
    transfers_before: int = 0
