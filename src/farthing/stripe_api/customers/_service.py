"""Customer operations: each takes the caller's scope and a connection in its transaction."""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from farthing.http._errors import ApiError
from farthing.stripe_api._lists import ListQuery, list_table
from farthing.stripe_api._params import merge_metadata
from farthing.stripe_api._request import Partition
from farthing.stripe_api.customers import _repository as repository
from farthing.stripe_api.customers._schemas import CustomerFields, customer_object
from farthing.stripe_api.events import changed, emit

__all__ = ["LIST_URL", "create", "delete", "list_customers", "retrieve", "update"]

LIST_URL = "/v1/customers"
# cus_ + 24 base62-ish characters, like Stripe's 14-to-24-character ids, with 144 bits of entropy.
ID_BYTES = 18


def _new_id() -> str:
    return "cus_" + secrets.token_urlsafe(ID_BYTES).replace("-", "0").replace("_", "1")


def _missing(customer_id: str) -> ApiError:
    return ApiError(
        404,
        type_="invalid_request_error",
        code="resource_missing",
        message=f"No such customer: '{customer_id}'",
        param="id",
    )


def create(connection: sa.Connection, scope: Partition, fields: CustomerFields) -> dict[str, Any]:
    row = repository.CustomerRow(
        id=_new_id(),
        created=int(time.time()),
        email=fields.text.get("email"),
        name=fields.text.get("name"),
        description=fields.text.get("description"),
        phone=fields.text.get("phone"),
        metadata_=merge_metadata({}, fields.metadata),
    )
    repository.insert(connection, scope, row)
    obj = customer_object(row, livemode=scope.livemode)
    emit(connection, scope, "customer.created", obj)
    return obj


def _load(
    connection: sa.Connection, scope: Partition, customer_id: str, *, for_update: bool = False
) -> repository.CustomerRow:
    row = repository.load(connection, scope, customer_id, for_update=for_update)
    if row is None:
        raise _missing(customer_id)
    return row


def retrieve(connection: sa.Connection, scope: Partition, customer_id: str) -> dict[str, Any]:
    return customer_object(_load(connection, scope, customer_id), livemode=scope.livemode)


def update(
    connection: sa.Connection, scope: Partition, customer_id: str, fields: CustomerFields
) -> dict[str, Any]:
    before = _load(connection, scope, customer_id, for_update=True)
    row = replace(
        before,
        email=fields.text.get("email", before.email),
        name=fields.text.get("name", before.name),
        description=fields.text.get("description", before.description),
        phone=fields.text.get("phone", before.phone),
        metadata_=merge_metadata(before.metadata_, fields.metadata),
    )
    repository.update(connection, scope, row, deleted=False)
    obj = customer_object(row, livemode=scope.livemode)
    previous = changed(customer_object(before, livemode=scope.livemode), obj)
    if previous:
        emit(connection, scope, "customer.updated", obj, previous=previous)
    return obj


def delete(connection: sa.Connection, scope: Partition, customer_id: str) -> dict[str, Any]:
    # Soft delete: the row keeps its place as a list cursor; every read skips it.
    row = _load(connection, scope, customer_id, for_update=True)
    repository.update(connection, scope, row, deleted=True)
    emit(connection, scope, "customer.deleted", customer_object(row, livemode=scope.livemode))
    return {"id": customer_id, "object": "customer", "deleted": True}


def list_customers(connection: sa.Connection, scope: Partition, query: ListQuery) -> dict[str, Any]:
    return list_table(
        connection,
        repository.listing(scope),
        query,
        url=LIST_URL,
        missing=_missing,
        render=lambda row: customer_object(repository.decode(row), livemode=scope.livemode),
    )
