"""Transfers (``/v1/transfers``) from a platform's available balance to its connected accounts,
and their reversals."""

from __future__ import annotations

from farthing.stripe_api.transfers._router import router

__all__ = ["router"]
