"""Pruning audit records past their retention, optionally into an archive file.

Records are pruned oldest first, as a run from the start of the trail: a batch checks the MACs
of the records it takes (a tampered record is never quietly deleted), appends them to the
archive (fsynced before the deletion commits), moves ``audit_pruned`` to the last of them and
appends a prune record naming that seq and its MAC. ``verify`` starts from ``audit_pruned`` only
if the newest prune record names the same pair, so deleting records behind the trail's back is
still detected. An archive line is what ``farthing audit list`` prints plus ``mac``; the first
line of an archive chains on from the last line of the archive before it (or from the genesis).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from farthing.audit._operator import record_operator_action
from farthing.audit._store import (
    PRUNE_ACTION,
    PRUNE_THROUGH_PREFIX,
    AuditTamperedError,
    check_row,
    check_start,
    prune_claim,
    records_after,
)
from farthing.db.engine import begin_write
from farthing.db.schema import audit_head, audit_log, audit_pruned

__all__ = [
    "AUDIT_RETENTION_DAYS_MIN",
    "PRUNE_BATCH_SIZE_MAX",
    "PruneReport",
    "open_archive",
    "prune",
]

# PCI DSS 10.5.1: audit history is kept for at least twelve months.
AUDIT_RETENTION_DAYS_MIN = 365
PRUNE_BATCH_SIZE_MAX = 10_000
# Batches per run: a run prunes at most this many times PRUNE_BATCH_SIZE_MAX records.
PRUNE_BATCHES_MAX = 10_000
# An archive line is one record (a few hundred bytes); a file whose last this many bytes hold no
# line end is not an archive.
ARCHIVE_LINE_BYTES_MAX = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    pruned: int
    # The trail now starts after this record (0: nothing was ever pruned).
    through_seq: int
    batches: int


def prune(
    engine: sa.Engine,
    key: bytes,
    *,
    before_ns: int,
    archive: TextIO | None = None,
    batch_size: int = 1_000,
) -> PruneReport:
    """Prune the run of records from the start of the trail that occurred before ``before_ns``,
    in transactions of ``batch_size`` records, each followed by its prune record."""
    assert 0 < batch_size <= PRUNE_BATCH_SIZE_MAX
    pruned = batches = 0
    through = 0
    for _ in range(PRUNE_BATCHES_MAX):
        with begin_write(engine) as connection:
            count, through = _prune_batch(
                connection, key, before_ns=before_ns, archive=archive, batch_size=batch_size
            )
        if count == 0:
            break
        pruned += count
        batches += 1
    return PruneReport(pruned=pruned, through_seq=through, batches=batches)


def _prune_batch(
    connection: sa.Connection,
    key: bytes,
    *,
    before_ns: int,
    archive: TextIO | None,
    batch_size: int,
) -> tuple[int, int]:
    """(records pruned, the seq the trail now starts after)."""
    head = sa.select(audit_head.c.seq).where(audit_head.c.id == 1)
    if connection.dialect.name == "postgresql":
        head = head.with_for_update()  # Appenders wait: the run below is the trail's start.
    connection.execute(head).one()
    start = connection.execute(sa.select(audit_pruned).where(audit_pruned.c.id == 1)).one()
    seq, mac = int(start.through_seq), str(start.mac)
    _check_start(connection, key, seq, mac)
    rows = records_after(connection, seq, batch_size)
    due: list[dict[str, Any]] = []
    for row in rows:
        if row.occurred_at_ns >= before_ns:
            break
        stored = check_row(row, seq=seq + 1, key=key, previous_mac=mac)
        seq, mac = stored.seq, stored.mac
        due.append(stored.as_dict() | {"mac": mac})
    if not due:
        return 0, int(start.through_seq)
    if archive is not None:
        _write_archive(archive, due)
    connection.execute(audit_pruned.update().values(through_seq=seq, mac=mac))
    deleted = connection.execute(
        audit_log.delete().where(audit_log.c.seq > start.through_seq, audit_log.c.seq <= seq)
    )
    if deleted.rowcount != len(due):
        msg = f"audit records {start.through_seq + 1} to {seq} changed while being pruned"
        raise AuditTamperedError(msg)
    record_operator_action(
        connection, key, action=PRUNE_ACTION, object_ids=(PRUNE_THROUGH_PREFIX + str(seq), mac)
    )
    return len(due), seq


def _check_start(connection: sa.Connection, key: bytes, through: int, mac: str) -> None:
    """The trail starts where its newest prune record says, as verify requires: else someone
    deleted records and moved the start along, and pruning on from there would archive a trail
    with a hole in it that verifies."""
    row = connection.execute(
        sa.select(audit_log)
        .where(audit_log.c.action == PRUNE_ACTION, audit_log.c.object_ids.is_not(None))
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).one_or_none()
    claim = None
    if row is not None:
        previous = mac if row.seq - 1 == through else _mac_of(connection, row.seq - 1)
        claim = prune_claim(check_row(row, seq=row.seq, key=key, previous_mac=previous).record)
    check_start(through, mac, claim)


def _mac_of(connection: sa.Connection, seq: int) -> str:
    mac = connection.execute(sa.select(audit_log.c.mac).where(audit_log.c.seq == seq)).scalar()
    if mac is None:
        msg = f"audit record {seq} is missing"
        raise AuditTamperedError(msg)
    return str(mac)


def open_archive(path: Path) -> TextIO:
    """The archive, for appending, readable by its owner only. A line left half-written by a
    crash is cut off first (its record is still in the database: it is archived again)."""
    created = not path.exists()
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(descriptor, 0o600)
        _cut_partial_line(descriptor, path)
    except BaseException:
        os.close(descriptor)
        raise
    if created:
        _fsync_directory(path.parent)
    return os.fdopen(descriptor, "a", encoding="utf-8")


def _cut_partial_line(descriptor: int, path: Path) -> None:
    size = os.lseek(descriptor, 0, os.SEEK_END)
    tail_start = max(0, size - ARCHIVE_LINE_BYTES_MAX)
    os.lseek(descriptor, tail_start, os.SEEK_SET)
    tail = os.read(descriptor, size - tail_start)
    end = tail.rfind(b"\n") + 1
    if end == 0 and tail_start > 0:
        msg = f"{path} does not end in archive lines"
        raise AuditTamperedError(msg)
    if tail_start + end != size:
        os.ftruncate(descriptor, tail_start + end)
        os.fsync(descriptor)
    os.lseek(descriptor, 0, os.SEEK_END)


def _fsync_directory(directory: Path) -> None:
    """A new file's name is durable once its directory is."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_archive(archive: TextIO, lines: list[dict[str, Any]]) -> None:
    """Durable before the deletion commits: a crash in between leaves the records in both
    places, and the next run archives them again (an archive may repeat records, never lack
    one)."""
    archive.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    archive.flush()
    os.fsync(archive.fileno())
