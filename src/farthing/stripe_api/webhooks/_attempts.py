"""Delivery attempts (read by the API and the CLI) and resending an event to an endpoint."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_events as events
from farthing.db.schema import stripe_webhook_attempts as attempts
from farthing.db.schema import stripe_webhook_deliveries as deliveries
from farthing.db.schema import stripe_webhook_endpoints as endpoints
from farthing.stripe_api._objects import missing
from farthing.stripe_api._params import invalid
from farthing.stripe_api._request import Partition

__all__ = ["ATTEMPTS_PAGE_MAX", "attempt_object", "list_attempts", "resend"]

ATTEMPTS_PAGE_MAX = 100


def attempt_object(row: sa.RowMapping) -> dict[str, Any]:
    return {
        "object": "webhook_attempt",
        "endpoint": row["endpoint_id"],
        "event": row["event_id"],
        "attempted_at": row["attempted_at_ns"] // 10**9,
        "latency_ms": row["latency_ms"],
        "status_code": row["status_code"],
        "response_body": row["response_body"],
        "error": row["error"],
    }


def list_attempts(
    connection: sa.Connection, scope: Partition, endpoint_id: str, *, limit: int
) -> list[dict[str, Any]]:
    """The endpoint's newest attempts first (404 for another account's or mode's endpoint)."""
    assert 0 < limit <= ATTEMPTS_PAGE_MAX
    _require_endpoint(connection, scope, endpoint_id)
    rows = connection.execute(
        sa.select(attempts)
        .where(
            attempts.c.tenant_id == scope.tenant_id,
            attempts.c.mode == scope.mode,
            attempts.c.endpoint_id == endpoint_id,
        )
        .order_by(attempts.c.seq.desc())
        .limit(limit)
    ).mappings()
    return [attempt_object(row) for row in rows]


def _require_endpoint(connection: sa.Connection, scope: Partition, endpoint_id: str) -> str:
    """The endpoint's status; 404 when the scope has no such endpoint."""
    found = connection.execute(
        sa.select(endpoints.c.status).where(
            endpoints.c.tenant_id == scope.tenant_id,
            endpoints.c.mode == scope.mode,
            endpoints.c.id == endpoint_id,
            endpoints.c.deleted.is_(False),
        )
    ).scalar_one_or_none()
    if found is None:
        raise missing("webhook_endpoint", endpoint_id)
    return str(found)


def resend(connection: sa.Connection, scope: Partition, event_id: str, endpoint_id: str) -> None:
    """Queue the event for the endpoint again, due now (whatever became of earlier attempts)."""
    if _require_endpoint(connection, scope, endpoint_id) != "enabled":
        # Nothing is sent to a disabled endpoint; a queued delivery would wait for ever.
        raise invalid("The webhook endpoint is disabled; enable it to resend.", "webhook_endpoint")
    # Locked (PostgreSQL): `farthing prune` locks an event before deleting its deliveries, so a
    # resend either waits and finds the event gone, or queues it before prune looks again; and
    # two resends of one event take turns, so the second updates the delivery the first made.
    found = connection.execute(
        sa.select(events.c.id)
        .where(
            events.c.tenant_id == scope.tenant_id,
            events.c.mode == scope.mode,
            events.c.id == event_id,
        )
        .with_for_update()
    ).scalar_one_or_none()
    if found is None:
        raise missing("event", event_id)
    now_ns = time.time_ns()
    queued = connection.execute(
        deliveries.update()
        .where(deliveries.c.event_id == event_id, deliveries.c.endpoint_id == endpoint_id)
        .values(status="pending", next_attempt_ns=now_ns, created_ns=now_ns)
    )
    if queued.rowcount == 0:
        connection.execute(
            deliveries.insert().values(
                tenant_id=scope.tenant_id, mode=scope.mode, event_id=event_id,
                endpoint_id=endpoint_id, status="pending", attempts=0,
                next_attempt_ns=now_ns, created_ns=now_ns,
            )
        )  # fmt: skip
