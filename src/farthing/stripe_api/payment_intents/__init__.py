"""PaymentIntents (``/v1/payment_intents``) and the 3-D Secure challenge page."""

from __future__ import annotations

from farthing.stripe_api.payment_intents._challenge import router as challenge_router
from farthing.stripe_api.payment_intents._router import read, router, write

__all__ = ["challenge_router", "read", "router", "write"]
