"""Charges: read-only views of the card charges payment intents create."""

from __future__ import annotations

from farthing.stripe_api.charges._router import load_charge, router
from farthing.stripe_api.charges._schemas import charge_object

__all__ = ["charge_object", "load_charge", "router"]
