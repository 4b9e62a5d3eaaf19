"""HTTP routes of /v1/transfers and /v1/transfers/{id}/reversals."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from farthing.db.schema import stripe_transfer_reversals as reversals
from farthing.db.schema import stripe_transfers as transfers
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._expand import expand, list_paths, register
from farthing.stripe_api._lists import ID_LENGTH_MAX, parse_list_query
from farthing.stripe_api._params import Reader
from farthing.stripe_api._request import (
    FORM_BODY,
    LIST_PARAMS,
    PREFIX,
    Partition,
    Scope,
    read_params,
)
from farthing.stripe_api.payment_intents import read, write
from farthing.stripe_api.payment_intents._service import Context
from farthing.stripe_api.transfers import _service as service

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["transfers"])
LIST_URL = "/v1/transfers"
DESCRIPTION_LENGTH_MAX = 1_000
TRANSFER_GROUP_LENGTH_MAX = 128
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request, insufficient balance or amount too large"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such transfer or transfer reversal in scope"},
    409: {"description": "A request with the same Idempotency-Key is still executing"},
}


def _load_reversal(
    connection: sa.Connection, scope: Partition, reversal_id: str
) -> dict[str, Any] | None:
    row = objects.load(connection, reversals, scope, reversal_id)
    return None if row is None else service.reversal_object(row, livemode=scope.livemode)


# A refund's reversal (reverse_transfer).
register("transfer_reversal", _load_reversal, resource="transfers")


@router.post("/transfers", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_transfer(request: Request, scope: Scope) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    amount = reader.amount("amount", required=True)
    currency = reader.currency()
    destination = reader.string("destination", ID_LENGTH_MAX, required=True)
    assert amount is not None
    assert currency is not None
    assert destination is not None
    fields = service.TransferFields(
        amount=amount,
        currency=currency,
        destination=destination,
        description=reader.string("description", DESCRIPTION_LENGTH_MAX),
        metadata=reader.metadata(),
        transfer_group=reader.string("transfer_group", TRANSFER_GROUP_LENGTH_MAX),
        source_transaction=reader.string("source_transaction", ID_LENGTH_MAX),
    )
    # Without effect here (docs/stripe-coverage.md): the balance is always card funds.
    reader.ignore("source_type")
    paths = reader.expand()
    reader.finish()
    return await write(request, scope, params, lambda ctx: service.create(ctx, fields), paths=paths)


@router.get("/transfers/{transfer_id}", responses=_ERRORS)
async def retrieve_transfer(request: Request, scope: Scope, transfer_id: str) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.finish()

    def step(ctx: Context) -> dict[str, Any]:
        row = service.load_transfer(ctx, transfer_id)
        obj = service.transfer_object(ctx.connection, scope, row)
        return expand(ctx.connection, scope, obj, paths)

    result: dict[str, Any] = await read(request, scope, step)
    return result


@router.post("/transfers/{transfer_id}", responses=_ERRORS, openapi_extra=FORM_BODY)
async def update_transfer(request: Request, scope: Scope, transfer_id: str) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    description = reader.string("description", DESCRIPTION_LENGTH_MAX)
    metadata = reader.metadata()
    paths = reader.expand()
    reader.finish()
    return await write(
        request,
        scope,
        params,
        lambda ctx: service.update(ctx, transfer_id, description, metadata),
        paths=paths,
    )


@router.get("/transfers", responses=_ERRORS)
async def list_transfers(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    destination = reader.string("destination", ID_LENGTH_MAX)
    group = reader.string("transfer_group", TRANSFER_GROUP_LENGTH_MAX)
    paths = list_paths(reader.expand())
    reader.finish()
    query = parse_list_query(params)
    conditions = []
    if destination is not None:
        conditions.append(transfers.c.destination == destination)
    if group is not None:
        conditions.append(transfers.c.transfer_group == group)

    def step(ctx: Context) -> dict[str, Any]:
        return objects.list_objects(
            ctx.connection,
            transfers,
            scope,
            query,
            url=LIST_URL,
            kind="transfer",
            render=lambda row: expand(
                ctx.connection, scope, service.transfer_object(ctx.connection, scope, row), paths
            ),
            conditions=conditions,
        )

    result: dict[str, Any] = await read(request, scope, step)
    return result


# -- reversals -----------------------------------------------------------------------------


@router.post("/transfers/{transfer_id}/reversals", responses=_ERRORS, openapi_extra=FORM_BODY)
async def create_reversal(request: Request, scope: Scope, transfer_id: str) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    fields = service.ReversalFields(amount=reader.amount("amount"), metadata=reader.metadata())
    # Accepted without effect (docs/stripe-coverage.md): no application fees to refund here,
    # and a reversal keeps no description of its own.
    reader.ignore("description", "refund_application_fee")
    paths = reader.expand()
    reader.finish()
    return await write(
        request,
        scope,
        params,
        lambda ctx: service.create_reversal(ctx, transfer_id, fields),
        paths=paths,
    )


@router.get("/transfers/{transfer_id}/reversals", responses=_ERRORS)
async def list_reversals(request: Request, scope: Scope, transfer_id: str) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    paths = list_paths(reader.expand())
    reader.finish()
    query = parse_list_query(params)

    def step(ctx: Context) -> dict[str, Any]:
        service.load_transfer(ctx, transfer_id)
        return objects.list_objects(
            ctx.connection,
            reversals,
            scope,
            query,
            url=service.reversals_url(transfer_id),
            kind="transfer_reversal",
            render=lambda row: expand(
                ctx.connection, scope, service.reversal_object(row, livemode=False), paths
            ),
            conditions=[reversals.c.transfer_id == transfer_id],
        )

    result: dict[str, Any] = await read(request, scope, step)
    return result


@router.get("/transfers/{transfer_id}/reversals/{reversal_id}", responses=_ERRORS)
async def retrieve_reversal(
    request: Request, scope: Scope, transfer_id: str, reversal_id: str
) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.finish()

    def step(ctx: Context) -> dict[str, Any]:
        row = objects.load(ctx.connection, reversals, scope, reversal_id)
        if row is None or row["transfer_id"] != transfer_id:
            raise objects.missing("transfer_reversal", reversal_id)
        obj = service.reversal_object(row, livemode=scope.livemode)
        return expand(ctx.connection, scope, obj, paths)

    result: dict[str, Any] = await read(request, scope, step)
    return result


@router.post(
    "/transfers/{transfer_id}/reversals/{reversal_id}",
    responses=_ERRORS,
    openapi_extra=FORM_BODY,
)
async def update_reversal(
    request: Request, scope: Scope, transfer_id: str, reversal_id: str
) -> JSONResponse:
    params = await read_params(request)
    reader = Reader(params)
    metadata = reader.metadata()
    paths = reader.expand()
    reader.finish()
    return await write(
        request,
        scope,
        params,
        lambda ctx: service.update_reversal(ctx, transfer_id, reversal_id, metadata),
        paths=paths,
    )
