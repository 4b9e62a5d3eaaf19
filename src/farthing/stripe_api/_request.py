"""What every /v1 request shares: its parameters, its caller and its Request-Id."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request
from starlette import types as asgi
from starlette.concurrency import run_in_threadpool

from farthing.auth import RESOURCES, ApiKey
from farthing.db.schema import stripe_accounts, tenants
from farthing.http._auth import AnyCaller
from farthing.http._errors import ApiError
from farthing.stripe_api._form import FormValue, parse_form

__all__ = [
    "FORM_BODY",
    "LIST_PARAMS",
    "PREFIX",
    "STRIPE_ACCOUNT_LENGTH_MAX",
    "Params",
    "Partition",
    "RequestIdMiddleware",
    "Scope",
    "caller_scope",
    "engine_of",
    "insufficient_permissions",
    "read_params",
    "resource_of",
    "unknown_param",
]

PREFIX = "/v1"
_FORM = "application/x-www-form-urlencoded"
REQUEST_ID_BYTES = 12
# Account ids are 29 characters; a header far longer is not an id and is not looked up.
STRIPE_ACCOUNT_LENGTH_MAX = 255
# Paths whose resource is not their first segment: the payment methods of a customer are
# payment methods; the caller's own account is an account.
_NESTED_RESOURCES = {("customers", "payment_methods"): "payment_methods"}
_ALIASES = {"account": "accounts"}
_READ_METHODS = frozenset({"GET", "HEAD"})

Params = dict[str, FormValue]
# OpenAPI: POST bodies are optional forms (FastAPI cannot infer them from a raw Request).
FORM_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
    }
}
# Parameters every list takes (parse_list_query reads them).
LIST_PARAMS = ("limit", "starting_after", "ending_before", "created")


@dataclass(frozen=True, slots=True)
class Partition:
    """The partition every /v1 query is confined to: one tenant in one mode.

    ``platform_id`` is the top-level account whose payments ledger holds the tenant's money: the
    tenant itself, or for a connected account its platform. ``readable``: the resources a
    restricted key may read, which ``expand[]`` checks too (None: a key that may read every one).
    """

    tenant_id: str
    mode: str
    platform_id: str
    readable: frozenset[str] | None = None

    @classmethod
    def of(cls, key: ApiKey) -> Partition:
        return cls(
            tenant_id=key.tenant_id,
            mode=key.mode.value,
            platform_id=key.tenant_id,
            readable=_readable(key),
        )

    @property
    def livemode(self) -> bool:
        return self.mode == "live"

    def may_read(self, resource: str) -> bool:
        return self.readable is None or resource in self.readable


def _readable(key: ApiKey) -> frozenset[str] | None:
    if not key.restricted:
        return None
    return frozenset(resource for resource in RESOURCES if key.permits(resource, "read"))


def resource_of(path_format: str) -> str | None:
    """The resource a /v1 route acts on, for restricted keys' permissions; None when it is none
    of the known resources (and so denied to every restricted key)."""
    if not path_format.startswith(PREFIX + "/"):
        return None
    segments = path_format[len(PREFIX) + 1 :].split("/")
    first = _ALIASES.get(segments[0], segments[0])
    resource = first
    if len(segments) >= 3:  # /v1/<resource>/{id}/<sub-resource>
        resource = _NESTED_RESOURCES.get((first, segments[2]), first)
    return resource if resource in RESOURCES else None


def insufficient_permissions(
    message: str, *, resource: str | None, access: str, param: str | None = None
) -> ApiError:
    """Stripe's refusal of a restricted key (403, so the SDK raises PermissionError)."""
    needed = f" Having the '{resource}' {access} permission would allow this request to continue."
    return ApiError(
        403,
        type_="invalid_request_error",
        code="insufficient_permissions",
        message=message + (needed if resource else ""),
        param=param,
    )


def _denied(key: ApiKey, resource: str | None, access: str) -> ApiError:
    # Only the stored redacted form of the key is ever shown.
    return insufficient_permissions(
        f"The provided key '{key.redacted}' does not have the required permissions for this "
        f"endpoint on account '{key.tenant_id}'.",
        resource=resource,
        access=access,
    )


def _no_access(key: ApiKey, account_id: str) -> ApiError:
    # One answer for a made-up id, another platform's account, the other mode's account and a
    # deleted one: nothing tells them apart.
    return ApiError(
        403,
        type_="invalid_request_error",
        code="account_invalid",
        message=f"The provided key '{key.redacted}' does not have access to account "
        f"'{account_id}' (or that account does not exist).",
    )


def _acting_as(engine: sa.Engine, key: ApiKey, account_id: str) -> Partition:
    """The partition of ``Stripe-Account: account_id``: the caller itself, or one of its live
    connected accounts in the key's mode."""
    if account_id == key.tenant_id:
        return Partition.of(key)
    with engine.connect() as connection:
        found = connection.execute(
            sa.select(tenants.c.id)
            .join(stripe_accounts, stripe_accounts.c.id == tenants.c.id)
            .where(
                tenants.c.id == account_id,
                tenants.c.parent_id == key.tenant_id,
                tenants.c.mode == key.mode.value,
                stripe_accounts.c.tenant_id == key.tenant_id,
                stripe_accounts.c.mode == key.mode.value,
                stripe_accounts.c.deleted.is_(False),
            )
        ).scalar_one_or_none()
    if found is None:
        raise _no_access(key, account_id)
    return Partition(
        tenant_id=account_id,
        mode=key.mode.value,
        platform_id=key.tenant_id,
        readable=_readable(key),
    )


def engine_of(request: Request) -> sa.Engine:
    engine: sa.Engine = request.app.state.engine
    return engine


async def caller_scope(request: Request, key: AnyCaller) -> Partition:
    """The partition a /v1 request acts in (the one dependency every /v1 route takes): checks a
    restricted key's permission for the route, then resolves ``Stripe-Account``."""
    route = request.scope.get("route")
    path_format = getattr(route, "path_format", None) or request.url.path
    access = "read" if request.method in _READ_METHODS else "write"
    resource = resource_of(path_format)
    if not key.permits(resource, access):
        raise _denied(key, resource, access)
    for name, value in request.path_params.items():
        if "\x00" in str(value):
            # Names nothing (PostgreSQL text cannot hold NUL), like a NUL in any parameter.
            raise ApiError(
                400,
                type_="invalid_request_error",
                code="parameter_invalid",
                message="Ids must not contain NUL characters.",
                param=name,
            )
    account_id = request.headers.get("stripe-account")
    if account_id is None:
        return Partition.of(key)
    if not 0 < len(account_id) <= STRIPE_ACCOUNT_LENGTH_MAX:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="account_invalid",
            message=f"Stripe-Account takes an account id of at most {STRIPE_ACCOUNT_LENGTH_MAX} "
            "characters.",
        )
    engine: sa.Engine = request.app.state.engine
    return await run_in_threadpool(_acting_as, engine, key, account_id)


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
        scope.setdefault("state", {})["request_id"] = request_id.decode()  # For the audit trail.

        async def with_request_id(message: asgi.Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"request-id", request_id)]
            await send(message)

        await self._app(scope, receive, with_request_id)
