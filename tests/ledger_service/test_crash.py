"""Crash safety: a writer process is SIGKILLed at random moments, many times, on both databases.

The writer (``workers.py crash``) appends an intent line before each ``LedgerService.commit``
and an fsynced ack line after it returned, then signals progress with one byte on stdout. The
parent waits for real progress (a random number of acknowledged commits), adds a random delay
so that the kill lands between commits or inside one, and kills. After every kill:

- every acknowledged ``ok`` transfer is there, with the acknowledged fields (``get_transfers``);
- no transfer acknowledged as rejected exists, and retries of acknowledged events answered as
  idempotency demands, also across crashes (``exists`` / ``id_already_failed``);
- every stored transfer was either acknowledged or part of the one commit a kill interrupted
  (the only commit whose outcome the client cannot know), or is a hold expiry of a known hold;
- debits equal credits per currency, no limited account is over its limit;
- ``farthing verify`` (the CLI, as a subprocess) exits 0.

Rounds per database: FARTHING_CRASH_ROUNDS (5 by default; ``make crash`` runs 200). The seed is
random unless FARTHING_CRASH_SEED is set, and every failure message names it.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from farthing.db.schema import ledger_accounts, ledger_transfers
from farthing.ledger import (
    EXPIRY_ID_PREFIX,
    PAGE_SIZE_MAX,
    TRANSIENT_TRANSFER_RESULTS,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    TransferFlags,
)
from farthing.ledger_service import (
    CommittedTransfer,
    CreateAccounts,
    CreateTransfers,
    LedgerService,
)
from tests.ledger_service import workers

ROUNDS = int(os.environ.get("FARTHING_CRASH_ROUNDS", "5"))
SEED = int(os.environ.get("FARTHING_CRASH_SEED", str(random.SystemRandom().randrange(2**32))))
WORKER = Path(workers.__file__)
FARTHING = Path(sys.executable).with_name("farthing")
PROGRESS_TIMEOUT_S = 60.0
WAIT_TIMEOUT_S = 30.0
VERIFY_TIMEOUT_S = 120.0
_OK = CreateTransferResult.ok.value
_TRANSIENT = frozenset(result.value for result in TRANSIENT_TRANSFER_RESULTS)


@dataclass
class _Acks:
    """Everything the killed writers acknowledged so far, read incrementally."""

    offset: int = 0
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # first event per id
    results: dict[str, list[str]] = field(default_factory=dict)  # every result per id, in order
    open_intents: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    commits: int = 0
    limit_results: Counter[str] = field(default_factory=Counter)

    def read(self, path: Path) -> None:
        with path.open("rb") as file:
            file.seek(self.offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        for line in workers.read_lines_from(complete.decode()):
            key = (line["round"], line["commit"])
            if line["kind"] == "intent":
                self.open_intents[key] = line["ids"]
                continue
            del self.open_intents[key]
            self.commits += 1
            for part in line["transfers"]:
                for event, result, _linked in part:
                    self.events.setdefault(event["id"], event)
                    self.results.setdefault(event["id"], []).append(result)
            self.limit_results.update(result for _, _, result in line["limits"])
        self.offset += len(complete)

    def ok_ids(self) -> set[str]:
        return {id_ for id_, results in self.results.items() if results[0] == _OK}

    def rejected_ids(self) -> set[str]:
        return {id_ for id_, results in self.results.items() if results[0] != _OK}


def _setup(service: LedgerService, ledger_id: int) -> None:
    outcomes = service.commit(
        [
            CreateAccounts(
                ledger_id=ledger_id, events=workers.account_events(workers.CRASH_ACCOUNTS)
            ),
            CreateTransfers(
                ledger_id=ledger_id, events=workers.funding_events(workers.CRASH_ACCOUNTS)
            ),
        ]
    )
    assert outcomes[0] == [CreateAccountResult.ok] * len(workers.CRASH_ACCOUNTS)
    assert isinstance(outcomes[1], list)
    assert set(outcomes[1]) == {CreateTransferResult.ok}


def _kill_after_progress(
    command: list[str], *, commits: int, delay_s: float, log: Path, context: str
) -> None:
    """Start the writer, wait for ``commits`` acknowledged commits, wait ``delay_s``, SIGKILL."""
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    assert process.stdout is not None
    try:
        descriptor = process.stdout.fileno()
        seen = 0
        deadline = time.monotonic() + PROGRESS_TIMEOUT_S
        while seen < commits:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"{context}: no progress after {PROGRESS_TIMEOUT_S}s ({seen} acks)")
            ready, _, _ = select.select([descriptor], [], [], remaining)
            if ready:
                chunk = os.read(descriptor, 4096)
                if not chunk:
                    process.wait(timeout=WAIT_TIMEOUT_S)
                    pytest.fail(
                        f"{context}: writer exited ({process.returncode}) before it was killed:\n"
                        + log.read_text()
                    )
                seen += len(chunk)
        # Not a synchronisation: a random extra moment, so the kill lands anywhere in a commit.
        time.sleep(delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=WAIT_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT_TIMEOUT_S)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL, f"{context}: {log.read_text()}"


def _chunks(ids: Iterable[str]) -> Iterable[list[str]]:
    ordered = sorted(ids)
    for start in range(0, len(ordered), PAGE_SIZE_MAX):
        yield ordered[start : start + PAGE_SIZE_MAX]


def _get_transfers(
    service: LedgerService, ledger_id: int, ids: Iterable[str]
) -> dict[str, CommittedTransfer]:
    found: dict[str, CommittedTransfer] = {}
    for chunk in _chunks(ids):
        found.update(service.get_transfers(ledger_id, chunk))
    return found


def _check_retries(acks: _Acks, context: str) -> None:
    """A retry never changes an outcome: ok -> exists, transient -> id_already_failed."""
    for transfer_id, results in acks.results.items():
        first, retries = results[0], results[1:]
        for retry in retries:
            if first == _OK:
                assert retry == CreateTransferResult.exists.value, (context, transfer_id, results)
            elif first in _TRANSIENT:
                assert retry == CreateTransferResult.id_already_failed.value, (
                    context,
                    transfer_id,
                    results,
                )
            else:
                assert retry not in (_OK, CreateTransferResult.exists.value), (
                    context,
                    transfer_id,
                    results,
                )


def _check_acknowledged(service: LedgerService, ledger_id: int, acks: _Acks, context: str) -> None:
    ok_ids = acks.ok_ids()
    holds = {
        event["pending_id"]
        for id_ in ok_ids
        if (event := acks.events[id_])["pending_id"] is not None
    }
    stored = _get_transfers(service, ledger_id, ok_ids | holds)
    missing = sorted(ok_ids - stored.keys())
    assert not missing, f"{context}: acknowledged transfers lost: {missing[:10]}"
    for transfer_id in ok_ids:
        event = acks.events[transfer_id]
        transfer = stored[transfer_id]
        hold = stored.get(event["pending_id"]) if event["pending_id"] is not None else None
        debit = event["dr"] if event["dr"] is not None else hold and hold.debit_account_id
        credit = event["cr"] if event["cr"] is not None else hold and hold.credit_account_id
        amount = event["amount"] if event["amount"] is not None else hold and hold.amount_minor
        expected = (
            debit,
            credit,
            amount,
            event["pending_id"],
            event["timeout_s"],
            event["code"],
            event["flags"] & ~TransferFlags.linked,
        )
        actual = (
            transfer.debit_account_id,
            transfer.credit_account_id,
            transfer.amount_minor,
            transfer.pending_id,
            transfer.timeout_s,
            transfer.code,
            int(transfer.flags),
        )
        assert actual == expected, f"{context}: transfer {transfer_id!r} differs from its ack"


def _check_nothing_unrequested(
    connection: sa.Connection, ledger_id: int, acks: _Acks, context: str
) -> None:
    t = ledger_transfers
    rows = connection.execute(
        sa.select(t.c.id, t.c.flags, t.c.pending_id, t.c.timeout_s).where(
            t.c.ledger_id == ledger_id, ~t.c.id.like("fund-%")
        )
    ).all()
    stored = {row.id: row for row in rows}
    rejected = sorted(acks.rejected_ids() & stored.keys())
    assert not rejected, f"{context}: transfers acknowledged as rejected exist: {rejected[:10]}"
    interrupted: set[str] = set()
    for ids in acks.open_intents.values():
        interrupted.update(ids)
    rounds = Counter(round_ for round_, _ in acks.open_intents)
    assert all(count == 1 for count in rounds.values()), f"{context}: {rounds}"
    for transfer_id, row in stored.items():
        if transfer_id.startswith(EXPIRY_ID_PREFIX):
            hold = stored.get(row.pending_id)
            assert row.flags == TransferFlags.expire_pending, (context, transfer_id)
            assert hold is not None, (context, transfer_id)
            assert hold.flags == TransferFlags.pending, (context, transfer_id)
            assert hold.timeout_s > 0, (context, transfer_id)
            continue
        assert transfer_id in acks.results or transfer_id in interrupted, (
            f"{context}: transfer {transfer_id!r} was never requested by an unfinished commit"
        )


def _check_balances(connection: sa.Connection, ledger_id: int, context: str) -> None:
    a = ledger_accounts
    rows = connection.execute(sa.select(a).where(a.c.ledger_id == ledger_id)).all()
    assert len(rows) == len(workers.CRASH_ACCOUNTS)
    totals: dict[str, list[int]] = {}
    for row in rows:
        total = totals.setdefault(row.currency, [0, 0, 0, 0])
        for index, value in enumerate(
            (row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted)
        ):
            assert value >= 0, (context, row.id)
            total[index] += value
        if row.flags & AccountFlags.debits_must_not_exceed_credits:
            assert row.debits_pending + row.debits_posted <= row.credits_posted + row.limit_minor
        if row.flags & AccountFlags.credits_must_not_exceed_debits:
            assert row.credits_pending + row.credits_posted <= row.debits_posted + row.limit_minor
    for currency, (
        debits_pending,
        debits_posted,
        credits_pending,
        credits_posted,
    ) in totals.items():
        assert debits_posted == credits_posted, f"{context}: {currency} posted not conserved"
        assert debits_pending == credits_pending, f"{context}: {currency} pending not conserved"


def _verify_cli(database_url: str, context: str) -> None:
    completed = subprocess.run(
        [str(FARTHING), "verify", "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT_S,
        check=False,
        env=dict(os.environ),  # FARTHING_JOURNAL_KEY is set by the autouse fixture
    )
    assert completed.returncode == 0, f"{context}: farthing verify failed:\n{completed.stderr}"
    assert completed.stderr.startswith("ok: "), completed.stderr


@pytest.mark.timeout(120 + 10 * ROUNDS)
def test_acknowledged_commits_survive_sigkill(
    database_url: str, service: LedgerService, ledger_id: int, tmp_path: Path
) -> None:
    _setup(service, ledger_id)
    rng = random.Random(SEED)
    ack = tmp_path / "ack.jsonl"
    ack.touch()
    acks = _Acks()
    kind = database_url.partition(":")[0]
    for round_ in range(ROUNDS):
        context = f"{kind} round {round_} (FARTHING_CRASH_SEED={SEED})"
        command = [
            sys.executable,
            str(WORKER),
            "crash",
            "--database-url",
            database_url,
            "--ledger-id",
            str(ledger_id),
            "--ack",
            str(ack),
            "--round",
            str(round_),
            "--seed",
            str(SEED),
        ]
        _kill_after_progress(
            command,
            commits=rng.randint(1, 12),
            delay_s=rng.choice((0.0, rng.uniform(0.0, 0.03))),
            log=tmp_path / f"worker-{round_}.log",
            context=context,
        )
        acks.read(ack)
        _check_retries(acks, context)
        _check_acknowledged(service, ledger_id, acks, context)
        with service.engine.connect() as connection:
            _check_nothing_unrequested(connection, ledger_id, acks, context)
            _check_balances(connection, ledger_id, context)
        _verify_cli(database_url, context)
    # The campaign was not vacuous: commits were acknowledged and limits refused transfers.
    results = Counter(result for results in acks.results.values() for result in results)
    print(
        f"\n{kind}: {ROUNDS} kills, {acks.commits} acknowledged commits, "
        f"{len(acks.open_intents)} kills with a commit in flight, results {dict(results)}, "
        f"limit changes {dict(acks.limit_results)}"
    )
    assert acks.commits >= ROUNDS, acks.commits
    if sum(results.values()) >= 300:
        assert results[_OK] > 0, results
        assert results[CreateTransferResult.exceeds_credits.value] > 0, results
        assert results[CreateTransferResult.linked_event_failed.value] > 0, results
