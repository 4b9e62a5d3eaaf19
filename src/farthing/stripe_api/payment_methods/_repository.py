"""PaymentMethod rows (SQLAlchemy Core); every statement is confined to one (tenant, mode)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from farthing.db.schema import stripe_payment_methods as methods
from farthing.stripe_api._lists import TableList
from farthing.stripe_api._request import Partition

__all__ = ["Filters", "PaymentMethodRow", "decode", "insert", "listing", "load", "update"]


@dataclass(frozen=True, slots=True)
class PaymentMethodRow:
    """A row as the API may see it: masked card data only (the sealed PAN is write-only here)."""

    id: str
    created: int
    type: str
    customer_id: str | None
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    funding: str
    country: str | None
    fingerprint: str
    billing_name: str | None
    billing_email: str | None
    metadata_: dict[str, str]


_COLUMNS = (
    methods.c.id,
    methods.c.created,
    methods.c.type,
    methods.c.customer_id,
    methods.c.brand,
    methods.c.last4,
    methods.c.exp_month,
    methods.c.exp_year,
    methods.c.funding,
    methods.c.country,
    methods.c.fingerprint,
    methods.c.billing_name,
    methods.c.billing_email,
    methods.c.metadata,
)


def decode(row: sa.RowMapping) -> PaymentMethodRow:
    values = dict(row)
    values["metadata_"] = json.loads(values.pop("metadata"))
    return PaymentMethodRow(**values)


def _in(scope: Partition) -> sa.ColumnElement[bool]:
    return sa.and_(methods.c.tenant_id == scope.tenant_id, methods.c.mode == scope.mode)


def insert(
    connection: sa.Connection,
    scope: Partition,
    row: PaymentMethodRow,
    *,
    vault_key_id: str,
    pan_sealed: bytes,
) -> None:
    values = {column.name: getattr(row, column.name) for column in _COLUMNS[:-1]}
    connection.execute(
        methods.insert().values(
            **values,
            tenant_id=scope.tenant_id,
            mode=scope.mode,
            metadata=json.dumps(row.metadata_),
            vault_key_id=vault_key_id,
            pan_sealed=pan_sealed,
        )
    )


def load(
    connection: sa.Connection, scope: Partition, method_id: str, *, for_update: bool = False
) -> PaymentMethodRow | None:
    query = sa.select(*_COLUMNS).where(_in(scope), methods.c.id == method_id)
    # FOR UPDATE before a change: concurrent changes wait, then see the row as it became.
    row = (
        connection.execute(query.with_for_update() if for_update else query)
        .mappings()
        .one_or_none()
    )
    return None if row is None else decode(row)


def sealed_number(
    connection: sa.Connection, scope: Partition, method_id: str
) -> tuple[str, bytes] | None:
    """(vault key id, sealed card number) of a payment method, for the card processor only."""
    row = connection.execute(
        sa.select(methods.c.vault_key_id, methods.c.pan_sealed).where(
            _in(scope), methods.c.id == method_id
        )
    ).one_or_none()
    return None if row is None else (row.vault_key_id, bytes(row.pan_sealed))


def update(connection: sa.Connection, scope: Partition, row: PaymentMethodRow) -> None:
    updated = connection.execute(
        methods.update()
        .where(_in(scope), methods.c.id == row.id)
        .values(
            customer_id=row.customer_id,
            billing_name=row.billing_name,
            billing_email=row.billing_email,
            metadata=json.dumps(row.metadata_),
        )
    )
    assert updated.rowcount == 1


@dataclass(frozen=True, slots=True)
class Filters:
    customer_id: str | None
    type: str | None


def listing(scope: Partition, filters: Filters) -> TableList:
    shown = [_in(scope)]
    if filters.customer_id is not None:
        shown.append(methods.c.customer_id == filters.customer_id)
    if filters.type is not None:
        shown.append(methods.c.type == filters.type)
    return TableList(
        table=methods, cursor_scope=(_in(scope),), shown=tuple(shown), columns=_COLUMNS
    )
