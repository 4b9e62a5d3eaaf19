"""Customers (``/v1/customers``): create, retrieve, update, delete and list."""

from __future__ import annotations

from farthing.stripe_api.customers._router import router

__all__ = ["router"]
