"""Events (``evt_``): one per state change of an API object, written in the change's own
transaction (a transactional outbox), so an event exists exactly when its change committed.
Kept and listed for ``EVENT_RETENTION_S`` (30 days), scoped by account and mode."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_events as events
from farthing.db.schema import stripe_webhook_deliveries as deliveries
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._request import Partition

__all__ = [
    "API_VERSION",
    "EVENT_RETENTION_S",
    "changed",
    "emit",
    "event_object",
    "pending_webhooks",
    "retained",
]

EVENT_RETENTION_S = 30 * 24 * 3600
# The version whose object shapes Farthing follows (responses carry no other).
API_VERSION = "2024-06-20"
EVENT_TYPE_LENGTH_MAX = 64
_XID_OF = "farthing.events.xid_of"  # connection.info: the transaction known to have an xid


def emit(
    connection: sa.Connection,
    scope: Partition,
    event_type: str,
    obj: dict[str, Any],
    *,
    previous: dict[str, Any] | None = None,
) -> str:
    """Record that ``obj`` (as it is now) changed; ``previous``: the changed fields' old values."""
    assert 0 < len(event_type) <= EVENT_TYPE_LENGTH_MAX
    assert "." in event_type
    data: dict[str, Any] = {"object": obj}
    if previous:
        data["previous_attributes"] = previous
    event_id = objects.new_id("evt_")
    _ensure_xid(connection)
    connection.execute(
        events.insert().values(
            id=event_id,
            tenant_id=scope.tenant_id,
            mode=scope.mode,
            created=int(time.time()),
            type=event_type,
            object_id=str(obj.get("id", "")),
            data=json.dumps(data),
        )
    )
    # Imported here: webhooks builds on events' tables, not the other way round.
    from farthing.stripe_api.webhooks import fan_out  # noqa: PLC0415

    fan_out(connection, scope, event_id, event_type)
    return event_id


def _ensure_xid(connection: sa.Connection) -> None:
    """PostgreSQL: the event's seq comes from a sequence before the insert gives the transaction
    an xid, and the stream's gap rule (events._stream) needs the holder of a seq to have one
    already. Asked once per transaction, however many events it emits."""
    if connection.dialect.name != "postgresql":
        return
    transaction = connection.get_transaction()
    if transaction is None or connection.info.get(_XID_OF) is not transaction:
        connection.exec_driver_sql("SELECT pg_current_xact_id()")
        connection.info[_XID_OF] = connection.get_transaction()


def changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``previous_attributes``: the old values of the top-level fields that differ."""
    return {name: value for name, value in before.items() if after.get(name) != value}


def retained(now_s: int) -> sa.ColumnElement[bool]:
    return events.c.created >= now_s - EVENT_RETENTION_S


# Events whose undelivered webhooks one query counts: a list page, a claim or a stream batch.
PENDING_COUNT_IDS_MAX = 1000


def pending_webhooks(connection: sa.Connection, event_ids: Sequence[str]) -> dict[str, int]:
    """Per event, its webhooks not delivered yet and still to be tried (Stripe's
    ``pending_webhooks``); events with none are left out."""
    assert len(event_ids) <= PENDING_COUNT_IDS_MAX
    if not event_ids:
        return {}
    rows = connection.execute(
        sa.select(deliveries.c.event_id, sa.func.count())
        .where(deliveries.c.event_id.in_(sorted(set(event_ids))), deliveries.c.status == "pending")
        .group_by(deliveries.c.event_id)
    )
    return {str(event_id): int(count) for event_id, count in rows}


def event_object(
    row: sa.RowMapping | dict[str, Any], *, livemode: bool, pending_webhooks: int
) -> dict[str, Any]:
    assert pending_webhooks >= 0
    return {
        "id": row["id"],
        "object": "event",
        "api_version": API_VERSION,
        "created": row["created"],
        "data": json.loads(row["data"]),
        "livemode": livemode,
        "pending_webhooks": pending_webhooks,
        "request": {"id": None, "idempotency_key": None},
        "type": row["type"],
    }
