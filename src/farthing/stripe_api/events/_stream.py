"""The event stream: every event of the outbox, published to NATS JetStream.

Events go out in ``seq`` order (so in order per account), each with ``Nats-Msg-Id`` = its event
id, and the stream's cursor moves only after JetStream acknowledged them. A publisher killed
between publishing and moving the cursor publishes those events again when it restarts;
JetStream drops the repeats inside its duplicate window, and a consumer de-duplicates anything
older by event id. Subjects: ``{prefix}.{mode}.{account}.{type}``, e.g.
``farthing.events.test.acct_123.charge.succeeded``; stream ``FARTHING_EVENTS`` by default.
Run one publishing worker per stream: two would each keep order, but not with each other.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_event_stream_cursors as cursors
from farthing.db.schema import stripe_events as events
from farthing.stripe_api.events._service import event_object

__all__ = ["PUBLISH_BATCH_MAX", "STREAM_DEFAULT", "SUBJECT_PREFIX_DEFAULT", "publish_pending"]

STREAM_DEFAULT = "FARTHING_EVENTS"
SUBJECT_PREFIX_DEFAULT = "farthing.events"
PUBLISH_BATCH_MAX = 200
PUBLISH_TIMEOUT_S = 5.0


async def ensure_stream(js: Any, *, stream: str, subject_prefix: str) -> None:
    from nats.js.api import StreamConfig  # noqa: PLC0415 - only publishers need nats

    config = StreamConfig(name=stream, subjects=[f"{subject_prefix}.>"])
    try:
        await js.stream_info(stream)
    except Exception:  # noqa: BLE001 - nats raises NotFoundError; any failure: try to create
        await js.add_stream(config)


def _cursor(connection: sa.Connection, stream: str) -> int:
    seq = connection.execute(
        sa.select(cursors.c.seq).where(cursors.c.stream == stream)
    ).scalar_one_or_none()
    if seq is None:
        connection.execute(cursors.insert().values(stream=stream, seq=0))
        return 0
    return int(seq)


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
        after = _cursor(connection, stream)
    with engine.connect() as connection:
        rows = list(
            connection.execute(
                sa.select(events)
                .where(events.c.seq > after)
                .order_by(events.c.seq)
                .limit(batch_max)
            ).mappings()
        )
    for row in rows:
        body = json.dumps(event_object(row, livemode=row["mode"] == "live")).encode()
        subject = f"{subject_prefix}.{row['mode']}.{row['tenant_id']}.{row['type']}"
        await js.publish(
            subject, body, timeout=PUBLISH_TIMEOUT_S, headers={"Nats-Msg-Id": row["id"]}
        )
    if rows:
        with begin_write(engine) as connection:
            # Only forward: a second publisher that got here first must not be undone.
            connection.execute(
                cursors.update()
                .where(cursors.c.stream == stream, cursors.c.seq < rows[-1]["seq"])
                .values(seq=rows[-1]["seq"])
            )
    return len(rows)
