"""Retention: delete what the API no longer shows, so the database does not grow forever.

- Events older than ``EVENT_RETENTION_S`` (30 days; the API stopped listing them at that age)
  with their webhook deliveries and attempts. An event is kept while any of its deliveries is
  still pending, and while an event stream (NATS) has not published it yet: pruning never takes
  away something a worker still owes somebody. The newest event always stays, so that a seq is
  never handed out twice (SQLite reuses the highest rowid once it is deleted).
- Idempotency keys older than ``IDEMPOTENCY_TTL_NS`` (24 hours; a retry after that is new
  anyway).

Each batch is one short transaction of at most ``batch_size`` events (with their deliveries, at
most one per webhook endpoint, and those deliveries' attempts) or ``batch_size`` idempotency
keys, so a large backlog never holds locks for long. Ledger rows, the ledger journal and the
audit trail are never pruned: they are the record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_event_stream_cursors as cursors
from farthing.db.schema import stripe_events as events
from farthing.db.schema import stripe_idempotency_keys as keys
from farthing.db.schema import stripe_webhook_attempts as attempts
from farthing.db.schema import stripe_webhook_deliveries as deliveries
from farthing.stripe_api._idempotency import IDEMPOTENCY_TTL_NS
from farthing.stripe_api.events import EVENT_RETENTION_S

__all__ = ["PRUNE_BATCH_SIZE_MAX", "PruneReport", "prune"]

PRUNE_BATCH_SIZE_MAX = 10_000
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    """How many rows of each kind were deleted."""

    events: int = 0
    deliveries: int = 0
    attempts: int = 0
    idempotency_keys: int = 0

    def __add__(self, other: PruneReport) -> PruneReport:
        return PruneReport(
            events=self.events + other.events,
            deliveries=self.deliveries + other.deliveries,
            attempts=self.attempts + other.attempts,
            idempotency_keys=self.idempotency_keys + other.idempotency_keys,
        )


def prune(engine: sa.Engine, *, batch_size: int = 1_000, now_ns: int | None = None) -> PruneReport:
    """Delete expired events (with their deliveries and attempts) and idempotency keys."""
    assert 0 < batch_size <= PRUNE_BATCH_SIZE_MAX
    now_ns = time.time_ns() if now_ns is None else now_ns
    total = PruneReport()
    while True:
        with begin_write(engine) as connection:
            report = _prune_events(connection, now_ns // _NS_PER_S, batch_size)
        total += report
        if report.events < batch_size:
            break
    while True:
        with begin_write(engine) as connection:
            deleted = _prune_idempotency_keys(connection, now_ns, batch_size)
        total += PruneReport(idempotency_keys=deleted)
        if deleted < batch_size:
            break
    return total


def _pending_delivery(event_id: sa.ColumnElement[str]) -> sa.Exists:
    # `status || ''` keeps the status index out of this look-up: without statistics SQLite chose
    # it over the (event_id, endpoint_id) key and read every pending delivery for each event
    # (5,000 old events, 100,000 pending deliveries: 1.4 s per batch).
    return sa.exists().where(
        deliveries.c.event_id == event_id, deliveries.c.status.concat("") == "pending"
    )


def _prune_events(connection: sa.Connection, now_s: int, limit: int) -> PruneReport:
    conditions = [
        events.c.created < now_s - EVENT_RETENTION_S,
        ~_pending_delivery(events.c.id),
        # Never the newest: SQLite would give its seq to the next event, behind stream cursors.
        events.c.seq < sa.select(sa.func.max(events.c.seq)).scalar_subquery(),
    ]
    # The slowest stream's cursor: events after it are not published everywhere yet.
    published = connection.execute(sa.select(sa.func.min(cursors.c.seq))).scalar_one_or_none()
    if published is not None:
        conditions.append(events.c.seq <= published)
    # Oldest first by the created index, which ends the scan at the cutoff: in seq order, the
    # last batch of a run read every newer event to find that none was left (SQLite's plan).
    candidates = connection.execute(
        sa.select(events.c.seq)
        .where(*conditions)
        .order_by(events.c.created, events.c.seq)
        .limit(limit)
    ).scalars()
    seqs = list(candidates)
    if not seqs:
        return PruneReport()
    # Lock the events first (a resend locks its event too), then look again in a new statement:
    # a resend that committed before the lock made a delivery pending, and that event stays.
    connection.execute(
        sa.select(events.c.seq).where(events.c.seq.in_(seqs)).with_for_update()
    ).all()
    chosen = connection.execute(
        sa.select(events.c.seq, events.c.id).where(
            events.c.seq.in_(seqs), ~_pending_delivery(events.c.id)
        )
    ).all()
    ids = [row.id for row in chosen]
    delivery_seqs = sa.select(deliveries.c.seq).where(deliveries.c.event_id.in_(ids))
    removed_attempts = connection.execute(
        attempts.delete().where(attempts.c.delivery_seq.in_(delivery_seqs))
    ).rowcount
    removed_deliveries = connection.execute(
        deliveries.delete().where(deliveries.c.event_id.in_(ids))
    ).rowcount
    removed_events = connection.execute(
        events.delete().where(events.c.seq.in_([row.seq for row in chosen]))
    ).rowcount
    assert removed_events == len(chosen)
    return PruneReport(
        events=removed_events, deliveries=removed_deliveries, attempts=removed_attempts
    )


def _prune_idempotency_keys(connection: sa.Connection, now_ns: int, limit: int) -> int:
    expired = connection.execute(
        sa.select(keys.c.tenant_id, keys.c.mode, keys.c.key)
        .where(keys.c.created_at_ns < now_ns - IDEMPOTENCY_TTL_NS)
        .order_by(keys.c.created_at_ns)
        .limit(limit)
    ).all()
    if not expired:
        return 0
    deleted = connection.execute(
        keys.delete().where(
            sa.tuple_(keys.c.tenant_id, keys.c.mode, keys.c.key).in_(
                [tuple(row) for row in expired]
            ),
            # Checked again: a key re-claimed since the choice above is new and stays.
            keys.c.created_at_ns < now_ns - IDEMPOTENCY_TTL_NS,
        )
    ).rowcount
    assert 0 <= deleted <= len(expired)
    return int(deleted)
