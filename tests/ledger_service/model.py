"""An in-memory reference model of one ledger, written from the documented semantics.

It shares only data definitions with the engine (flags, result enums, bounds, the list of
transient results), never its logic: every rule below is restated from the docstrings of
``farthing.ledger`` (results in declaration order = precedence, linked chains all-or-nothing,
limits counting pending amounts, TigerBeetle-style two-phase transfers and idempotency).

Results are returned as a list of acceptable answers for the whole batch. Almost always there is
exactly one; the only documented ambiguity is a linked chain in which an event that already
exists is followed by an event that fails: "the first event that is not ok keeps its code" names
the ``exists`` event, while the failing event is the one that breaks the chain. Both are accepted.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from farthing.ledger import (
    ACCOUNT_CODE_MAX,
    AMOUNT_MAX,
    BALANCE_MAX,
    CURRENCY_EXPONENTS,
    ID_LENGTH_MAX,
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_LENGTH_MAX,
    TIMEOUT_S_MAX,
    TRANSFER_CODE_MAX,
    TRANSIENT_TRANSFER_RESULTS,
    AccountEvent,
    AccountFlags,
    Balances,
    CreateAccountResult,
    CreateTransferResult,
    HoldState,
    Metadata,
    SetLimitResult,
    TransferEvent,
    TransferFlags,
)

__all__ = ["LedgerModel", "ModelAccount", "ModelTransfer", "usage"]

_ID = re.compile(r"[A-Za-z0-9_.\-]+")
_A = CreateAccountResult
_T = CreateTransferResult
_R = TypeVar("_R", CreateAccountResult, CreateTransferResult)

_DEBITS_LIMITED = AccountFlags.debits_must_not_exceed_credits
_CREDITS_LIMITED = AccountFlags.credits_must_not_exceed_debits


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= ID_LENGTH_MAX and _ID.fullmatch(value) is not None


def _valid_metadata(metadata: Metadata) -> bool:
    keys = [key for key, _ in metadata]
    if len(metadata) > METADATA_KEYS_MAX or keys != sorted(set(keys)):
        return False
    return all(
        0 < len(key) <= METADATA_KEY_LENGTH_MAX and len(value) <= METADATA_VALUE_LENGTH_MAX
        for key, value in metadata
    )


@dataclass(slots=True)
class ModelAccount:
    id: str
    currency: str
    code: int
    flags: int  # without ``linked``
    limit: int
    initial_limit: int
    metadata: Metadata
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def balances(self) -> Balances:
        return Balances(
            self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted
        )


@dataclass(frozen=True, slots=True)
class ModelTransfer:
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    pending_id: str | None
    timeout_s: int
    code: int
    flags: int  # without ``linked``
    metadata: Metadata


def usage(account: ModelAccount) -> int | None:
    """How much of its limit a balance-constrained account uses now (None: no constraint)."""
    if account.flags & _DEBITS_LIMITED:
        return account.debits_pending + account.debits_posted - account.credits_posted
    if account.flags & _CREDITS_LIMITED:
        return account.credits_pending + account.credits_posted - account.debits_posted
    return None


class LedgerModel:
    """The state of one ledger, and what each request should answer."""

    def __init__(self) -> None:
        self.accounts: dict[str, ModelAccount] = {}
        self.transfers: dict[str, ModelTransfer] = {}
        self.holds: dict[str, HoldState] = {}
        # Ids that failed on ledger state: remembered even when their chain is undone.
        self.failed: dict[str, CreateTransferResult] = {}

    # -- chains -----------------------------------------------------------------------------

    def _run_chains(
        self,
        linked: Sequence[bool],
        evaluate: Callable[[int], _R],
        *,
        ok: _R,
        exists: _R,
        failed: _R,
        open_: _R,
    ) -> list[list[_R]]:
        """Split the batch into chains and evaluate each all-or-nothing."""
        count = len(linked)
        results: list[_R] = [failed] * count
        alternatives: list[tuple[int, int, int]] = []  # (start, end, other culprit)
        start = 0
        while start < count:
            end = start
            while end < count and linked[end]:
                end += 1
            if end == count:
                # The last chain never closes: nothing of it is applied.
                results[count - 1] = open_
                break
            if start == end:
                results[start] = evaluate(start)
            else:
                other = self._chain(start, end, evaluate, results, ok=ok, exists=exists)
                if other is not None:
                    alternatives.append((start, end, other))
            start = end + 1
        answers = [results]
        for chain_start, chain_end, culprit in alternatives:
            extra: list[list[_R]] = []
            for answer in answers:
                alternative = list(answer)
                alternative[chain_start : chain_end + 1] = [failed] * (chain_end + 1 - chain_start)
                alternative[culprit] = exists
                extra.append(alternative)
            answers += extra
        return answers

    def _chain(
        self,
        start: int,
        end: int,
        evaluate: Callable[[int], _R],
        results: list[_R],
        *,
        ok: _R,
        exists: _R,
    ) -> int | None:
        """Evaluate one closed chain; returns the index of an equally valid culprit, if any."""
        saved = copy.deepcopy((self.accounts, self.transfers, self.holds))
        evaluated: list[tuple[int, _R]] = []
        error: int | None = None
        for index in range(start, end + 1):
            result = evaluate(index)
            evaluated.append((index, result))
            if result not in (ok, exists):
                error = index
                break
        outcome = [result for _, result in evaluated]
        first_exists = next((index for index, result in evaluated if result == exists), None)
        if error is None and (first_exists is None or ok not in outcome):
            # Every event applied, or every event already existed (a retried chain).
            for index, result in evaluated:
                results[index] = result
            return None
        self.accounts, self.transfers, self.holds = saved
        culprit = error if error is not None else first_exists
        assert culprit is not None
        results[culprit] = dict(evaluated)[culprit]
        if error is not None and first_exists is not None:
            # The docstring's "first event that is not ok" would be the existing one.
            return first_exists
        return None

    # -- accounts ---------------------------------------------------------------------------

    def create_accounts(self, events: Sequence[AccountEvent]) -> list[list[CreateAccountResult]]:
        return self._run_chains(
            [bool(event.flags & AccountFlags.linked) for event in events],
            lambda index: self._create_account(events[index]),
            ok=_A.ok,
            exists=_A.exists,
            failed=_A.linked_event_failed,
            open_=_A.linked_event_chain_open,
        )

    def _create_account(self, event: AccountEvent) -> CreateAccountResult:  # noqa: PLR0911
        flags = int(event.flags) & ~AccountFlags.linked
        balance_flags = flags & (_DEBITS_LIMITED | _CREDITS_LIMITED)
        if not _valid_id(event.id):
            return _A.id_invalid
        if balance_flags == _DEBITS_LIMITED | _CREDITS_LIMITED:
            return _A.flags_are_mutually_exclusive
        if event.currency not in CURRENCY_EXPONENTS:
            return _A.currency_invalid
        if not 0 <= event.code <= ACCOUNT_CODE_MAX:
            return _A.code_invalid
        if not 0 <= event.limit_minor <= BALANCE_MAX:
            return _A.limit_invalid
        if event.limit_minor > 0 and balance_flags == 0:
            return _A.limit_requires_balance_flag
        if not _valid_metadata(event.metadata):
            return _A.metadata_invalid
        existing = self.accounts.get(event.id)
        if existing is not None:
            return _account_exists(event, flags, existing)
        self.accounts[event.id] = ModelAccount(
            id=event.id,
            currency=event.currency,
            code=event.code,
            flags=flags,
            limit=event.limit_minor,
            initial_limit=event.limit_minor,
            metadata=event.metadata,
        )
        return _A.ok

    # -- transfers --------------------------------------------------------------------------

    def create_transfers(self, events: Sequence[TransferEvent]) -> list[list[CreateTransferResult]]:
        return self._run_chains(
            [bool(event.flags & TransferFlags.linked) for event in events],
            lambda index: self._create_transfer(events[index]),
            ok=_T.ok,
            exists=_T.exists,
            failed=_T.linked_event_failed,
            open_=_T.linked_event_chain_open,
        )

    def _create_transfer(self, event: TransferEvent) -> CreateTransferResult:
        shape = _transfer_shape(event)
        if shape is not None:
            return shape
        stored = self.transfers.get(event.id)
        if stored is not None:
            return _transfer_exists(event, stored)
        if event.id in self.failed:
            return _T.id_already_failed
        if event.flags & (TransferFlags.post_pending | TransferFlags.void_pending):
            result = self._resolve(event)
        else:
            result = self._create_new(event)
        if result in TRANSIENT_TRANSFER_RESULTS:
            self.failed[event.id] = result
        return result

    def _create_new(self, event: TransferEvent) -> CreateTransferResult:  # noqa: PLR0911
        assert event.debit_account_id is not None
        assert event.credit_account_id is not None
        assert event.amount_minor is not None
        amount = event.amount_minor
        debit = self.accounts.get(event.debit_account_id)
        credit = self.accounts.get(event.credit_account_id)
        if debit is None:
            return _T.debit_account_not_found
        if credit is None:
            return _T.credit_account_not_found
        if debit.currency != credit.currency:
            return _T.accounts_must_have_the_same_currency
        pending = bool(event.flags & TransferFlags.pending)
        if pending and debit.debits_pending + amount > BALANCE_MAX:
            return _T.overflows_debits_pending
        if pending and credit.credits_pending + amount > BALANCE_MAX:
            return _T.overflows_credits_pending
        if not pending and debit.debits_posted + amount > BALANCE_MAX:
            return _T.overflows_debits_posted
        if not pending and credit.credits_posted + amount > BALANCE_MAX:
            return _T.overflows_credits_posted
        debits = debit.debits_pending + debit.debits_posted + amount
        credit_total = credit.credits_pending + credit.credits_posted + amount
        if debits > BALANCE_MAX:
            return _T.overflows_debits
        if credit_total > BALANCE_MAX:
            return _T.overflows_credits
        if debit.flags & _DEBITS_LIMITED and debits > debit.credits_posted + debit.limit:
            return _T.exceeds_credits
        if credit.flags & _CREDITS_LIMITED and credit_total > credit.debits_posted + credit.limit:
            return _T.exceeds_debits
        if pending:
            debit.debits_pending += amount
            credit.credits_pending += amount
            self.holds[event.id] = HoldState.pending
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        self._store(event, debit.id, credit.id, amount, debit.currency)
        return _T.ok

    def _resolve(self, event: TransferEvent) -> CreateTransferResult:  # noqa: PLR0911
        assert event.pending_id is not None
        hold = self.transfers.get(event.pending_id)
        if hold is None:
            return _T.pending_transfer_not_found
        if not hold.flags & TransferFlags.pending:
            return _T.pending_transfer_not_pending
        if event.debit_account_id not in (None, hold.debit_account_id):
            return _T.pending_transfer_has_different_debit_account_id
        if event.credit_account_id not in (None, hold.credit_account_id):
            return _T.pending_transfer_has_different_credit_account_id
        post = bool(event.flags & TransferFlags.post_pending)
        amount = hold.amount if event.amount_minor is None else event.amount_minor
        if not post and amount != hold.amount:
            return _T.pending_transfer_has_different_amount
        if amount > hold.amount:
            return _T.exceeds_pending_transfer_amount
        state = self.holds[hold.id]
        if state == HoldState.posted:
            return _T.pending_transfer_already_posted
        if state == HoldState.voided:
            return _T.pending_transfer_already_voided
        if state == HoldState.expired:
            return _T.pending_transfer_expired
        debit = self.accounts[hold.debit_account_id]
        credit = self.accounts[hold.credit_account_id]
        if post and debit.debits_posted + amount > BALANCE_MAX:
            return _T.overflows_debits_posted
        if post and credit.credits_posted + amount > BALANCE_MAX:
            return _T.overflows_credits_posted
        debit.debits_pending -= hold.amount
        credit.credits_pending -= hold.amount
        if post:
            debit.debits_posted += amount
            credit.credits_posted += amount
        self.holds[hold.id] = HoldState.posted if post else HoldState.voided
        self._store(event, debit.id, credit.id, amount, hold.currency)
        return _T.ok

    def _store(
        self, event: TransferEvent, debit_id: str, credit_id: str, amount: int, currency: str
    ) -> None:
        self.transfers[event.id] = ModelTransfer(
            id=event.id,
            debit_account_id=debit_id,
            credit_account_id=credit_id,
            amount=amount,
            currency=currency,
            pending_id=event.pending_id,
            timeout_s=event.timeout_s,
            code=event.code,
            flags=int(event.flags) & ~TransferFlags.linked,
            metadata=event.metadata,
        )

    # -- limits -----------------------------------------------------------------------------

    def set_limit(self, account_id: str, limit_minor: int) -> SetLimitResult:
        account = self.accounts.get(account_id)
        if account is None:
            return SetLimitResult.account_not_found
        if not 0 <= limit_minor <= BALANCE_MAX:
            return SetLimitResult.limit_invalid
        used = usage(account)
        if used is None:
            return SetLimitResult.limit_requires_balance_flag
        if limit_minor < used:
            return SetLimitResult.limit_below_usage
        account.limit = limit_minor
        return SetLimitResult.ok


def _account_exists(event: AccountEvent, flags: int, existing: ModelAccount) -> CreateAccountResult:
    if flags != existing.flags:
        return _A.exists_with_different_flags
    if event.currency != existing.currency:
        return _A.exists_with_different_currency
    if event.code != existing.code:
        return _A.exists_with_different_code
    if event.limit_minor != existing.initial_limit:
        return _A.exists_with_different_limit
    if event.metadata != existing.metadata:
        return _A.exists_with_different_metadata
    return _A.exists


def _transfer_shape(event: TransferEvent) -> CreateTransferResult | None:  # noqa: PLR0911
    """The checks that need no ledger state, in the enum's order."""
    if not _valid_id(event.id):
        return _T.id_invalid
    kinds = [
        kind
        for kind in (TransferFlags.pending, TransferFlags.post_pending, TransferFlags.void_pending)
        if event.flags & kind
    ]
    if len(kinds) > 1:
        return _T.flags_are_mutually_exclusive
    pending = kinds == [TransferFlags.pending]
    resolves = bool(kinds) and not pending
    if not resolves and event.pending_id is not None:
        return _T.pending_id_must_be_empty
    if resolves and event.pending_id is None:
        return _T.pending_id_required
    if resolves and event.pending_id is not None and not _valid_id(event.pending_id):
        return _T.pending_id_invalid
    if resolves and event.pending_id == event.id:
        return _T.pending_id_must_be_different
    if event.timeout_s != 0 and not pending:
        return _T.timeout_reserved_for_pending_transfer
    if not 0 <= event.timeout_s <= TIMEOUT_S_MAX:
        return _T.timeout_invalid
    for account_id, required, invalid in (
        (event.debit_account_id, _T.debit_account_id_required, _T.debit_account_id_invalid),
        (event.credit_account_id, _T.credit_account_id_required, _T.credit_account_id_invalid),
    ):
        if account_id is None and not resolves:
            return required
        if account_id is not None and not _valid_id(account_id):
            return invalid
    if event.debit_account_id is not None and event.debit_account_id == event.credit_account_id:
        return _T.accounts_must_be_different
    if event.amount_minor is None and not resolves:
        return _T.amount_required
    if event.amount_minor is not None and event.amount_minor <= 0:
        return _T.amount_must_be_positive
    if event.amount_minor is not None and event.amount_minor > AMOUNT_MAX:
        return _T.amount_invalid
    if not 0 <= event.code <= TRANSFER_CODE_MAX:
        return _T.code_invalid
    if not _valid_metadata(event.metadata):
        return _T.metadata_invalid
    return None


def _transfer_exists(event: TransferEvent, stored: ModelTransfer) -> CreateTransferResult:  # noqa: PLR0911
    """Idempotency: a post or void may leave out what it takes from its pending transfer."""
    if int(event.flags) & ~TransferFlags.linked != stored.flags:
        return _T.exists_with_different_flags
    if event.pending_id != stored.pending_id:
        return _T.exists_with_different_pending_id
    if event.timeout_s != stored.timeout_s:
        return _T.exists_with_different_timeout
    if event.debit_account_id not in (None, stored.debit_account_id):
        return _T.exists_with_different_debit_account_id
    if event.credit_account_id not in (None, stored.credit_account_id):
        return _T.exists_with_different_credit_account_id
    if event.amount_minor not in (None, stored.amount):
        return _T.exists_with_different_amount
    if event.code != stored.code:
        return _T.exists_with_different_code
    if event.metadata != stored.metadata:
        return _T.exists_with_different_metadata
    return _T.exists
