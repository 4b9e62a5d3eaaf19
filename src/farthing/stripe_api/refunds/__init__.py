"""Refunds (``/v1/refunds``) of captured charges, returning Farthing's fee pro rata."""

from __future__ import annotations

from farthing.stripe_api.refunds._router import router

__all__ = ["router"]
