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
from typing import Any, TextIO

import sqlalchemy as sa

from farthing.audit._operator import record_operator_action
from farthing.audit._store import (
    PRUNE_ACTION,
    PRUNE_THROUGH_PREFIX,
    AuditTamperedError,
    check_row,
)
from farthing.db.engine import begin_write
from farthing.db.schema import audit_head, audit_log, audit_pruned

__all__ = [
    "AUDIT_RETENTION_DAYS_MIN",
    "PRUNE_BATCH_SIZE_MAX",
    "PruneReport",
    "prune",
]

# PCI DSS 10.5.1: audit history is kept for at least twelve months.
AUDIT_RETENTION_DAYS_MIN = 365
PRUNE_BATCH_SIZE_MAX = 10_000
# Batches per run: a run prunes at most this many times PRUNE_BATCH_SIZE_MAX records.
PRUNE_BATCHES_MAX = 10_000


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
    rows = connection.execute(
        sa.select(audit_log)
        .where(audit_log.c.seq > seq)
        .order_by(audit_log.c.seq)
        .limit(batch_size)
    ).all()
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


def _write_archive(archive: TextIO, lines: list[dict[str, Any]]) -> None:
    """Durable before the deletion commits: a crash in between leaves the records in both
    places, and the next run archives them again (an archive may repeat records, never lack
    one)."""
    archive.writelines(json.dumps(line, sort_keys=True) + "\n" for line in lines)
    archive.flush()
    os.fsync(archive.fileno())
