"""HTTP routes of /v1/accounts and /v1/account."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from farthing.stripe_api._idempotency import run_idempotent
from farthing.stripe_api._lists import parse_list_query
from farthing.stripe_api._request import (
    FORM_BODY,
    PREFIX,
    Params,
    Partition,
    Scope,
    engine_of,
    read_params,
    unknown_param,
)
from farthing.stripe_api.accounts import _service as service
from farthing.stripe_api.accounts._schemas import parse_create, parse_update

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["accounts"])
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request, idempotency error, or not a platform"},
    401: {"description": "Missing or invalid API key"},
    403: {"description": "No such connected account of the caller, or missing permission"},
    409: {"description": "A request with the same Idempotency-Key is still executing"},
}
# The body is parsed by farthing.stripe_api (bracketed form keys), so FastAPI cannot infer it.
_LIST_PARAMS = frozenset({"limit", "starting_after", "ending_before", "created", "expand"})


def _only(params: Params, allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise unknown_param(name)


async def _post(request: Request, scope: Partition, params: Params, effect: Any) -> JSONResponse:
    """A write through the idempotency layer, off the event loop (the database is blocking)."""
    return await run_in_threadpool(
        run_idempotent,
        engine_of(request),
        scope,
        request.headers.get("idempotency-key"),
        method="POST",
        path=request.url.path,
        params=params,
        effect=effect,
    )


def _read(request: Request, function: Any, *args: Any) -> Any:
    with engine_of(request).connect() as connection:
        return function(connection, *args)


@router.post("/accounts", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_account(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    fields = parse_create(params)
    return await _post(
        request, scope, params, lambda connection: (200, service.create(connection, scope, fields))
    )


@router.post("/accounts/{account_id}", responses=_ERRORS, openapi_extra=FORM_BODY)
async def update_account(request: Request, scope: Scope, account_id: str) -> JSONResponse:
    params = await read_params(request)
    fields = parse_update(params)
    return await _post(
        request,
        scope,
        params,
        lambda connection: (200, service.update(connection, scope, account_id, fields)),
    )


@router.get("/accounts", responses=_ERRORS)
async def list_accounts(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    _only(params, _LIST_PARAMS)
    query = parse_list_query(params)
    result: dict[str, Any] = await run_in_threadpool(
        _read, request, service.list_accounts, scope, query
    )
    return result


@router.get("/accounts/{account_id}", responses=_ERRORS)
async def retrieve_account(request: Request, scope: Scope, account_id: str) -> dict[str, Any]:
    _only(await read_params(request), frozenset({"expand"}))
    result: dict[str, Any] = await run_in_threadpool(
        _read, request, service.retrieve, scope, account_id
    )
    return result


@router.get("/account", responses=_ERRORS)
async def retrieve_current_account(request: Request, scope: Scope) -> dict[str, Any]:
    _only(await read_params(request), frozenset({"expand"}))
    result: dict[str, Any] = await run_in_threadpool(
        _read, request, service.retrieve_current, scope
    )
    return result


@router.delete("/accounts/{account_id}", responses=_ERRORS)
async def delete_account(request: Request, scope: Scope, account_id: str) -> JSONResponse:
    _only(await read_params(request), frozenset())

    def effect(connection: sa.Connection) -> tuple[int, dict[str, Any]]:
        return 200, service.delete(connection, scope, account_id)

    # DELETE carries no Idempotency-Key in Stripe's v1 API; deleting twice is a 403 anyway.
    return await run_in_threadpool(
        run_idempotent,
        engine_of(request),
        scope,
        None,
        method="DELETE",
        path=request.url.path,
        params={},
        effect=effect,
    )
