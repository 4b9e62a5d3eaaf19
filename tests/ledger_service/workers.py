"""Workloads that the crash and concurrency tests run as separate OS processes.

Run as a script, one fresh interpreter per process, so that SIGKILL and parallel writers behave
as they do in production::

    python tests/ledger_service/workers.py crash --database-url URL --ledger-id N \
        --ack FILE --round R --seed S
    python tests/ledger_service/workers.py concurrent --database-url URL --ledger-id N \
        --index I --seed S --batches B --out FILE

The journal key comes from FARTHING_JOURNAL_KEY, as for `farthing serve`.

``crash`` writes transfers until it is killed. Before each commit it appends an *intent* line
(the ids it is about to commit); after ``LedgerService.commit`` returned it appends one *ack*
line with every event and its result, fsyncs, and only then writes one byte to stdout so that
the parent can synchronise on real progress. A line without its final newline was cut by the
kill and acknowledges nothing.

``concurrent`` prints ``ready``, waits for ``go`` on stdin (a start barrier), commits its
batches against accounts that every worker shares, and writes every event with its result to a
JSON file. Any exception ends the process with a non-zero status and a traceback on stderr.

This module imports only ``farthing`` (never ``tests``): the parent imports it too, for the
account plans and the event encoding.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farthing.config import load_journal_key
from farthing.db.engine import create_engine
from farthing.ledger import (
    AccountEvent,
    AccountFlags,
    CreateTransferResult,
    SetLimitResult,
    TransferEvent,
    TransferFlags,
)
from farthing.ledger_service import CreateTransfers, LedgerService, SetLimit, WriteRequest

__all__ = [
    "CONCURRENT_ACCOUNTS",
    "CRASH_ACCOUNTS",
    "RACE_HOLDS",
    "AccountPlan",
    "account_events",
    "event_from_json",
    "event_to_json",
    "funding_events",
    "race_hold_events",
    "read_lines",
    "read_lines_from",
]

WORKER_SECONDS_MAX = 90.0  # A crash worker nobody killed stops by itself (and the test fails).
BARRIER_SECONDS_MAX = 60.0
_DEBITS_LIMITED = AccountFlags.debits_must_not_exceed_credits
_CREDITS_LIMITED = AccountFlags.credits_must_not_exceed_debits


@dataclass(frozen=True, slots=True)
class AccountPlan:
    id: str
    currency: str
    flags: AccountFlags
    limit_minor: int
    funding: int  # credited from the currency's mint account before the workload starts


def _mint(currency: str) -> AccountPlan:
    return AccountPlan(f"mint-{currency.lower()}", currency, AccountFlags.none, 0, 0)


# Limited accounts overdraw often: amounts are of the order of their funding plus limit.
CRASH_ACCOUNTS: tuple[AccountPlan, ...] = (
    _mint("USD"),
    _mint("EUR"),
    AccountPlan("usd-0", "USD", _DEBITS_LIMITED, 0, 600),
    AccountPlan("usd-1", "USD", _DEBITS_LIMITED, 150, 300),
    AccountPlan("usd-2", "USD", _DEBITS_LIMITED, 0, 0),
    AccountPlan("usd-3", "USD", _CREDITS_LIMITED, 400, 0),
    AccountPlan("usd-4", "USD", AccountFlags.none, 0, 200),
    AccountPlan("eur-0", "EUR", _DEBITS_LIMITED, 50, 400),
    AccountPlan("eur-1", "EUR", _DEBITS_LIMITED, 0, 100),
    AccountPlan("eur-2", "EUR", _CREDITS_LIMITED, 300, 0),
)

# Two hot accounts that almost every batch touches, and cold ones touched now and then.
CONCURRENT_ACCOUNTS: tuple[AccountPlan, ...] = (
    _mint("USD"),
    _mint("EUR"),
    AccountPlan("hot-0", "USD", _DEBITS_LIMITED, 300, 1_000),
    AccountPlan("hot-1", "USD", _CREDITS_LIMITED, 4_000, 0),
    *(
        AccountPlan(
            f"cold-{index}",
            "USD",
            (_DEBITS_LIMITED, AccountFlags.none, _CREDITS_LIMITED)[index % 3],
            (0, 0, 600)[index % 3],
            (400, 100, 0)[index % 3],
        )
        for index in range(12)
    ),
    AccountPlan("eur-0", "EUR", _DEBITS_LIMITED, 0, 500),
    AccountPlan("eur-1", "EUR", _DEBITS_LIMITED, 100, 100),
    AccountPlan("eur-2", "EUR", AccountFlags.none, 0, 0),
)
# Pending transfers created before the workers start; workers race to post and void them.
RACE_HOLDS = 12


def account_events(plans: Sequence[AccountPlan]) -> tuple[AccountEvent, ...]:
    return tuple(
        AccountEvent(
            id=plan.id, currency=plan.currency, flags=plan.flags, limit_minor=plan.limit_minor
        )
        for plan in plans
    )


def funding_events(plans: Sequence[AccountPlan]) -> tuple[TransferEvent, ...]:
    return tuple(
        TransferEvent(
            id=f"fund-{plan.id}",
            debit_account_id=f"mint-{plan.currency.lower()}",
            credit_account_id=plan.id,
            amount_minor=plan.funding,
        )
        for plan in plans
        if plan.funding > 0
    )


def race_hold_events() -> tuple[TransferEvent, ...]:
    return tuple(
        TransferEvent(
            id=f"race-p{index}",
            debit_account_id="mint-usd",
            credit_account_id=f"cold-{index % 12}",
            amount_minor=10 + index,
            flags=TransferFlags.pending,
        )
        for index in range(RACE_HOLDS)
    )


def event_to_json(event: TransferEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "dr": event.debit_account_id,
        "cr": event.credit_account_id,
        "amount": event.amount_minor,
        "pending_id": event.pending_id,
        "timeout_s": event.timeout_s,
        "code": event.code,
        "flags": int(event.flags),
        "metadata": [list(pair) for pair in event.metadata],
    }


def event_from_json(data: dict[str, Any]) -> TransferEvent:
    return TransferEvent(
        id=data["id"],
        debit_account_id=data["dr"],
        credit_account_id=data["cr"],
        amount_minor=data["amount"],
        pending_id=data["pending_id"],
        timeout_s=data["timeout_s"],
        code=data["code"],
        flags=TransferFlags(data["flags"]),
        metadata=tuple((str(key), str(value)) for key, value in data["metadata"]),
    )


def read_lines_from(text: str) -> list[dict[str, Any]]:
    """Complete JSON lines; a trailing line cut by a kill (no newline yet) is ignored."""
    complete, _, _ = text.rpartition("\n")
    return [json.loads(line) for line in complete.split("\n") if line]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return read_lines_from(path.read_text()) if path.exists() else []


def _append_line(descriptor: int, record: dict[str, Any], *, durable: bool) -> None:
    data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    written = 0
    while written < len(data):
        written += os.write(descriptor, data[written:])
    if durable:
        os.fsync(descriptor)


def _service(database_url: str) -> LedgerService:
    return LedgerService(create_engine(database_url), journal_key=load_journal_key())


# ---------------------------------------------------------------------------------------------
# crash


class _CrashWorkload:
    """Random commits: batches, single transfers, linked chains, holds, limits and retries."""

    def __init__(self, rng: random.Random, ledger_id: int, prefix: str) -> None:
        self.rng = rng
        self.ledger_id = ledger_id
        self.prefix = prefix
        self.counter = 0
        self.open_holds: dict[str, int] = {}  # acknowledged ok pending transfers, not resolved
        self.retryable: list[TransferEvent] = []  # acknowledged events outside linked chains
        self.by_currency: dict[str, list[AccountPlan]] = {}
        for plan in CRASH_ACCOUNTS:
            self.by_currency.setdefault(plan.currency, []).append(plan)

    def learn(self, event: TransferEvent, result: str, *, linked: bool) -> None:
        if not linked:
            self.retryable.append(event)
        if result != CreateTransferResult.ok.value:
            return
        if event.flags & TransferFlags.pending:
            assert event.amount_minor is not None
            self.open_holds[event.id] = event.amount_minor
        elif event.pending_id is not None:
            self.open_holds.pop(event.pending_id, None)

    def _id(self) -> str:
        self.counter += 1
        return f"{self.prefix}-{self.counter}"

    def _pair(self) -> tuple[str, str]:
        if self.rng.random() < 0.03:  # different currencies: a rejection that is not transient
            return "usd-0", "eur-0"
        plans = self.by_currency[self.rng.choice(("USD", "USD", "EUR"))]
        debit, credit = self.rng.sample(plans, 2)
        return debit.id, credit.id

    def _plain(self, flags: TransferFlags = TransferFlags.none) -> TransferEvent:
        debit, credit = self._pair()
        pending = self.rng.random() < 0.2
        return TransferEvent(
            id=self._id(),
            debit_account_id=debit,
            credit_account_id=credit,
            amount_minor=self.rng.randint(1, 250),
            flags=flags | (TransferFlags.pending if pending else TransferFlags.none),
            timeout_s=self.rng.choice((0, 0, 1)) if pending else 0,
            code=self.rng.randint(0, 9),
        )

    def _resolve(self, chosen: set[str]) -> TransferEvent | None:
        candidates = [hold for hold in self.open_holds if hold not in chosen]
        if not candidates:
            return None
        hold = self.rng.choice(candidates)
        chosen.add(hold)
        if self.rng.random() < 0.6:
            amount = self.open_holds[hold]
            return TransferEvent(
                id=self._id(),
                pending_id=hold,
                amount_minor=self.rng.choice((None, self.rng.randint(1, amount))),
                flags=TransferFlags.post_pending,
            )
        return TransferEvent(id=self._id(), pending_id=hold, flags=TransferFlags.void_pending)

    def _events(self, size: int) -> list[TransferEvent]:
        events: list[TransferEvent] = []
        chosen: set[str] = set()
        while len(events) < size:
            roll = self.rng.random()
            if roll < 0.12:
                resolve = self._resolve(chosen)
                if resolve is not None:
                    events.append(resolve)
                    continue
            if roll < 0.22:  # a linked chain: all or nothing
                chain = [self._plain(TransferFlags.linked) for _ in range(self.rng.randint(2, 3))]
                last = chain[-1]
                chain[-1] = TransferEvent(
                    id=last.id,
                    debit_account_id=last.debit_account_id,
                    credit_account_id=last.credit_account_id,
                    amount_minor=last.amount_minor,
                    flags=last.flags & ~TransferFlags.linked,
                    timeout_s=last.timeout_s,
                    code=last.code,
                )
                events.extend(chain)
                continue
            if roll < 0.28 and self.retryable:  # a retry of an acknowledged event
                events.append(self.rng.choice(self.retryable))
                continue
            events.append(self._plain())
        return events

    def requests(self) -> list[WriteRequest]:
        roll = self.rng.random()
        if roll < 0.3:  # one single transfer
            return [CreateTransfers(ledger_id=self.ledger_id, events=tuple(self._events(1)))]
        if roll < 0.45:  # several requests in one commit, one of them a limit change
            # The limit change comes first: the journal records limit changes before transfers,
            # so one after transfers breaks `farthing verify` (a known bug, see
            # test_tamper.py::test_limit_change_after_transfers_in_one_commit_verifies).
            limited = self.rng.choice(("usd-1", "usd-3", "eur-0", "eur-2"))
            return [
                SetLimit(
                    ledger_id=self.ledger_id,
                    account_id=limited,
                    limit_minor=self.rng.randint(0, 600),
                ),
                CreateTransfers(ledger_id=self.ledger_id, events=tuple(self._events(3))),
                CreateTransfers(ledger_id=self.ledger_id, events=tuple(self._events(2))),
            ]
        size = self.rng.randint(2, 40)
        return [CreateTransfers(ledger_id=self.ledger_id, events=tuple(self._events(size)))]


def _crash_history(workload: _CrashWorkload, ack_path: Path) -> None:
    """Learn acknowledged holds and retryable events from earlier (killed) rounds."""
    for line in read_lines(ack_path):
        if line["kind"] != "ack":
            continue
        for transfers in line["transfers"]:
            for data, result, linked in transfers:
                workload.learn(event_from_json(data), result, linked=linked)


def crash_main(args: argparse.Namespace) -> int:
    service = _service(args.database_url)
    rng = random.Random(f"{args.seed}-crash-{args.round}")
    workload = _CrashWorkload(rng, args.ledger_id, f"r{args.round}")
    ack_path = Path(args.ack)
    if ack_path.exists():  # a line the previous writer was killed in the middle of: drop it
        data = ack_path.read_bytes()
        os.truncate(ack_path, data.rfind(b"\n") + 1)
    _crash_history(workload, ack_path)
    descriptor = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    deadline = time.monotonic() + WORKER_SECONDS_MAX
    commits = 0
    while time.monotonic() < deadline:
        requests = workload.requests()
        ids = [
            event.id
            for request in requests
            if isinstance(request, CreateTransfers)
            for event in request.events
        ]
        # Survives SIGKILL without fsync (the kernel keeps it); the parent checks that every
        # committed but unacknowledged transfer was part of the one interrupted commit.
        _append_line(
            descriptor,
            {"kind": "intent", "round": args.round, "commit": commits, "ids": ids},
            durable=False,
        )
        outcomes = service.commit(requests)
        transfers: list[list[list[Any]]] = []
        limits: list[list[Any]] = []
        for request, outcome in zip(requests, outcomes, strict=True):
            if isinstance(request, SetLimit):
                assert isinstance(outcome, SetLimitResult)
                limits.append([request.account_id, request.limit_minor, outcome.value])
                continue
            assert isinstance(request, CreateTransfers)
            assert isinstance(outcome, list)
            part: list[list[Any]] = []
            previous_linked = False
            for event, result in zip(request.events, outcome, strict=True):
                assert isinstance(result, CreateTransferResult)
                # Part of a linked chain (the chain's last event carries no linked flag).
                linked = bool(event.flags & TransferFlags.linked)
                part.append([event_to_json(event), result.value, linked or previous_linked])
                previous_linked = linked
            transfers.append(part)
        _append_line(
            descriptor,
            {
                "kind": "ack",
                "round": args.round,
                "commit": commits,
                "transfers": transfers,
                "limits": limits,
            },
            durable=True,
        )
        for part in transfers:
            for data, result, linked in part:
                workload.learn(event_from_json(data), result, linked=linked)
        commits += 1
        os.write(sys.stdout.fileno(), b".")  # progress: one byte per acknowledged commit
    print("crash worker was never killed", file=sys.stderr)
    return 3


# ---------------------------------------------------------------------------------------------
# concurrent


class _ConcurrentWorkload:
    """Own transfers, identical shared batches (idempotency races) and post/void races."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.index: int = args.index
        self.seed: int = args.seed
        self.ledger_id: int = args.ledger_id
        self.rng = random.Random(f"{args.seed}-worker-{args.index}")
        self.usd = [plan.id for plan in CONCURRENT_ACCOUNTS if plan.currency == "USD"]
        self.eur = [plan.id for plan in CONCURRENT_ACCOUNTS if plan.currency == "EUR"]
        self.own_holds: list[str] = []

    def _transfer(
        self, rng: random.Random, transfer_id: str, amount_max: int = 400
    ) -> TransferEvent:
        if rng.random() < 0.15:
            debit, credit = rng.sample(self.eur, 2)
        elif rng.random() < 0.7:  # hot, in either direction
            hot = rng.choice(("hot-0", "hot-1"))
            other = rng.choice([account for account in self.usd if account != hot])
            debit, credit = (hot, other) if rng.random() < 0.5 else (other, hot)
        else:
            debit, credit = rng.sample(self.usd, 2)
        return TransferEvent(
            id=transfer_id,
            debit_account_id=debit,
            credit_account_id=credit,
            amount_minor=rng.randint(1, amount_max),
            code=rng.randint(0, 3),
        )

    def batch(self, number: int) -> list[WriteRequest]:
        rng = self.rng
        prefix = f"w{self.index}-b{number}"
        # Units keep a linked chain together when the batch is shuffled.
        units: list[list[TransferEvent]] = [
            [self._transfer(rng, f"{prefix}-{position}")] for position in range(rng.randint(1, 12))
        ]
        if rng.random() < 0.3:  # a linked pair: both or neither
            first = self._transfer(rng, f"{prefix}-l0")
            linked = TransferEvent(
                id=first.id,
                debit_account_id=first.debit_account_id,
                credit_account_id=first.credit_account_id,
                amount_minor=first.amount_minor,
                flags=TransferFlags.linked,
            )
            units.append([linked, self._transfer(rng, f"{prefix}-l1")])
        # Resolve a hold created by an earlier batch of this worker (committed, so the writer
        # finds it and locks its accounts before the engine runs), then open a new one.
        if self.own_holds and rng.random() < 0.7:
            hold = self.own_holds.pop(0)
            flags = TransferFlags.post_pending if rng.random() < 0.5 else TransferFlags.void_pending
            units.append([TransferEvent(id=f"{prefix}-r", pending_id=hold, flags=flags)])
        if rng.random() < 0.4:
            hold_event = self._transfer(rng, f"{prefix}-p")
            units.append(
                [
                    TransferEvent(
                        id=hold_event.id,
                        debit_account_id=hold_event.debit_account_id,
                        credit_account_id=hold_event.credit_account_id,
                        amount_minor=hold_event.amount_minor,
                        flags=TransferFlags.pending,
                    )
                ]
            )
        # Every worker sends the same shared events at the same batch number.
        if number % 2 == 0:
            shared = random.Random(f"{self.seed}-shared-{number}")
            units.extend(
                [self._transfer(shared, f"shared-{number}-{position}", 1_500)]
                for position in range(shared.randint(1, 6))
            )
        if number < RACE_HOLDS:  # even workers post, odd workers void the same hold
            post = self.index % 2 == 0
            units.append(
                [
                    TransferEvent(
                        id=f"race-{'post' if post else 'void'}-{number}",
                        pending_id=f"race-p{number}",
                        flags=TransferFlags.post_pending if post else TransferFlags.void_pending,
                    )
                ]
            )
        rng.shuffle(units)
        events = tuple(event for unit in units for event in unit)
        requests: list[WriteRequest] = [CreateTransfers(ledger_id=self.ledger_id, events=events)]
        if rng.random() < 0.15:  # a limit change racing with transfers on the same account
            # First in its commit: the journal records limit changes before transfers, so a
            # limit change after transfers breaks `farthing verify` (a known bug, see
            # test_tamper.py::test_limit_change_after_transfers_in_one_commit_verifies).
            requests.insert(
                0,
                SetLimit(
                    ledger_id=self.ledger_id,
                    account_id=rng.choice(("hot-0", "cold-0", "eur-1")),
                    limit_minor=rng.randint(0, 2_000),
                ),
            )
        return requests

    def learn(self, event: TransferEvent, result: CreateTransferResult) -> None:
        if result is CreateTransferResult.ok and event.flags & TransferFlags.pending:
            self.own_holds.append(event.id)


def _wait_for_go() -> None:
    print("ready", flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], BARRIER_SECONDS_MAX)
    if not ready:
        raise TimeoutError("no 'go' from the parent")
    line = sys.stdin.readline().strip()
    if line != "go":
        raise RuntimeError(f"expected 'go', got {line!r}")


def concurrent_main(args: argparse.Namespace) -> int:
    service = _service(args.database_url)
    service.get_accounts(args.ledger_id, ["hot-0"])  # connect before the barrier
    workload = _ConcurrentWorkload(args)
    _wait_for_go()
    events: list[list[Any]] = []
    limits: list[list[Any]] = []
    for number in range(args.batches):
        requests = workload.batch(number)
        outcomes = service.commit(requests)
        for request, outcome in zip(requests, outcomes, strict=True):
            if isinstance(request, SetLimit):
                assert isinstance(outcome, SetLimitResult)
                limits.append([request.account_id, request.limit_minor, outcome.value])
                continue
            assert isinstance(request, CreateTransfers)
            assert isinstance(outcome, list)
            for event, result in zip(request.events, outcome, strict=True):
                assert isinstance(result, CreateTransferResult)
                workload.learn(event, result)
                events.append([event_to_json(event), result.value])
    service.engine.dispose()
    out = Path(args.out)
    temporary = out.with_suffix(".tmp")
    temporary.write_text(json.dumps({"events": events, "limits": limits}))
    temporary.replace(out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    crash = commands.add_parser("crash")
    concurrent = commands.add_parser("concurrent")
    for command in (crash, concurrent):
        command.add_argument("--database-url", required=True)
        command.add_argument("--ledger-id", type=int, required=True)
        command.add_argument("--seed", type=int, required=True)
    crash.add_argument("--ack", required=True)
    crash.add_argument("--round", type=int, required=True)
    concurrent.add_argument("--index", type=int, required=True)
    concurrent.add_argument("--batches", type=int, required=True)
    concurrent.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "crash":
        return crash_main(args)
    return concurrent_main(args)


if __name__ == "__main__":
    sys.exit(main())
