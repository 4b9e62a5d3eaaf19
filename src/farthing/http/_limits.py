"""Request body size guard (pure ASGI, so an oversized body is refused before it is buffered),
and the bounded integer parse that every number from a request goes through."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodySizeLimit", "bounded_int"]


class BodySizeLimit:
    """Refuse bodies over ``body_bytes_max`` with 413 in the API's error format."""

    def __init__(self, app: ASGIApp, *, body_bytes_max: int) -> None:
        assert body_bytes_max > 0
        self._app = app
        self._max = body_bytes_max
        self._message = f"Request bodies are limited to {body_bytes_max} bytes."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and not _within(declared, self._max):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    # An HTTPException passes through FastAPI's body parsing unchanged and is
                    # answered by the app's error handler (a bare exception would become 400).
                    raise HTTPException(413, detail=self._message)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, limited_receive, tracking_send)
        except HTTPException as error:
            if error.status_code != 413 or started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps(
            {
                "error": {
                    "type": "invalid_request_error",
                    "code": "body_too_large",
                    "message": self._message,
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _within(declared: bytes, limit: int) -> bool:
    """A Content-Length of digits at most ``limit``."""
    return declared.isdigit() and bounded_int(declared.decode("ascii"), 0, limit) is not None


def bounded_int(text: str, low: int, high: int) -> int | None:
    """A decimal integer (ASCII digits, an optional leading ``-``) within ``low..high``, else
    None. A text with more digits than the bounds is out of range without ``int()``, which
    refuses more than 4300 digits (an error that would surface as a 500)."""
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdecimal()):
        return None
    significant = digits.lstrip("0")
    if len(significant) > max(len(str(low)), len(str(high))):
        return None
    # Only the significant digits go to int(): leading zeros count towards its limit too.
    number = int(significant or "0")
    if text.startswith("-"):
        number = -number
    return number if low <= number <= high else None
