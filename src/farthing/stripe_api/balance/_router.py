"""GET /v1/balance and /v1/balance_transactions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from farthing.db.schema import stripe_balance_transactions as transactions
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._expand import expand, list_paths, register
from farthing.stripe_api._lists import ID_LENGTH_MAX, parse_list_query
from farthing.stripe_api._params import Reader
from farthing.stripe_api._request import LIST_PARAMS, PREFIX, Partition, Scope, read_params
from farthing.stripe_api.customers import _repository as customers
from farthing.stripe_api.customers._schemas import customer_object
from farthing.stripe_api.payment_intents import write
from farthing.stripe_api.payment_methods import _repository as payment_methods
from farthing.stripe_api.payment_methods._schemas import payment_method_object
from farthing.stripe_api.payments import (
    balance_object,
    balance_transaction_object,
    require_done,
    settle_due,
)

__all__ = ["router"]

router = APIRouter(prefix=PREFIX, tags=["balance"])
LIST_URL = "/v1/balance_transactions"
TYPE_LENGTH_MAX = 32
_ERRORS: dict[int | str, dict[str, str]] = {
    400: {"description": "Invalid request"},
    401: {"description": "Missing or invalid API key"},
    404: {"description": "No such balance transaction in the caller's account and mode"},
}


def _transaction(connection: sa.Connection, scope: Partition, txn_id: str) -> dict[str, Any] | None:
    row = objects.load(connection, transactions, scope, txn_id)
    return None if row is None else balance_transaction_object(row, livemode=scope.livemode)


def _customer(
    connection: sa.Connection, scope: Partition, customer_id: str
) -> dict[str, Any] | None:
    row = customers.load(connection, scope, customer_id)
    return None if row is None else customer_object(row, livemode=scope.livemode)


def _payment_method(
    connection: sa.Connection, scope: Partition, method_id: str
) -> dict[str, Any] | None:
    row = payment_methods.load(connection, scope, method_id)
    return None if row is None else payment_method_object(row, livemode=scope.livemode)


register("balance_transaction", _transaction, resource="balance_transactions")
register("customer", _customer, resource="customers")
register("payment_method", _payment_method, resource="payment_methods")


@router.get("/balance", responses=_ERRORS)
async def retrieve_balance(request: Request, scope: Scope) -> JSONResponse:
    Reader(await read_params(request)).finish()

    def step(ctx: Any) -> tuple[int, dict[str, Any]]:
        # Funds whose moment has come become available as the balance is read.
        movement = ctx.payments.ledger.movement(ctx.connection, scope)
        settle_due(ctx.connection, movement, scope, now_s=ctx.now_s)
        # A refusal rolls the marking back too: nothing may say available that the ledger does not.
        require_done(movement.post(ctx.connection), message="The balance could not be settled.")
        return 200, balance_object(ctx.connection, ctx.payments.ledger, scope)

    return await write(request, scope, {}, step, idempotent=False)


@router.get("/balance_transactions/{txn_id}", responses=_ERRORS)
async def retrieve_balance_transaction(
    request: Request, scope: Scope, txn_id: str
) -> dict[str, Any]:
    reader = Reader(await read_params(request))
    paths = reader.expand()
    reader.finish()

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            obj = _transaction(connection, scope, txn_id)
            if obj is None:
                raise objects.missing("balance transaction", txn_id)
            return expand(connection, scope, obj, paths)

    return await run_in_threadpool(read)


@router.get("/balance_transactions", responses=_ERRORS)
async def list_balance_transactions(request: Request, scope: Scope) -> dict[str, Any]:
    params = await read_params(request)
    reader = Reader(params)
    reader.ignore(*LIST_PARAMS)
    filters = {
        "type": reader.string("type", TYPE_LENGTH_MAX),
        "source_id": reader.string("source", ID_LENGTH_MAX),
        "payout_id": reader.string("payout", ID_LENGTH_MAX),
        "currency": reader.currency(required=False),
    }
    paths = list_paths(reader.expand())
    reader.finish()
    query = parse_list_query(params)
    conditions = [transactions.c[name] == value for name, value in filters.items() if value]

    def read() -> dict[str, Any]:
        with request.app.state.engine.connect() as connection:
            return objects.list_objects(
                connection,
                transactions,
                scope,
                query,
                url=LIST_URL,
                kind="balance transaction",
                render=lambda row: expand(
                    connection,
                    scope,
                    balance_transaction_object(row, livemode=scope.livemode),
                    paths,
                ),
                conditions=conditions,
            )

    return await run_in_threadpool(read)
