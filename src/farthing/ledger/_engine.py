"""The pure ledger state machine: apply batches of events to an in-memory slice of the ledger.

No I/O happens here. A repository loads every row a batch can touch into a ``LedgerSlice``; the
engine decides each event's result in order, mutates the slice, and collects the rows to write.
The caller then writes them in one database transaction. Linked chains are applied tentatively
and undone as a whole when one of their events fails.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypeVar

from farthing.ledger._currency import is_currency
from farthing.ledger._limits import (
    ACCOUNT_CODE_MAX,
    AMOUNT_MAX,
    BALANCE_MAX,
    BATCH_EVENTS_MAX,
    TIMEOUT_S_MAX,
    TRANSFER_CODE_MAX,
)
from farthing.ledger._model import (
    Account,
    AccountEvent,
    AccountFlags,
    Balances,
    HoldState,
    LimitChange,
    Metadata,
    Transfer,
    TransferEvent,
    TransferFlags,
    is_valid_id,
    is_valid_metadata,
)
from farthing.ledger._results import (
    TRANSIENT_TRANSFER_RESULTS,
    CreateAccountResult,
    CreateTransferResult,
)

__all__ = [
    "EXPIRY_ID_PREFIX",
    "LedgerSlice",
    "LiveAccount",
    "SetLimitResult",
    "StoredTransfer",
    "apply_limit_change",
    "create_accounts",
    "create_transfers",
    "expire_due_holds",
]

# Expiry records get ids no client can choose (':' is outside the client id charset).
EXPIRY_ID_PREFIX = "expired:"
_NS_PER_S = 1_000_000_000
_CLIENT_FLAGS = int(
    TransferFlags.linked
    | TransferFlags.pending
    | TransferFlags.post_pending
    | TransferFlags.void_pending
)
_R = CreateTransferResult
_A = CreateAccountResult
# Flag bits as plain ints: IntFlag arithmetic costs microseconds per operation on the hot path.
_LINKED = int(TransferFlags.linked)
_PENDING = int(TransferFlags.pending)
_POST = int(TransferFlags.post_pending)
_VOID = int(TransferFlags.void_pending)
_EXPIRE = int(TransferFlags.expire_pending)
_KIND = _PENDING | _POST | _VOID
_RESOLVE = _POST | _VOID
_DEBITS_LIMITED = int(AccountFlags.debits_must_not_exceed_credits)
_ACCOUNT_FLAGS = int(
    AccountFlags.linked
    | AccountFlags.debits_must_not_exceed_credits
    | AccountFlags.credits_must_not_exceed_debits
)
_CREDITS_LIMITED = int(AccountFlags.credits_must_not_exceed_debits)


@dataclass(slots=True)
class LiveAccount:
    """Mutable working copy of an account inside one commit."""

    id: str
    currency: str
    code: int
    flags: int  # AccountFlags bits
    limit_minor: int
    limit_initial_minor: int
    metadata: Metadata
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def balances(self) -> Balances:
        return Balances(
            self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted
        )

    def snapshot(self) -> tuple[int, int, int, int, int]:
        return (
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
            self.limit_minor,
        )

    def restore(self, saved: tuple[int, int, int, int, int]) -> None:
        (
            self.debits_pending,
            self.debits_posted,
            self.credits_pending,
            self.credits_posted,
            self.limit_minor,
        ) = saved


class StoredTransfer(NamedTuple):
    """What the engine needs to know of a committed transfer (``flags``: TransferFlags bits)."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount_minor: int
    pending_id: str | None
    timeout_s: int
    expires_at_ns: int | None
    code: int
    flags: int
    metadata: Metadata


# What the engine keeps per transfer id: a loaded row, or a transfer committed by this batch.
Known = StoredTransfer | Transfer


@dataclass(slots=True)
class LedgerSlice:
    """Every row of one ledger that a batch may read, plus the rows the batch produced.

    The repository must load: the accounts named by the events; the transfers whose ids the events
    use (own ids and pending ids) with the hold state of pending ones; the recorded failed ids.
    """

    now_ns: int
    accounts: dict[str, LiveAccount] = field(default_factory=dict)
    transfers: dict[str, Known] = field(default_factory=dict)
    holds: dict[str, HoldState] = field(default_factory=dict)
    failed: dict[str, CreateTransferResult] = field(default_factory=dict)
    # Output, in commit order.
    new_accounts: list[Account] = field(default_factory=list)
    new_transfers: list[Transfer] = field(default_factory=list)
    new_failed: list[tuple[str, CreateTransferResult]] = field(default_factory=list)
    new_holds: dict[str, HoldState] = field(default_factory=dict)
    limit_changes: list[LimitChange] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)


class _Undo:
    """Undo log of one linked chain."""

    __slots__ = ("accounts", "holds", "new_accounts", "new_transfers", "transfers")

    def __init__(self, ledger: LedgerSlice) -> None:
        self.accounts: dict[str, tuple[int, int, int, int, int]] = {}
        self.holds: dict[str, HoldState | None] = {}
        self.transfers: list[str] = []
        self.new_accounts = len(ledger.new_accounts)
        self.new_transfers = len(ledger.new_transfers)

    def save_account(self, account: LiveAccount) -> None:
        if account.id not in self.accounts:
            self.accounts[account.id] = account.snapshot()

    def save_hold(self, ledger: LedgerSlice, pending_id: str) -> None:
        if pending_id not in self.holds:
            self.holds[pending_id] = ledger.holds.get(pending_id)

    def rollback(self, ledger: LedgerSlice) -> None:
        for account_id, saved in self.accounts.items():
            ledger.accounts[account_id].restore(saved)
        for pending_id, state in self.holds.items():
            if state is None:
                del ledger.holds[pending_id]
                ledger.new_holds.pop(pending_id, None)
            else:
                ledger.holds[pending_id] = state
                ledger.new_holds[pending_id] = state
        for transfer_id in self.transfers:
            del ledger.transfers[transfer_id]
        for account in ledger.new_accounts[self.new_accounts :]:
            del ledger.accounts[account.id]
        del ledger.new_accounts[self.new_accounts :]
        del ledger.new_transfers[self.new_transfers :]


def _chain_ends(linked: Sequence[bool]) -> list[int]:
    """For every event, the index of the last event of its chain (itself when unlinked)."""
    ends = [0] * len(linked)
    end = len(linked) - 1
    for index in range(len(linked) - 1, -1, -1):
        if not linked[index]:
            end = index
        ends[index] = end
    return ends


# ---------------------------------------------------------------------------------------------
# Accounts


def _validate_account(event: AccountEvent) -> CreateAccountResult | None:  # noqa: PLR0911
    assert int(event.flags) & ~_ACCOUNT_FLAGS == 0, "unknown account flag bits"
    if not is_valid_id(event.id):
        return _A.id_invalid
    both = AccountFlags.debits_must_not_exceed_credits | AccountFlags.credits_must_not_exceed_debits
    if event.flags & both == both:
        return _A.flags_are_mutually_exclusive
    if not is_currency(event.currency):
        return _A.currency_invalid
    if not 0 <= event.code <= ACCOUNT_CODE_MAX:
        return _A.code_invalid
    if not 0 <= event.limit_minor <= BALANCE_MAX:
        return _A.limit_invalid
    if event.limit_minor > 0 and event.flags & both == AccountFlags.none:
        return _A.limit_requires_balance_flag
    if not is_valid_metadata(event.metadata):
        return _A.metadata_invalid
    return None


def _account_exists(event: AccountEvent, existing: LiveAccount) -> CreateAccountResult:
    if int(event.flags) & ~_LINKED != existing.flags & ~_LINKED:
        return _A.exists_with_different_flags
    if event.currency != existing.currency:
        return _A.exists_with_different_currency
    if event.code != existing.code:
        return _A.exists_with_different_code
    if event.limit_minor != existing.limit_initial_minor:
        return _A.exists_with_different_limit
    if event.metadata != existing.metadata:
        return _A.exists_with_different_metadata
    return _A.exists


def _create_account(
    ledger: LedgerSlice, event: AccountEvent, undo: _Undo | None
) -> CreateAccountResult:
    del undo  # New accounts are undone by truncating ledger.new_accounts.
    invalid = _validate_account(event)
    if invalid is not None:
        return invalid
    existing = ledger.accounts.get(event.id)
    if existing is not None:
        return _account_exists(event, existing)
    stored_flags = event.flags & ~AccountFlags.linked
    live = LiveAccount(
        id=event.id,
        currency=event.currency,
        code=event.code,
        flags=int(stored_flags),
        limit_minor=event.limit_minor,
        limit_initial_minor=event.limit_minor,
        metadata=event.metadata,
    )
    ledger.accounts[event.id] = live
    ledger.new_accounts.append(
        Account(
            id=event.id,
            currency=event.currency,
            code=event.code,
            flags=stored_flags,
            limit_minor=event.limit_minor,
            limit_initial_minor=event.limit_minor,
            metadata=event.metadata,
            balances=Balances(),
            timestamp_ns=0,
        )
    )
    return _A.ok


def create_accounts(
    ledger: LedgerSlice, events: Sequence[AccountEvent]
) -> list[CreateAccountResult]:
    """Apply create_accounts events in order; one result per event."""
    assert len(events) <= BATCH_EVENTS_MAX
    linked = [bool(event.flags & AccountFlags.linked) for event in events]
    results = _apply_chains(
        ledger,
        linked,
        lambda index, undo: _create_account(ledger, events[index], undo),
        ok=_A.ok,
        exists=_A.exists,
        failed=_A.linked_event_failed,
        open_=_A.linked_event_chain_open,
    )
    assert len(results) == len(events)
    return results


# ---------------------------------------------------------------------------------------------
# Linked chains, shared by accounts and transfers

_Result = TypeVar("_Result", CreateAccountResult, CreateTransferResult)


def _apply_chains(  # noqa: PLR0913 - the result codes are passed by name for both event kinds.
    ledger: LedgerSlice,
    linked: list[bool],
    apply_one: Callable[[int, _Undo | None], _Result],
    *,
    ok: _Result,
    exists: _Result,
    failed: _Result,
    open_: _Result,
) -> list[_Result]:
    """Apply every event; a linked chain succeeds or fails as one.

    A chain whose events all exist answers ``exists`` for each (a retry of a committed chain).
    Otherwise the first event that is not ``ok`` keeps its code, its chain is undone and every
    other event of the chain answers ``linked_event_failed``.
    """
    count = len(linked)
    results: list[_Result] = [failed] * count
    limit = count
    if count > 0 and linked[-1]:
        # The last chain never closes: it fails as a whole without being applied.
        limit = count - 1
        while limit > 0 and linked[limit - 1]:
            limit -= 1
        results[count - 1] = open_
    index = 0
    while index < limit:
        if not linked[index]:
            results[index] = apply_one(index, None)
            index += 1
            continue
        end = index
        while linked[end]:
            end += 1
        assert end < limit
        _apply_chain(ledger, index, end, apply_one, results, ok=ok, exists=exists, failed=failed)
        index = end + 1
    return results


def _apply_chain(  # noqa: PLR0913
    ledger: LedgerSlice,
    start: int,
    end: int,
    apply_one: Callable[[int, _Undo | None], _Result],
    results: list[_Result],
    *,
    ok: _Result,
    exists: _Result,
    failed: _Result,
) -> None:
    undo = _Undo(ledger)
    first_error: int | None = None
    first_exists: int | None = None
    for index in range(start, end + 1):
        result = apply_one(index, undo)
        results[index] = result
        if result == exists:
            first_exists = index if first_exists is None else first_exists
        elif result != ok:
            first_error = index
            break
    applied_any = any(results[index] == ok for index in range(start, end + 1))
    if first_error is None and first_exists is None:
        return  # Every event applied.
    if first_error is None and not applied_any:
        return  # A retry of a committed chain: every event answers exists.
    undo.rollback(ledger)
    culprit = first_error if first_error is not None else first_exists
    assert culprit is not None
    for index in range(start, end + 1):
        if index != culprit:
            results[index] = failed


# ---------------------------------------------------------------------------------------------
# Transfers


def _validate_transfer(  # noqa: C901, PLR0911, PLR0912 - one check per result code
    event: TransferEvent, flags: int, accounts: dict[str, LiveAccount]
) -> CreateTransferResult | None:
    """Checks that need no ledger state, in precedence order.

    ``accounts`` only saves work: an id the ledger already holds was validated at creation.
    """
    assert flags & ~_CLIENT_FLAGS == 0, "expire_pending is internal"
    if not is_valid_id(event.id):
        return _R.id_invalid
    kind = flags & _KIND
    if kind not in (0, _PENDING, _POST, _VOID):
        return _R.flags_are_mutually_exclusive
    resolves = kind in (_POST, _VOID)
    if resolves:
        if event.pending_id is None:
            return _R.pending_id_required
        if not is_valid_id(event.pending_id):
            return _R.pending_id_invalid
        if event.pending_id == event.id:
            return _R.pending_id_must_be_different
    elif event.pending_id is not None:
        return _R.pending_id_must_be_empty
    if event.timeout_s != 0 and kind != _PENDING:
        return _R.timeout_reserved_for_pending_transfer
    if not 0 <= event.timeout_s <= TIMEOUT_S_MAX:
        return _R.timeout_invalid
    if not resolves and event.debit_account_id is None:
        return _R.debit_account_id_required
    debit_id = event.debit_account_id
    if debit_id is not None and debit_id not in accounts and not is_valid_id(debit_id):
        return _R.debit_account_id_invalid
    if not resolves and event.credit_account_id is None:
        return _R.credit_account_id_required
    credit_id = event.credit_account_id
    if credit_id is not None and credit_id not in accounts and not is_valid_id(credit_id):
        return _R.credit_account_id_invalid
    if debit_id is not None and debit_id == credit_id:
        return _R.accounts_must_be_different
    if not resolves and event.amount_minor is None:
        return _R.amount_required
    if event.amount_minor is not None:
        if event.amount_minor <= 0:
            return _R.amount_must_be_positive
        if event.amount_minor > AMOUNT_MAX:
            return _R.amount_invalid
    if not 0 <= event.code <= TRANSFER_CODE_MAX:
        return _R.code_invalid
    if event.metadata and not is_valid_metadata(event.metadata):
        return _R.metadata_invalid
    return None


def _transfer_exists(event: TransferEvent, stored: Known) -> CreateTransferResult:  # noqa: PLR0911
    if int(event.flags) & ~_LINKED != stored.flags & ~_LINKED:
        return _R.exists_with_different_flags
    if event.pending_id != stored.pending_id:
        return _R.exists_with_different_pending_id
    if event.timeout_s != stored.timeout_s:
        return _R.exists_with_different_timeout
    # Post and void may omit accounts and amount; what they omit was filled from the hold.
    if event.debit_account_id is not None and event.debit_account_id != stored.debit_account_id:
        return _R.exists_with_different_debit_account_id
    if event.credit_account_id is not None and event.credit_account_id != stored.credit_account_id:
        return _R.exists_with_different_credit_account_id
    if event.amount_minor is not None and event.amount_minor != stored.amount_minor:
        return _R.exists_with_different_amount
    if event.code != stored.code:
        return _R.exists_with_different_code
    if event.metadata != stored.metadata:
        return _R.exists_with_different_metadata
    return _R.exists


def _fail(ledger: LedgerSlice, event_id: str, result: CreateTransferResult) -> CreateTransferResult:
    if result in TRANSIENT_TRANSFER_RESULTS:
        ledger.failed[event_id] = result
        ledger.new_failed.append((event_id, result))
    return result


def _create_transfer(
    ledger: LedgerSlice, event: TransferEvent, undo: _Undo | None
) -> CreateTransferResult:
    flags = int(event.flags)
    invalid = _validate_transfer(event, flags, ledger.accounts)
    if invalid is not None:
        return invalid
    stored = ledger.transfers.get(event.id)
    if stored is not None:
        return _transfer_exists(event, stored)
    if event.id in ledger.failed:
        return _R.id_already_failed
    if flags & _RESOLVE:
        return _resolve_pending(ledger, event, undo)
    return _create_new(ledger, event, flags, undo)


def _create_new(
    ledger: LedgerSlice, event: TransferEvent, flags: int, undo: _Undo | None
) -> CreateTransferResult:
    assert event.debit_account_id is not None
    assert event.credit_account_id is not None
    assert event.amount_minor is not None
    debit = ledger.accounts.get(event.debit_account_id)
    if debit is None:
        return _fail(ledger, event.id, _R.debit_account_not_found)
    credit = ledger.accounts.get(event.credit_account_id)
    if credit is None:
        return _fail(ledger, event.id, _R.credit_account_not_found)
    if debit.currency != credit.currency:
        return _fail(ledger, event.id, _R.accounts_must_have_the_same_currency)
    amount = event.amount_minor
    pending = bool(flags & _PENDING)
    refused = _check_balances(debit, credit, amount, pending=pending)
    if refused is not None:
        return _fail(ledger, event.id, refused)
    if undo is not None:
        undo.save_account(debit)
        undo.save_account(credit)
    if pending:
        debit.debits_pending += amount
        credit.credits_pending += amount
    else:
        debit.debits_posted += amount
        credit.credits_posted += amount
    expires_at_ns = None
    if pending and event.timeout_s > 0:
        expires_at_ns = ledger.now_ns + event.timeout_s * _NS_PER_S
    _record(ledger, event, debit, credit, amount, expires_at_ns, undo)
    if pending:
        _set_hold(ledger, event.id, HoldState.pending, undo)
    return _R.ok


def _check_balances(  # noqa: PLR0911 - one check per result code, in precedence order
    debit: LiveAccount, credit: LiveAccount, amount: int, *, pending: bool
) -> CreateTransferResult | None:
    """Overflow and limit checks of a new transfer; a limit check counts pending amounts."""
    if pending:
        if debit.debits_pending + amount > BALANCE_MAX:
            return _R.overflows_debits_pending
        if credit.credits_pending + amount > BALANCE_MAX:
            return _R.overflows_credits_pending
    else:
        if debit.debits_posted + amount > BALANCE_MAX:
            return _R.overflows_debits_posted
        if credit.credits_posted + amount > BALANCE_MAX:
            return _R.overflows_credits_posted
    debits_after = debit.debits_pending + debit.debits_posted + amount
    credits_after = credit.credits_pending + credit.credits_posted + amount
    if debits_after > BALANCE_MAX:
        return _R.overflows_debits
    if credits_after > BALANCE_MAX:
        return _R.overflows_credits
    if debit.flags & _DEBITS_LIMITED and debits_after > debit.credits_posted + debit.limit_minor:
        return _R.exceeds_credits
    if (
        credit.flags & _CREDITS_LIMITED
        and credits_after > credit.debits_posted + credit.limit_minor
    ):
        return _R.exceeds_debits
    return None


def _resolve_pending(  # noqa: C901, PLR0911, PLR0912 - one check per result code
    ledger: LedgerSlice, event: TransferEvent, undo: _Undo | None
) -> CreateTransferResult:
    assert event.pending_id is not None
    hold = ledger.transfers.get(event.pending_id)
    if hold is None:
        return _fail(ledger, event.id, _R.pending_transfer_not_found)
    if not hold.flags & _PENDING:
        return _R.pending_transfer_not_pending
    if event.debit_account_id is not None and event.debit_account_id != hold.debit_account_id:
        return _R.pending_transfer_has_different_debit_account_id
    if event.credit_account_id is not None and event.credit_account_id != hold.credit_account_id:
        return _R.pending_transfer_has_different_credit_account_id
    post = bool(int(event.flags) & _POST)
    amount = hold.amount_minor if event.amount_minor is None else event.amount_minor
    if not post and amount != hold.amount_minor:
        return _R.pending_transfer_has_different_amount
    if amount > hold.amount_minor:
        return _R.exceeds_pending_transfer_amount
    state = ledger.holds[event.pending_id]
    if state == HoldState.posted:
        return _R.pending_transfer_already_posted
    if state == HoldState.voided:
        return _R.pending_transfer_already_voided
    if state == HoldState.expired:
        return _fail(ledger, event.id, _R.pending_transfer_expired)
    assert state == HoldState.pending
    debit = ledger.accounts[hold.debit_account_id]
    credit = ledger.accounts[hold.credit_account_id]
    if post and debit.debits_posted + amount > BALANCE_MAX:
        return _fail(ledger, event.id, _R.overflows_debits_posted)
    if post and credit.credits_posted + amount > BALANCE_MAX:
        return _fail(ledger, event.id, _R.overflows_credits_posted)
    if undo is not None:
        undo.save_account(debit)
        undo.save_account(credit)
    debit.debits_pending -= hold.amount_minor
    credit.credits_pending -= hold.amount_minor
    if post:
        debit.debits_posted += amount
        credit.credits_posted += amount
    assert debit.debits_pending >= 0
    assert credit.credits_pending >= 0
    _record(ledger, event, debit, credit, amount, None, undo)
    _set_hold(ledger, hold.id, HoldState.posted if post else HoldState.voided, undo)
    return _R.ok


def _set_hold(ledger: LedgerSlice, pending_id: str, state: HoldState, undo: _Undo | None) -> None:
    if undo is not None:
        undo.save_hold(ledger, pending_id)
    ledger.holds[pending_id] = state
    ledger.new_holds[pending_id] = state


def _record(  # noqa: PLR0913
    ledger: LedgerSlice,
    event: TransferEvent,
    debit: LiveAccount,
    credit: LiveAccount,
    amount: int,
    expires_at_ns: int | None,
    undo: _Undo | None,
) -> None:
    transfer = Transfer(
        event.id,
        debit.id,
        credit.id,
        amount,
        debit.currency,
        event.pending_id,
        event.timeout_s,
        expires_at_ns,
        event.code,
        int(event.flags) & ~_LINKED,
        event.metadata,
        len(ledger.new_transfers),
        Balances(
            debit.debits_pending, debit.debits_posted, debit.credits_pending, debit.credits_posted
        ),
        Balances(
            credit.debits_pending,
            credit.debits_posted,
            credit.credits_pending,
            credit.credits_posted,
        ),
    )
    ledger.transfers[event.id] = transfer
    if undo is not None:
        undo.transfers.append(event.id)
    ledger.touched.add(debit.id)
    ledger.touched.add(credit.id)
    ledger.new_transfers.append(transfer)


def expire_due_holds(ledger: LedgerSlice) -> int:
    """Release every loaded hold whose timeout passed; returns how many were released.

    Runs before a batch's events so that a post or void of an expired hold sees it expired.
    """
    released = 0
    for pending_id, state in list(ledger.holds.items()):
        if state != HoldState.pending:
            continue
        hold = ledger.transfers[pending_id]
        if hold.expires_at_ns is None or hold.expires_at_ns > ledger.now_ns:
            continue
        debit = ledger.accounts[hold.debit_account_id]
        credit = ledger.accounts[hold.credit_account_id]
        debit.debits_pending -= hold.amount_minor
        credit.credits_pending -= hold.amount_minor
        assert debit.debits_pending >= 0
        assert credit.credits_pending >= 0
        expiry = TransferEvent(
            id=EXPIRY_ID_PREFIX + pending_id,
            pending_id=pending_id,
            code=hold.code,
            flags=TransferFlags.expire_pending,
        )
        _record(ledger, expiry, debit, credit, hold.amount_minor, None, None)
        _set_hold(ledger, pending_id, HoldState.expired, None)
        released += 1
    return released


def create_transfers(
    ledger: LedgerSlice, events: Sequence[TransferEvent]
) -> list[CreateTransferResult]:
    """Apply create_transfers events in order; one result per event."""
    assert len(events) <= BATCH_EVENTS_MAX
    linked = [bool(int(event.flags) & _LINKED) for event in events]
    results = _apply_chains(
        ledger,
        linked,
        lambda index, undo: _create_transfer(ledger, events[index], undo),
        ok=_R.ok,
        exists=_R.exists,
        failed=_R.linked_event_failed,
        open_=_R.linked_event_chain_open,
    )
    assert len(results) == len(events)
    return results


# ---------------------------------------------------------------------------------------------
# Limits


class SetLimitResult(enum.Enum):
    """Outcome of an overdraft-limit change, in order of precedence."""

    ok = "ok"
    account_not_found = "account_not_found"
    limit_invalid = "limit_invalid"
    limit_requires_balance_flag = "limit_requires_balance_flag"
    limit_below_usage = "limit_below_usage"


def apply_limit_change(ledger: LedgerSlice, account_id: str, limit_minor: int) -> SetLimitResult:
    """Change an account's overdraft allowance; never below what pending and posted use now."""
    account = ledger.accounts.get(account_id)
    if account is None:
        return SetLimitResult.account_not_found
    if not 0 <= limit_minor <= BALANCE_MAX:
        return SetLimitResult.limit_invalid
    if account.flags & _DEBITS_LIMITED:
        used = account.debits_pending + account.debits_posted - account.credits_posted
    elif account.flags & _CREDITS_LIMITED:
        used = account.credits_pending + account.credits_posted - account.debits_posted
    else:
        return SetLimitResult.limit_requires_balance_flag
    if limit_minor < used:
        return SetLimitResult.limit_below_usage
    ledger.limit_changes.append(
        LimitChange(
            account_id=account_id,
            limit_minor=limit_minor,
            previous_limit_minor=account.limit_minor,
            transfers_before=len(ledger.new_transfers),
        )
    )
    account.limit_minor = limit_minor
    ledger.touched.add(account_id)
    return SetLimitResult.ok
