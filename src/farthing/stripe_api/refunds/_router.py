"""HTTP routes of /v1/refunds."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from farthing.db.schema import stripe_refunds as refunds
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._expand import expand, list_paths, register
from farthing.stripe_api._lists import ID_LENGTH_MAX, parse_list_query
from farthing.stripe_api._params import Reader, invalid
from farthing.stripe_api._request import (
    FORM_BODY,
    LIST_PARAMS,
    PREFIX,
    Partition,
    Scope,
    read_params,
)
from farthing.stripe_api.payment_intents import write
from farthing.stripe_api.refunds import _service as service

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["refunds"])
LIST_URL = "/v1/refunds"
REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request, amount too large, insufficient balance"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such refund, charge or payment intent in scope"},
    409: {"description": "A request with the same Idempotency-Key is still executing"},
}


def _load(connection: sa.Connection, scope: Partition, refund_id: str) -> dict[str, Any] | None:
    row = objects.load(connection, refunds, scope, refund_id)
    return None if row is None else service.refund_object(row, livemode=scope.livemode)


# A transfer reversal's refund (reverse_transfer).
register("source_refund", _load, resource="refunds")


@router.post("/refunds", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_refund(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    reason = reader.string("reason", 32)
    if reason is not None and reason not in REASONS:
        raise invalid("reason must be duplicate, fraudulent or requested_by_customer.", "reason")
    fields = service.RefundFields(
        charge=reader.string("charge", ID_LENGTH_MAX),
        payment_intent=reader.string("payment_intent", ID_LENGTH_MAX),
        amount=reader.amount("amount"),
        reason=reason,
        metadata=reader.metadata(),
        reverse_transfer=bool(reader.boolean("reverse_transfer")),
    )
    paths = reader.expand()
    reader.finish()
    return await write(request, scope, params, lambda ctx: service.create(ctx, fields), paths=paths)


@router.get("/refunds/{refund_id}", responses=_ERRORS)
async def retrieve_refund(request: Request, scope: Scope, refund_id: str) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.finish()

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            row = objects.load(connection, refunds, scope, refund_id)
            if row is None:
                raise objects.missing("refund", refund_id)
            obj = service.refund_object(row, livemode=scope.livemode)
            return expand(connection, scope, obj, paths)

    return await run_in_threadpool(read)


@router.post("/refunds/{refund_id}", responses=_ERRORS, openapi_extra=FORM_BODY)
async def update_refund(request: Request, scope: Scope, refund_id: str) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    metadata = reader.metadata()
    paths = reader.expand()
    reader.finish()
    return await write(
        request, scope, params, lambda ctx: service.update(ctx, refund_id, metadata), paths=paths
    )


@router.get("/refunds", responses=_ERRORS)
async def list_refunds(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    charge = reader.string("charge", ID_LENGTH_MAX)
    intent = reader.string("payment_intent", ID_LENGTH_MAX)
    paths = list_paths(reader.expand())
    reader.finish()
    query = parse_list_query(params)
    conditions = []
    if charge is not None:
        conditions.append(refunds.c.charge_id == charge)
    if intent is not None:
        conditions.append(refunds.c.payment_intent_id == intent)

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            return objects.list_objects(
                connection,
                refunds,
                scope,
                query,
                url=LIST_URL,
                kind="refund",
                render=lambda row: expand(
                    connection, scope, service.refund_object(row, livemode=False), paths
                ),
                conditions=conditions,
            )

    return await run_in_threadpool(read)
