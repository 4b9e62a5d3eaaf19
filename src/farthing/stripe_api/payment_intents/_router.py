"""HTTP routes of /v1/payment_intents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from farthing.db.schema import stripe_payment_intents as intents
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._expand import check_paths, expand, list_paths, register
from farthing.stripe_api._idempotency import run_idempotent
from farthing.stripe_api._lists import ID_LENGTH_MAX, parse_list_query
from farthing.stripe_api._params import Reader
from farthing.stripe_api._request import (
    FORM_BODY,
    LIST_PARAMS,
    PREFIX,
    Params,
    Partition,
    Scope,
    read_params,
)
from farthing.stripe_api.payment_intents import _service as service
from farthing.stripe_api.payment_intents._schemas import (
    intent_object,
    parse_cancel,
    parse_capture,
    parse_confirm,
    parse_create,
    parse_update,
)
from farthing.stripe_api.payments import payments_of

__all__ = ["read", "router", "write"]

router = APIRouter(prefix=PREFIX, tags=["payment_intents"])
LIST_URL = "/v1/payment_intents"
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request, unexpected state or idempotency error"},
    401: {"description": "Missing or invalid API key"},
    402: {"description": "The card was declined (card_error)"},
    404: {"description": "No such payment intent (or customer, payment method) in scope"},
    409: {"description": "A request with the same Idempotency-Key is still executing"},
}

Step = Callable[[service.Context], service.Outcome]


def _load(connection: sa.Connection, scope: Partition, intent_id: str) -> dict[str, Any] | None:
    row = objects.load(connection, intents, scope, intent_id)
    return None if row is None else intent_object(row, livemode=scope.livemode)


register("payment_intent", _load, resource="payment_intents")


async def write(  # noqa: PLR0913 - keyword-only options
    request: Request,
    scope: Scope,
    params: Params,
    step: Step,
    *,
    paths: tuple[str, ...] = (),
    idempotent: bool = True,
) -> JSONResponse:
    """Run a payments step in one idempotent write transaction; expand the object it returns."""
    payments = payments_of(request)
    origin = str(request.base_url)

    def effect(connection: sa.Connection) -> service.Outcome:
        status, body = step(service.context(connection, payments, scope, origin))
        if status == 200 and paths:
            body = expand(connection, scope, body, paths)
        return status, body

    check_paths(scope, paths)
    engine: sa.Engine = request.app.state.engine
    return await run_in_threadpool(
        run_idempotent,
        engine,
        scope,
        request.headers.get("idempotency-key") if idempotent else None,
        method=request.method,
        path=request.url.path,
        params=params,
        effect=effect,
    )


async def read(request: Request, scope: Scope, step: Callable[[service.Context], Any]) -> Any:
    """Run a payments step in one connection, without the write lock that ``write`` takes."""
    payments = payments_of(request)
    origin = str(request.base_url)

    def run() -> Any:
        with request.app.state.engine.connect() as connection:
            return step(service.context(connection, payments, scope, origin))

    return await run_in_threadpool(run)


@router.post("/payment_intents", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_payment_intent(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    fields = parse_create(params)
    return await write(
        request, scope, params, lambda ctx: service.create(ctx, fields), paths=fields.expand
    )


@router.get("/payment_intents/{intent_id}", responses=_ERRORS)
async def retrieve_payment_intent(request: Request, scope: Scope, intent_id: str) -> JSONResponse:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.ignore("client_secret")
    reader.finish()
    # A write: an authorisation past its time to live is canceled as it is read.
    return await write(
        request,
        scope,
        {},
        lambda ctx: (200, service.render(ctx, service.load_intent(ctx, intent_id))),
        paths=paths,
        idempotent=False,
    )


@router.post("/payment_intents/{intent_id}", responses=_ERRORS, openapi_extra=FORM_BODY)
async def update_payment_intent(request: Request, scope: Scope, intent_id: str) -> JSONResponse:
    params = await read_params(request)
    fields = parse_update(params)
    return await write(
        request,
        scope,
        params,
        lambda ctx: service.update(ctx, intent_id, fields),
        paths=fields.expand,
    )


@router.post("/payment_intents/{intent_id}/confirm", responses=_ERRORS, openapi_extra=FORM_BODY)
async def confirm_payment_intent(request: Request, scope: Scope, intent_id: str) -> JSONResponse:
    params = await read_params(request)
    fields = parse_confirm(params)
    return await write(
        request,
        scope,
        params,
        lambda ctx: service.confirm(ctx, intent_id, fields),
        paths=fields.expand,
    )


@router.post("/payment_intents/{intent_id}/capture", responses=_ERRORS, openapi_extra=FORM_BODY)
async def capture_payment_intent(request: Request, scope: Scope, intent_id: str) -> JSONResponse:
    params = await read_params(request)
    fields = parse_capture(params)
    return await write(
        request,
        scope,
        params,
        lambda ctx: service.capture(ctx, intent_id, fields),
        paths=fields.expand,
    )


@router.post("/payment_intents/{intent_id}/cancel", responses=_ERRORS, openapi_extra=FORM_BODY)
async def cancel_payment_intent(request: Request, scope: Scope, intent_id: str) -> JSONResponse:
    params = await read_params(request)
    reason, paths = parse_cancel(params)
    return await write(
        request, scope, params, lambda ctx: service.cancel(ctx, intent_id, reason), paths=paths
    )


@router.get("/payment_intents", responses=_ERRORS)
async def list_payment_intents(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    customer = reader.string("customer", ID_LENGTH_MAX)
    paths = list_paths(reader.expand())
    reader.finish()
    query = parse_list_query(params)
    conditions = [] if customer is None else [intents.c.customer_id == customer]

    def step(ctx: service.Context) -> service.Outcome:
        service.expire_due(ctx)
        return 200, objects.list_objects(
            ctx.connection,
            intents,
            scope,
            query,
            url=LIST_URL,
            kind="payment_intent",
            render=lambda row: expand(
                ctx.connection, scope, intent_object(row, livemode=scope.livemode), paths
            ),
            conditions=conditions,
        )

    return await write(request, scope, {}, step, idempotent=False)
