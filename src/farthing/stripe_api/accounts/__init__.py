"""Connected accounts (``/v1/accounts``, ``/v1/account``): a platform's custom accounts, which
it acts for with the ``Stripe-Account`` header."""

from __future__ import annotations

from farthing.stripe_api.accounts._router import router

__all__ = ["router"]
