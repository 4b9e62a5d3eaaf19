"""Events (``/v1/events``): a transactional outbox of every state change of /v1 objects."""

from __future__ import annotations

from farthing.stripe_api.events._service import (
    API_VERSION,
    EVENT_RETENTION_S,
    changed,
    emit,
    event_object,
    pending_webhooks,
)

__all__ = [
    "API_VERSION",
    "EVENT_RETENTION_S",
    "changed",
    "emit",
    "event_object",
    "pending_webhooks",
]
