"""JSON shapes of the native ledger API (``/ledger/v1``).

Amounts are JSON integers in minor units (strict: ``1.0`` and ``"1"`` are refused). Fields the
engine judges per event (ids, currency, codes, metadata limits) are only bounded here, so that a
bad event gets its own named result instead of failing the whole batch.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from farthing.ledger import (
    BATCH_EVENTS_MAX,
    PAGE_SIZE_MAX,
    Account,
    AccountEvent,
    AccountFlags,
    Balances,
    Metadata,
    TransferEvent,
    TransferFlags,
)
from farthing.ledger_service._queries import CommittedTransfer

__all__ = [
    "AccountIn",
    "AccountOut",
    "AccountsIn",
    "BalancesOut",
    "IdsIn",
    "LimitIn",
    "LimitOut",
    "ResultOut",
    "ResultsOut",
    "TransferIn",
    "TransferOut",
    "TransferPageOut",
    "TransfersIn",
]

# Bounds on raw input before the engine sees it (the engine applies the real rules).
_TEXT_LENGTH_MAX = 256
_METADATA_VALUE_INPUT_MAX = 4096

Text = Annotated[str, Field(max_length=_TEXT_LENGTH_MAX)]
MetadataIn = dict[Text, Annotated[str, Field(max_length=_METADATA_VALUE_INPUT_MAX)]]
AccountFlagName = Literal[
    "linked", "debits_must_not_exceed_credits", "credits_must_not_exceed_debits"
]
TransferFlagName = Literal["linked", "pending", "post_pending", "void_pending"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _metadata(value: dict[str, str]) -> Metadata:
    return tuple(sorted(value.items()))


class AccountIn(_In):
    id: Text
    currency: Text
    code: StrictInt = 0
    flags: Annotated[list[AccountFlagName], Field(max_length=3)] = []
    limit: StrictInt = Field(default=0, description="Overdraft allowance in minor units.")
    metadata: Annotated[MetadataIn, Field(max_length=64)] = {}

    def to_event(self) -> AccountEvent:
        flags = AccountFlags.none
        for name in self.flags:
            flags |= AccountFlags[name]
        return AccountEvent(
            id=self.id,
            currency=self.currency,
            code=self.code,
            flags=flags,
            limit_minor=self.limit,
            metadata=_metadata(self.metadata),
        )


class AccountsIn(_In):
    accounts: Annotated[list[AccountIn], Field(min_length=1, max_length=BATCH_EVENTS_MAX)]


class TransferIn(_In):
    id: Text
    debit_account_id: Text | None = None
    credit_account_id: Text | None = None
    amount: StrictInt | None = Field(
        default=None, description="Minor units; optional for post_pending (full) and void."
    )
    pending_id: Text | None = None
    timeout: StrictInt = Field(default=0, description="Seconds a pending transfer may hold.")
    code: StrictInt = 0
    flags: Annotated[list[TransferFlagName], Field(max_length=4)] = []
    metadata: Annotated[MetadataIn, Field(max_length=64)] = {}

    def to_event(self) -> TransferEvent:
        flags = TransferFlags.none
        for name in self.flags:
            flags |= TransferFlags[name]
        return TransferEvent(
            id=self.id,
            debit_account_id=self.debit_account_id,
            credit_account_id=self.credit_account_id,
            amount_minor=self.amount,
            pending_id=self.pending_id,
            timeout_s=self.timeout,
            code=self.code,
            flags=flags,
            metadata=_metadata(self.metadata),
        )


class TransfersIn(_In):
    transfers: Annotated[list[TransferIn], Field(min_length=1, max_length=BATCH_EVENTS_MAX)]


class IdsIn(_In):
    ids: Annotated[list[Text], Field(min_length=1, max_length=PAGE_SIZE_MAX)]


class LimitIn(_In):
    limit: StrictInt


class ResultOut(BaseModel):
    id: str
    result: str


class ResultsOut(BaseModel):
    results: list[ResultOut]


class LimitOut(BaseModel):
    result: str


class BalancesOut(BaseModel):
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int

    @classmethod
    def of(cls, balances: Balances) -> BalancesOut:
        return cls(
            debits_pending=balances.debits_pending,
            debits_posted=balances.debits_posted,
            credits_pending=balances.credits_pending,
            credits_posted=balances.credits_posted,
        )


def _flag_names(flags: AccountFlags | TransferFlags) -> list[str]:
    return [flag.name for flag in type(flags) if flag.value and flag in flags and flag.name]


class AccountOut(BaseModel):
    id: str
    currency: str
    code: int
    flags: list[str]
    limit: int
    metadata: dict[str, str]
    balances: BalancesOut
    timestamp: int

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            currency=account.currency,
            code=account.code,
            flags=_flag_names(account.flags),
            limit=account.limit_minor,
            metadata=dict(account.metadata),
            balances=BalancesOut.of(account.balances),
            timestamp=account.timestamp_ns,
        )


class TransferOut(BaseModel):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    pending_id: str | None
    timeout: int
    expires_at: int | None
    code: int
    flags: list[str]
    metadata: dict[str, str]
    timestamp: int

    @classmethod
    def of(cls, transfer: CommittedTransfer) -> TransferOut:
        return cls(
            id=transfer.id,
            debit_account_id=transfer.debit_account_id,
            credit_account_id=transfer.credit_account_id,
            amount=transfer.amount_minor,
            currency=transfer.currency,
            pending_id=transfer.pending_id,
            timeout=transfer.timeout_s,
            expires_at=transfer.expires_at_ns,
            code=transfer.code,
            flags=_flag_names(transfer.flags),
            metadata=dict(transfer.metadata),
            timestamp=transfer.timestamp_ns,
        )


class TransferPageOut(BaseModel):
    data: list[TransferOut]
    has_more: bool
    next_cursor: int | None
