"""What every /v1 request shares: its parameters, its caller and its Request-Id."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette import types as asgi

from farthing.auth import ApiKey
from farthing.http._auth import Caller
from farthing.http._errors import ApiError
from farthing.stripe_api._form import FormValue, parse_form

__all__ = [
    "PREFIX",
    "Params",
    "Partition",
    "RequestIdMiddleware",
    "Scope",
    "caller_scope",
    "read_params",
    "unknown_param",
]

PREFIX = "/v1"
_FORM = "application/x-www-form-urlencoded"
REQUEST_ID_BYTES = 12

Params = dict[str, FormValue]


@dataclass(frozen=True, slots=True)
class Partition:
    """The partition every /v1 query is confined to: one tenant in one mode.

    ``platform_id`` is the top-level account whose payments ledger holds the tenant's money: the
    tenant itself, or for a connected account its platform.
    """

    tenant_id: str
    mode: str
    platform_id: str

    @classmethod
    def of(cls, key: ApiKey) -> Partition:
        return cls(tenant_id=key.tenant_id, mode=key.mode.value, platform_id=key.tenant_id)

    @property
    def livemode(self) -> bool:
        return self.mode == "live"


async def caller_scope(request: Request, key: Caller) -> Partition:  # noqa: ARG001 - next: Stripe-Account
    """The partition a /v1 request acts in (the one dependency every /v1 route takes)."""
    return Partition.of(key)


Scope = Annotated[Partition, Depends(caller_scope)]


async def read_params(request: Request) -> Params:
    """Query-string parameters, merged with the form body of a POST (a name in both is a 400)."""
    params = parse_form(request.url.query)
    if request.method != "POST":
        return params
    body = await request.body()
    if not body:
        return params
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != _FORM:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="parameter_invalid",
            message=f"Send parameters as {_FORM}.",
        )
    try:
        decoded = body.decode()
    except UnicodeDecodeError:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="parameter_invalid",
            message="Parameters must be UTF-8.",
        ) from None
    form = parse_form(decoded)
    for name in form.keys() & params.keys():
        raise unknown_param(name, f"Parameter {name!r} is given in both the URL and the body.")
    return params | form


def unknown_param(name: str, message: str | None = None) -> ApiError:
    return ApiError(
        400,
        type_="invalid_request_error",
        code="parameter_unknown",
        message=message or f"Received unknown parameter: {name}",
        param=name,
    )


class RequestIdMiddleware:
    """Adds ``Request-Id: req_...`` to every /v1 response, as Stripe does; the SDK reports it in
    its errors and logs. ``Stripe-Version`` is accepted and ignored: there is one version."""

    def __init__(self, app: asgi.ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self._app(scope, receive, send)
            return
        request_id = ("req_" + secrets.token_urlsafe(REQUEST_ID_BYTES)).encode()

        async def with_request_id(message: asgi.Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"request-id", request_id)]
            await send(message)

        await self._app(scope, receive, with_request_id)
