"""Tenants, their ledgers and their API keys.

A secret key is 32 random bytes (``sk_test_`` + 43 url-safe characters), shown once at creation.
Only its SHA-256 hash is stored: with that much entropy a fast hash cannot be brute-forced, and a
lookup by hash needs no constant-time comparison of secrets.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
import time
from dataclasses import dataclass

import sqlalchemy as sa

from farthing._errors import NotFoundError
from farthing.db.schema import api_keys, ledgers, tenants

__all__ = [
    "NATIVE",
    "PAYMENTS",
    "ApiKey",
    "Mode",
    "authenticate",
    "create_key",
    "create_tenant",
    "default_tenant_id",
    "ensure_default_tenant",
    "ledger_id_for",
    "revoke_key",
]

# Ledger purposes: a tenant's own ledger (/ledger/v1) and the ledger of its payments (/v1).
NATIVE = "native"
PAYMENTS = "payments"
SECRET_BYTES = 32
SECRET_LENGTH_MAX = 128
ID_BYTES = 12


class Mode(enum.Enum):
    test = "test"
    live = "live"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """An authenticated key: who is calling, in which mode, on which ledger."""

    id: str
    tenant_id: str
    mode: Mode
    ledger_id: int


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(ID_BYTES)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(connection: sa.Connection, *, name: str, is_default: bool = False) -> str:
    """A new top-level account (merchant) with a test and a live ledger."""
    assert 0 < len(name) <= 200
    tenant_id = _new_id("acct_")
    connection.execute(
        tenants.insert().values(
            id=tenant_id, name=name, is_default=is_default, created_at_ns=time.time_ns()
        )
    )
    for mode in Mode:
        for purpose in (NATIVE, PAYMENTS):
            connection.execute(
                ledgers.insert().values(tenant_id=tenant_id, mode=mode.value, purpose=purpose)
            )
    return tenant_id


def default_tenant_id(connection: sa.Connection) -> str | None:
    return connection.execute(
        sa.select(tenants.c.id).where(tenants.c.is_default.is_(True))
    ).scalar_one_or_none()


def ensure_default_tenant(connection: sa.Connection) -> str:
    existing = default_tenant_id(connection)
    if existing is not None:
        return existing
    return create_tenant(connection, name="Default", is_default=True)


def ledger_id_for(
    connection: sa.Connection, tenant_id: str, mode: Mode, *, purpose: str = "native"
) -> int:
    """The tenant's own ledger (``native``), or the ``payments`` ledger of a top-level account."""
    assert purpose in {NATIVE, PAYMENTS}
    ledger_id = connection.execute(
        sa.select(ledgers.c.id).where(
            ledgers.c.tenant_id == tenant_id,
            ledgers.c.mode == mode.value,
            ledgers.c.purpose == purpose,
        )
    ).scalar_one_or_none()
    if ledger_id is None:
        msg = f"no such account: {tenant_id}"
        raise NotFoundError(msg)
    return int(ledger_id)


def create_key(
    connection: sa.Connection,
    *,
    tenant_id: str,
    mode: Mode,
    expires_at_ns: int | None = None,
) -> str:
    """Create a secret key and return it; it cannot be recovered afterwards."""
    ledger_id_for(connection, tenant_id, mode)  # The tenant must exist.
    secret = f"sk_{mode.value}_" + secrets.token_urlsafe(SECRET_BYTES)
    connection.execute(
        api_keys.insert().values(
            id=_new_id("key_"),
            tenant_id=tenant_id,
            mode=mode.value,
            secret_hash=_hash(secret),
            redacted=secret[:8] + "..." + secret[-4:],
            created_at_ns=time.time_ns(),
            expires_at_ns=expires_at_ns,
        )
    )
    return secret


def revoke_key(connection: sa.Connection, key_id: str) -> None:
    updated = connection.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at_ns.is_(None))
        .values(revoked_at_ns=time.time_ns())
    )
    if updated.rowcount != 1:
        msg = f"no such active key: {key_id}"
        raise NotFoundError(msg)


def authenticate(connection: sa.Connection, secret: str) -> ApiKey | None:
    """The key behind a presented secret, or None if unknown, revoked or expired."""
    if not 0 < len(secret) <= SECRET_LENGTH_MAX:
        return None
    row = connection.execute(
        sa.select(
            api_keys.c.id,
            api_keys.c.tenant_id,
            api_keys.c.mode,
            api_keys.c.expires_at_ns,
            api_keys.c.revoked_at_ns,
            ledgers.c.id.label("ledger_id"),
        )
        .join(
            ledgers,
            sa.and_(
                ledgers.c.tenant_id == api_keys.c.tenant_id,
                ledgers.c.mode == api_keys.c.mode,
                ledgers.c.purpose == NATIVE,
            ),
        )
        .where(api_keys.c.secret_hash == _hash(secret))
    ).one_or_none()
    if row is None or row.revoked_at_ns is not None:
        return None
    if row.expires_at_ns is not None and row.expires_at_ns <= time.time_ns():
        return None
    return ApiKey(id=row.id, tenant_id=row.tenant_id, mode=Mode(row.mode), ledger_id=row.ledger_id)
