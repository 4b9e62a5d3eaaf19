"""The event stream: every event of the outbox, published to NATS JetStream.

Events go out in ``seq`` order (so in order per account), each with ``Nats-Msg-Id`` = its event
id, and the stream's cursor moves only after JetStream acknowledged them. A publisher killed
between publishing and moving the cursor publishes those events again when it restarts;
JetStream drops the repeats inside its duplicate window, and a consumer de-duplicates anything
older by event id. Subjects: ``{prefix}.{mode}.{account}.{type}``, e.g.
``farthing.events.test.acct_123.charge.succeeded``; stream ``FARTHING_EVENTS`` by default.
Run one publishing worker per stream: two would each keep order, but not with each other.
On PostgreSQL the cursor waits at a gap in ``seq`` until the transaction that may fill it has
ended (``_ready``), so an event committed late is never skipped.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.engine import Dialect, begin_write, dialect_of
from farthing.db.schema import stripe_event_stream_cursors as cursors
from farthing.db.schema import stripe_events as events
from farthing.stripe_api.events._service import event_object, pending_webhooks

__all__ = ["PUBLISH_BATCH_MAX", "STREAM_DEFAULT", "SUBJECT_PREFIX_DEFAULT", "publish_pending"]

STREAM_DEFAULT = "FARTHING_EVENTS"
SUBJECT_PREFIX_DEFAULT = "farthing.events"
PUBLISH_BATCH_MAX = 200
PUBLISH_TIMEOUT_S = 5.0
# A gap held longer than this means a transaction somewhere on the server stays open: say so.
GAP_WAIT_WARN_S = 30.0
_log = logging.getLogger(__name__)
# Per stream: the wait seen last (seq, xmax) and since when (monotonic seconds), in this process.
_waits: dict[str, tuple[tuple[int, int], float]] = {}


def _watch_wait(stream: str, cursor: _Cursor, now_s: float) -> bool:
    """Whether the stream has waited at the same gap for longer than ``GAP_WAIT_WARN_S``
    (true once per wait, so the log says it once)."""
    if cursor.gap_wait_xmax is None:
        _waits.pop(stream, None)
        return False
    key = (cursor.seq, cursor.gap_wait_xmax)
    seen = _waits.get(stream)
    if seen is None or seen[0] != key:
        _waits[stream] = (key, now_s)
        return False
    if seen[1] < 0 or now_s - seen[1] < GAP_WAIT_WARN_S:
        return False
    _waits[stream] = (key, -1.0)  # Said once.
    return True


async def ensure_stream(js: Any, *, stream: str, subject_prefix: str) -> None:
    from nats.js.api import StreamConfig  # noqa: PLC0415 - only publishers need nats

    config = StreamConfig(name=stream, subjects=[f"{subject_prefix}.>"])
    try:
        await js.stream_info(stream)
    except Exception:  # noqa: BLE001 - nats raises NotFoundError; any failure: try to create
        await js.add_stream(config)


def _insert_cursor(connection: sa.Connection, stream: str) -> sa.Insert:
    """A new stream's cursor at 0, unless a concurrent publisher made it first."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # noqa: PLC0415

        return insert(cursors).values(stream=stream, seq=0).on_conflict_do_nothing()
    return cursors.insert().values(stream=stream, seq=0)  # SQLite: one writer at a time.


@dataclass(frozen=True, slots=True)
class _Cursor:
    seq: int
    # Gaps up to gap_seen_seq wait until the snapshot's xmin reaches gap_wait_xmax (PostgreSQL).
    gap_wait_xmax: int | None = None
    gap_seen_seq: int | None = None


def _cursor(connection: sa.Connection, stream: str) -> _Cursor:
    row = connection.execute(
        sa.select(cursors.c.seq, cursors.c.gap_wait_xmax, cursors.c.gap_seen_seq).where(
            cursors.c.stream == stream
        )
    ).one_or_none()
    if row is None:
        # Two publishers starting a new stream at once: the second's insert waits for the
        # first's and then does nothing.
        connection.execute(_insert_cursor(connection, stream))
        return _Cursor(0)
    return _Cursor(int(row.seq), row.gap_wait_xmax, row.gap_seen_seq)


def _read(
    engine: sa.Engine, after: int, batch_max: int
) -> tuple[list[Any], tuple[int, int] | None, dict[str, int]]:
    """The next events, on PostgreSQL the (xmin, xmax) of the very snapshot they were read in
    (REPEATABLE READ keeps one snapshot for every statement), and their pending webhooks."""
    with engine.connect() as connection:
        horizon = None
        if dialect_of(engine) is Dialect.postgresql:
            connection.execution_options(isolation_level="REPEATABLE READ")
            xmin, xmax = connection.exec_driver_sql(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
                "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
            ).one()
            horizon = (int(xmin), int(xmax))
        rows = list(
            connection.execute(
                sa.select(events)
                .where(events.c.seq > after)
                .order_by(events.c.seq)
                .limit(batch_max)
            ).mappings()
        )
        pending = pending_webhooks(connection, [row["id"] for row in rows])
        connection.rollback()
    return rows, horizon, pending


def _ready(
    cursor: _Cursor, rows: list[Any], horizon: tuple[int, int] | None
) -> tuple[list[Any], _Cursor]:
    """The events that may go out now, in order, and where the cursor goes after them.

    SQLite has one writer at a time, so seq order is commit order. On PostgreSQL a seq is taken
    at insert, not at commit: a transaction holding seq 10 may commit after the one holding 11,
    or roll back and leave 10 unused forever. Moving past 10 then could lose it, so the cursor
    waits at a gap until every transaction that was running when the gap was seen has ended
    (xmin has reached the xmax of that snapshot); the gap is then filled or final.
    """
    if horizon is None:
        return rows, _Cursor(rows[-1]["seq"] if rows else cursor.seq)
    xmin, xmax = horizon
    ready: list[Any] = []
    seq, wait_xmax, seen_seq = cursor.seq, cursor.gap_wait_xmax, cursor.gap_seen_seq
    if wait_xmax is not None and wait_xmax > xmax:
        # Not from this server's xid history (a restored or migrated database): wait afresh.
        wait_xmax = xmax
    for row in rows:
        if row["seq"] != seq + 1:
            if wait_xmax is None or seen_seq is None or row["seq"] > seen_seq:
                wait_xmax, seen_seq = xmax, rows[-1]["seq"]  # First seen in this snapshot.
            if xmin < wait_xmax:
                return ready, _Cursor(seq, wait_xmax, seen_seq)
        ready.append(row)
        seq = row["seq"]
    if seen_seq is not None and seen_seq > seq:
        return ready, _Cursor(seq, wait_xmax, seen_seq)  # Known gaps ahead keep their wait.
    return ready, _Cursor(seq)


async def publish_pending(
    engine: sa.Engine,
    js: Any,
    *,
    stream: str = STREAM_DEFAULT,
    subject_prefix: str = SUBJECT_PREFIX_DEFAULT,
    batch_max: int = PUBLISH_BATCH_MAX,
) -> int:
    """Publish the next batch of events after the stream's cursor; returns how many."""
    assert 0 < batch_max <= PUBLISH_BATCH_MAX
    with begin_write(engine) as connection:
        cursor = _cursor(connection, stream)
    rows, horizon, pending = _read(engine, cursor.seq, batch_max)
    ready, moved = _ready(cursor, rows, horizon)
    if not ready and _watch_wait(stream, moved, time.monotonic()):
        _log.warning(
            "event stream %s has waited %.0f s after seq %d for transactions older than xid %d "
            "to end; a session idle in a transaction holds it "
            "(see idle_in_transaction_session_timeout)",
            stream, GAP_WAIT_WARN_S, moved.seq, moved.gap_wait_xmax,
        )  # fmt: skip
    for row in ready:
        live = row["mode"] == "live"
        event = event_object(row, livemode=live, pending_webhooks=pending.get(row["id"], 0))
        body = json.dumps(event).encode()
        subject = f"{subject_prefix}.{row['mode']}.{row['tenant_id']}.{row['type']}"
        await js.publish(
            subject, body, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": row["id"]}
        )
    if moved != cursor:
        with begin_write(engine) as connection:
            # Only forward: a second publisher that got here first must not be undone.
            connection.execute(
                cursors.update()
                .where(
                    cursors.c.stream == stream,
                    sa.or_(
                        cursors.c.seq < moved.seq,
                        sa.and_(cursors.c.seq == moved.seq, cursors.c.gap_wait_xmax.is_(None)),
                    ),
                )
                .values(
                    seq=moved.seq,
                    gap_wait_xmax=moved.gap_wait_xmax,
                    gap_seen_seq=moved.gap_seen_seq,
                )
            )
    return len(ready)
