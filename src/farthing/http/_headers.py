"""Security headers on every response, and no CORS: browsers on other origins get no access.

API answers hold account data, so they must not be cached by shared caches or sniffed into
another content type. No Access-Control-* header is ever sent: a page on another origin cannot
read an answer, and preflights are refused (405), which is CORS closed by default.
"""

from __future__ import annotations

from starlette import types as asgi

__all__ = ["SECURITY_HEADERS", "SecurityHeaders"]

SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeaders:
    def __init__(self, app: asgi.ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: asgi.Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                added = [(n, v) for n, v in SECURITY_HEADERS if n not in present]
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self._app(scope, receive, with_headers)
