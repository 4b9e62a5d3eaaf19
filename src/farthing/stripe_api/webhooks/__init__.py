"""Webhook endpoints (``/v1/webhook_endpoints``), Stripe's signature scheme and the URL guard."""

from __future__ import annotations

from farthing.stripe_api.webhooks._attempts import list_attempts, resend
from farthing.stripe_api.webhooks._delivery import deliver_due
from farthing.stripe_api.webhooks._service import fan_out
from farthing.stripe_api.webhooks._signing import signature_header
from farthing.stripe_api.webhooks._urls import check_url

__all__ = [
    "check_url",
    "deliver_due",
    "fan_out",
    "list_attempts",
    "resend",
    "signature_header",
]
