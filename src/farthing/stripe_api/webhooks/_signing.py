"""Stripe's webhook signature: ``Stripe-Signature: t=<unix s>,v1=<hex>[,v1=<hex>]`` where each
``v1`` is HMAC-SHA256 of ``"{t}.{body}"`` under one of the endpoint's signing secrets (two during
a secret's overlap period), so ``stripe.Webhook.construct_event`` verifies deliveries unchanged."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["SECRETS_PER_SIGNATURE_MAX", "signature_header"]

SECRETS_PER_SIGNATURE_MAX = 2


def signature_header(secrets: Sequence[str], *, timestamp_s: int, payload: bytes) -> str:
    assert 0 < len(secrets) <= SECRETS_PER_SIGNATURE_MAX
    assert timestamp_s > 0
    signed = str(timestamp_s).encode() + b"." + payload
    parts = [f"t={timestamp_s}"]
    parts.extend(
        "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets
    )
    return ",".join(parts)
