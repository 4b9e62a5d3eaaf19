"""Connected accounts as destinations of money: only the caller's own, in the caller's mode."""

from __future__ import annotations

import sqlalchemy as sa

from farthing.db.schema import stripe_accounts, tenants
from farthing.stripe_api._params import invalid
from farthing.stripe_api._request import Partition

__all__ = ["destination_scope"]


def destination_scope(
    connection: sa.Connection, scope: Partition, account_id: str, *, param: str
) -> Partition:
    """The partition of a connected account of the caller (a platform acting as itself);
    any other id is a 400 that does not tell whether the account exists elsewhere."""
    found = connection.execute(
        sa.select(tenants.c.id)
        .outerjoin(stripe_accounts, stripe_accounts.c.id == tenants.c.id)
        .where(
            tenants.c.id == account_id,
            tenants.c.parent_id == scope.tenant_id,
            tenants.c.mode == scope.mode,
            sa.or_(stripe_accounts.c.deleted.is_(None), stripe_accounts.c.deleted.is_(False)),
        )
    ).scalar_one_or_none()
    if found is None or scope.tenant_id != scope.platform_id:
        raise invalid(
            f"No such destination: '{account_id}' is not one of your connected accounts.", param
        )
    return Partition(tenant_id=account_id, mode=scope.mode, platform_id=scope.platform_id)
