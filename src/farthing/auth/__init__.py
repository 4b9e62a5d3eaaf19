"""Tenants and API keys: keys are random secrets stored only as SHA-256 hashes."""

from __future__ import annotations

from farthing.auth._keys import (
    NATIVE,
    PAYMENTS,
    ApiKey,
    Mode,
    authenticate,
    create_key,
    create_tenant,
    default_tenant_id,
    ensure_default_tenant,
    ledger_id_for,
    revoke_key,
)

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
