"""One error format for every response: ``{"error": {"type", "code", "message", "param"}}``.

Types follow Stripe's: ``invalid_request_error`` (4xx the caller can fix),
``authentication_error`` (401), ``rate_limit_error`` (429/503 overload) and ``api_error`` (5xx,
never with internal detail).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.routing import Match

from farthing.ledger_service import OverloadedError

__all__ = ["ApiError", "error_response", "install_error_handlers"]

logger = logging.getLogger("farthing.http")


class ApiError(Exception):
    """An error the API reports to the caller as is."""

    def __init__(
        self, status: int, *, type_: str, code: str, message: str, param: str | None = None
    ) -> None:
        assert 400 <= status < 600
        super().__init__(message)
        self.status = status
        self.type = type_
        self.code = code
        self.message = message
        self.param = param


def error_response(  # noqa: PLR0913
    status: int,
    *,
    type_: str,
    code: str,
    message: str,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"type": type_, "code": code, "message": message}
    if param is not None:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _param_of(error: dict[str, object]) -> str | None:
    if error.get("type") == "json_invalid":
        return None  # The location of a syntax error is a character offset, not a parameter.
    location = error.get("loc", ())
    assert isinstance(location, tuple | list)
    parts = [str(part) for part in location if part not in ("body", "query", "path")]
    return ".".join(parts) or None


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path (RFC 9110's Allow of a 405).
    Starlette's own 405 names the methods of the first route of the path only."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]
    return ", ".join(allowed)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(
            error.status,
            type_=error.type,
            code=error.code,
            message=error.message,
            param=error.param,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        param = _param_of(dict(first))
        where = f" ({param})" if param else ""
        return error_response(
            400,
            type_="invalid_request_error",
            code="parameter_invalid",
            message=f"{first.get('msg', 'invalid request')}{where}",
            param=param,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "resource_missing", 405: "method_not_allowed", 413: "body_too_large"}.get(
            error.status_code, "invalid_request"
        )
        headers = None if error.headers is None else dict(error.headers)
        if error.status_code == 405:
            headers = {"Allow": _allowed_methods(request)}
        return error_response(
            error.status_code,
            type_="invalid_request_error",
            code=code,
            message=str(error.detail),
            headers=headers,
        )

    @app.exception_handler(OverloadedError)
    async def _overloaded(_request: Request, _error: OverloadedError) -> JSONResponse:
        return error_response(
            503,
            type_="api_error",
            code="overloaded",
            message="The ledger is overloaded; retry with backoff.",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Full detail goes to the server log only; the caller learns nothing internal.
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(
            500, type_="api_error", code="internal_error", message="An internal error occurred."
        )
