"""Farthing: an open-source digital-payments platform built on a double-entry ledger."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
