"""The balance (``/v1/balance``) and its history (``/v1/balance_transactions``)."""

from __future__ import annotations

from farthing.stripe_api.balance._router import router

__all__ = ["router"]
