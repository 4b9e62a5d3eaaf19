"""Ledger capability: storage, group commit, queries and verification around the pure core."""

from __future__ import annotations

from farthing.ledger_service._batcher import GroupCommitter, OverloadedError
from farthing.ledger_service._queries import CommittedTransfer, TransferPage, get_accounts
from farthing.ledger_service._requests import (
    CreateAccounts,
    CreateTransfers,
    Outcome,
    SetLimit,
    WriteRequest,
)
from farthing.ledger_service._service import LedgerService
from farthing.ledger_service._verify import VerifyReport
from farthing.ledger_service._writer import LedgerWriter

__all__ = [
    "CommittedTransfer",
    "CreateAccounts",
    "CreateTransfers",
    "GroupCommitter",
    "LedgerService",
    "LedgerWriter",
    "Outcome",
    "OverloadedError",
    "SetLimit",
    "TransferPage",
    "VerifyReport",
    "WriteRequest",
    "get_accounts",
]
