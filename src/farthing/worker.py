"""The background worker: webhook deliveries and, with FARTHING_NATS_URL, the event stream.

Runs as `farthing worker` (as many as you like for webhooks; one per stream for the NATS
stream's order) or inside `farthing serve` with FARTHING_SERVE_WORKER=1.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa

from farthing.config import Settings
from farthing.vault import Vault

__all__ = ["POLL_S_MAX", "POLL_S_MIN", "run_worker"]

# The idle worker polls within these bounds (a tighter loop would only burn the database).
POLL_S_MIN = 0.05
POLL_S_MAX = 60.0
# Every outbound call is bounded: connecting to NATS, and reconnecting after it went away.
NATS_CONNECT_TIMEOUT_S = 5.0
NATS_RECONNECT_ATTEMPTS_MAX = 60
_log = logging.getLogger(__name__)


async def run_worker(
    engine: sa.Engine, vault: Vault, settings: Settings, *, once: bool, poll_s: float
) -> None:
    """Deliver webhooks and, with FARTHING_NATS_URL, publish the event stream, until cancelled."""
    from farthing.stripe_api.events._stream import ensure_stream, publish_pending  # noqa: PLC0415
    from farthing.stripe_api.webhooks import deliver_due  # noqa: PLC0415

    js = None
    if settings.nats_url is not None:
        import nats  # noqa: PLC0415

        connection = await nats.connect(
            settings.nats_url,
            connect_timeout=NATS_CONNECT_TIMEOUT_S,
            max_reconnect_attempts=NATS_RECONNECT_ATTEMPTS_MAX,
        )
        js = connection.jetstream()
        await ensure_stream(
            js, stream=settings.nats_stream, subject_prefix=settings.nats_subject_prefix
        )
    loopback = settings.webhook_allow_loopback
    idle_s = min(max(poll_s, POLL_S_MIN), POLL_S_MAX)
    while True:
        try:
            done = await asyncio.to_thread(deliver_due, engine, vault, allow_loopback=loopback)
            if js is not None:
                done += await publish_pending(
                    engine,
                    js,
                    stream=settings.nats_stream,
                    subject_prefix=settings.nats_subject_prefix,
                )
        except Exception:
            if once:
                raise
            # A database or NATS outage: said, waited out, retried; the worker stays up.
            _log.exception("worker round failed; retrying in %.2f s", idle_s)
            done = 0
        if once:
            return
        if done == 0:
            await asyncio.sleep(idle_s)
