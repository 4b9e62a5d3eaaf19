"""Storage shared by the money-moving /v1 objects (intents, charges, refunds, balance
transactions, transfers, payouts): every table has ``seq``, ``id``, ``tenant_id``, ``mode``,
``created`` and ``metadata``; every query here is confined to one Partition."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import tenants
from farthing.http._errors import ApiError
from farthing.stripe_api._lists import ListQuery, TableList, list_table
from farthing.stripe_api._request import Partition

__all__ = [
    "ObjectRow",
    "insert",
    "list_objects",
    "load",
    "load_many",
    "lock_account",
    "missing",
    "new_id",
    "update",
]

ObjectRow = dict[str, Any]
ID_BYTES = 18  # 24 characters after the prefix, 144 bits: ids cannot be guessed.
LOAD_MANY_MAX = 1_000


def new_id(prefix: str) -> str:
    assert prefix.endswith("_")
    return prefix + secrets.token_urlsafe(ID_BYTES).replace("-", "0").replace("_", "1")


def missing(kind: str, object_id: str, param: str = "id") -> ApiError:
    return ApiError(
        404,
        type_="invalid_request_error",
        code="resource_missing",
        message=f"No such {kind}: '{object_id}'",
        param=param,
    )


def lock_account(connection: sa.Connection, scope: Partition) -> None:
    """Serialise the changes of one account that check a rule over several rows (a cap, "the
    first one is the default"): its tenant row is locked until the transaction ends (PostgreSQL;
    SQLite has one writer at a time anyway)."""
    # FOR NO KEY UPDATE: it does not block the rows that merely reference the tenant (their
    # foreign-key checks take FOR KEY SHARE), only other holders of this lock.
    connection.execute(
        sa.select(tenants.c.id)
        .where(tenants.c.id == scope.tenant_id)
        .with_for_update(key_share=True)
    ).one()


def _in(table: sa.Table, scope: Partition) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.tenant_id == scope.tenant_id, table.c.mode == scope.mode)


def insert(connection: sa.Connection, table: sa.Table, scope: Partition, row: ObjectRow) -> None:
    values = dict(row)
    values["metadata"] = json.dumps(values.get("metadata", {}))
    connection.execute(table.insert().values(tenant_id=scope.tenant_id, mode=scope.mode, **values))


def _decoded(row: sa.RowMapping) -> ObjectRow:
    values = dict(row)
    values["metadata"] = json.loads(values["metadata"])
    return values


def load(
    connection: sa.Connection,
    table: sa.Table,
    scope: Partition,
    object_id: str,
    *,
    for_update: bool = False,
) -> ObjectRow | None:
    """The object in the scope; ``for_update`` locks its row until the transaction ends
    (PostgreSQL; SQLite has one writer at a time anyway)."""
    query = sa.select(table).where(_in(table, scope), table.c.id == object_id)
    if for_update:
        query = query.with_for_update()
    row = connection.execute(query).mappings().one_or_none()
    return None if row is None else _decoded(row)


def load_many(
    connection: sa.Connection,
    table: sa.Table,
    scope: Partition,
    *conditions: sa.ColumnElement[bool],
    limit: int = LOAD_MANY_MAX,
    for_update: bool = False,
) -> list[ObjectRow]:
    assert 0 < limit <= LOAD_MANY_MAX
    query = sa.select(table).where(_in(table, scope), *conditions).order_by(table.c.seq)
    if for_update:
        query = query.with_for_update()
    return [_decoded(row) for row in connection.execute(query.limit(limit)).mappings()]


def update(
    connection: sa.Connection, table: sa.Table, scope: Partition, object_id: str, **values: Any
) -> None:
    if "metadata" in values:
        values["metadata"] = json.dumps(values["metadata"])
    updated = connection.execute(
        table.update().where(_in(table, scope), table.c.id == object_id).values(**values)
    )
    assert updated.rowcount == 1


def list_objects(  # noqa: PLR0913
    connection: sa.Connection,
    table: sa.Table,
    scope: Partition,
    query: ListQuery,
    *,
    url: str,
    kind: str,
    render: Callable[[ObjectRow], dict[str, Any]],
    conditions: Sequence[sa.ColumnElement[bool]] = (),
) -> dict[str, Any]:
    """One page of the scope's objects matching ``conditions``, newest first."""
    listing = TableList(
        table=table, cursor_scope=(_in(table, scope),), shown=(_in(table, scope), *conditions)
    )
    return list_table(
        connection,
        listing,
        query,
        url=url,
        missing=lambda object_id: missing(kind, object_id),
        render=lambda row: render(_decoded(row)),
    )
