"""Write requests that the ledger service commits, alone or grouped with others."""

from __future__ import annotations

from dataclasses import dataclass

from farthing.ledger import (
    AccountEvent,
    CreateAccountResult,
    CreateTransferResult,
    SetLimitResult,
    TransferEvent,
)

__all__ = [
    "CreateAccounts",
    "CreateTransfers",
    "Outcome",
    "SetLimit",
    "WriteRequest",
    "request_size",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateAccounts:
    ledger_id: int
    events: tuple[AccountEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateTransfers:
    ledger_id: int
    events: tuple[TransferEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SetLimit:
    ledger_id: int
    account_id: str
    limit_minor: int


WriteRequest = CreateAccounts | CreateTransfers | SetLimit
Outcome = list[CreateAccountResult] | list[CreateTransferResult] | SetLimitResult


def request_size(request: WriteRequest) -> int:
    """Events a request adds to a commit (a limit change counts as one)."""
    if isinstance(request, SetLimit):
        return 1
    return len(request.events)
