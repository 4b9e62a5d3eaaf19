"""Test support for the pure ledger core: the invariant checker, a harness and a text format.

``check_invariants`` is the one place that states what must hold of a ``LedgerSlice`` after any
sequence of operations. ``Harness`` wraps a slice and runs it after every call, so no test can
forget it. ``Harness.run`` reads a tiny line format (in the spirit of beancount files and
TigerBeetle's state-machine tests), one operation per line, ``-> expected`` at the end::

    account A USD                          # ok is the default expectation
    account L USD D<C limit=100            # D<C: debits_must_not_exceed_credits, C<D the converse
    transfer T1 L A 60 pending timeout=10  # id debit credit amount, then flags and key=value
    transfer T2 L A 50 -> exceeds_credits

    post P1 T1 40                          # post/void: id pending_id [amount] [debit=] [credit=]
    void V1 T1 -> pending_transfer_already_posted
    limit L 30 -> limit_below_usage
    advance 10s                            # or 5ns
    expire -> 0
    balances L 0 40 0 0                    # debits_pending debits_posted credits_pending ...
    hold T1 posted
    absent T2

Consecutive event lines of one kind (``account``, or ``transfer``/``post``/``void``) form one
batch; a blank line or any other command ends it. ``_`` is None; ``MAX``, ``MAX-5`` and ``MAX+1``
are relative to BALANCE_MAX. Flags: ``linked``, ``pending``, ``post``, ``void``, ``D<C``, ``C<D``.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from farthing.ledger import (
    AMOUNT_MAX,
    BALANCE_MAX,
    EXPIRY_ID_PREFIX,
    TRANSIENT_TRANSFER_RESULTS,
    AccountEvent,
    AccountFlags,
    Balances,
    CreateAccountResult,
    CreateTransferResult,
    HoldState,
    LedgerSlice,
    Metadata,
    SetLimitResult,
    TransferEvent,
    TransferFlags,
    apply_limit_change,
    create_accounts,
    create_transfers,
    expire_due_holds,
)

__all__ = [
    "NS_PER_S",
    "RANDOM_SETUP",
    "START_NS",
    "Harness",
    "Result",
    "apply_operation",
    "check_invariants",
    "parse_int",
    "parse_metadata",
    "random_operation",
    "random_transfer",
]

NS_PER_S = 1_000_000_000
START_NS = 1_700_000_000 * NS_PER_S

Result = CreateAccountResult | CreateTransferResult | SetLimitResult

_BOTH = AccountFlags.debits_must_not_exceed_credits | AccountFlags.credits_must_not_exceed_debits
_KINDS = (
    TransferFlags.pending
    | TransferFlags.post_pending
    | TransferFlags.void_pending
    | TransferFlags.expire_pending
)
_RESOLVED_BY = {
    TransferFlags.post_pending: HoldState.posted,
    TransferFlags.void_pending: HoldState.voided,
    TransferFlags.expire_pending: HoldState.expired,
}


# ---------------------------------------------------------------------------------------------
# Invariants


def check_invariants(ledger: LedgerSlice) -> None:
    """Everything that must hold of a slice built from scratch, after any operation.

    Double entry per currency, bounded non-negative balances, limits, balances equal to a replay
    of the committed transfers and hold states, and output rows that mirror the working state.
    """
    totals: dict[str, list[int]] = {}
    for account_id, account in ledger.accounts.items():
        assert account.id == account_id
        dpend, dpost, cpend, cpost = (
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        )
        assert min(dpend, dpost, cpend, cpost) >= 0, (account_id, account)
        assert dpend + dpost <= BALANCE_MAX, account_id
        assert cpend + cpost <= BALANCE_MAX, account_id
        assert account.flags & _BOTH != _BOTH, account_id
        assert 0 <= account.limit_minor <= BALANCE_MAX, account_id
        if account.flags & AccountFlags.debits_must_not_exceed_credits:
            assert dpend + dpost <= cpost + account.limit_minor, (account_id, account)
        elif account.flags & AccountFlags.credits_must_not_exceed_debits:
            assert cpend + cpost <= dpost + account.limit_minor, (account_id, account)
        else:
            assert account.limit_minor == 0, account_id
        sums = totals.setdefault(account.currency, [0, 0, 0, 0])
        for index, value in enumerate((dpend, dpost, cpend, cpost)):
            sums[index] += value
    for currency, (dpend, dpost, cpend, cpost) in totals.items():
        assert dpost == cpost, (currency, "posted", dpost, cpost)
        assert dpend == cpend, (currency, "pending", dpend, cpend)

    # Replay: the balances follow from the committed transfers and the states of their holds.
    replay = {account_id: [0, 0, 0, 0] for account_id in ledger.accounts}
    resolvers: Counter[str] = Counter()
    for transfer_id, transfer in ledger.transfers.items():
        assert transfer.id == transfer_id
        assert transfer.debit_account_id != transfer.credit_account_id
        debit = ledger.accounts[transfer.debit_account_id]
        credit = ledger.accounts[transfer.credit_account_id]
        assert debit.currency == credit.currency, transfer_id
        assert 0 < transfer.amount_minor <= AMOUNT_MAX, transfer_id
        assert transfer.flags & TransferFlags.linked == TransferFlags.none
        kind = transfer.flags & _KINDS
        if kind == TransferFlags.none:
            assert transfer.pending_id is None
            replay[debit.id][1] += transfer.amount_minor
            replay[credit.id][3] += transfer.amount_minor
        elif kind == TransferFlags.pending:
            assert transfer.pending_id is None
            if ledger.holds[transfer_id] == HoldState.pending:
                replay[debit.id][0] += transfer.amount_minor
                replay[credit.id][2] += transfer.amount_minor
        else:
            assert kind in _RESOLVED_BY, (transfer_id, kind)
            assert transfer.pending_id is not None
            assert transfer.timeout_s == 0
            hold = ledger.transfers[transfer.pending_id]
            assert hold.flags & TransferFlags.pending
            assert ledger.holds[hold.id] == _RESOLVED_BY[kind], transfer_id
            assert (transfer.debit_account_id, transfer.credit_account_id) == (
                hold.debit_account_id,
                hold.credit_account_id,
            )
            resolvers[hold.id] += 1
            if kind == TransferFlags.post_pending:
                assert transfer.amount_minor <= hold.amount_minor
                replay[debit.id][1] += transfer.amount_minor
                replay[credit.id][3] += transfer.amount_minor
            else:
                assert transfer.amount_minor == hold.amount_minor
            if kind == TransferFlags.expire_pending:
                assert transfer_id == EXPIRY_ID_PREFIX + hold.id
                assert hold.expires_at_ns is not None
                assert hold.expires_at_ns <= ledger.now_ns
    for account_id, account in ledger.accounts.items():
        live = [
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        ]
        assert live == replay[account_id], (account_id, live, replay[account_id])

    # Every pending transfer has a hold; a resolved hold was resolved exactly once.
    pending_ids = {t.id for t in ledger.transfers.values() if t.flags & TransferFlags.pending}
    assert set(ledger.holds) == pending_ids
    for pending_id, state in ledger.holds.items():
        assert resolvers[pending_id] == (0 if state == HoldState.pending else 1), pending_id

    # A failed id never commits; only transient failures are remembered, each once.
    assert set(ledger.failed).isdisjoint(ledger.transfers)
    assert dict(ledger.new_failed) == ledger.failed
    assert len(ledger.new_failed) == len(ledger.failed)
    assert set(ledger.failed.values()) <= TRANSIENT_TRANSFER_RESULTS

    # Output rows mirror the working state (the slice started empty).
    assert [account.id for account in ledger.new_accounts] == list(ledger.accounts)
    assert [transfer.id for transfer in ledger.new_transfers] == list(ledger.transfers)
    assert [transfer.ordinal for transfer in ledger.new_transfers] == list(
        range(len(ledger.new_transfers))
    )
    assert ledger.new_holds == ledger.holds
    last_seen: dict[str, Balances] = {}
    for row in ledger.new_transfers:
        stored = ledger.transfers[row.id]
        assert (row.debit_account_id, row.credit_account_id, row.amount_minor) == (
            stored.debit_account_id,
            stored.credit_account_id,
            stored.amount_minor,
        )
        assert row.flags == stored.flags
        assert row.pending_id == stored.pending_id
        assert row.expires_at_ns == stored.expires_at_ns
        assert row.currency == ledger.accounts[row.debit_account_id].currency
        last_seen[row.debit_account_id] = row.debit_balances
        last_seen[row.credit_account_id] = row.credit_balances
    for account_id, balances in last_seen.items():
        assert ledger.accounts[account_id].balances() == balances, account_id

    # Limit changes chain from the initial limit to the current one.
    limits = {account.id: account.limit_initial_minor for account in ledger.new_accounts}
    for change in ledger.limit_changes:
        assert change.previous_limit_minor == limits[change.account_id]
        limits[change.account_id] = change.limit_minor
    for account_id, account in ledger.accounts.items():
        assert account.limit_minor == limits[account_id], account_id


# ---------------------------------------------------------------------------------------------
# Harness


class Harness:
    """A ledger slice built from scratch; every operation is followed by ``check_invariants``."""

    def __init__(self, now_ns: int = START_NS) -> None:
        self.ledger = LedgerSlice(now_ns=now_ns)
        self.observed: list[Result] = []
        check_invariants(self.ledger)

    def clone(self) -> Harness:
        return copy.deepcopy(self)

    def accounts(self, events: Sequence[AccountEvent]) -> list[CreateAccountResult]:
        results = create_accounts(self.ledger, events)
        assert len(results) == len(events)
        for event, result in zip(events, results, strict=True):
            if result == CreateAccountResult.ok:
                assert event.id in self.ledger.accounts
        self.observed.extend(results)
        check_invariants(self.ledger)
        return results

    def transfers(self, events: Sequence[TransferEvent]) -> list[CreateTransferResult]:
        failed_before = dict(self.ledger.failed)
        results = create_transfers(self.ledger, events)
        assert len(results) == len(events)
        for event, result in zip(events, results, strict=True):
            if result == CreateTransferResult.ok:
                assert event.id in self.ledger.transfers
            if result in TRANSIENT_TRANSFER_RESULTS:
                assert self.ledger.failed[event.id] == result
        for failed_id in set(self.ledger.failed) - set(failed_before):
            # A new failed id comes from an event of this batch that answered a transient code.
            assert any(
                event.id == failed_id and result in TRANSIENT_TRANSFER_RESULTS
                for event, result in zip(events, results, strict=True)
            ), failed_id
        self.observed.extend(results)
        check_invariants(self.ledger)
        return results

    def transfer(self, event: TransferEvent) -> CreateTransferResult:
        (result,) = self.transfers([event])
        return result

    def limit(self, account_id: str, limit_minor: int) -> SetLimitResult:
        changes = len(self.ledger.limit_changes)
        result = apply_limit_change(self.ledger, account_id, limit_minor)
        assert len(self.ledger.limit_changes) == changes + (result == SetLimitResult.ok)
        self.observed.append(result)
        check_invariants(self.ledger)
        return result

    def expire(self) -> int:
        released = expire_due_holds(self.ledger)
        check_invariants(self.ledger)
        for pending_id, state in self.ledger.holds.items():
            expires_at_ns = self.ledger.transfers[pending_id].expires_at_ns
            if state == HoldState.pending and expires_at_ns is not None:
                assert expires_at_ns > self.ledger.now_ns, pending_id
        return released

    def advance(self, *, seconds: int = 0, ns: int = 0) -> None:
        assert seconds >= 0
        assert ns >= 0
        self.ledger.now_ns += seconds * NS_PER_S + ns

    def balances(self, account_id: str) -> Balances:
        return self.ledger.accounts[account_id].balances()

    def state(self) -> tuple[object, ...]:
        """What a failed operation must leave unchanged (everything but the failed ids)."""
        return (
            {key: account.snapshot() for key, account in self.ledger.accounts.items()},
            dict(self.ledger.transfers),
            dict(self.ledger.holds),
            len(self.ledger.new_accounts),
            len(self.ledger.new_transfers),
            len(self.ledger.limit_changes),
        )

    def run(self, text: str) -> None:
        """Run a scenario in the text format of this module; every line asserts its outcome."""
        batch: list[_Line] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = _parse_line(number, raw)
            if line is not None and line.verb in _BATCHED:
                kind = "account" if line.verb == "account" else "transfer"
                if batch and _batch_kind(batch) != kind:
                    self._flush(batch)
                batch.append(line)
                continue
            self._flush(batch)
            if line is not None:
                self._command(line)
        self._flush(batch)

    # -- text format ---------------------------------------------------------------------------

    def _flush(self, batch: list[_Line]) -> None:
        if not batch:
            return
        if _batch_kind(batch) == "account":
            account_results = self.accounts([_account_event(line) for line in batch])
            outcomes = [result.value for result in account_results]
            valid = {code.value for code in CreateAccountResult}
        else:
            transfer_results = self.transfers([_transfer_event(line) for line in batch])
            outcomes = [result.value for result in transfer_results]
            valid = {code.value for code in CreateTransferResult}
        for line, outcome in zip(batch, outcomes, strict=True):
            expected = line.expected or "ok"
            assert expected in valid, f"line {line.number}: unknown code {expected!r}"
            assert outcome == expected, f"line {line.number}: {line.raw!r} gave {outcome}"
        batch.clear()

    def _command(self, line: _Line) -> None:
        args = line.args
        where = f"line {line.number}: {line.raw!r}"
        if line.verb == "limit":
            result = self.limit(args[0], parse_int(args[1]))
            assert result == SetLimitResult(line.expected or "ok"), f"{where} gave {result.value}"
        elif line.verb == "expire":
            released = self.expire()
            assert line.expected is not None, f"{where}: say how many holds expire"
            assert released == int(line.expected), f"{where} released {released}"
        elif line.verb == "advance":
            (amount,) = args
            if amount.endswith("ns"):
                self.advance(ns=int(amount[:-2]))
            else:
                assert amount.endswith("s"), where
                self.advance(seconds=int(amount[:-1]))
        elif line.verb == "balances":
            expected = Balances(*(parse_int(value) for value in args[1:]))
            assert self.balances(args[0]) == expected, f"{where}: {self.balances(args[0])}"
        elif line.verb == "hold":
            assert self.ledger.holds[args[0]] == HoldState[args[1]], where
        elif line.verb == "absent":
            for absent_id in args:
                assert absent_id not in self.ledger.accounts, where
                assert absent_id not in self.ledger.transfers, where
        elif line.verb == "failed":
            assert self.ledger.failed[args[0]] == CreateTransferResult(args[1]), where
        else:
            raise ValueError(f"{where}: unknown command")


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    raw: str
    verb: str
    args: list[str]
    options: dict[str, str]
    flags: set[str]
    expected: str | None


_BATCHED = frozenset({"account", "transfer", "post", "void"})
_ACCOUNT_WORDS = frozenset({"linked", "D<C", "C<D"})
_FLAG_WORDS = _ACCOUNT_WORDS | {"pending", "post", "void"}


def _batch_kind(batch: list[_Line]) -> str:
    return "account" if batch[0].verb == "account" else "transfer"


def _parse_line(number: int, raw: str) -> _Line | None:
    text = raw.split("#", 1)[0].strip()
    if not text:
        return None
    expected: str | None = None
    if "->" in text:
        text, expected = (part.strip() for part in text.split("->", 1))
    verb, *words = text.split()
    args: list[str] = []
    options: dict[str, str] = {}
    flags: set[str] = set()
    for word in words:
        if "=" in word:
            key, value = word.split("=", 1)
            options[key] = value
        elif verb in _BATCHED and word in _FLAG_WORDS:
            flags.add(word)
        else:
            args.append(word)
    return _Line(number, raw, verb, args, options, flags, expected)


# ---------------------------------------------------------------------------------------------
# Random operations (property tests)

# Accounts every random scenario starts with; Z and Y are created (or not) by random events.
RANDOM_SETUP = """
account A USD
account B USD
account C USD
account E EUR
account L USD D<C limit=50
account M USD C<D limit=50
"""
_RANDOM_ACCOUNTS = ("A", "B", "C", "E", "L", "M", "Z")
_RANDOM_IDS = tuple(f"T{index}" for index in range(8))


@st.composite
def random_transfer(draw: st.DrawFn) -> TransferEvent:
    """A transfer event over a small id space, so that retries and collisions are common."""
    kind = draw(st.sampled_from(["plain", "plain", "pending", "pending", "post", "void", "bad"]))
    linked = TransferFlags.linked if draw(st.integers(0, 4)) == 0 else TransferFlags.none
    transfer_id = draw(st.sampled_from(_RANDOM_IDS))
    if kind in {"post", "void"}:
        flags = TransferFlags.post_pending if kind == "post" else TransferFlags.void_pending
        return TransferEvent(
            id=transfer_id,
            pending_id=draw(st.sampled_from(_RANDOM_IDS)),
            amount_minor=draw(st.none() | st.integers(1, 60)),
            debit_account_id=draw(st.none() | st.sampled_from(_RANDOM_ACCOUNTS)),
            flags=flags | linked,
        )
    pending = kind == "pending"
    return TransferEvent(
        id=transfer_id,
        debit_account_id=draw(st.sampled_from(_RANDOM_ACCOUNTS)),
        credit_account_id=draw(st.sampled_from(_RANDOM_ACCOUNTS)),
        amount_minor=draw(st.integers(0 if kind == "bad" else 1, 60)),
        timeout_s=draw(st.sampled_from([0, 1, 3])) if pending else 0,
        code=draw(st.integers(0, 1)),
        flags=(TransferFlags.pending if pending else TransferFlags.none) | linked,
    )


@st.composite
def random_operation(draw: st.DrawFn) -> tuple[str, object]:
    """One step: a batch of transfers or accounts, time passing (then expiry), or a limit."""
    step = draw(st.sampled_from(["transfers"] * 6 + ["accounts", "advance", "limit"]))
    if step == "transfers":
        return step, draw(st.lists(random_transfer(), min_size=1, max_size=5))
    if step == "accounts":
        events = draw(
            st.lists(
                st.builds(
                    AccountEvent,
                    id=st.sampled_from(["Z", "Y", "A"]),
                    currency=st.just("USD"),
                    flags=st.sampled_from([AccountFlags.none, AccountFlags.linked]),
                ),
                min_size=1,
                max_size=3,
            )
        )
        return step, events
    if step == "advance":
        return step, draw(st.integers(0, 4))
    return step, (draw(st.sampled_from(["L", "M", "A"])), draw(st.integers(0, 120)))


def apply_operation(harness: Harness, operation: tuple[str, object]) -> list[Result]:
    """Run one random operation; returns the results of its events."""
    step, payload = operation
    if step == "transfers":
        assert isinstance(payload, list)
        return list(harness.transfers(payload))
    if step == "accounts":
        assert isinstance(payload, list)
        return list(harness.accounts(payload))
    if step == "advance":
        assert isinstance(payload, int)
        harness.advance(seconds=payload)
        harness.expire()
        return []
    assert isinstance(payload, tuple)
    account_id, limit_minor = payload
    return [harness.limit(account_id, limit_minor)]


def parse_int(token: str) -> int:
    """An integer, or MAX / MAX-n / MAX+n relative to BALANCE_MAX."""
    if token.startswith("MAX"):
        rest = token[3:]
        return BALANCE_MAX + (int(rest) if rest else 0)
    return int(token)


def _optional_int(token: str) -> int | None:
    return None if token == "_" else parse_int(token)


def _optional_id(token: str) -> str | None:
    return None if token == "_" else token


def parse_metadata(text: str) -> Metadata:
    """``k:v,k2:v2`` in the given order (so an unsorted list is invalid metadata)."""
    if not text:
        return ()
    pairs = (item.split(":", 1) for item in text.split(","))
    return tuple((key, value) for key, value in pairs)


def _account_event(line: _Line) -> AccountEvent:
    account_id, currency = line.args
    flags = AccountFlags.none
    if "linked" in line.flags:
        flags |= AccountFlags.linked
    if "D<C" in line.flags:
        flags |= AccountFlags.debits_must_not_exceed_credits
    if "C<D" in line.flags:
        flags |= AccountFlags.credits_must_not_exceed_debits
    unknown = (set(line.options) - {"code", "limit", "meta"}) | (line.flags - _ACCOUNT_WORDS)
    assert not unknown, f"line {line.number}: {unknown}"
    return AccountEvent(
        id=account_id,
        currency=currency,
        code=parse_int(line.options.get("code", "0")),
        flags=flags,
        limit_minor=parse_int(line.options.get("limit", "0")),
        metadata=parse_metadata(line.options.get("meta", "")),
    )


def _transfer_event(line: _Line) -> TransferEvent:
    flags = TransferFlags.none
    for word, flag in (
        ("linked", TransferFlags.linked),
        ("pending", TransferFlags.pending),
        ("post", TransferFlags.post_pending),
        ("void", TransferFlags.void_pending),
    ):
        if word in line.flags:
            flags |= flag
    options = dict(line.options)
    if line.verb == "transfer":
        transfer_id, debit, credit, amount = line.args
        pending_id = options.pop("pending_id", None)
    else:
        transfer_id, pending_id, *rest = line.args
        flags |= TransferFlags.post_pending if line.verb == "post" else TransferFlags.void_pending
        amount = rest[0] if rest else "_"
        debit = options.pop("debit", "_")
        credit = options.pop("credit", "_")
    unknown = (set(options) - {"timeout", "code", "meta"}) | (line.flags & {"D<C", "C<D"})
    assert not unknown, f"line {line.number}: {unknown}"
    return TransferEvent(
        id=transfer_id,
        debit_account_id=_optional_id(debit),
        credit_account_id=_optional_id(credit),
        amount_minor=_optional_int(amount),
        pending_id=None if pending_id is None else _optional_id(pending_id),
        timeout_s=parse_int(options.get("timeout", "0")),
        code=parse_int(options.get("code", "0")),
        flags=flags,
        metadata=parse_metadata(options.get("meta", "")),
    )
