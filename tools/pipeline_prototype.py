"""Prototype of a pipelined SQLite write path: how fast could batches go with the engine and the
storage in two processes? A measurement for the design in docs/ledger.md, not product code.

    .venv/bin/python tools/pipeline_prototype.py [--batches 25] [--in-flight 2] [--checkpointer]

This process runs the real engine (``create_transfers``) over 10,000 in-memory accounts, looks
the batch's ids up in the database (as the writer's load does), builds the transfer rows and their
journal records, and sends the rows to a storage process, which inserts them, updates balances,
appends a journal row and commits (WAL, synchronous=FULL) before it acknowledges. With
``--in-flight 2`` the engine computes batch N+1 while batch N is written. What it leaves out: the
MAC chain, holds, failures, account creation, and any recovery when the storage refuses a batch.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import random
import sqlite3
import tempfile
import threading
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from farthing._runtime import tune_gc
from farthing.db.engine import create_engine
from farthing.db.migrate import upgrade
from farthing.ledger import (
    BATCH_EVENTS_MAX,
    LedgerSlice,
    LiveAccount,
    TransferEvent,
    create_transfers,
    digest_records,
)
from farthing.ledger_service._history import Chain, link
from farthing.ledger_service._records import transfer_record
from farthing.ledger_service._sql import INSERT_TRANSFER_COLUMNS
from farthing.ledger_service._writer import transfer_row

ACCOUNTS = 10_000
LEDGER_ID = 1
_ALLOWANCE_MINOR = 10**15
_INSERT = "INSERT INTO ledger_transfers ({}) VALUES ({})".format(  # noqa: S608 - constants
    ", ".join(INSERT_TRANSFER_COLUMNS), ", ".join("?" * len(INSERT_TRANSFER_COLUMNS))
)
_UPDATE = (
    "UPDATE ledger_accounts SET debits_pending = ?, debits_posted = ?, credits_pending = ?, "
    "credits_posted = ?, limit_minor = ?, last_transfer_ts = ?, transfers_count = ? WHERE pk = ?"
)
_JOURNAL = (
    "INSERT INTO ledger_journal (seq, ts, accounts_count, limit_changes_count, transfers_count, "
    "failed_count, digest, mac) VALUES (?, ?, 0, 0, ?, 0, ?, ?)"
)
CHECKPOINT_EVERY_S = 0.05


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("PRAGMA cache_size = -65536")
    return connection


def _checkpoints(path: Path, stop: threading.Event) -> None:
    connection = _connect(path)
    while not stop.wait(CHECKPOINT_EVERY_S):
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _storage(path: Path, pipe: Connection, *, checkpointer: bool) -> None:
    """Apply each batch in one transaction; acknowledge only after the commit."""
    tune_gc()
    connection = _connect(path)
    stop = threading.Event()
    if checkpointer:  # Checkpoints off the commit path, on a connection of their own.
        connection.execute("PRAGMA wal_autocheckpoint = 0")
        threading.Thread(target=_checkpoints, args=(path, stop), daemon=True).start()
    while data := pipe.recv_bytes():
        rows, balances, marks, seq, digest = pickle.loads(data)  # noqa: S301 - our own process
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(_INSERT, rows)
        connection.executemany(_UPDATE, balances)
        connection.executemany(
            "INSERT INTO ledger_history_marks (account_pk, ts) VALUES (?, ?)", marks
        )
        connection.execute(_JOURNAL, (seq, rows[-1][0], len(rows), digest, "-"))
        connection.execute("COMMIT")
        pipe.send_bytes(b"committed")
    stop.set()


def _batches(count: int) -> list[tuple[TransferEvent, ...]]:
    pick = random.Random(20261121).randrange  # noqa: S311 - a workload, not a secret
    batches = []
    for batch in range(count):
        events = []
        for index in range(BATCH_EVENTS_MAX):
            debit = pick(ACCOUNTS)
            credit = pick(ACCOUNTS - 1)
            credit = credit + 1 if credit >= debit else credit
            events.append(
                TransferEvent(
                    id=f"proto-{batch}-{index}",
                    debit_account_id=f"a{debit}",
                    credit_account_id=f"a{credit}",
                    amount_minor=1 + pick(10_000),
                    code=1,
                )
            )
        batches.append(tuple(events))
    return batches


def _prepare(path: Path) -> None:
    engine = create_engine(f"sqlite:///{path}")  # Farthing's settings, page size included.
    upgrade(engine)
    engine.dispose()
    connection = _connect(path)
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO ledger_accounts (pk, ledger_id, id, currency, code, flags, limit_minor, "
        "limit_initial_minor, metadata, debits_pending, debits_posted, credits_pending, "
        "credits_posted, created_ns, journal_seq) "
        "VALUES (?, ?, ?, 'USD', 0, 2, ?, ?, NULL, 0, 0, 0, 0, 1, 1)",
        [(i + 1, LEDGER_ID, f"a{i}", _ALLOWANCE_MINOR, _ALLOWANCE_MINOR) for i in range(ACCOUNTS)],
    )
    connection.execute("COMMIT")
    connection.close()


def _engine_stage(
    reader: sqlite3.Connection,
    ledger: LedgerSlice,
    chains: dict[str, Chain],
    events: tuple[TransferEvent, ...],
    seq: int,
) -> bytes:
    ids = json.dumps([event.id for event in events])
    reader.execute(
        "SELECT ts FROM ledger_transfers WHERE ledger_id = ? "
        "AND id IN (SELECT value FROM json_each(?))",
        (LEDGER_ID, ids),
    ).fetchall()
    ledger.new_transfers.clear()
    ledger.touched.clear()
    create_transfers(ledger, events)
    ts = time.time_ns()
    timestamps = [ts + offset for offset in range(len(ledger.new_transfers))]
    links, marks = link(ledger.new_transfers, timestamps, chains)
    rows: list[tuple[Any, ...]] = []
    for offset, transfer in enumerate(ledger.new_transfers):
        debit_pk = int(transfer.debit_account_id[1:]) + 1
        credit_pk = int(transfer.credit_account_id[1:]) + 1
        rows.append(
            transfer_row(
                transfer, ts=ts + offset, ledger_id=LEDGER_ID, debit_pk=debit_pk,
                credit_pk=credit_pk, seq=seq, links=links[offset],
            )
        )  # fmt: skip
    digest = digest_records(transfer_record(row) for row in rows)
    balances = [
        (
            *ledger.accounts[account_id].snapshot(),
            chains[account_id].last_ts,
            chains[account_id].count,
            int(account_id[1:]) + 1,
        )
        for account_id in ledger.touched
    ]
    marked = [(int(account_id[1:]) + 1, mark_ts) for account_id, mark_ts in marks]
    return pickle.dumps((rows, balances, marked, seq, digest), protocol=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--checkpointer", action="store_true")
    options = parser.parse_args()
    tune_gc()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "prototype.db"
        _prepare(path)
        ledger = LedgerSlice(now_ns=time.time_ns())
        chains = {f"a{index}": Chain(None, 0) for index in range(ACCOUNTS)}
        for index in range(ACCOUNTS):
            ledger.accounts[f"a{index}"] = LiveAccount(
                id=f"a{index}", currency="USD", code=0, flags=2,
                limit_minor=_ALLOWANCE_MINOR, limit_initial_minor=_ALLOWANCE_MINOR, metadata=(),
            )  # fmt: skip
        batches = _batches(options.batches)
        gc.collect()
        ours, theirs = Pipe()
        storage = Process(
            target=_storage, args=(path, theirs), kwargs={"checkpointer": options.checkpointer}
        )
        storage.start()
        reader = _connect(path)
        in_flight = 0
        started = time.perf_counter()
        for seq, events in enumerate(batches, start=2):
            ours.send_bytes(_engine_stage(reader, ledger, chains, events, seq))
            in_flight += 1
            if in_flight == options.in_flight:
                assert ours.recv_bytes() == b"committed"
                in_flight -= 1
        for _ in range(in_flight):
            assert ours.recv_bytes() == b"committed"
        elapsed_s = time.perf_counter() - started
        ours.send_bytes(b"")
        storage.join()
        reader.close()
    transfers = options.batches * BATCH_EVENTS_MAX
    print(
        f"{transfers} transfers in {options.batches} batches, {options.in_flight} in flight: "
        f"{transfers / elapsed_s:,.0f} transfers/s ({elapsed_s / options.batches * 1000:.1f} ms "
        "per batch)"
    )


if __name__ == "__main__":
    main()
