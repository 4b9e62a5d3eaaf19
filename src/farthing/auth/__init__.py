"""Tenants and API keys: keys are random secrets stored only as SHA-256 hashes."""

from __future__ import annotations

from farthing.auth._keys import (
    ACCESS_LEVELS,
    NATIVE,
    PAYMENTS,
    RESOURCES,
    ApiKey,
    Mode,
    PermissionsError,
    authenticate,
    create_connected_tenant,
    create_key,
    create_tenant,
    default_tenant_id,
    ensure_default_tenant,
    ledger_id_for,
    parse_permissions,
    revoke_key,
)

__all__ = [
    "ACCESS_LEVELS",
    "NATIVE",
    "PAYMENTS",
    "RESOURCES",
    "ApiKey",
    "Mode",
    "PermissionsError",
    "authenticate",
    "create_connected_tenant",
    "create_key",
    "create_tenant",
    "default_tenant_id",
    "ensure_default_tenant",
    "ledger_id_for",
    "parse_permissions",
    "revoke_key",
]
