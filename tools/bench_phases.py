"""Where a batched commit's time goes: `farthing bench ledger` with the write path's phases timed.

    FARTHING_JOURNAL_KEY=<hex> .venv/bin/python tools/bench_phases.py URL [WORKLOAD] [TRANSFERS]

Wraps the writer's steps with a clock (a developer's tool: it patches private methods) and runs
one batched workload as the benchmark does, then prints milliseconds per batch for each step.
Steps nest: `commit` holds `load`, `engine` and `write`; `sql ...` lines are the statements.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from farthing._runtime import tune_gc
from farthing.bench import run_ledger_bench
from farthing.config import Settings
from farthing.ledger_service import CreateTransfers, _sql, _writer
from farthing.ledger_service._requests import Outcome, WriteRequest

_SPENT_S: defaultdict[str, float] = defaultdict(float)
_COUNTING = [False]  # True while a commit of transfers runs (account set-up is left out).
_STEPS = (
    (_writer.LedgerWriter, "_commit_once", "commit"),
    (_writer.LedgerWriter, "_load", "load"),
    (_writer, "_apply", "engine"),
    (_writer.LedgerWriter, "_write", "write"),
    (_writer.LedgerWriter, "_write_transfers", "write transfers"),
    (_writer.LedgerWriter, "_write_balances", "write balances"),
    (_writer.LedgerWriter, "_write_marks", "write history marks"),
    (_writer, "link", "history links"),
    (_writer, "digest_records", "journal digest"),
)
_SQL = ("lock_accounts", "transfers_by_id", "failed_by_id", "insert_transfers", "update_balances")


def _timed(owner: Any, name: str, label: str) -> None:
    inner: Callable[..., Any] = getattr(owner, name)

    def clocked(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            if _COUNTING[0]:
                _SPENT_S[label] += time.perf_counter() - begun

    setattr(owner, name, clocked)


def _count_transfer_commits() -> None:
    inner = _writer.LedgerWriter.commit

    def commit(writer: _writer.LedgerWriter, requests: Sequence[WriteRequest]) -> list[Outcome]:
        _COUNTING[0] = all(isinstance(request, CreateTransfers) for request in requests)
        try:
            return inner(writer, requests)
        finally:
            _COUNTING[0] = False

    _writer.LedgerWriter.commit = commit  # type: ignore[method-assign,assignment]


def main() -> None:
    url = sys.argv[1]
    workload = sys.argv[2] if len(sys.argv) > 2 else "uniform-batched"
    transfers = int(sys.argv[3]) if len(sys.argv) > 3 else 200_000
    for owner, name, label in _STEPS:
        _timed(owner, name, label)
    ops = _sql.SqliteOps if url.startswith("sqlite") else _sql.PostgresOps
    for name in _SQL:
        _timed(ops, name, f"sql {name}")
    _count_transfer_commits()
    tune_gc()
    settings = Settings.from_env(database_url=url)
    (result,) = run_ledger_bench(
        settings,
        workloads=[workload],
        transfers=transfers,
        single_transfers=64,
        accounts=10_000,
        json_output=True,
    )
    for label, spent_s in sorted(_SPENT_S.items()):
        print(f"{label:24} {spent_s / result.commits * 1000:8.1f} ms per batch")


if __name__ == "__main__":
    main()
