"""Tenants, their ledgers and their API keys.

A secret key is 32 random bytes (``sk_test_`` + 43 url-safe characters), shown once at creation.
Only its SHA-256 hash is stored: with that much entropy a fast hash cannot be brute-forced, and a
lookup by hash needs no constant-time comparison of secrets.

A restricted key (``rk_test_...``) has the same entropy and storage, plus its permissions: a JSON
object of resource -> ``read`` | ``write`` (write implies read). Anything not named is denied.
"""

from __future__ import annotations

import enum
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import sqlalchemy as sa

from farthing._errors import FarthingError, NotFoundError
from farthing.db.schema import api_keys, ledgers, tenants
from farthing.ledger import owner_mac

__all__ = [
    "ACCESS_LEVELS",
    "KEYS_LIST_MAX",
    "NATIVE",
    "PAYMENTS",
    "RESOURCES",
    "ROLL_EXPIRES_IN_S_MAX",
    "ApiKey",
    "KeyInfo",
    "Mode",
    "PermissionsError",
    "authenticate",
    "create_connected_tenant",
    "create_key",
    "create_tenant",
    "default_tenant_id",
    "ensure_default_tenant",
    "ledger_id_for",
    "list_keys",
    "parse_permissions",
    "revoke_key",
    "roll_key",
]

# Ledger purposes: a tenant's own ledger (/ledger/v1) and the ledger of its payments (/v1).
NATIVE = "native"
PAYMENTS = "payments"
SECRET_BYTES = 32
SECRET_LENGTH_MAX = 128
ID_BYTES = 12
TENANT_NAME_LENGTH_MAX = 200
# The resources a restricted key can be granted, named like their /v1 paths. A fixed set: a typo
# in a grant must fail loudly instead of silently granting nothing.
RESOURCES = frozenset(
    {
        "customers",
        "payment_methods",
        "payment_intents",
        "charges",
        "refunds",
        "balance",
        "balance_transactions",
        "transfers",
        "payouts",
        "accounts",
        "events",
        "webhook_endpoints",
    }
)
ACCESS_LEVELS = ("read", "write")  # In increasing order: write implies read.
# `--restricted` text: one entry per resource at most, so its length is bounded by the set.
PERMISSIONS_TEXT_LENGTH_MAX = 1000
# A rolled key keeps working for at most this long (Stripe's limit too): long enough to deploy
# the new key everywhere, short enough that a leaked key does not linger.
ROLL_EXPIRES_IN_S_MAX = 7 * 24 * 3600
KEYS_LIST_MAX = 1000
_NS_PER_S = 1_000_000_000


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
    # Shown in errors instead of the secret: ``sk_test_...abcd``.
    redacted: str = ""
    # None for a secret key (full access); for a restricted key, resource -> "read" | "write".
    permissions: Mapping[str, str] | None = None

    @property
    def restricted(self) -> bool:
        return self.permissions is not None

    def permits(self, resource: str | None, access: str) -> bool:
        """Whether the key may ``access`` ("read" or "write") the resource; deny by default."""
        assert access in ACCESS_LEVELS
        if self.permissions is None:
            return True
        if resource is None:
            return False
        granted = self.permissions.get(resource)
        if granted is None:
            return False
        return ACCESS_LEVELS.index(granted) >= ACCESS_LEVELS.index(access)


class PermissionsError(FarthingError):
    """A restricted key's permissions name an unknown resource or access level."""


def _checked_permissions(permissions: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for resource, access in permissions.items():
        if resource not in RESOURCES:
            msg = f"unknown resource {resource!r}; known: {', '.join(sorted(RESOURCES))}"
            raise PermissionsError(msg)
        if access not in ACCESS_LEVELS:
            msg = f"access to {resource} must be read or write, not {access!r}"
            raise PermissionsError(msg)
        checked[resource] = access
    return checked


def parse_permissions(text: str) -> dict[str, str]:
    """``customers:write,payment_intents:read`` as a mapping; PermissionsError when malformed."""
    if not 0 < len(text) <= PERMISSIONS_TEXT_LENGTH_MAX:
        msg = f"permissions are 1 to {PERMISSIONS_TEXT_LENGTH_MAX} characters"
        raise PermissionsError(msg)
    permissions: dict[str, str] = {}
    for entry in text.split(","):
        resource, separator, access = entry.strip().partition(":")
        if not separator:
            msg = f"expected RESOURCE:read or RESOURCE:write, got {entry.strip()!r}"
            raise PermissionsError(msg)
        if resource in permissions:
            msg = f"{resource} is named twice"
            raise PermissionsError(msg)
        permissions[resource] = access
    return _checked_permissions(permissions)


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(ID_BYTES)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(
    connection: sa.Connection, *, name: str, journal_key: bytes, is_default: bool = False
) -> str:
    """A new top-level account (merchant) with its native and payments ledgers in each mode,
    each sealed to its owner under the journal key (``farthing verify`` checks the seals)."""
    assert 0 < len(name) <= TENANT_NAME_LENGTH_MAX
    tenant_id = _new_id("acct_")
    connection.execute(
        tenants.insert().values(
            id=tenant_id, name=name, is_default=is_default, created_at_ns=time.time_ns()
        )
    )
    for mode in Mode:
        for purpose in (NATIVE, PAYMENTS):
            _create_ledger(connection, journal_key, tenant_id, mode.value, purpose)
    return tenant_id


def _create_ledger(
    connection: sa.Connection, journal_key: bytes, tenant_id: str, mode: str, purpose: str
) -> None:
    # The id is the database's, so the seal is written once the row has it.
    owner = {"tenant_id": tenant_id, "mode": mode, "purpose": purpose}
    ledger_id = connection.execute(
        ledgers.insert().values(owner_mac="", **owner).returning(ledgers.c.id)
    ).scalar_one()
    mac = owner_mac(journal_key, ledger_id=ledger_id, **owner)
    sealed = connection.execute(
        ledgers.update().where(ledgers.c.id == ledger_id).values(owner_mac=mac)
    )
    assert sealed.rowcount == 1


def create_connected_tenant(
    connection: sa.Connection, *, parent_id: str, mode: Mode, name: str | None = None
) -> str:
    """A connected account of the platform ``parent_id``, in one mode only, named ``name`` or
    its id. It has no ledgers and no keys: its money lives in the platform's payments ledger and
    the platform acts for it with ``Stripe-Account``."""
    assert name is None or 0 < len(name) <= TENANT_NAME_LENGTH_MAX
    tenant_id = _new_id("acct_")
    connection.execute(
        tenants.insert().values(
            id=tenant_id,
            name=name or tenant_id,
            is_default=False,
            created_at_ns=time.time_ns(),
            parent_id=parent_id,
            mode=mode.value,
        )
    )
    return tenant_id


def default_tenant_id(connection: sa.Connection) -> str | None:
    return connection.execute(
        sa.select(tenants.c.id).where(tenants.c.is_default.is_(True))
    ).scalar_one_or_none()


def ensure_default_tenant(connection: sa.Connection, *, journal_key: bytes) -> str:
    existing = default_tenant_id(connection)
    if existing is not None:
        return existing
    return create_tenant(connection, name="Default", journal_key=journal_key, is_default=True)


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
    permissions: Mapping[str, str] | None = None,
) -> str:
    """Create a key and return it; it cannot be recovered afterwards. Without ``permissions`` a
    secret key (``sk_``), with them a restricted key (``rk_``) limited to those resources."""
    top_level = connection.execute(
        sa.select(tenants.c.id).where(tenants.c.id == tenant_id, tenants.c.parent_id.is_(None))
    ).scalar_one_or_none()
    if top_level is None:
        # Connected accounts have no keys: their platform acts for them.
        msg = f"no such top-level account: {tenant_id}"
        raise NotFoundError(msg)
    ledger_id_for(connection, tenant_id, mode)  # Its ledgers must exist.
    granted = None if permissions is None else _checked_permissions(permissions)
    return _insert_key(
        connection,
        tenant_id=tenant_id,
        mode=mode,
        expires_at_ns=expires_at_ns,
        permissions=None if granted is None else json.dumps(granted, sort_keys=True),
    )


def _insert_key(
    connection: sa.Connection,
    *,
    tenant_id: str,
    mode: Mode,
    expires_at_ns: int | None,
    permissions: str | None,
) -> str:
    prefix = "sk" if permissions is None else "rk"
    secret = f"{prefix}_{mode.value}_" + secrets.token_urlsafe(SECRET_BYTES)
    connection.execute(
        api_keys.insert().values(
            id=_new_id("key_"),
            tenant_id=tenant_id,
            mode=mode.value,
            secret_hash=_hash(secret),
            redacted=secret[:8] + "..." + secret[-4:],
            created_at_ns=time.time_ns(),
            expires_at_ns=expires_at_ns,
            permissions=permissions,
        )
    )
    return secret


def revoke_key(
    connection: sa.Connection, key_id: str, *, now_ns: int | None = None
) -> tuple[str, str]:
    """Revoke at once: the next request with the key gets 401 (keys are not cached). Returns
    the key's account and mode, which the audit record names."""
    revoked = connection.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at_ns.is_(None))
        .values(revoked_at_ns=time.time_ns() if now_ns is None else now_ns)
        .returning(api_keys.c.tenant_id, api_keys.c.mode)
    ).all()
    if len(revoked) != 1:
        msg = f"no such active key: {key_id}"
        raise NotFoundError(msg)
    return str(revoked[0].tenant_id), str(revoked[0].mode)


def roll_key(
    connection: sa.Connection, key_id: str, *, expires_in_s: int, now_ns: int | None = None
) -> str:
    """A new key with the old one's account, mode and permissions (returned, shown once); the
    old key expires ``expires_in_s`` seconds from now (0: at once), like Stripe's roll. A roll
    never extends the old key's life, and a revoked or expired key cannot be rolled."""
    assert 0 <= expires_in_s <= ROLL_EXPIRES_IN_S_MAX
    now = time.time_ns() if now_ns is None else now_ns
    query = sa.select(
        api_keys.c.tenant_id,
        api_keys.c.mode,
        api_keys.c.permissions,
        api_keys.c.expires_at_ns,
        api_keys.c.revoked_at_ns,
    ).where(api_keys.c.id == key_id)
    # Locked: two concurrent rolls of one key serialise (SQLite's write transaction does this).
    old = connection.execute(query.with_for_update()).one_or_none()
    if old is None or old.revoked_at_ns is not None:
        msg = f"no such active key: {key_id}"
        raise NotFoundError(msg)
    if old.expires_at_ns is not None and old.expires_at_ns <= now:
        msg = f"key {key_id} has expired; create a new key instead"
        raise NotFoundError(msg)
    expires_at_ns = now + expires_in_s * _NS_PER_S
    if old.expires_at_ns is not None:
        expires_at_ns = min(expires_at_ns, old.expires_at_ns)
    connection.execute(
        api_keys.update().where(api_keys.c.id == key_id).values(expires_at_ns=expires_at_ns)
    )
    # The stored grant is copied as is: the new key may do exactly what the old one could.
    return _insert_key(
        connection,
        tenant_id=old.tenant_id,
        mode=Mode(old.mode),
        expires_at_ns=None,
        permissions=old.permissions,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """What may be shown about a key: never its secret, only the stored redacted form."""

    id: str
    tenant_id: str
    mode: Mode
    restricted: bool
    redacted: str
    created_at_ns: int
    expires_at_ns: int | None
    revoked_at_ns: int | None

    def status(self, now_ns: int) -> str:
        if self.revoked_at_ns is not None:
            return "revoked"
        if self.expires_at_ns is not None and self.expires_at_ns <= now_ns:
            return "expired"
        return "active"


def list_keys(
    connection: sa.Connection, *, tenant_id: str | None = None, limit: int = KEYS_LIST_MAX
) -> list[KeyInfo]:
    """Keys oldest first, of one account or all."""
    assert 0 < limit <= KEYS_LIST_MAX
    query = sa.select(
        api_keys.c.id,
        api_keys.c.tenant_id,
        api_keys.c.mode,
        api_keys.c.permissions,
        api_keys.c.redacted,
        api_keys.c.created_at_ns,
        api_keys.c.expires_at_ns,
        api_keys.c.revoked_at_ns,
    )
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == tenant_id)
    rows = connection.execute(
        query.order_by(api_keys.c.created_at_ns, api_keys.c.id).limit(limit)
    ).all()
    return [
        KeyInfo(
            id=row.id,
            tenant_id=row.tenant_id,
            mode=Mode(row.mode),
            restricted=row.permissions is not None,
            redacted=row.redacted,
            created_at_ns=row.created_at_ns,
            expires_at_ns=row.expires_at_ns,
            revoked_at_ns=row.revoked_at_ns,
        )
        for row in rows
    ]


def authenticate(
    connection: sa.Connection, secret: str, *, now_ns: int | None = None
) -> ApiKey | None:
    """The key behind a presented secret, or None if unknown, revoked or expired. Read from the
    database on every call: a revocation or expiry applies to the very next request."""
    if not 0 < len(secret) <= SECRET_LENGTH_MAX:
        return None
    row = connection.execute(
        sa.select(
            api_keys.c.id,
            api_keys.c.tenant_id,
            api_keys.c.mode,
            api_keys.c.expires_at_ns,
            api_keys.c.revoked_at_ns,
            api_keys.c.redacted,
            api_keys.c.permissions,
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
    now = time.time_ns() if now_ns is None else now_ns
    if row.expires_at_ns is not None and row.expires_at_ns <= now:
        return None
    permissions = None
    if row.permissions is not None:
        stored = json.loads(row.permissions)
        # Entries this version does not know grant nothing (deny by default). Read-only, so that
        # no request handler can widen a key's grant in memory.
        permissions = MappingProxyType(
            {r: a for r, a in stored.items() if r in RESOURCES and a in ACCESS_LEVELS}
        )
    return ApiKey(
        id=row.id,
        tenant_id=row.tenant_id,
        mode=Mode(row.mode),
        ledger_id=row.ledger_id,
        redacted=row.redacted,
        permissions=permissions,
    )
