"""Payouts (``/v1/payouts``) to external bank accounts (``/v1/accounts/{id}/external_accounts``)
over a simulated bank rail in test mode."""

from __future__ import annotations

from farthing.stripe_api.payouts._router import router

__all__ = ["router"]
