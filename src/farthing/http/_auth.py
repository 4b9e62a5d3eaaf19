"""Bearer-key authentication shared by every router."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from farthing.auth import ApiKey, authenticate
from farthing.http._errors import ApiError
from farthing.http._ratelimit import (
    AddressLimiter,
    RateLimiter,
    authentication_throttled,
    rate_limited,
)

__all__ = ["AnyCaller", "Caller", "require_any_key", "require_key"]

_SCHEME = "bearer "


def require_any_key(request: Request) -> ApiKey:
    """The caller's key, secret or restricted; 401 in the API's error format when missing or not
    valid. Only /v1 takes restricted keys, through its permission check (``caller_scope``)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(_SCHEME):
        raise _failed(
            request,
            ApiError(
                401,
                type_="authentication_error",
                code="api_key_missing",
                message="Provide your API key as 'Authorization: Bearer <secret key>'.",
            ),
        )
    secret = header[len(_SCHEME) :].strip()
    with request.app.state.engine.connect() as connection:
        key = authenticate(connection, secret)
    if key is None:
        # Same answer for unknown, revoked and expired keys; the secret is never echoed.
        raise _failed(
            request,
            ApiError(
                401,
                type_="authentication_error",
                code="api_key_invalid",
                message="Invalid API key provided.",
            ),
        )
    # The audit trail's "who" (farthing.audit.AUDIT_KEY_STATE): the key, never its secret.
    request.state.audit_key = key
    # Counted per key after authentication: unauthenticated floods cannot drain a key's bucket.
    limiter: RateLimiter = request.app.state.rate_limiter
    if not limiter.allow(key.id):
        raise rate_limited()
    return key


def _failed(request: Request, error: ApiError) -> ApiError:
    """The 401 to answer, or a 429 once the client's address failed too often."""
    limiter: AddressLimiter = request.app.state.auth_failure_limiter
    if limiter.allow(request.client.host if request.client else "-"):
        return error
    return authentication_throttled()


def require_key(request: Request) -> ApiKey:
    """A secret key with full access, for the caller's own account. Restricted keys are refused:
    their permissions name /v1 resources, and an API they name nothing of is denied to them (deny
    by default). So is ``Stripe-Account``, which only /v1 understands."""
    key = require_any_key(request)
    if key.restricted:
        raise ApiError(
            403,
            type_="invalid_request_error",
            code="secret_key_required",
            message=f"The provided key '{key.redacted}' is a restricted key; "
            "this API needs a secret key (sk_...).",
        )
    if "stripe-account" in request.headers:
        # Refused, not ignored: a caller who meant to act for a connected account must not
        # silently write to its own ledger instead.
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="stripe_account_not_supported",
            message="The native ledger API acts on the caller's own ledger only; "
            "remove the Stripe-Account header.",
            param="Stripe-Account",
        )
    return key


# Full secret keys only: the native ledger API and anything not yet permission-checked.
Caller = Annotated[ApiKey, Depends(require_key)]
# Secret or restricted keys: only for dependencies that check permissions themselves.
AnyCaller = Annotated[ApiKey, Depends(require_any_key)]
