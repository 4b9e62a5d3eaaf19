"""HTTP adapter: the FastAPI application, its error format and its guards."""

from __future__ import annotations

from farthing.http._app import BODY_BYTES_MAX, create_app
from farthing.http._protocol import ApiH11Protocol

__all__ = ["BODY_BYTES_MAX", "ApiH11Protocol", "create_app"]
