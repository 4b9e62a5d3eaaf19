"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import farthing
from farthing.audit import (
    AnonymousRecords,
    AuditMiddleware,
    AuditWriter,
    audit_key_from,
    write_tallies,
)
from farthing.config import Settings
from farthing.db.engine import create_engine
from farthing.http._errors import install_error_handlers
from farthing.http._headers import SecurityHeaders
from farthing.http._limits import BodySizeLimit
from farthing.http._ratelimit import (
    address_group,
    anonymous_audit_budget_for,
    auth_failure_limiter_for,
    rate_limiter_for,
)
from farthing.ledger_service import LedgerService
from farthing.ledger_service._router import router as ledger_router
from farthing.vault import Vault

__all__ = ["BODY_BYTES_MAX", "create_app"]

# A full batch of 8189 transfers with ids, metadata and flags fits in about 4 MiB.
BODY_BYTES_MAX = 8 * 1024 * 1024


def create_app(settings: Settings) -> FastAPI:
    """An app bound to one database; group commit starts with the server's event loop."""
    # Imported here: farthing.stripe_api builds on this package's errors and auth, so importing
    # it at module level would make `import farthing.stripe_api` circular.
    from farthing.stripe_api import RequestIdMiddleware  # noqa: PLC0415
    from farthing.stripe_api import router as stripe_router  # noqa: PLC0415
    from farthing.stripe_api.payments import (  # noqa: PLC0415
        Payments,
        PaymentsLedger,
        SimulatedProcessor,
    )

    engine = create_engine(settings.database_url)
    ledger = LedgerService(engine, journal_key=settings.journal_key)
    audit = AuditWriter(engine, key=audit_key_from(settings.journal_key))
    anonymous = AnonymousRecords(anonymous_audit_budget_for(settings), group=address_group)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await ledger.start()
        worker = _start_worker(engine, settings)
        stopping = asyncio.Event()
        tallies = asyncio.create_task(write_tallies(anonymous, audit, stopping))
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            stopping.set()
            await tallies  # The last tally is written before the writer stops.
            await ledger.stop()
            audit.stop()
            engine.dispose()

    app = FastAPI(
        title="Farthing",
        version=farthing.__version__,
        description="Native ledger API: batched, idempotent double-entry accounts and transfers.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        redirect_slashes=False,
    )
    app.state.engine = engine
    app.state.ledger = ledger
    # The card vault, or None without a configured key (card endpoints then answer 503).
    app.state.vault = None if settings.vault_key is None else Vault(settings.vault_key)
    app.state.payments = Payments(
        ledger=PaymentsLedger(ledger),
        settings=settings.payments,
        vault=app.state.vault,
        test_processor=SimulatedProcessor(),
    )
    # Shared by every server process in Redis when FARTHING_REDIS_URL is set.
    app.state.rate_limiter = rate_limiter_for(settings)
    app.state.auth_failure_limiter = auth_failure_limiter_for(settings, app.state.rate_limiter)
    app.state.webhook_allow_loopback = settings.webhook_allow_loopback
    install_error_handlers(app)
    app.include_router(ledger_router)
    app.include_router(stripe_router)
    app.add_middleware(BodySizeLimit, body_bytes_max=BODY_BYTES_MAX)
    # Outside the body limit so that its 413s are audited too; inside the request id.
    app.add_middleware(AuditMiddleware, writer=audit, anonymous=anonymous)
    # Outermost, so that refusals by the body limit carry a Request-Id as well.
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(SecurityHeaders)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _start_worker(engine: Any, settings: Settings) -> asyncio.Task[None] | None:
    """The in-process worker (FARTHING_SERVE_WORKER=1), when a vault key can open secrets."""
    if not settings.serve_worker or settings.vault_key is None:
        return None
    from farthing.worker import run_worker  # noqa: PLC0415 - only when enabled

    vault = Vault(settings.vault_key)
    return asyncio.create_task(run_worker(engine, vault, settings, once=False, poll_s=0.2))


_TEXT = {"type": "string"}
_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "code", "message"],
            "properties": {
                "type": _TEXT,
                "code": _TEXT,
                "message": _TEXT,
                "param": _TEXT,
                # Card declines only (type card_error), as Stripe sends them.
                "decline_code": _TEXT,
                "charge": _TEXT,
                "doc_url": _TEXT,
                "payment_intent": {"type": "object"},
                "payment_method": {"type": "object"},
            },
            "additionalProperties": False,
        }
    },
    "additionalProperties": False,
}
# Refusals any operation can give, whatever its router declares.
_ANY_OPERATION = {
    "400": "Invalid request",
    "401": "Missing or invalid API key",
    "413": "Body too large",
    "429": "Too many requests for this API key, or from this address without a valid key "
    "(rate_limit_error)",
    "503": "Temporarily unavailable (overloaded, the shared rate limiter is unreachable, or the "
    "audit trail cannot be written); retry with backoff",
}
_LEDGER_OPERATION = {"403": "A restricted key: the ledger API needs a secret key"}
_V1_OPERATION = {
    "403": "Restricted key without the permission, or Stripe-Account not accessible",
}
_V1_WRITE = {"409": "A request with the same Idempotency-Key is still executing"}


def _refusals(path: str, method: str) -> dict[str, str]:
    if path.startswith("/ledger/"):
        return _ANY_OPERATION | _LEDGER_OPERATION
    return _ANY_OPERATION | _V1_OPERATION | (_V1_WRITE if method == "post" else {})


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, corrected to what the API really answers: validation errors are 400
    in Farthing's error format (never 422), every operation needs a bearer key and may be refused
    as any other is, and the /v1 operations' form parameters and results (which FastAPI cannot
    infer from their raw requests) are stated."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from farthing.stripe_api._openapi import describe  # noqa: PLC0415 - see create_app

    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Error"] = _ERROR_SCHEMA
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    describe(document)
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status, description in _refusals(path, method).items():
                responses.setdefault(status, {"description": description})
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    response["content"] = error_content
            operation["security"] = [{"bearer": []}]
    app.openapi_schema = document
    return document
