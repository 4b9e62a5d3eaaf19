"""HTTP routes of /v1/payouts and /v1/accounts/{id}/external_accounts."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from farthing.db.schema import stripe_external_accounts as banks
from farthing.db.schema import stripe_payouts as payouts
from farthing.http._limits import bounded_int
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._expand import expand, list_paths
from farthing.stripe_api._form import FormValue
from farthing.stripe_api._idempotency import hide_secrets
from farthing.stripe_api._lists import ID_LENGTH_MAX, TIMESTAMP_MAX, parse_list_query
from farthing.stripe_api._params import Reader, invalid
from farthing.stripe_api._request import FORM_BODY, LIST_PARAMS, PREFIX, Params, Scope, read_params
from farthing.stripe_api.payment_intents import read, write
from farthing.stripe_api.payment_intents._service import Context, Outcome
from farthing.stripe_api.payments import payments_of
from farthing.stripe_api.payouts import _banks as bank_service
from farthing.stripe_api.payouts import _service as service

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["payouts"])
LIST_URL = "/v1/payouts"
DESCRIPTION_LENGTH_MAX = 1_000
STATEMENT_DESCRIPTOR_LENGTH_MAX = 22
STATUSES = frozenset({"pending", "in_transit", "paid", "failed", "canceled"})
METHODS = frozenset({"standard"})
_BOUNDS = ("gt", "gte", "lt", "lte")
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request, insufficient balance, or live mode (no bank rail)"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such payout, account or external account in scope"},
    409: {"description": "A request with the same Idempotency-Key is still executing"},
    503: {"description": "The vault has no key (bank account fingerprints need it)"},
}


# -- payouts -------------------------------------------------------------------------------


@router.post("/payouts", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_payout(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    amount = reader.amount("amount", required=True)
    currency = reader.currency()
    assert amount is not None
    assert currency is not None
    fields = service.PayoutFields(
        amount=amount,
        currency=currency,
        destination=reader.string("destination", ID_LENGTH_MAX),
        description=reader.string("description", DESCRIPTION_LENGTH_MAX),
        statement_descriptor=reader.string("statement_descriptor", STATEMENT_DESCRIPTOR_LENGTH_MAX),
        metadata=reader.metadata(),
    )
    reader.choice("method", METHODS, "standard")
    # Accepted without effect (docs/stripe-coverage.md): the balance is always card funds.
    reader.ignore("source_type")
    paths = reader.expand()
    reader.finish()
    return await write(request, scope, params, lambda ctx: service.create(ctx, fields), paths=paths)


@router.get("/payouts/{payout_id}", responses=_ERRORS)
async def retrieve_payout(request: Request, scope: Scope, payout_id: str) -> JSONResponse:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.finish()

    def step(ctx: Context) -> Outcome:
        service.with_rail(ctx)
        row = service.load_payout(ctx, payout_id)
        return 200, service.payout_object(row, livemode=scope.livemode)

    # A write: the bank rail moves the scope's due payouts on as they are read.
    return await write(request, scope, {}, step, paths=paths, idempotent=False)


@router.post("/payouts/{payout_id}", responses=_ERRORS, openapi_extra=FORM_BODY)
async def update_payout(request: Request, scope: Scope, payout_id: str) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    metadata = reader.metadata()
    paths = reader.expand()
    reader.finish()
    return await write(
        request, scope, params, lambda ctx: service.update(ctx, payout_id, metadata), paths=paths
    )


@router.post("/payouts/{payout_id}/cancel", responses=_ERRORS, openapi_extra=FORM_BODY)
async def cancel_payout(request: Request, scope: Scope, payout_id: str) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    paths = reader.expand()
    reader.finish()
    return await write(
        request, scope, params, lambda ctx: service.cancel(ctx, payout_id), paths=paths
    )


def _range(value: FormValue | None, name: str, column: sa.ColumnElement[int]) -> list[Any]:
    """``name=<unix s>`` or ``name[gt|gte|lt|lte]=<unix s>`` as WHERE conditions."""
    if value is None:
        return []
    bounds = {"eq": value} if isinstance(value, str) else value
    if not isinstance(bounds, dict) or not set(bounds) <= {*_BOUNDS, "eq"}:
        raise invalid(f"{name} takes an integer or gt, gte, lt, lte.", name)
    compare = {"gt": column.__gt__, "gte": column.__ge__, "lt": column.__lt__}
    compare |= {"lte": column.__le__, "eq": column.__eq__}
    conditions = []
    for bound, text in bounds.items():
        if not isinstance(text, str) or not text.isascii() or not text.isdecimal():
            raise invalid(f"Invalid integer: {name}.", name)
        number = bounded_int(text, 0, TIMESTAMP_MAX)
        if number is None:
            raise invalid(f"{name} must be at most {TIMESTAMP_MAX}.", name)
        conditions.append(compare[bound](number))
    return conditions


@router.get("/payouts", responses=_ERRORS)
async def list_payouts(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    conditions = _range(reader.raw("arrival_date"), "arrival_date", payouts.c.arrival_date)
    status = reader.string("status", max(map(len, STATUSES)))
    if status is not None:
        if status not in STATUSES:
            raise invalid(f"status must be one of {', '.join(sorted(STATUSES))}.", "status")
        conditions.append(payouts.c.status == status)
    destination = reader.string("destination", ID_LENGTH_MAX)
    if destination is not None:
        conditions.append(payouts.c.destination == destination)
    paths = list_paths(reader.expand())
    reader.finish()
    query = parse_list_query(params)

    def step(ctx: Context) -> Outcome:
        service.with_rail(ctx)
        return 200, objects.list_objects(
            ctx.connection, payouts, scope, query, url=LIST_URL, kind="payout",
            render=lambda row: expand(
                ctx.connection, scope, service.payout_object(row, livemode=scope.livemode), paths
            ),
            conditions=conditions,
        )  # fmt: skip

    return await write(request, scope, {}, step, idempotent=False)


# -- external accounts ---------------------------------------------------------------------


def _redacted(request: Request, params: Params) -> Params:
    vault = payments_of(request).require_vault()
    return hide_secrets(
        params, "external_account", frozenset({"account_number"}), vault.keyed_digest
    )


def _banks_url(account_id: str) -> str:
    return f"/v1/accounts/{account_id}/external_accounts"


@router.post("/accounts/{account_id}/external_accounts", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_external_account(request: Request, scope: Scope, account_id: str) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    fields = bank_service.parse_bank(
        reader.raw("external_account"), reader.boolean("default_for_currency"), reader.metadata()
    )
    paths = reader.expand()
    reader.finish()
    return await write(
        request,
        scope,
        _redacted(request, params),
        lambda ctx: bank_service.create(ctx, account_id, fields),
        paths=paths,
    )


@router.get("/accounts/{account_id}/external_accounts", responses=_ERRORS)
async def list_external_accounts(request: Request, scope: Scope, account_id: str) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    kind = reader.string("object", len("bank_account"))
    if kind not in {None, "bank_account", "card"}:
        raise invalid("object must be bank_account or card.", "object")
    reader.finish()
    query = parse_list_query(params)
    # Debit cards are not supported as external accounts: listing cards finds none.
    conditions = [banks.c.deleted.is_(False), sa.true() if kind != "card" else sa.false()]

    def step(ctx: Context) -> dict[str, Any]:
        owner = bank_service.owner_scope(ctx, account_id)
        return objects.list_objects(
            ctx.connection, banks, owner, query, url=_banks_url(account_id),
            kind="external_account", render=bank_service.bank_account_object,
            conditions=conditions,
        )  # fmt: skip

    result: dict[str, Any] = await read(request, scope, step)
    return result


@router.get("/accounts/{account_id}/external_accounts/{bank_id}", responses=_ERRORS)
async def retrieve_external_account(
    request: Request, scope: Scope, account_id: str, bank_id: str
) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.finish()

    def step(ctx: Context) -> dict[str, Any]:
        owner = bank_service.owner_scope(ctx, account_id)
        obj = bank_service.bank_account_object(bank_service.load_bank(ctx, owner, bank_id))
        return expand(ctx.connection, owner, obj, paths)

    result: dict[str, Any] = await read(request, scope, step)
    return result


@router.post(
    "/accounts/{account_id}/external_accounts/{bank_id}",
    responses=_ERRORS,
    openapi_extra=FORM_BODY,
)
async def update_external_account(
    request: Request, scope: Scope, account_id: str, bank_id: str
) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    changes = {
        "metadata": reader.metadata(),
        "default_for_currency": reader.boolean("default_for_currency"),
        "account_holder_name": reader.string(
            "account_holder_name", bank_service.HOLDER_NAME_LENGTH_MAX
        ),
    }
    paths = reader.expand()
    reader.finish()
    return await write(
        request,
        scope,
        params,
        lambda ctx: bank_service.update(ctx, account_id, bank_id, changes),
        paths=paths,
    )


@router.delete("/accounts/{account_id}/external_accounts/{bank_id}", responses=_ERRORS)
async def delete_external_account(
    request: Request, scope: Scope, account_id: str, bank_id: str
) -> JSONResponse:
    params = await read_params(request)
    Reader(params).finish()
    return await write(
        request, scope, params, lambda ctx: bank_service.delete(ctx, account_id, bank_id)
    )
