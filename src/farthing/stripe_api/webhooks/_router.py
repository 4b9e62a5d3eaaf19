"""HTTP routes of /v1/webhook_endpoints."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from farthing.db.schema import stripe_webhook_endpoints as endpoints
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._idempotency import run_idempotent
from farthing.stripe_api._lists import LIST_LIMIT_DEFAULT, list_envelope, parse_list_query
from farthing.stripe_api._params import Reader, missing_param
from farthing.stripe_api._request import (
    FORM_BODY,
    LIST_PARAMS,
    PREFIX,
    Params,
    Scope,
    read_params,
)
from farthing.stripe_api.payments import payments_of
from farthing.stripe_api.webhooks import _service as service
from farthing.stripe_api.webhooks._attempts import ATTEMPTS_PAGE_MAX, list_attempts
from farthing.stripe_api.webhooks._urls import URL_LENGTH_MAX

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["webhook_endpoints"])
LIST_URL = "/v1/webhook_endpoints"
DESCRIPTION_LENGTH_MAX = 1000
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request (a forbidden URL included) or idempotency error"},
    401: {"description": "Missing or invalid API key"},
    403: {"description": "The key lacks the permission, or the account is not accessible"},
    404: {"description": "No such webhook endpoint in the caller's account and mode"},
    409: {"description": "A request with the same Idempotency-Key is still executing"},
    503: {"description": "The vault has no key (signing secrets are sealed in it)"},
}


def _fields(params: Params, *, creating: bool) -> service.EndpointFields:
    reader = Reader(params)
    url = reader.string("url", URL_LENGTH_MAX, required=creating)
    events = reader.raw("enabled_events")
    if creating and events is None:
        raise missing_param("enabled_events")
    fields = service.EndpointFields(
        url=url,
        enabled_events=None if events is None else service.check_events(events),
        description=reader.string("description", DESCRIPTION_LENGTH_MAX),
        disabled=reader.boolean("disabled") if not creating else None,
        metadata=reader.metadata(),
    )
    reader.ignore("api_version", "connect", "expand")
    reader.finish()
    return fields


def _without_secret(body: dict[str, Any]) -> dict[str, Any]:
    # A replay does not show the secret again: it would have to be kept in the clear. A client
    # that lost the first response rolls the secret instead.
    return {name: value for name, value in body.items() if name != "secret"}


async def _write(request: Request, scope: Scope, params: Params, effect: Any) -> JSONResponse:
    engine: sa.Engine = request.app.state.engine
    return await run_in_threadpool(
        run_idempotent,
        engine,
        scope,
        request.headers.get("idempotency-key"),
        method=request.method,
        path=request.url.path,
        params=params,
        effect=effect,
        stored=_without_secret,
    )


@router.post("/webhook_endpoints", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_webhook_endpoint(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    fields = _fields(params, creating=True)
    vault = payments_of(request).require_vault()
    loopback: bool = request.app.state.webhook_allow_loopback
    return await _write(
        request,
        scope,
        params,
        lambda connection: (
            200,
            service.create(connection, scope, vault, fields, allow_loopback=loopback),
        ),
    )


@router.get("/webhook_endpoints/{endpoint_id}", responses=_ERRORS)
async def retrieve_webhook_endpoint(
    request: Request, scope: Scope, endpoint_id: str
) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    reader.expand()
    reader.finish()

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            row = objects.load(connection, endpoints, scope, endpoint_id)
        if row is None or row["deleted"]:
            raise objects.missing("webhook_endpoint", endpoint_id)
        return service.endpoint_object(row, livemode=scope.livemode)

    return await run_in_threadpool(read)


@router.post("/webhook_endpoints/{endpoint_id}", responses=_ERRORS, openapi_extra=FORM_BODY)
async def update_webhook_endpoint(request: Request, scope: Scope, endpoint_id: str) -> JSONResponse:
    params = await read_params(request)
    fields = _fields(params, creating=False)
    loopback: bool = request.app.state.webhook_allow_loopback
    return await _write(
        request,
        scope,
        params,
        lambda connection: (
            200,
            service.update(connection, scope, endpoint_id, fields, allow_loopback=loopback),
        ),
    )


@router.delete("/webhook_endpoints/{endpoint_id}", responses=_ERRORS)
async def delete_webhook_endpoint(request: Request, scope: Scope, endpoint_id: str) -> JSONResponse:
    Reader(await read_params(request)).finish()
    return await _write(
        request,
        scope,
        {},
        lambda connection: (200, service.delete(connection, scope, endpoint_id)),
    )


@router.get("/webhook_endpoints", responses=_ERRORS)
async def list_webhook_endpoints(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS, "expand")
    reader.finish()
    query = parse_list_query(params)

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            return objects.list_objects(
                connection,
                endpoints,
                scope,
                query,
                url=LIST_URL,
                kind="webhook_endpoint",
                render=lambda row: service.endpoint_object(row, livemode=scope.livemode),
                conditions=[endpoints.c.deleted.is_(False)],
            )

    return await run_in_threadpool(read)


@router.get("/webhook_endpoints/{endpoint_id}/attempts", responses=_ERRORS)
async def list_webhook_attempts(request: Request, scope: Scope, endpoint_id: str) -> dict[str, Any]:
    """Farthing's addition: the endpoint's delivery attempts, newest first."""
    reader = Reader(await read_params(request))
    limit = reader.integer("limit", 1, ATTEMPTS_PAGE_MAX) or LIST_LIMIT_DEFAULT
    reader.finish()

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            data = list_attempts(connection, scope, endpoint_id, limit=limit)
        return list_envelope(request.url.path, data, has_more=False)

    return await run_in_threadpool(read)


@router.post(
    "/webhook_endpoints/{endpoint_id}/roll_secret", responses=_ERRORS, openapi_extra=FORM_BODY
)
async def roll_webhook_secret(request: Request, scope: Scope, endpoint_id: str) -> JSONResponse:
    """Farthing's addition: a new signing secret (shown once); the old one also signs for
    ``expires_in`` seconds (default one day, at most seven)."""
    params = await read_params(request)
    reader = Reader(params)
    overlap_s = reader.integer("expires_in", 0, service.ROLL_OVERLAP_S_MAX)
    reader.finish()
    vault = payments_of(request).require_vault()
    overlap = service.ROLL_OVERLAP_S_DEFAULT if overlap_s is None else overlap_s
    return await _write(
        request,
        scope,
        params,
        lambda connection: (
            200,
            service.roll_secret(connection, scope, vault, endpoint_id, overlap_s=overlap),
        ),
    )
