"""GET /v1/charges and /v1/charges/{id}: charges are created by payment intents."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from farthing.db.schema import stripe_charges as charges
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._expand import expand, list_paths, register
from farthing.stripe_api._lists import ID_LENGTH_MAX, parse_list_query
from farthing.stripe_api._params import Reader
from farthing.stripe_api._request import (
    LIST_PARAMS,
    PREFIX,
    Partition,
    Scope,
    engine_of,
    read_params,
)
from farthing.stripe_api.charges._schemas import charge_object

__all__ = ["load_charge", "router"]

router = APIRouter(prefix=PREFIX, tags=["charges"])
LIST_URL = "/v1/charges"
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such charge in the caller's account and mode"},
}


def load_charge(
    connection: sa.Connection, scope: Partition, charge_id: str
) -> dict[str, Any] | None:
    row = objects.load(connection, charges, scope, charge_id)
    return None if row is None else charge_object(row, livemode=scope.livemode)


register("latest_charge", load_charge, resource="charges")
register("charge", load_charge, resource="charges")


@router.get("/charges/{charge_id}", responses=_ERRORS)
async def retrieve_charge(request: Request, scope: Scope, charge_id: str) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.finish()

    def read() -> dict[str, Any]:
        with engine_of(request).connect() as connection:
            obj = load_charge(connection, scope, charge_id)
            if obj is None:
                raise objects.missing("charge", charge_id)
            return expand(connection, scope, obj, paths)

    return await run_in_threadpool(read)


@router.get("/charges", responses=_ERRORS)
async def list_charges(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    customer = reader.string("customer", ID_LENGTH_MAX)
    intent = reader.string("payment_intent", ID_LENGTH_MAX)
    paths = list_paths(reader.expand())
    reader.finish()
    query = parse_list_query(params)
    conditions = []
    if customer is not None:
        conditions.append(charges.c.customer_id == customer)
    if intent is not None:
        conditions.append(charges.c.payment_intent_id == intent)

    def read() -> dict[str, Any]:
        with engine_of(request).connect() as connection:
            return objects.list_objects(
                connection,
                charges,
                scope,
                query,
                url=LIST_URL,
                kind="charge",
                render=lambda row: expand(
                    connection,
                    scope,
                    charge_object(row, livemode=scope.livemode),
                    paths,
                ),
                conditions=conditions,
            )

    return await run_in_threadpool(read)
