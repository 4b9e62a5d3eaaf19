"""Bearer-key authentication shared by every router."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from farthing.auth import ApiKey, authenticate
from farthing.http._errors import ApiError

__all__ = ["Caller", "require_key"]

_SCHEME = "bearer "


def require_key(request: Request) -> ApiKey:
    """The caller's key; 401 in the API's error format when missing or not valid."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith(_SCHEME):
        raise ApiError(
            401,
            type_="authentication_error",
            code="api_key_missing",
            message="Provide your API key as 'Authorization: Bearer <secret key>'.",
        )
    secret = header[len(_SCHEME) :].strip()
    with request.app.state.engine.connect() as connection:
        key = authenticate(connection, secret)
    if key is None:
        # Same answer for unknown, revoked and expired keys; the secret is never echoed.
        raise ApiError(
            401,
            type_="authentication_error",
            code="api_key_invalid",
            message="Invalid API key provided.",
        )
    return key


Caller = Annotated[ApiKey, Depends(require_key)]
