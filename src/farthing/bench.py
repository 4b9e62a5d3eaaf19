"""`farthing bench ledger`: throughput and latency of the ledger core on a real database.

Workloads (durable commits, same settings as the server):
- uniform-batched / hot-batched: one client sending full batches of 8189 transfers, spread
  uniformly over the accounts, or with 10% of transfers touching one hot account (when both
  run, their batches alternate so that both meet the same ledger sizes);
- uniform-single / hot-single: 64 concurrent clients each sending one transfer per request
  through the group committer (micro-batcher);
- serial-single: the baseline, one commit per transfer, to show what group commit buys.
Events are generated before the clock starts; latency is per request (per batch when batched).
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from farthing.auth import Mode, create_tenant, ledger_id_for
from farthing.config import Settings
from farthing.db.engine import dialect_of, open_initialised
from farthing.ledger import (
    BATCH_EVENTS_MAX,
    AccountEvent,
    AccountFlags,
    CreateAccountResult,
    CreateTransferResult,
    TransferEvent,
)
from farthing.ledger_service import (
    CreateAccounts,
    CreateTransfers,
    GroupCommitter,
    LedgerService,
)

__all__ = ["WORKLOADS", "BenchResult", "run_ledger_bench"]

WORKLOADS = ("uniform-batched", "hot-batched", "uniform-single", "hot-single", "serial-single")
CLIENTS_SINGLE = 64
HOT_FRACTION_PERCENT = 10
SERIAL_TRANSFERS_MAX = 2_000
_ALLOWANCE_MINOR = 10**15


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchResult:
    workload: str
    database: str
    transfers: int
    transfers_per_s: int
    p50_ms: float
    p99_ms: float
    commits: int
    clients: int

    def line(self) -> str:
        return (
            f"{self.workload:<16} {self.database:<10} {self.transfers:>9} transfers "
            f"{self.transfers_per_s:>9} /s   p50 {self.p50_ms:8.2f} ms   p99 {self.p99_ms:8.2f} ms"
            f"   ({self.commits} commits, {self.clients} clients)"
        )


def _percentile_ms(latencies_s: list[float], percent: int) -> float:
    if len(latencies_s) == 1:
        return round(latencies_s[0] * 1000, 3)
    cuts = statistics.quantiles(latencies_s, n=100, method="inclusive")
    return round(cuts[percent - 1] * 1000, 3)


class _Generator:
    def __init__(self, prefix: str, accounts: int, *, hot: bool) -> None:
        self._prefix = prefix
        self._accounts = accounts
        self._hot = hot
        self._random = random.Random(20261121)
        self._next = 0

    def transfer(self) -> TransferEvent:
        pick = self._random.randrange
        debit = pick(self._accounts)
        credit = pick(self._accounts - 1)
        credit = credit + 1 if credit >= debit else credit
        if self._hot and pick(100) < HOT_FRACTION_PERCENT:
            if pick(2):
                debit, credit = 0, (credit if credit != 0 else 1)
            else:
                credit, debit = 0, (debit if debit != 0 else 1)
        self._next += 1
        return TransferEvent(
            id=f"{self._prefix}{self._next}",
            debit_account_id=f"a{debit}",
            credit_account_id=f"a{credit}",
            amount_minor=1 + pick(10_000),
            code=1,
        )


def _setup(service: LedgerService, accounts: int, journal_key: bytes) -> int:
    with service.engine.begin() as connection:
        tenant = create_tenant(connection, name="bench", journal_key=journal_key)
        ledger_id = ledger_id_for(connection, tenant, Mode.test)
    ids = [f"a{index}" for index in range(accounts)]
    for start in range(0, accounts, BATCH_EVENTS_MAX):
        events = tuple(
            AccountEvent(
                id=account_id,
                currency="USD",
                flags=AccountFlags.debits_must_not_exceed_credits,
                limit_minor=_ALLOWANCE_MINOR,
            )
            for account_id in ids[start : start + BATCH_EVENTS_MAX]
        )
        (results,) = service.commit([CreateAccounts(ledger_id=ledger_id, events=events)])
        assert isinstance(results, list)
        assert all(result == CreateAccountResult.ok for result in results)
    return ledger_id


def _batched(
    service: LedgerService, ledger_id: int, generators: dict[str, _Generator], count: int
) -> dict[str, tuple[float, list[float], int]]:
    """Full batches of each workload. Their batches alternate, so that every workload meets the
    same table sizes: a batch costs more as the ledger's indexes grow (on SQLite markedly)."""
    plans = {
        name: [
            tuple(generator.transfer() for _ in range(min(BATCH_EVENTS_MAX, count - start)))
            for start in range(0, count, BATCH_EVENTS_MAX)
        ]
        for name, generator in generators.items()
    }
    latencies: dict[str, list[float]] = {name: [] for name in plans}
    batch_count = -(-count // BATCH_EVENTS_MAX)
    for index in range(batch_count):
        for name, batches in plans.items():
            request = CreateTransfers(ledger_id=ledger_id, events=batches[index])
            begun = time.perf_counter()
            (results,) = service.commit([request])
            latencies[name].append(time.perf_counter() - begun)
            assert isinstance(results, list)
            assert all(result == CreateTransferResult.ok for result in results)
    # A workload's time is the time its own commits took.
    return {name: (sum(spent), spent, len(spent)) for name, spent in latencies.items()}


def _serial(
    service: LedgerService, ledger_id: int, generator: _Generator, count: int
) -> tuple[float, list[float], int]:
    events = [generator.transfer() for _ in range(count)]
    latencies: list[float] = []
    started = time.perf_counter()
    for event in events:
        begun = time.perf_counter()
        (results,) = service.commit([CreateTransfers(ledger_id=ledger_id, events=(event,))])
        latencies.append(time.perf_counter() - begun)
        assert results == [CreateTransferResult.ok]
    return time.perf_counter() - started, latencies, count


async def _concurrent(
    service: LedgerService, ledger_id: int, generator: _Generator, count: int
) -> tuple[float, list[float], int]:
    committer = GroupCommitter(service.writer)
    await committer.start()
    per_client = [
        [generator.transfer() for _ in range(count // CLIENTS_SINGLE)]
        for _ in range(CLIENTS_SINGLE)
    ]
    latencies: list[float] = []

    async def client(events: list[TransferEvent]) -> None:
        for event in events:
            begun = time.perf_counter()
            outcome = await committer.submit(CreateTransfers(ledger_id=ledger_id, events=(event,)))
            latencies.append(time.perf_counter() - begun)
            assert outcome == [CreateTransferResult.ok]

    started = time.perf_counter()
    await asyncio.gather(*(client(events) for events in per_client))
    elapsed = time.perf_counter() - started
    commits = committer.commits
    await committer.stop()
    return elapsed, latencies, commits


def run_ledger_bench(  # noqa: PLR0913
    settings: Settings,
    *,
    workloads: list[str],
    transfers: int,
    single_transfers: int,
    accounts: int,
    json_output: bool,
    emit: Callable[[str], None] = print,
) -> list[BenchResult]:
    """Run the chosen workloads; print a line (or a JSON object) per workload."""
    assert accounts >= 2
    assert transfers > 0
    assert single_transfers >= CLIENTS_SINGLE
    engine: sa.Engine = open_initialised(settings.database_url)
    service = LedgerService(engine, journal_key=settings.journal_key)
    database = dialect_of(engine).value
    run_prefix = secrets.token_hex(4)
    results: list[BenchResult] = []
    try:
        ledger_id = _setup(service, accounts, settings.journal_key)
        print(f"created {accounts} accounts in ledger {ledger_id}", file=sys.stderr)
        generators = {
            name: _Generator(f"{run_prefix}-{name}-", accounts, hot=name.startswith("hot"))
            for name in workloads
        }
        batched = _batched(
            service,
            ledger_id,
            {name: generators[name] for name in workloads if name.endswith("batched")},
            transfers,
        )
        for name in workloads:
            generator = generators[name]
            if name in batched:
                elapsed, latencies, commits = batched[name]
                count, clients = transfers, 1
            elif name == "serial-single":
                count = min(single_transfers, SERIAL_TRANSFERS_MAX)
                elapsed, latencies, commits = _serial(service, ledger_id, generator, count)
                clients = 1
            else:
                count = single_transfers // CLIENTS_SINGLE * CLIENTS_SINGLE
                elapsed, latencies, commits = asyncio.run(
                    _concurrent(service, ledger_id, generator, count)
                )
                clients = CLIENTS_SINGLE
            result = BenchResult(
                workload=name,
                database=database,
                transfers=count,
                transfers_per_s=int(count / elapsed),
                p50_ms=_percentile_ms(latencies, 50),
                p99_ms=_percentile_ms(latencies, 99),
                commits=commits,
                clients=clients,
            )
            results.append(result)
            emit(json.dumps(_as_dict(result)) if json_output else result.line())
    finally:
        engine.dispose()
    return results


def _as_dict(result: BenchResult) -> dict[str, object]:
    return {name: getattr(result, name) for name in BenchResult.__dataclass_fields__}
