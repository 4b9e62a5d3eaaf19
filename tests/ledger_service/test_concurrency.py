"""Concurrent writers: several OS processes commit to the same accounts at the same time.

Each worker (``workers.py concurrent``) connects, waits at a start barrier, then commits batches
that touch two hot accounts and a dozen cold ones in both directions, overdraw accounts flagged
``debits_must_not_exceed_credits`` / ``credits_must_not_exceed_debits``, change limits, open and
resolve holds, and send *shared* batches: the same transfer ids, with the same content, from
every worker (an idempotency race), plus post-versus-void races on the same holds.

Afterwards, with every worker's reported results:

- every worker exited 0 within a bounded time (no error, no hang); on PostgreSQL the server
  counted no deadlock (the writer would retry one silently);
- each transfer id was answered ``ok`` at most once across all processes; every ``ok`` is stored
  exactly once with the reported fields, and nothing else is stored;
- a shared id has one original answer; every other process got ``exists`` (original ``ok``) or
  ``id_already_failed`` (original rejected on ledger state); each raced hold resolved once;
- the stored balances equal balances recomputed from the ``ok`` results alone, debits equal
  credits per currency, no limit is broken, and ``farthing verify`` passes.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from farthing.auth import Mode, create_tenant, ledger_id_for
from farthing.db.engine import create_engine
from farthing.db.schema import ledger_accounts, ledger_transfers
from farthing.ledger import (
    TRANSIENT_TRANSFER_RESULTS,
    AccountEvent,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    TransferEvent,
    TransferFlags,
)
from farthing.ledger_service import CreateAccounts, CreateTransfers, LedgerService
from tests.conftest import JOURNAL_KEY, waiting_on_a_lock
from tests.http.conftest import poll_until
from tests.ledger_service import workers

WORKER = Path(workers.__file__)
FARTHING = Path(sys.executable).with_name("farthing")
BATCHES = 40
BARRIER_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 120.0
# The workload (not the interleaving, which the OS decides) is reproducible with this seed.
SEED = int(os.environ.get("FARTHING_RACE_SEED", str(secrets.randbelow(2**31))))
_OK = CreateTransferResult.ok.value
_EXISTS = CreateTransferResult.exists.value
_ALREADY_FAILED = CreateTransferResult.id_already_failed.value
_TRANSIENT = frozenset(result.value for result in TRANSIENT_TRANSFER_RESULTS)


@dataclass
class _Ledger:
    url: str
    engine: sa.Engine
    service: LedgerService
    ledger_id: int


@pytest.fixture
def pg_ledger(postgres_url: str) -> Iterator[_Ledger]:
    yield from _ledger(postgres_url)


@pytest.fixture
def sqlite_ledger(sqlite_url: str) -> Iterator[_Ledger]:
    yield from _ledger(sqlite_url)


def _ledger(url: str) -> Iterator[_Ledger]:
    engine = create_engine(url)
    with engine.begin() as connection:
        ledger_id = ledger_id_for(
            connection, create_tenant(connection, name="race", journal_key=JOURNAL_KEY), Mode.test
        )
    try:
        yield _Ledger(url, engine, LedgerService(engine, journal_key=JOURNAL_KEY), ledger_id)
    finally:
        engine.dispose()


def _setup_events() -> tuple[TransferEvent, ...]:
    return workers.funding_events(workers.CONCURRENT_ACCOUNTS) + workers.race_hold_events()


def _setup(ledger: _Ledger) -> None:
    plans = workers.CONCURRENT_ACCOUNTS
    outcomes = ledger.service.commit(
        [
            CreateAccounts(ledger_id=ledger.ledger_id, events=workers.account_events(plans)),
            CreateTransfers(ledger_id=ledger.ledger_id, events=_setup_events()),
        ]
    )
    assert outcomes[0] == [CreateAccountResult.ok] * len(plans)
    assert outcomes[1] == [CreateTransferResult.ok] * len(_setup_events())


def _read_line(process: subprocess.Popen[bytes], deadline: float) -> bytes:
    assert process.stdout is not None
    descriptor = process.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return line
        ready, _, _ = select.select([descriptor], [], [], remaining)
        if ready:
            chunk = os.read(descriptor, 1)
            if not chunk:
                return line
            line += chunk
    return line


def _run_workers(
    ledger: _Ledger, count: int, tmp_path: Path, env: dict[str, str]
) -> list[dict[str, Any]]:
    """Start ``count`` workers, release them together, wait (bounded) for all of them."""
    seed = SEED
    processes: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"worker-{index}.log" for index in range(count)]
    outs = [tmp_path / f"worker-{index}.json" for index in range(count)]
    try:
        for index in range(count):
            command = [
                sys.executable,
                str(WORKER),
                "concurrent",
                "--database-url",
                ledger.url,
                "--ledger-id",
                str(ledger.ledger_id),
                "--seed",
                str(seed),
                "--index",
                str(index),
                "--batches",
                str(BATCHES),
                "--out",
                str(outs[index]),
            ]
            with logs[index].open("wb") as stderr:
                processes.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        env=env,
                    )
                )
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        for index, process in enumerate(processes):
            line = _read_line(process, deadline)
            assert line == b"ready\n", f"worker {index} not ready: {logs[index].read_text()}"
        for process in processes:  # the barrier: every worker is connected and waiting
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            process.stdin.flush()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for index, process in enumerate(processes):
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {index} still running after {JOIN_TIMEOUT_S}s: hang?")
            assert process.returncode == 0, (
                f"worker {index} (seed {seed}) failed:\n{logs[index].read_text()}"
            )
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
    return [json.loads(out.read_text()) for out in outs]


@dataclass
class _Answers:
    """Every result of every worker, by transfer id."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: dict[str, list[str]] = field(default_factory=dict)
    limits: list[tuple[str, int, str]] = field(default_factory=list)

    @classmethod
    def of(cls, outputs: list[dict[str, Any]]) -> _Answers:
        answers = cls()
        for output in outputs:
            for event, result in output["events"]:
                known = answers.events.setdefault(event["id"], event)
                assert known == event, f"same id, different content: {known} {event}"
                answers.results.setdefault(event["id"], []).append(result)
            answers.limits.extend((a, v, r) for a, v, r in output["limits"])
        return answers

    def ok_ids(self) -> set[str]:
        return {id_ for id_, results in self.results.items() if _OK in results}


def _check_answers(answers: _Answers, workers_count: int) -> None:
    for transfer_id, results in answers.results.items():
        assert results.count(_OK) <= 1, (transfer_id, results)
        if transfer_id.startswith("shared-"):
            assert len(results) == workers_count, (transfer_id, results)
            originals = [r for r in results if r not in (_EXISTS, _ALREADY_FAILED)]
            assert len(originals) == 1, (transfer_id, results)
            original = originals[0]
            assert original == _OK or original in _TRANSIENT, (transfer_id, results)
            others = [_EXISTS if original == _OK else _ALREADY_FAILED] * (workers_count - 1)
            assert sorted(results) == sorted([original, *others]), (transfer_id, results)
        elif not transfer_id.startswith("race-"):
            assert len(results) == 1, (transfer_id, results)
    for hold in range(workers.RACE_HOLDS):
        outcomes = answers.results.get(f"race-post-{hold}", []) + answers.results.get(
            f"race-void-{hold}", []
        )
        assert len(outcomes) == workers_count, (hold, outcomes)
        assert outcomes.count(_OK) == 1, f"hold race-p{hold} resolved {outcomes.count(_OK)} times"


def _stored_transfers(connection: sa.Connection, ledger_id: int) -> dict[str, Any]:
    t = ledger_transfers
    debit = ledger_accounts.alias("debit")
    credit = ledger_accounts.alias("credit")
    rows = connection.execute(
        sa.select(
            t.c.id,
            debit.c.id.label("dr"),
            credit.c.id.label("cr"),
            t.c.amount,
            t.c.pending_id,
            t.c.flags,
            t.c.code,
        )
        .select_from(t.join(debit, debit.c.pk == t.c.debit_pk))
        .join(credit, credit.c.pk == t.c.credit_pk)
        .where(t.c.ledger_id == ledger_id)
    ).all()
    stored: dict[str, Any] = {}
    for row in rows:
        assert row.id not in stored, f"transfer {row.id!r} stored twice"
        stored[row.id] = row
    return stored


def _expected_balances(ok_events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Balances recomputed from the ok results alone (sums do not depend on commit order)."""
    by_id = {event["id"]: event for event in ok_events}
    balances: dict[str, list[int]] = {plan.id: [0, 0, 0, 0] for plan in workers.CONCURRENT_ACCOUNTS}
    for event in ok_events:
        flags = event["flags"] & ~TransferFlags.linked
        if flags in (TransferFlags.post_pending, TransferFlags.void_pending):
            hold = by_id[event["pending_id"]]
            debit, credit = balances[hold["dr"]], balances[hold["cr"]]
            debit[0] -= hold["amount"]
            credit[2] -= hold["amount"]
            if flags == TransferFlags.post_pending:
                amount = hold["amount"] if event["amount"] is None else event["amount"]
                debit[1] += amount
                credit[3] += amount
            continue
        debit, credit = balances[event["dr"]], balances[event["cr"]]
        side = 0 if flags == TransferFlags.pending else 1
        debit[side] += event["amount"]
        credit[side + 2] += event["amount"]
    return balances


def _check_ledger(ledger: _Ledger, answers: _Answers) -> None:
    setup = [workers.event_to_json(event) for event in _setup_events()]
    ok_events = setup + [answers.events[id_] for id_ in sorted(answers.ok_ids())]
    by_id = {event["id"]: event for event in ok_events}
    with ledger.engine.connect() as connection:
        stored = _stored_transfers(connection, ledger.ledger_id)
        accounts = connection.execute(
            sa.select(ledger_accounts).where(ledger_accounts.c.ledger_id == ledger.ledger_id)
        ).all()
    assert stored.keys() == by_id.keys(), (
        f"stored but not ok: {sorted(stored.keys() - by_id.keys())[:10]}, "
        f"ok but not stored: {sorted(by_id.keys() - stored.keys())[:10]}"
    )
    for transfer_id, row in stored.items():
        event = by_id[transfer_id]
        hold = by_id.get(event["pending_id"] or "")
        expected = (
            event["dr"] or (hold and hold["dr"]),
            event["cr"] or (hold and hold["cr"]),
            event["amount"] or (hold and hold["amount"]),
            event["pending_id"],
            event["flags"] & ~TransferFlags.linked,
            event["code"],
        )
        assert (row.dr, row.cr, row.amount, row.pending_id, row.flags, row.code) == expected
    expected_balances = _expected_balances(ok_events)
    limits = {plan.id: {plan.limit_minor} for plan in workers.CONCURRENT_ACCOUNTS}
    for account_id, value, result in answers.limits:
        if result == "ok":
            limits[account_id].add(value)
    totals: dict[str, list[int]] = {}
    for row in accounts:
        balances = [row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted]
        assert balances == expected_balances[row.id], f"account {row.id!r}"
        assert row.limit_minor in limits[row.id], f"account {row.id!r} limit {row.limit_minor}"
        if row.flags & AccountFlags.debits_must_not_exceed_credits:
            assert row.debits_pending + row.debits_posted <= row.credits_posted + row.limit_minor
        if row.flags & AccountFlags.credits_must_not_exceed_debits:
            assert row.credits_pending + row.credits_posted <= row.debits_posted + row.limit_minor
        total = totals.setdefault(row.currency, [0, 0, 0, 0])
        for index in range(4):
            total[index] += balances[index]
    assert len(totals) == 2
    for currency, (
        debits_pending,
        debits_posted,
        credits_pending,
        credits_posted,
    ) in totals.items():
        assert debits_posted == credits_posted, currency
        assert debits_pending == credits_pending, currency
    report = ledger.service.verify()
    assert report.transfers == len(stored)
    completed = subprocess.run(
        [str(FARTHING), "verify", "--database-url", ledger.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


def _check_not_vacuous(answers: _Answers) -> None:
    results = Counter(result for results in answers.results.values() for result in results)
    limits = Counter(result for _, _, result in answers.limits)
    print(f"\nresults {dict(results)}, limit changes {dict(limits)}")
    for expected in (_OK, _EXISTS, _ALREADY_FAILED, CreateTransferResult.exceeds_credits.value):
        assert results[expected] > 0, (expected, results)
    assert {result for _, _, result in answers.limits} >= {"ok"}, answers.limits


def _check_all(ledger: _Ledger, outputs: list[dict[str, Any]], workers_count: int) -> None:
    try:
        answers = _Answers.of(outputs)
        _check_answers(answers, workers_count)
        _check_ledger(ledger, answers)
        _check_not_vacuous(answers)
    except AssertionError as error:
        raise AssertionError(f"FARTHING_RACE_SEED={SEED}: {error}") from error


def _deadlocks(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).scalar_one()
        )


def _wait_for_backends_gone(engine: sa.Engine, application: str) -> None:
    """Backends flush their statistics before they leave pg_stat_activity."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            left = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                (application,),
            ).scalar_one()
        if left == 0:
            return
        time.sleep(0.05)  # polling a server-side condition, bounded by the deadline
    pytest.fail(f"worker backends ({application}) still connected after 30s")


@pytest.mark.timeout(240)
def test_concurrent_writers_postgresql(pg_ledger: _Ledger, tmp_path: Path) -> None:
    _setup(pg_ledger)
    deadlocks_before = _deadlocks(pg_ledger.engine)
    application = "farthing-race-" + secrets.token_hex(4)
    env = dict(os.environ, PGAPPNAME=application)
    outputs = _run_workers(pg_ledger, 4, tmp_path, env)
    _check_all(pg_ledger, outputs, 4)
    _wait_for_backends_gone(pg_ledger.engine, application)
    assert _deadlocks(pg_ledger.engine) == deadlocks_before, "PostgreSQL detected a deadlock"


@pytest.mark.timeout(240)
def test_concurrent_writers_sqlite(sqlite_ledger: _Ledger, tmp_path: Path) -> None:
    _setup(sqlite_ledger)
    outputs = _run_workers(sqlite_ledger, 3, tmp_path, dict(os.environ))
    _check_all(sqlite_ledger, outputs, 3)


def _wait_for_lock_wait(engine: sa.Engine) -> None:
    poll_until(lambda: waiting_on_a_lock(engine), deadline_s=30)


@pytest.mark.timeout(60)
def test_post_racing_with_the_commit_of_its_hold(pg_ledger: _Ledger) -> None:
    """Deterministic interleaving of two writers on PostgreSQL.

    1. another transaction holds the lock of account ``hot``;
    2. writer B commits [hot -> other, post of hold P (no accounts named)]: P does not exist yet,
       so B locks only hot and other, and waits for hot;
    3. writer A commits the pending transfer P between accounts B never named;
    4. the lock is released: B now finds P pending, but P's accounts are not in its slice.

    Correct behaviour: B's commit succeeds (the post answers ok, or pending_transfer_not_found
    if the writer decides from its first read) and the ledger verifies.
    """
    service, ledger_id = pg_ledger.service, pg_ledger.ledger_id
    accounts = tuple(
        AccountEvent(id=name, currency="USD") for name in ("hot", "other", "p-debit", "p-credit")
    )
    assert service.commit([CreateAccounts(ledger_id=ledger_id, events=accounts)]) == [
        [CreateAccountResult.ok] * 4
    ]
    holder = pg_ledger.engine.raw_connection()
    outcome: dict[str, Any] = {}

    def writer_b() -> None:
        try:
            outcome["results"] = service.commit(
                [
                    CreateTransfers(
                        ledger_id=ledger_id,
                        events=(
                            TransferEvent(
                                id="b-1",
                                debit_account_id="hot",
                                credit_account_id="other",
                                amount_minor=1,
                            ),
                            TransferEvent(
                                id="b-post", pending_id="P", flags=TransferFlags.post_pending
                            ),
                        ),
                    )
                ]
            )
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=writer_b)
    try:
        cursor = holder.cursor()
        cursor.execute("SELECT pk FROM ledger_accounts WHERE id = 'hot' FOR UPDATE")
        thread.start()
        _wait_for_lock_wait(pg_ledger.engine)
        hold = TransferEvent(
            id="P",
            debit_account_id="p-debit",
            credit_account_id="p-credit",
            amount_minor=5,
            flags=TransferFlags.pending,
        )
        assert service.commit([CreateTransfers(ledger_id=ledger_id, events=(hold,))]) == [
            [CreateTransferResult.ok]
        ]
    finally:
        holder.rollback()
        holder.close()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert "error" not in outcome, repr(outcome.get("error"))
    results = outcome["results"][0]
    assert results[0] == CreateTransferResult.ok
    assert results[1] in (CreateTransferResult.ok, CreateTransferResult.pending_transfer_not_found)
    service.verify()
