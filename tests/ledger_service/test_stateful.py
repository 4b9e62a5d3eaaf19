"""Stateful test: the real engine, through ``LedgerService.commit`` on a real database, against
the independent reference model in ``tests/ledger_service/model.py``.

Every example gets a fresh migrated database holding one tenant with its two ledgers (test and
live mode), written through two services (two writers, as two processes would be): requests go
to either ledger, and grouped commits mix them. After every step the stored accounts and
transfers must equal the model's, debits equal credits per ledger and currency, and every limit
holds; at the end of every example ``verify()`` replays the journal. Holds never expire during a
run (timeout 0 or days away); expiry is tested elsewhere.

Run longer campaigns with ``FARTHING_STATEFUL_EXAMPLES=500``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from farthing.auth import Mode, create_tenant, ledger_id_for
from farthing.db.engine import create_engine
from farthing.ledger import (
    ACCOUNT_CODE_MAX,
    AMOUNT_MAX,
    BALANCE_MAX,
    PAGE_SIZE_MAX,
    TIMEOUT_S_MAX,
    TRANSFER_CODE_MAX,
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
from farthing.ledger_service import (
    CreateAccounts,
    CreateTransfers,
    LedgerService,
    SetLimit,
    WriteRequest,
)
from tests.conftest import JOURNAL_KEY, _migrate, _postgres_database, postgres_server_url
from tests.ledger_service.model import LedgerModel, ModelAccount, usage

EXAMPLES_ENV = "FARTHING_STATEFUL_EXAMPLES"
STEPS = 25
DEFAULT_EXAMPLES = {"sqlite": 25, "postgresql": 10}

# Account ids of every ledger: the first six are created at the start, the others may be created
# later (until then, transfers naming them fail with *_account_not_found).
INITIAL_ACCOUNTS = (
    ("a0", "USD"),
    ("a1", "USD"),
    ("a2", "USD"),
    ("a3", "USD"),
    ("b0", "JPY"),
    ("b1", "JPY"),
)
ACCOUNT_IDS = ("a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2")
CURRENCIES = ("USD", "USD", "JPY")
# 0 never expires; 10**6 s is eleven days away: no hold expires while a run lasts.
HOLD_TIMEOUTS = (0, 10**6)
# The last one holds what COPY's text format must escape (backslash, tab, newline, CR).
METADATA: tuple[Metadata, ...] = ((), (), (("k", "v"),), (("note", 'a\tb\\c\nd\re "q" \\N'),))
DEBITS_LIMITED = AccountFlags.debits_must_not_exceed_credits
CREDITS_LIMITED = AccountFlags.credits_must_not_exceed_debits

TRANSFER_KINDS = (
    *("posted",) * 5,
    *("pending",) * 5,
    *("post",) * 3,
    *("void",) * 2,
    *("boundary",) * 3,
    *("resubmit",) * 3,
    *("bad_shape",) * 2,
    *("huge",) * 2,
    "same_account",
    "unknown_account",
    "currency_mismatch",
    "bad_amount",
)
BAD_SHAPES = (
    "id",
    "flags",
    "pending_id_required",
    "pending_id_invalid",
    "pending_id_same",
    "pending_id_on_plain",
    "timeout_on_plain",
    "timeout_negative",
    "debit_missing",
    "credit_invalid",
    "amount_missing",
    "amount_too_big",
    "code",
    "metadata",
)
TRANSFER_CHANGES = (
    "none",
    "none",
    "linked",
    "amount",
    "code",
    "metadata",
    "debit",
    "credit",
    "flags",
    "timeout",
    "pending_id",
)
ACCOUNT_CHANGES = ("none", "none", "linked", "flags", "currency", "code", "limit", "metadata")


def _settings(dialect: str) -> settings:
    examples = int(os.environ.get(EXAMPLES_ENV, DEFAULT_EXAMPLES[dialect]))
    return settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        # Shrinking replays whole examples on fresh databases: one bug at a time keeps it short.
        report_multiple_bugs=False,
    )


def _linked(event: TransferEvent, *, linked: bool) -> TransferEvent:
    flags = event.flags | TransferFlags.linked if linked else event.flags & ~TransferFlags.linked
    return dataclasses.replace(event, flags=flags)


def _headroom(account: ModelAccount) -> int:
    """How much more a constrained account may take on its constrained side."""
    used = usage(account)
    assert used is not None
    return account.limit - used


class FreshDatabases:
    """A new migrated database for every example, so that a failure found by ``verify()`` (which
    replays the whole database) belongs to the example that caused it and shrinks correctly."""

    def __init__(self, dialect: str, directory: Path) -> None:
        self._directory = directory
        self._count = 0
        self._postgres = postgres_server_url() if dialect == "postgresql" else None

    def open(self) -> tuple[str, Callable[[], None]]:
        """A fresh database's URL and the function that removes it."""
        self._count += 1
        if self._postgres is None:
            path = self._directory / f"example-{self._count}.db"
            url = f"sqlite:///{path}"
            _migrate(url)
            return url, lambda: _remove_sqlite(path)
        databases = _postgres_database(self._postgres)
        url = next(databases)
        _migrate(url)
        return url, lambda: _drop(databases)


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _drop(databases: Iterator[str]) -> None:
    assert next(databases, None) is None  # Runs the generator's DROP DATABASE.


def ledger_machine(databases: FreshDatabases) -> type[RuleBasedStateMachine]:
    """A state machine class whose every example runs on a fresh database."""

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            url, self.remove_database = databases.open()
            # Two services on one database, like two processes: on SQLite each writer keeps an
            # account cache that must notice the other's commits.
            self.engines = [create_engine(url), create_engine(url)]
            self.writers = [LedgerService(e, journal_key=JOURNAL_KEY) for e in self.engines]
            self.service = self.writers[0]
            with self.engines[0].begin() as connection:
                tenant = create_tenant(connection, name="stateful", journal_key=JOURNAL_KEY)
                self.ledger_ids = [
                    ledger_id_for(connection, tenant, Mode.test),
                    ledger_id_for(connection, tenant, Mode.live),
                ]
            self.models = [LedgerModel(), LedgerModel()]
            # Every event ever drawn, per ledger, for resubmission (and absence checks).
            self.transfer_history: list[list[TransferEvent]] = [[], []]
            self.account_history: list[list[AccountEvent]] = [[], []]
            # The events that created each committed transfer, per ledger.
            self.created: list[dict[str, TransferEvent]] = [{}, {}]
            # How much of each transfer history had been committed.
            self.committed = [0, 0]
            self.counter = 0

        # -- committing -------------------------------------------------------------------

        def commit(self, data: st.DataObject, requests: list[WriteRequest]) -> None:
            writer = data.draw(st.sampled_from((0, 0, 1)), label="writer")
            outcomes = self.writers[writer].commit(requests)
            self.committed = [len(history) for history in self.transfer_history]
            assert len(outcomes) == len(requests)
            for number, (request, outcome) in enumerate(zip(requests, outcomes, strict=True)):
                model = self.models[self.ledger_ids.index(request.ledger_id)]
                where = f"request {number} of {len(requests)}"
                if isinstance(request, CreateAccounts):
                    accounts = model.create_accounts(request.events)
                    assert outcome in accounts, _explain(where, request.events, outcome, accounts)
                elif isinstance(request, CreateTransfers):
                    transfers = model.create_transfers(request.events)
                    assert outcome in transfers, _explain(where, request.events, outcome, transfers)
                    created = self.created[self.ledger_ids.index(request.ledger_id)]
                    for event in request.events:
                        if event.id in model.transfers and event.id not in created:
                            created[event.id] = event
                else:
                    expected = model.set_limit(request.account_id, request.limit_minor)
                    assert outcome == expected, f"{where}: {request} -> {outcome}, not {expected}"

        # -- drawing events ---------------------------------------------------------------

        def new_id(self) -> str:
            self.counter += 1
            return f"t{self.counter}"

        def draw_ledger(self, data: st.DataObject) -> int:
            return data.draw(st.sampled_from((0, 0, 0, 1)), label="ledger")

        def draw_account_event(self, data: st.DataObject, ledger: int) -> AccountEvent:
            history = self.account_history[ledger]
            if history and data.draw(st.integers(0, 3), label="resubmit account") == 0:
                event = self.change_account(data, data.draw(st.sampled_from(history)))
            else:
                flags = data.draw(
                    st.sampled_from((AccountFlags.none, DEBITS_LIMITED, CREDITS_LIMITED))
                )
                event = AccountEvent(
                    id=data.draw(st.sampled_from(ACCOUNT_IDS), label="account id"),
                    currency=data.draw(st.sampled_from(CURRENCIES)),
                    code=data.draw(st.sampled_from((0, 1))),
                    flags=flags,
                    limit_minor=0 if not flags else data.draw(st.sampled_from((0, 100, 1000))),
                    metadata=data.draw(st.sampled_from(METADATA)),
                )
                event = self.break_account(data, event)
            if data.draw(st.sampled_from((False, False, False, True)), label="linked"):
                event = dataclasses.replace(event, flags=event.flags | AccountFlags.linked)
            history.append(event)
            return event

        def break_account(self, data: st.DataObject, event: AccountEvent) -> AccountEvent:  # noqa: PLR0911
            broken = data.draw(
                st.sampled_from(
                    (None,) * 6
                    + ("id", "flags", "currency", "code", "limit", "limit_flag", "metadata")
                ),
                label="broken account",
            )
            match broken:
                case "id":
                    return dataclasses.replace(event, id="no spaces")
                case "flags":
                    return dataclasses.replace(event, flags=DEBITS_LIMITED | CREDITS_LIMITED)
                case "currency":
                    return dataclasses.replace(event, currency="XXX")
                case "code":
                    return dataclasses.replace(event, code=ACCOUNT_CODE_MAX + 1)
                case "limit":
                    return dataclasses.replace(event, limit_minor=-1)
                case "limit_flag":
                    return dataclasses.replace(event, flags=AccountFlags.none, limit_minor=5)
                case "metadata":
                    return dataclasses.replace(event, metadata=(("b", "1"), ("a", "2")))
            return event

        def change_account(self, data: st.DataObject, event: AccountEvent) -> AccountEvent:  # noqa: PLR0911
            change = data.draw(st.sampled_from(ACCOUNT_CHANGES), label="account change")
            match change:
                case "linked":
                    return dataclasses.replace(event, flags=event.flags ^ AccountFlags.linked)
                case "flags":
                    return dataclasses.replace(event, flags=event.flags ^ DEBITS_LIMITED)
                case "currency":
                    other = "JPY" if event.currency == "USD" else "USD"
                    return dataclasses.replace(event, currency=other)
                case "code":
                    return dataclasses.replace(event, code=event.code + 1)
                case "limit":
                    return dataclasses.replace(event, limit_minor=event.limit_minor + 1)
                case "metadata":
                    metadata = () if event.metadata else (("k", "v"),)
                    return dataclasses.replace(event, metadata=metadata)
            return event

        def draw_pair(
            self, data: st.DataObject, ledger: int, *, same_currency: bool = True
        ) -> tuple[str, str]:
            accounts = self.models[ledger].accounts
            pairs = [
                (debit, credit)
                for debit in sorted(accounts)
                for credit in sorted(accounts)
                if debit != credit
                and (accounts[debit].currency == accounts[credit].currency) == same_currency
            ]
            if not pairs:
                return ("a0", "b0") if not same_currency else ("a0", "a1")
            return data.draw(st.sampled_from(pairs), label="accounts")

        def fitting_pairs(self, ledger: int) -> list[tuple[str, str, int]]:
            """Same-currency pairs that can take at least 1, with the largest (small) amount."""
            accounts = self.models[ledger].accounts
            fitting = []
            for debit in sorted(accounts):
                for credit in sorted(accounts):
                    if debit == credit or accounts[debit].currency != accounts[credit].currency:
                        continue
                    room = 300
                    if accounts[debit].flags & DEBITS_LIMITED:
                        room = min(room, _headroom(accounts[debit]))
                    if accounts[credit].flags & CREDITS_LIMITED:
                        room = min(room, _headroom(accounts[credit]))
                    if room >= 1:
                        fitting.append((debit, credit, room))
            return fitting

        def draw_amount(self, data: st.DataObject) -> int:
            return data.draw(st.integers(1, 300), label="amount")

        def draw_transfer_event(self, data: st.DataObject, ledger: int) -> TransferEvent:
            kind = data.draw(st.sampled_from(TRANSFER_KINDS), label="kind")
            event = self.transfer_of_kind(data, ledger, kind)
            self.transfer_history[ledger].append(event)
            return event

        def transfer_of_kind(self, data: st.DataObject, ledger: int, kind: str) -> TransferEvent:
            history = self.transfer_history[ledger]
            code = data.draw(st.sampled_from((0, 0, 1)), label="code")
            metadata = data.draw(st.sampled_from(METADATA), label="metadata")
            if kind == "resubmit" and history:
                return self.change_transfer(data, ledger, self.draw_earlier(data, ledger))
            if kind in ("post", "void") and (
                self.live_holds(ledger)
                or self.drafted_holds(ledger)
                or data.draw(st.sampled_from((True, False, False)), label="resolve nothing")
            ):
                return self.resolve_event(data, ledger, post=kind == "post")
            if kind in ("post", "void"):
                kind = "pending"
            if kind == "bad_shape":
                return self.bad_shape(data, ledger)
            debit, credit = self.draw_pair(data, ledger)
            amount = self.draw_amount(data)
            fitting = self.fitting_pairs(ledger)
            if kind in ("posted", "pending") and fitting and data.draw(st.booleans(), label="fit"):
                debit, credit, room = data.draw(st.sampled_from(fitting), label="fitting")
                amount = data.draw(st.integers(1, room), label="fitting amount")
            elif kind == "boundary":
                debit, credit, amount = self.boundary(data, ledger)
            elif kind == "same_account":
                credit = debit
            elif kind == "unknown_account":
                missing = sorted(set(ACCOUNT_IDS) - set(self.models[ledger].accounts))
                unknown = data.draw(st.sampled_from([*missing, "nobody"]), label="unknown")
                if data.draw(st.booleans(), label="unknown side"):
                    debit = unknown
                else:
                    credit = unknown
            elif kind == "currency_mismatch":
                debit, credit = self.draw_pair(data, ledger, same_currency=False)
            elif kind == "bad_amount":
                amount = data.draw(st.sampled_from((0, -1, -250)), label="bad amount")
            elif kind == "huge":
                amount = data.draw(st.sampled_from((AMOUNT_MAX, AMOUNT_MAX // 2 + 1)))
            pending = kind == "pending" or (
                kind in ("boundary", "huge", "unknown_account") and data.draw(st.booleans())
            )
            return TransferEvent(
                id=self.new_id(),
                debit_account_id=debit,
                credit_account_id=credit,
                amount_minor=amount,
                timeout_s=data.draw(st.sampled_from(HOLD_TIMEOUTS)) if pending else 0,
                code=code,
                flags=TransferFlags.pending if pending else TransferFlags.none,
                metadata=metadata,
            )

        def boundary(self, data: st.DataObject, ledger: int) -> tuple[str, str, int]:
            """A transfer that exactly uses, or just passes, a constrained account's room."""
            accounts = self.models[ledger].accounts
            constrained = sorted(
                account_id for account_id, account in accounts.items() if usage(account) is not None
            )
            if not constrained:
                debit, credit = self.draw_pair(data, ledger)
                return debit, credit, self.draw_amount(data)
            account = accounts[data.draw(st.sampled_from(constrained), label="constrained")]
            others = sorted(
                other.id
                for other in accounts.values()
                if other.currency == account.currency and other.id != account.id
            )
            other_id = data.draw(st.sampled_from(others or ["nobody"]), label="counterpart")
            room = _headroom(account)
            amount = max(1, room + data.draw(st.sampled_from((0, 1, -1)), label="room"))
            if account.flags & DEBITS_LIMITED:
                return account.id, other_id, amount
            return other_id, account.id, amount

        def drafted_holds(self, ledger: int) -> dict[str, TransferEvent]:
            """Pending transfers drawn for the commit being prepared (not committed yet)."""
            return {
                event.id: event
                for event in self.transfer_history[ledger][self.committed[ledger] :]
                if event.flags & TransferFlags.pending and event.amount_minor is not None
            }

        def live_holds(self, ledger: int) -> list[str]:
            holds = self.models[ledger].holds
            return sorted(hold for hold, state in holds.items() if state == HoldState.pending)

        def resolve_event(self, data: st.DataObject, ledger: int, *, post: bool) -> TransferEvent:
            model = self.models[ledger]
            drafted = self.drafted_holds(ledger)
            not_pending = sorted(
                transfer_id
                for transfer_id, transfer in model.transfers.items()
                if not transfer.flags & TransferFlags.pending
            )[:3]
            live = self.live_holds(ledger)
            candidates = sorted(set(model.holds) | set(drafted)) + not_pending + ["missing"]
            if live and data.draw(st.sampled_from((True,) * 4 + (False,)), label="live hold"):
                candidates = live
            pending_id = data.draw(st.sampled_from(candidates), label="pending id")
            held = model.transfers.get(pending_id)
            hold_debit: str | None
            hold_credit: str | None
            if held is not None:
                hold_amount, hold_debit = held.amount, held.debit_account_id
                hold_credit = held.credit_account_id
            elif pending_id in drafted:
                amount = drafted[pending_id].amount_minor
                assert amount is not None
                hold_amount, hold_debit = amount, drafted[pending_id].debit_account_id
                hold_credit = drafted[pending_id].credit_account_id
            else:
                hold_amount, hold_debit, hold_credit = 100, "a0", "a1"
            if post:
                amount_choices: tuple[int | None, ...] = (
                    *(None, None, None, hold_amount),
                    *(max(1, hold_amount // 2), max(1, hold_amount - 1), hold_amount + 1),
                )
            else:
                amount_choices = (None, None, None, None, hold_amount, hold_amount + 1)
            amount = data.draw(st.sampled_from(amount_choices), label="resolve amount")
            debit = data.draw(st.sampled_from((None,) * 6 + (hold_debit, "a3")), label="debit")
            credit = data.draw(st.sampled_from((None,) * 6 + (hold_credit, "a3")), label="credit")
            return TransferEvent(
                id=self.new_id(),
                debit_account_id=debit,
                credit_account_id=credit,
                amount_minor=amount,
                pending_id=pending_id,
                code=data.draw(st.sampled_from((0, 0, 1)), label="code"),
                flags=TransferFlags.post_pending if post else TransferFlags.void_pending,
            )

        def bad_shape(self, data: st.DataObject, ledger: int) -> TransferEvent:  # noqa: PLR0911
            debit, credit = self.draw_pair(data, ledger)
            event = TransferEvent(
                id=self.new_id(), debit_account_id=debit, credit_account_id=credit, amount_minor=7
            )
            post = dataclasses.replace(
                event, flags=TransferFlags.post_pending, pending_id="missing"
            )
            match data.draw(st.sampled_from(BAD_SHAPES), label="bad shape"):
                case "id":
                    return dataclasses.replace(event, id="bad id")
                case "flags":
                    return dataclasses.replace(
                        post, flags=TransferFlags.pending | TransferFlags.void_pending
                    )
                case "pending_id_required":
                    return dataclasses.replace(post, pending_id=None)
                case "pending_id_invalid":
                    return dataclasses.replace(post, pending_id="no/slash")
                case "pending_id_same":
                    return dataclasses.replace(post, pending_id=event.id)
                case "pending_id_on_plain":
                    return dataclasses.replace(event, pending_id="missing")
                case "timeout_on_plain":
                    return dataclasses.replace(event, timeout_s=5)
                case "timeout_negative":
                    return dataclasses.replace(event, flags=TransferFlags.pending, timeout_s=-1)
                case "debit_missing":
                    return dataclasses.replace(event, debit_account_id=None)
                case "credit_invalid":
                    return dataclasses.replace(event, credit_account_id="x" * 65)
                case "amount_missing":
                    return dataclasses.replace(event, amount_minor=None)
                case "amount_too_big":
                    return dataclasses.replace(event, amount_minor=AMOUNT_MAX + 1)
                case "code":
                    return dataclasses.replace(event, code=TRANSFER_CODE_MAX + 1)
                case _:
                    return dataclasses.replace(event, metadata=(("", "empty key"),))

        def draw_earlier(self, data: st.DataObject, ledger: int) -> TransferEvent:
            """Most often an event that created a transfer, else any event drawn before."""
            created = self.created[ledger]
            if created and data.draw(st.sampled_from((True, True, False)), label="created"):
                return created[data.draw(st.sampled_from(sorted(created)), label="earlier id")]
            return data.draw(st.sampled_from(self.transfer_history[ledger]), label="earlier")

        def change_transfer(  # noqa: PLR0911
            self, data: st.DataObject, ledger: int, event: TransferEvent
        ) -> TransferEvent:
            """An earlier event again, unchanged (but for ``linked``) or with one field changed."""
            change = data.draw(st.sampled_from(TRANSFER_CHANGES), label="transfer change")
            match change:
                case "linked":
                    return _linked(event, linked=not event.flags & TransferFlags.linked)
                case "amount":
                    return dataclasses.replace(event, amount_minor=(event.amount_minor or 1) + 1)
                case "code":
                    return dataclasses.replace(event, code=event.code + 1)
                case "metadata":
                    metadata = () if event.metadata else (("k", "v"),)
                    return dataclasses.replace(event, metadata=metadata)
                case "debit":
                    other = data.draw(st.sampled_from(ACCOUNT_IDS), label="other debit")
                    return dataclasses.replace(event, debit_account_id=other)
                case "credit":
                    other = data.draw(st.sampled_from(ACCOUNT_IDS), label="other credit")
                    return dataclasses.replace(event, credit_account_id=other)
                case "flags" if not event.flags & (
                    TransferFlags.post_pending | TransferFlags.void_pending
                ):
                    return dataclasses.replace(
                        event, flags=event.flags ^ TransferFlags.pending, timeout_s=0
                    )
                case "timeout" if event.flags & TransferFlags.pending:
                    timeout = HOLD_TIMEOUTS[1] if event.timeout_s == 0 else 0
                    return dataclasses.replace(event, timeout_s=timeout)
                case "pending_id" if event.pending_id is not None:
                    candidates = sorted(self.models[ledger].holds) or ["missing"]
                    pending_id = data.draw(st.sampled_from(candidates), label="other pending")
                    return dataclasses.replace(event, pending_id=pending_id)
            return event

        def draw_transfer_batch(
            self, data: st.DataObject, ledger: int, *, size_max: int
        ) -> tuple[TransferEvent, ...]:
            size = data.draw(st.integers(1, size_max), label="batch size")
            events = []
            for index in range(size):
                event = self.draw_transfer_event(data, ledger)
                last = index == size - 1
                choices = (False,) * 7 + (True,) if last else (False, False, False, True)
                events.append(
                    _linked(event, linked=data.draw(st.sampled_from(choices), label="link"))
                )
            return tuple(events)

        def draw_set_limit(self, data: st.DataObject, ledger: int) -> SetLimit:
            accounts = self.models[ledger].accounts
            constrained = sorted(key for key, value in accounts.items() if usage(value) is not None)
            choices = [
                *([constrained] * 3 if constrained else []),
                sorted(accounts) or ["nobody"],
                [*ACCOUNT_IDS, "nobody"],
            ]
            account_ids = data.draw(st.sampled_from(choices), label="accounts for limit")
            account_id = data.draw(st.sampled_from(account_ids), label="limit of")
            account = self.models[ledger].accounts.get(account_id)
            used = 0 if account is None else usage(account) or 0
            limit = data.draw(
                st.sampled_from(
                    (
                        used,
                        used,
                        used + 1,
                        used - 1,
                        used + 500,
                        0,
                        -1,
                        BALANCE_MAX,
                        BALANCE_MAX + 1,
                    )
                ),
                label="limit",
            )
            return SetLimit(
                ledger_id=self.ledger_ids[ledger], account_id=account_id, limit_minor=limit
            )

        def draw_request(self, data: st.DataObject) -> WriteRequest:
            ledger = self.draw_ledger(data)
            kind = data.draw(st.sampled_from(("transfers",) * 3 + ("accounts", "limit")))
            if kind == "accounts":
                events = tuple(
                    self.draw_account_event(data, ledger)
                    for _ in range(data.draw(st.integers(1, 2), label="accounts"))
                )
                return CreateAccounts(ledger_id=self.ledger_ids[ledger], events=events)
            if kind == "limit":
                return self.draw_set_limit(data, ledger)
            return CreateTransfers(
                ledger_id=self.ledger_ids[ledger],
                events=self.draw_transfer_batch(data, ledger, size_max=4),
            )

        # -- rules --------------------------------------------------------------------------

        @initialize(data=st.data())
        def open_accounts(self, data: st.DataObject) -> None:
            requests: list[WriteRequest] = []
            for ledger, ledger_id in enumerate(self.ledger_ids):
                events = []
                for account_id, currency in INITIAL_ACCOUNTS:
                    flags = {
                        "a0": AccountFlags.none,
                        "a1": DEBITS_LIMITED,
                        "a2": CREDITS_LIMITED,
                        "b0": AccountFlags.none,
                    }.get(account_id)
                    if flags is None:
                        flags = data.draw(
                            st.sampled_from((AccountFlags.none, DEBITS_LIMITED, CREDITS_LIMITED))
                        )
                    limit = 0 if not flags else data.draw(st.sampled_from((100, 1000, 0)))
                    events.append(
                        AccountEvent(
                            id=account_id, currency=currency, flags=flags, limit_minor=limit
                        )
                    )
                self.account_history[ledger].extend(events)
                requests.append(CreateAccounts(ledger_id=ledger_id, events=tuple(events)))
            self.commit(data, requests)

        @rule(data=st.data())
        def create_accounts(self, data: st.DataObject) -> None:
            ledger = self.draw_ledger(data)
            events = tuple(
                self.draw_account_event(data, ledger)
                for _ in range(data.draw(st.integers(1, 4), label="accounts"))
            )
            self.commit(data, [CreateAccounts(ledger_id=self.ledger_ids[ledger], events=events)])

        @rule(data=st.data())
        def create_transfers(self, data: st.DataObject) -> None:
            ledger = self.draw_ledger(data)
            events = self.draw_transfer_batch(data, ledger, size_max=6)
            self.commit(data, [CreateTransfers(ledger_id=self.ledger_ids[ledger], events=events)])

        @rule(data=st.data())
        def linked_chain(self, data: st.DataObject) -> None:
            """A closed (or, rarely, open) chain of mostly valid transfers."""
            ledger = self.draw_ledger(data)
            size = data.draw(st.integers(2, 4), label="chain size")
            kinds = (
                *("posted",) * 4,
                *("pending",) * 2,
                *("post", "void", "boundary", "resubmit"),
            )
            events = []
            for _ in range(size):
                kind = data.draw(st.sampled_from(kinds), label="chain kind")
                event = self.transfer_of_kind(data, ledger, kind)
                self.transfer_history[ledger].append(event)
                events.append(_linked(event, linked=True))
            if not data.draw(st.sampled_from((False,) * 7 + (True,)), label="open chain"):
                events[-1] = _linked(events[-1], linked=False)
            self.commit(
                data, [CreateTransfers(ledger_id=self.ledger_ids[ledger], events=tuple(events))]
            )

        @rule(data=st.data())
        def resolve_hold(self, data: st.DataObject) -> None:
            """Post (fully or partly) or void a hold, most often one that is still pending."""
            ledger = self.draw_ledger(data)
            event = self.resolve_event(data, ledger, post=data.draw(st.booleans(), label="post"))
            self.transfer_history[ledger].append(event)
            self.commit(data, [CreateTransfers(ledger_id=self.ledger_ids[ledger], events=(event,))])

        @rule(data=st.data())
        def resubmit(self, data: st.DataObject) -> None:
            """Earlier transfers again, alone or in a batch, unchanged or changed."""
            ledger = self.draw_ledger(data)
            history = self.transfer_history[ledger]
            if not history:
                return
            size = data.draw(st.integers(1, 3), label="resubmissions")
            events = [
                self.change_transfer(data, ledger, self.draw_earlier(data, ledger))
                for _ in range(size)
            ]
            history.extend(events)
            self.commit(
                data, [CreateTransfers(ledger_id=self.ledger_ids[ledger], events=tuple(events))]
            )

        @rule(data=st.data())
        def set_limit(self, data: st.DataObject) -> None:
            self.commit(data, [self.draw_set_limit(data, self.draw_ledger(data))])

        @rule(data=st.data())
        def grouped_commit(self, data: st.DataObject) -> None:
            """Several requests, of either ledger, in one database transaction."""
            count = data.draw(st.integers(2, 3), label="requests")
            requests: list[WriteRequest] = []
            # Each request is drawn against the state the earlier ones lead to (a post may
            # resolve a hold created by an earlier request of the same commit).
            real = self.models
            self.models = copy.deepcopy(real)
            try:
                for _ in range(count):
                    request = self.draw_request(data)
                    requests.append(request)
                    ledger = self.ledger_ids.index(request.ledger_id)
                    _simulate(self.models[ledger], request)
                limit = self.limit_of_used_account(data, requests, real)
            finally:
                self.models = real
            if limit is not None:
                # Lowering a limit once usage fell inside the commit is the interesting case.
                requests.append(limit)
            self.commit(data, requests)

        def limit_of_used_account(
            self, data: st.DataObject, requests: list[WriteRequest], before: list[LedgerModel]
        ) -> SetLimit | None:
            """Maybe a limit change of an account that the drawn transfers use."""
            used: list[tuple[int, str]] = sorted(
                (self.ledger_ids.index(request.ledger_id), account_id)
                for request in requests
                if isinstance(request, CreateTransfers)
                for event in request.events
                for account_id in (event.debit_account_id, event.credit_account_id)
                if account_id is not None
                and account_id in before[self.ledger_ids.index(request.ledger_id)].accounts
            )
            if not used or not data.draw(st.booleans(), label="limit of a used account"):
                return None
            fell = [
                (ledger, account_id)
                for ledger, account_id in used
                if (usage(self.models[ledger].accounts[account_id]) or 0)
                < (usage(before[ledger].accounts[account_id]) or 0)
            ]
            if len(fell) > 0 and data.draw(st.booleans(), label="usage fell"):
                used = fell
            ledger, account_id = data.draw(st.sampled_from(used), label="used account")
            usages = [
                usage(models[ledger].accounts[account_id]) for models in (before, self.models)
            ]
            used_before, used_after = (value or 0 for value in usages)
            choices = (0, used_after, used_after + 1, used_before - 1, used_before)
            limit = data.draw(st.sampled_from(choices), label="limit of used account")
            return SetLimit(
                ledger_id=self.ledger_ids[ledger], account_id=account_id, limit_minor=limit
            )

        # -- checks -------------------------------------------------------------------------

        @invariant()
        def stored_state_matches_model(self) -> None:
            for ledger, ledger_id in enumerate(self.ledger_ids):
                model = self.models[ledger]
                _check_accounts(self.service, ledger_id, model)
                ids = sorted({event.id for event in self.transfer_history[ledger]})
                _check_transfers(self.service, ledger_id, model, ids)
                _check_histories(self.service, ledger_id, model)

        def teardown(self) -> None:
            try:
                report = self.service.verify()
                assert report.head_seq == report.entries
            finally:
                for engine in self.engines:
                    engine.dispose()
                self.remove_database()

    return LedgerMachine


def _simulate(model: LedgerModel, request: WriteRequest) -> None:
    if isinstance(request, CreateAccounts):
        model.create_accounts(request.events)
    elif isinstance(request, CreateTransfers):
        model.create_transfers(request.events)
    else:
        model.set_limit(request.account_id, request.limit_minor)


def _explain(where: str, events: object, actual: object, expected: object) -> str:
    return f"{where}\n events:   {events}\n actual:   {actual}\n expected: {expected}"


def _check_accounts(service: LedgerService, ledger_id: int, model: LedgerModel) -> None:
    stored = service.get_accounts(ledger_id, ACCOUNT_IDS)
    assert set(stored) == set(model.accounts), (sorted(stored), sorted(model.accounts))
    totals: dict[str, list[int]] = {}
    for account_id, account in stored.items():
        expected = model.accounts[account_id]
        assert (
            account.currency,
            account.code,
            int(account.flags),
            account.limit_minor,
            account.limit_initial_minor,
            account.metadata,
            tuple(account.balances),
        ) == (
            expected.currency,
            expected.code,
            expected.flags,
            expected.limit,
            expected.initial_limit,
            expected.metadata,
            tuple(expected.balances()),
        ), account_id
        balances = account.balances
        assert min(balances) >= 0, account
        debits = balances.debits_pending + balances.debits_posted
        credit_total = balances.credits_pending + balances.credits_posted
        if account.flags & DEBITS_LIMITED:
            assert debits <= balances.credits_posted + account.limit_minor, account
        if account.flags & CREDITS_LIMITED:
            assert credit_total <= balances.debits_posted + account.limit_minor, account
        total = totals.setdefault(account.currency, [0, 0, 0, 0])
        for index, value in enumerate(balances):
            total[index] += value
    for currency, (
        debits_pending,
        debits_posted,
        credits_pending,
        credits_posted,
    ) in totals.items():
        assert debits_posted == credits_posted, currency
        assert debits_pending == credits_pending, currency


def _check_transfers(
    service: LedgerService, ledger_id: int, model: LedgerModel, ids: list[str]
) -> None:
    stored = service.get_transfers(ledger_id, ids)
    assert set(stored) == set(model.transfers), (sorted(stored), sorted(model.transfers))
    for transfer_id, transfer in stored.items():
        expected = model.transfers[transfer_id]
        assert (
            transfer.debit_account_id,
            transfer.credit_account_id,
            transfer.amount_minor,
            transfer.currency,
            transfer.pending_id,
            transfer.timeout_s,
            transfer.code,
            int(transfer.flags),
            transfer.metadata,
        ) == (
            expected.debit_account_id,
            expected.credit_account_id,
            expected.amount,
            expected.currency,
            expected.pending_id,
            expected.timeout_s,
            expected.code,
            expected.flags,
            expected.metadata,
        ), transfer_id
        assert (transfer.expires_at_ns is None) == (transfer.timeout_s == 0), transfer
        assert transfer.timeout_s <= TIMEOUT_S_MAX


def _check_histories(service: LedgerService, ledger_id: int, model: LedgerModel) -> None:
    """Each account's transfers, listed both ways, are the model's in the order they were
    applied (commit order is timestamp order), and its balances after its last transfer are its
    balances now (holds never expire in these runs)."""
    for account_id, account in model.accounts.items():
        expected = [
            transfer.id
            for transfer in model.transfers.values()
            if account_id in {transfer.debit_account_id, transfer.credit_account_id}
        ]
        for newest_first in (False, True):
            page = service.list_account_transfers(
                ledger_id, account_id, limit=PAGE_SIZE_MAX, newest_first=newest_first
            )
            assert page is not None
            assert page.next_cursor is None  # A run makes fewer transfers than a page.
            listed = [transfer.id for transfer in page.transfers]
            assert listed == (expected[::-1] if newest_first else expected), account_id
        balances = service.balance_at(ledger_id, account_id, 2**63 - 1)
        assert balances == Balances(
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        ), account_id


# Hypothesis may shrink a failure for up to five minutes: let it finish, and let a long campaign
# (FARTHING_STATEFUL_EXAMPLES) run as long as it needs.
@pytest.mark.timeout(0 if EXAMPLES_ENV in os.environ else 900)
@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_service_matches_reference_model(dialect: str, tmp_path: Path) -> None:
    """Random sequences of commits agree with the model, on SQLite and on PostgreSQL."""
    machine = ledger_machine(FreshDatabases(dialect, tmp_path))
    run_state_machine_as_test(machine, settings=_settings(dialect))


def test_limit_lowered_after_usage_fell_in_the_same_commit(
    service: LedgerService, ledger_id: int
) -> None:
    """Spend up to the limit, get the money back, then lower the limit to 0: all in one commit.

    Found by the state machine: the journal used to hold a commit's limit changes before its
    transfers, so verify() replayed the lower limit before the spending and reported a breach.
    """
    accounts = (
        AccountEvent(id="spender", currency="USD", flags=DEBITS_LIMITED, limit_minor=100),
        AccountEvent(id="shop", currency="USD"),
    )
    assert service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)]) == [
        [CreateAccountResult.ok, CreateAccountResult.ok]
    ]
    transfers = (
        TransferEvent(
            id="buy", debit_account_id="spender", credit_account_id="shop", amount_minor=100
        ),
        TransferEvent(
            id="refund", debit_account_id="shop", credit_account_id="spender", amount_minor=100
        ),
    )
    outcomes = service.commit(
        [
            CreateTransfers(ledger_id=ledger_id, events=transfers),
            SetLimit(ledger_id=ledger_id, account_id="spender", limit_minor=0),
        ]
    )
    assert outcomes == [[CreateTransferResult.ok, CreateTransferResult.ok], SetLimitResult.ok]
    service.verify()
