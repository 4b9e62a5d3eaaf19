"""GET /v1/events and /v1/events/{id}."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from farthing.db.schema import stripe_events as events
from farthing.stripe_api._lists import TableList, list_table, parse_list_query
from farthing.stripe_api._objects import missing
from farthing.stripe_api._params import Reader, invalid
from farthing.stripe_api._request import LIST_PARAMS, PREFIX, Partition, Scope, read_params
from farthing.stripe_api.events._service import (
    EVENT_TYPE_LENGTH_MAX,
    event_object,
    pending_webhooks,
    retained,
)

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["events"])
LIST_URL = "/v1/events"
TYPES_MAX = 20
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request"},
    401: {"description": "Missing or invalid API key"},
    403: {"description": "The key lacks the permission, or the account is not accessible"},
    404: {"description": "No such event in the caller's account and mode (or older than 30 days)"},
}


def _in(scope: Partition) -> sa.ColumnElement[bool]:
    return sa.and_(
        events.c.tenant_id == scope.tenant_id,
        events.c.mode == scope.mode,
        retained(int(time.time())),
    )


@router.get("/events/{event_id}", responses=_ERRORS)
async def retrieve_event(request: Request, scope: Scope, event_id: str) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    reader.expand()
    reader.finish()

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            row = (
                connection.execute(sa.select(events).where(_in(scope), events.c.id == event_id))
                .mappings()
                .one_or_none()
            )
            if row is None:
                raise missing("event", event_id)
            pending = pending_webhooks(connection, [event_id]).get(event_id, 0)
        return event_object(row, livemode=scope.livemode, pending_webhooks=pending)

    return await run_in_threadpool(read)


def _types(reader: Reader) -> list[str]:
    single = reader.string("type", EVENT_TYPE_LENGTH_MAX)
    many = reader.raw("types")
    if single is not None and many is not None:
        raise invalid("Use type or types, not both.", "types")
    if many is None:
        return [] if single is None else [single]
    items = list(many.values()) if isinstance(many, dict) else many
    if not isinstance(items, list) or not 0 < len(items) <= TYPES_MAX:
        raise invalid(f"types takes 1 to {TYPES_MAX} event types.", "types")
    if any(not isinstance(item, str) or len(item) > EVENT_TYPE_LENGTH_MAX for item in items):
        raise invalid("types takes event type names.", "types")
    return [str(item) for item in items]


def _condition(pattern: str) -> sa.ColumnElement[bool]:
    """``charge.*`` matches every charge event, as in Stripe's filters."""
    if pattern.endswith(".*"):
        return events.c.type.startswith(pattern[:-1], autoescape=True)
    return events.c.type == pattern


@router.get("/events", responses=_ERRORS)
async def list_events(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS, "delivery_success")
    types = _types(reader)
    reader.expand()
    reader.finish()
    query = parse_list_query(params)
    conditions = [_in(scope)]
    if types:
        conditions.append(sa.or_(*(_condition(pattern) for pattern in types)))

    listing = TableList(table=events, cursor_scope=(_in(scope),), shown=tuple(conditions))

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            page = list_table(
                connection,
                listing,
                query,
                url=LIST_URL,
                missing=lambda event_id: missing("event", event_id),
                render=lambda row: event_object(row, livemode=scope.livemode, pending_webhooks=0),
            )
            # One count for the whole page rather than one per event.
            counts = pending_webhooks(connection, [event["id"] for event in page["data"]])
        for event in page["data"]:
            event["pending_webhooks"] = counts.get(event["id"], 0)
        return page

    return await run_in_threadpool(read)
