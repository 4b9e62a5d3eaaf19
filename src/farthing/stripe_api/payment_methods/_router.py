"""HTTP routes of /v1/payment_methods and /v1/customers/{id}/payment_methods."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from farthing.http._errors import ApiError
from farthing.stripe_api._idempotency import hide_secrets, run_idempotent
from farthing.stripe_api._lists import ID_LENGTH_MAX, parse_list_query
from farthing.stripe_api._params import invalid
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
from farthing.stripe_api.payment_methods import _service as service
from farthing.stripe_api.payment_methods._repository import Filters
from farthing.stripe_api.payment_methods._schemas import parse_create, parse_update
from farthing.stripe_api.test_cards import PRESETS
from farthing.vault import Vault

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["payment_methods"])
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request or idempotency error"},
    401: {"description": "Missing or invalid API key"},
    403: {"description": "Restricted key without permission, or Stripe-Account not accessible"},
    402: {"description": "Invalid card data (card_error)"},
    404: {"description": "No such payment method or customer in the caller's account and mode"},
    409: {"description": "A request with the same Idempotency-Key is still executing"},
    503: {"description": "The card vault has no key configured"},
}
_LIST_PARAMS = frozenset({"limit", "starting_after", "ending_before", "created", "expand"})
TYPE_LENGTH_MAX = 32


def _vault(request: Request) -> Vault:
    vault: Vault | None = request.app.state.vault
    if vault is None:
        # The server runs without a vault key (the ledger does not need one); card data then
        # has nowhere safe to go, so card endpoints refuse instead of storing anything.
        raise ApiError(
            503,
            type_="api_error",
            code="vault_not_configured",
            message="The card vault has no key: set FARTHING_VAULT_KEY or "
            "FARTHING_VAULT_KEY_FILE (created by `farthing init`) and restart the server.",
        )
    return vault


def _only(params: Params, allowed: frozenset[str]) -> None:
    for name in params:
        if name not in allowed:
            raise unknown_param(name)


async def _post(
    request: Request, scope: Partition, params: Params, effect: Any, *, idempotent: bool = True
) -> JSONResponse:
    return await run_in_threadpool(
        run_idempotent,
        engine_of(request),
        scope,
        request.headers.get("idempotency-key") if idempotent else None,
        method=request.method,
        path=request.url.path,
        params=params,
        effect=effect,
    )


@router.post("/payment_methods", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_payment_method(request: Request, scope: Scope) -> JSONResponse:
    vault = _vault(request)
    params = await read_params(request)
    card, fields = parse_create(params)
    return await _post(
        request,
        scope,
        hide_secrets(params, "card", frozenset({"number", "cvc"}), vault.keyed_digest),
        lambda connection: (200, service.create(connection, scope, vault, card, fields)),
    )


@router.get("/payment_methods", responses=_ERRORS)
async def list_payment_methods(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    _only(params, _LIST_PARAMS | {"customer", "type"})
    customer = params.get("customer")
    if customer is not None and (not isinstance(customer, str) or len(customer) > ID_LENGTH_MAX):
        raise invalid("customer must be a customer id.", "customer")
    return await _list(request, scope, params, customer, service.LIST_URL)


@router.get("/customers/{customer_id}/payment_methods", responses=_ERRORS)
async def list_customer_payment_methods(
    request: Request, scope: Scope, customer_id: str
) -> dict[str, Any]:
    params = await read_params(request)
    _only(params, _LIST_PARAMS | {"type"})
    return await _list(request, scope, params, customer_id, request.url.path)


async def _list(
    request: Request, scope: Partition, params: Params, customer_id: str | None, url: str
) -> dict[str, Any]:
    kind = params.get("type")
    if kind is not None and (not isinstance(kind, str) or len(kind) > TYPE_LENGTH_MAX):
        raise invalid(f"type is a string of at most {TYPE_LENGTH_MAX} characters.", "type")
    query = parse_list_query(params)
    filters = Filters(customer_id=customer_id, type=kind)

    def read() -> dict[str, Any]:
        with engine_of(request).connect() as connection:
            return service.list_payment_methods(connection, scope, query, filters, url)

    return await run_in_threadpool(read)


@router.get("/payment_methods/{method_id}", responses=_ERRORS)
async def retrieve_payment_method(request: Request, scope: Scope, method_id: str) -> JSONResponse:
    _only(await read_params(request), frozenset({"expand"}))
    # A preset materialises a new object, so a retrieve may write: it runs as a write.
    vault = _vault(request) if method_id in PRESETS else request.app.state.vault
    return await _post(
        request,
        scope,
        {},
        lambda connection: (200, service.retrieve(connection, scope, vault, method_id)),
        idempotent=False,
    )


@router.post("/payment_methods/{method_id}", responses=_ERRORS, openapi_extra=FORM_BODY)
async def update_payment_method(request: Request, scope: Scope, method_id: str) -> JSONResponse:
    params = await read_params(request)
    fields = parse_update(params)
    return await _post(
        request,
        scope,
        params,
        lambda connection: (200, service.update(connection, scope, method_id, fields)),
    )


@router.post("/payment_methods/{method_id}/attach", responses=_ERRORS, openapi_extra=FORM_BODY)
async def attach_payment_method(request: Request, scope: Scope, method_id: str) -> JSONResponse:
    params = await read_params(request)
    _only(params, frozenset({"customer", "expand"}))
    customer = params.get("customer")
    if not isinstance(customer, str) or not 0 < len(customer) <= ID_LENGTH_MAX:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="parameter_missing",
            message="Missing required param: customer.",
            param="customer",
        )
    vault = _vault(request)
    return await _post(
        request,
        scope,
        params,
        lambda connection: (
            200,
            service.attach(connection, scope, vault, method_id, customer),
        ),
    )


@router.post("/payment_methods/{method_id}/detach", responses=_ERRORS, openapi_extra=FORM_BODY)
async def detach_payment_method(request: Request, scope: Scope, method_id: str) -> JSONResponse:
    _only(await read_params(request), frozenset({"expand"}))
    return await _post(
        request, scope, {}, lambda connection: (200, service.detach(connection, scope, method_id))
    )
