"""Customer rows (SQLAlchemy Core); every statement is confined to one (tenant, mode)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from farthing.db.schema import stripe_customers as customers
from farthing.stripe_api._lists import TableList
from farthing.stripe_api._request import Partition

__all__ = ["CustomerRow", "decode", "insert", "listing", "load", "update"]


@dataclass(frozen=True, slots=True)
class CustomerRow:
    id: str
    created: int
    email: str | None
    name: str | None
    description: str | None
    phone: str | None
    metadata_: dict[str, str]


_COLUMNS = (
    customers.c.id,
    customers.c.created,
    customers.c.email,
    customers.c.name,
    customers.c.description,
    customers.c.phone,
    customers.c.metadata,
)


def decode(row: sa.RowMapping) -> CustomerRow:
    return CustomerRow(
        id=row["id"],
        created=row["created"],
        email=row["email"],
        name=row["name"],
        description=row["description"],
        phone=row["phone"],
        metadata_=json.loads(row["metadata"]),
    )


def _in(scope: Partition) -> sa.ColumnElement[bool]:
    return sa.and_(customers.c.tenant_id == scope.tenant_id, customers.c.mode == scope.mode)


def insert(connection: sa.Connection, scope: Partition, row: CustomerRow) -> None:
    connection.execute(
        customers.insert().values(
            id=row.id,
            tenant_id=scope.tenant_id,
            mode=scope.mode,
            created=row.created,
            email=row.email,
            name=row.name,
            description=row.description,
            phone=row.phone,
            metadata=json.dumps(row.metadata_),
        )
    )


def load(
    connection: sa.Connection, scope: Partition, customer_id: str, *, for_update: bool = False
) -> CustomerRow | None:
    """The live (not deleted) customer with this id in the scope."""
    query = sa.select(*_COLUMNS).where(
        _in(scope), customers.c.id == customer_id, customers.c.deleted.is_(False)
    )
    # FOR UPDATE before a change: concurrent changes wait, then see the row as it became.
    row = (
        connection.execute(query.with_for_update() if for_update else query)
        .mappings()
        .one_or_none()
    )
    return None if row is None else decode(row)


def update(connection: sa.Connection, scope: Partition, row: CustomerRow, *, deleted: bool) -> None:
    updated = connection.execute(
        customers.update()
        .where(_in(scope), customers.c.id == row.id, customers.c.deleted.is_(False))
        .values(
            email=row.email,
            name=row.name,
            description=row.description,
            phone=row.phone,
            metadata=json.dumps(row.metadata_),
            deleted=deleted,
        )
    )
    assert updated.rowcount == 1


def listing(scope: Partition) -> TableList:
    """Pages show live customers; a cursor may name a deleted one."""
    return TableList(
        table=customers,
        cursor_scope=(_in(scope),),
        shown=(_in(scope), customers.c.deleted.is_(False)),
        columns=_COLUMNS,
    )
