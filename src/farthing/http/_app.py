"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import farthing
from farthing.config import Settings
from farthing.db.engine import create_engine
from farthing.http._errors import install_error_handlers
from farthing.http._limits import BodySizeLimit
from farthing.ledger_service import LedgerService
from farthing.ledger_service._router import router as ledger_router

__all__ = ["BODY_BYTES_MAX", "create_app"]

# A full batch of 8189 transfers with ids, metadata and flags fits in about 4 MiB.
BODY_BYTES_MAX = 8 * 1024 * 1024


def create_app(settings: Settings) -> FastAPI:
    """An app bound to one database; group commit starts with the server's event loop."""
    engine = create_engine(settings.database_url)
    ledger = LedgerService(engine, journal_key=settings.journal_key)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await ledger.start()
        try:
            yield
        finally:
            await ledger.stop()
            engine.dispose()

    app = FastAPI(
        title="Farthing",
        version=farthing.__version__,
        description="Native ledger API: batched, idempotent double-entry accounts and transfers.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.ledger = ledger
    install_error_handlers(app)
    app.include_router(ledger_router)
    app.add_middleware(BodySizeLimit, body_bytes_max=BODY_BYTES_MAX)
    return app
