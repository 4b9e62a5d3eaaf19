"""PaymentMethods (``/v1/payment_methods``) of type card, with the card number in the vault."""

from __future__ import annotations

from farthing.stripe_api.payment_methods._router import router

__all__ = ["router"]
