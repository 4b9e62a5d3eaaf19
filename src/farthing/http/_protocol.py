"""The HTTP/1.1 connection: uvicorn's h11 protocol, with the API's error format for a request
that cannot be parsed at all (bytes no header may hold, a broken request line).

uvicorn answers those itself, before the application sees them, in plain text. A client of the
API parses every error the same way, so this one is JSON in the API's format too. Such a request
never reaches the application, so it has no audit record (documented in docs/security.md).
"""

from __future__ import annotations

import orjson
from h11 import Data, EndOfMessage, Response
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ApiH11Protocol"]

_MALFORMED_BODY = orjson.dumps(
    {
        "error": {
            "type": "invalid_request_error",
            "code": "malformed_http_request",
            "message": "The request is not valid HTTP/1.1: check the request line and that "
            "header names and values hold only visible ASCII.",
        }
    }
)


class ApiH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        del msg  # uvicorn's fixed plain-text message; the caller gets the API's format instead.
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_MALFORMED_BODY)).encode("ascii")),
            (b"connection", b"close"),
        ]
        self.transport.write(self.conn.send(Response(status_code=400, headers=headers)) or b"")
        self.transport.write(self.conn.send(Data(data=_MALFORMED_BODY)) or b"")
        self.transport.write(self.conn.send(EndOfMessage()) or b"")
        self.transport.close()
