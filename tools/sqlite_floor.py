"""SQLite's own floor for batched transfers on this machine: raw SQL, no engine, no journal.

    .venv/bin/python tools/sqlite_floor.py [--batches 25]

Each batch is one transaction (WAL, synchronous=FULL, 64 MiB cache, as Farthing configures it)
that inserts 8189 narrow transfer rows and updates both accounts' balances, over 10,000
accounts. It runs three ways: the rows alone (the floor in ../shared/reference/README.md), with
the two per-account indexes (debit, credit) that an account's history once needed, and with the
history links and marks Farthing writes instead (``farthing/ledger_service/_history.py``).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from pathlib import Path

ACCOUNTS = 10_000
BATCH = 8189
MARK_EVERY = 64
_LAYOUTS = ("rows alone", "per-account indexes", "history links and marks")


def _run(path: Path, layout: str, batches: int) -> float:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA cache_size = -65536")
    connection.execute(
        "CREATE TABLE a (pk INTEGER PRIMARY KEY, balance INTEGER NOT NULL, last INTEGER, "
        "n INTEGER NOT NULL)"
    )
    connection.execute(
        "CREATE TABLE t (ts INTEGER PRIMARY KEY, dr INTEGER, cr INTEGER, amount INTEGER, "
        "dr_previous INTEGER, cr_previous INTEGER)"
    )
    connection.execute(
        "CREATE TABLE marks (pk INTEGER, ts INTEGER, PRIMARY KEY (pk, ts)) WITHOUT ROWID"
    )
    if layout == "per-account indexes":
        connection.execute("CREATE INDEX t_dr ON t (dr)")
        connection.execute("CREATE INDEX t_cr ON t (cr)")
    connection.executemany("INSERT INTO a VALUES (?, 0, NULL, 0)", [(i,) for i in range(ACCOUNTS)])
    pick = random.Random(3).randrange  # noqa: S311 - a workload, not a secret
    last: list[int | None] = [None] * ACCOUNTS
    count = [0] * ACCOUNTS
    spent_s = 0.0
    for batch in range(batches):
        rows, marks = [], []
        for index in range(BATCH):
            ts = batch * BATCH + index + 1
            debit, credit = pick(ACCOUNTS), pick(ACCOUNTS)
            links = last[debit], last[credit]
            for side in (debit, credit):
                last[side] = ts
                count[side] += 1
                if count[side] % MARK_EVERY == 0:
                    marks.append((side, ts))
            rows.append((ts, debit, credit, 1, *links))
        linked = layout == "history links and marks"
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        if linked:
            connection.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", rows)
            connection.executemany("INSERT INTO marks VALUES (?, ?)", marks)
        else:
            connection.executemany(
                "INSERT INTO t (ts, dr, cr, amount) VALUES (?, ?, ?, ?)", [r[:4] for r in rows]
            )
        connection.executemany(
            "UPDATE a SET balance = balance - ?, last = ?, n = n + 1 WHERE pk = ?",
            [(r[3], r[0], r[1]) for r in rows],
        )
        connection.executemany(
            "UPDATE a SET balance = balance + ?, last = ?, n = n + 1 WHERE pk = ?",
            [(r[3], r[0], r[2]) for r in rows],
        )
        connection.execute("COMMIT")
        spent_s += time.perf_counter() - started
    connection.close()
    return spent_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=25)
    options = parser.parse_args()
    for layout in _LAYOUTS:
        with tempfile.TemporaryDirectory() as directory:
            spent_s = _run(Path(directory) / "floor.db", layout, options.batches)
        transfers = options.batches * BATCH
        print(
            f"{layout:26} {transfers / spent_s:9,.0f} transfers/s "
            f"({spent_s / options.batches * 1000:.1f} ms per batch)"
        )


if __name__ == "__main__":
    main()
