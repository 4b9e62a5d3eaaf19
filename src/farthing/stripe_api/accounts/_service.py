"""Account operations: each takes the caller's scope and a connection in its transaction."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from farthing.auth import Mode, create_connected_tenant
from farthing.auth._keys import TENANT_NAME_LENGTH_MAX
from farthing.http._errors import ApiError
from farthing.stripe_api._lists import ListQuery, list_table
from farthing.stripe_api._params import merge_metadata
from farthing.stripe_api._request import Partition
from farthing.stripe_api.accounts import _repository as repository
from farthing.stripe_api.accounts._schemas import AccountFields, account_object, not_a_platform
from farthing.stripe_api.events import changed, emit

__all__ = [
    "LIST_URL",
    "create",
    "delete",
    "list_accounts",
    "retrieve",
    "retrieve_current",
    "update",
]

LIST_URL = "/v1/accounts"


def _no_access(account_id: str) -> ApiError:
    # Stripe answers an account the key cannot reach with 403 (the SDK's PermissionError), the
    # same for one that does not exist, so ids of other platforms' accounts cannot be probed.
    return ApiError(
        403,
        type_="invalid_request_error",
        code="account_invalid",
        message=f"The provided key does not have access to account '{account_id}' "
        "(or that account does not exist).",
    )


def _missing_cursor(account_id: str) -> ApiError:
    return ApiError(
        404,
        type_="invalid_request_error",
        code="resource_missing",
        message=f"No such account: '{account_id}'",
        param="id",
    )


def _require_platform(scope: Partition) -> None:
    if scope.tenant_id != scope.platform_id:
        raise not_a_platform()


def create(connection: sa.Connection, scope: Partition, fields: AccountFields) -> dict[str, Any]:
    _require_platform(scope)
    assert fields.country is not None
    assert fields.default_currency is not None
    email = fields.text.get("email")
    # The tenant's display name (for operators): the email when given, else the id.
    account_id = create_connected_tenant(
        connection,
        parent_id=scope.tenant_id,
        mode=Mode(scope.mode),
        name=email[:TENANT_NAME_LENGTH_MAX] if email else None,
    )
    row = repository.AccountRow(
        id=account_id,
        created=int(time.time()),
        type="custom",
        country=fields.country,
        email=email,
        default_currency=fields.default_currency,
        business_type=fields.text.get("business_type"),
        charges_enabled=True,
        payouts_enabled=True,
        metadata_=merge_metadata({}, fields.metadata),
    )
    repository.insert(connection, scope, row)
    return account_object(row)


def _load(
    connection: sa.Connection, scope: Partition, account_id: str, *, for_update: bool = False
) -> repository.AccountRow:
    row = repository.load(connection, scope, account_id, for_update=for_update)
    if row is None:
        raise _no_access(account_id)
    return row


def retrieve_current(connection: sa.Connection, scope: Partition) -> dict[str, Any]:
    """The account the request acts for: the caller's own, or the Stripe-Account one."""
    return retrieve(connection, scope, scope.tenant_id)


def retrieve(connection: sa.Connection, scope: Partition, account_id: str) -> dict[str, Any]:
    if account_id == scope.tenant_id == scope.platform_id:
        top_level = repository.load_top_level(connection, account_id)
        if top_level is not None:
            return account_object(top_level)
    return account_object(_load(connection, scope, account_id))


def update(
    connection: sa.Connection, scope: Partition, account_id: str, fields: AccountFields
) -> dict[str, Any]:
    _require_platform(scope)
    before = _load(connection, scope, account_id, for_update=True)
    row = replace(
        before,
        email=fields.text.get("email", before.email),
        business_type=fields.text.get("business_type", before.business_type),
        metadata_=merge_metadata(before.metadata_, fields.metadata),
    )
    repository.update(connection, scope, row, deleted=False)
    obj = account_object(row)
    previous = changed(account_object(before), obj)
    if previous:
        # The platform hears of its connected accounts' changes.
        emit(connection, scope, "account.updated", obj, previous=previous)
    return obj


def delete(connection: sa.Connection, scope: Partition, account_id: str) -> dict[str, Any]:
    # Soft delete: the row keeps its place as a list cursor; Stripe-Account and every read
    # skip it from now on.
    _require_platform(scope)
    row = _load(connection, scope, account_id, for_update=True)
    repository.update(connection, scope, row, deleted=True)
    return {"id": account_id, "object": "account", "deleted": True}


def list_accounts(connection: sa.Connection, scope: Partition, query: ListQuery) -> dict[str, Any]:
    return list_table(
        connection,
        repository.listing(scope),
        query,
        url=LIST_URL,
        missing=_missing_cursor,
        render=lambda row: account_object(repository.decode(row)),
    )
