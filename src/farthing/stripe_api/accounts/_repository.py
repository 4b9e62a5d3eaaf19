"""Account rows (SQLAlchemy Core). A connected account is a ``tenants`` row (its parent and
mode) plus a ``stripe_accounts`` profile owned by the platform: the profile's ``tenant_id`` is
the platform, so every statement here is confined to the platform's (tenant, mode)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa

from farthing.db.schema import stripe_accounts as accounts
from farthing.db.schema import tenants
from farthing.stripe_api._lists import TableList
from farthing.stripe_api._request import Partition

__all__ = ["AccountRow", "decode", "insert", "listing", "load", "load_top_level", "update"]

NS_PER_S = 10**9
# How a top-level account (a merchant made with `farthing accounts create`) shows itself: it has
# no profile row, and Farthing asks nothing of it before it may charge.
_TOP_LEVEL_COUNTRY = "US"
_TOP_LEVEL_CURRENCY = "usd"


@dataclass(frozen=True, slots=True)
class AccountRow:
    id: str
    created: int
    type: str
    country: str
    email: str | None
    default_currency: str
    business_type: str | None
    charges_enabled: bool
    payouts_enabled: bool
    metadata_: dict[str, str]


_COLUMNS = (
    accounts.c.id,
    accounts.c.created,
    accounts.c.type,
    accounts.c.country,
    accounts.c.email,
    accounts.c.default_currency,
    accounts.c.business_type,
    accounts.c.charges_enabled,
    accounts.c.payouts_enabled,
    accounts.c.metadata,
)


def decode(row: sa.RowMapping) -> AccountRow:
    return AccountRow(
        id=row["id"],
        created=row["created"],
        type=row["type"],
        country=row["country"],
        email=row["email"],
        default_currency=row["default_currency"],
        business_type=row["business_type"],
        charges_enabled=bool(row["charges_enabled"]),
        payouts_enabled=bool(row["payouts_enabled"]),
        metadata_=json.loads(row["metadata"]),
    )


def _of_platform(scope: Partition) -> sa.ColumnElement[bool]:
    """Profiles of the scope's platform in the scope's mode; acting for a connected account
    (``Stripe-Account``), only that account's own profile."""
    conditions = [accounts.c.tenant_id == scope.platform_id, accounts.c.mode == scope.mode]
    if scope.tenant_id != scope.platform_id:
        conditions.append(accounts.c.id == scope.tenant_id)
    return sa.and_(*conditions)


def _owned_by(scope: Partition) -> sa.ColumnElement[bool]:
    """The connected accounts the scope itself owns: none when it is a connected account."""
    return sa.and_(accounts.c.tenant_id == scope.tenant_id, accounts.c.mode == scope.mode)


def insert(connection: sa.Connection, scope: Partition, row: AccountRow) -> None:
    """The profile of a connected account whose tenant row exists already."""
    connection.execute(
        accounts.insert().values(
            id=row.id,
            tenant_id=scope.platform_id,
            mode=scope.mode,
            created=row.created,
            metadata=json.dumps(row.metadata_),
            type=row.type,
            country=row.country,
            email=row.email,
            default_currency=row.default_currency,
            business_type=row.business_type,
            charges_enabled=row.charges_enabled,
            payouts_enabled=row.payouts_enabled,
        )
    )


def load(
    connection: sa.Connection, scope: Partition, account_id: str, *, for_update: bool = False
) -> AccountRow | None:
    """The live (not deleted) connected account with this id that the scope may see."""
    query = sa.select(*_COLUMNS).where(
        _of_platform(scope), accounts.c.id == account_id, accounts.c.deleted.is_(False)
    )
    # FOR UPDATE before a change: concurrent changes wait, then see the row as it became.
    row = (
        connection.execute(query.with_for_update() if for_update else query)
        .mappings()
        .one_or_none()
    )
    return None if row is None else decode(row)


def load_top_level(connection: sa.Connection, tenant_id: str) -> AccountRow | None:
    row = connection.execute(
        sa.select(tenants.c.id, tenants.c.created_at_ns).where(
            tenants.c.id == tenant_id, tenants.c.parent_id.is_(None)
        )
    ).one_or_none()
    if row is None:
        return None
    return AccountRow(
        id=row.id,
        created=row.created_at_ns // NS_PER_S,
        type="standard",
        country=_TOP_LEVEL_COUNTRY,
        email=None,
        default_currency=_TOP_LEVEL_CURRENCY,
        business_type=None,
        charges_enabled=True,
        payouts_enabled=True,
        metadata_={},
    )


def update(connection: sa.Connection, scope: Partition, row: AccountRow, *, deleted: bool) -> None:
    updated = connection.execute(
        accounts.update()
        .where(_of_platform(scope), accounts.c.id == row.id, accounts.c.deleted.is_(False))
        .values(
            email=row.email,
            business_type=row.business_type,
            metadata=json.dumps(row.metadata_),
            deleted=deleted,
        )
    )
    assert updated.rowcount == 1


def listing(scope: Partition) -> TableList:
    """Pages show the live connected accounts the scope owns; a cursor may name a deleted one."""
    return TableList(
        table=accounts,
        cursor_scope=(_owned_by(scope),),
        shown=(_owned_by(scope), accounts.c.deleted.is_(False)),
        columns=_COLUMNS,
    )
