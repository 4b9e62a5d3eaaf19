"""The exception tree of Farthing.

    FarthingError                 base class of every error Farthing raises on purpose
    ├── ConfigurationError        missing or invalid configuration (journal key, database URL)
    ├── NotFoundError             a named object does not exist in the caller's scope
    └── IntegrityError            `farthing verify` found the ledger inconsistent or tampered

Expected rejections of ledger events are not exceptions: they are result codes
(``farthing.ledger.CreateTransferResult``).
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "FarthingError", "IntegrityError", "NotFoundError"]


class FarthingError(Exception):
    """Base class for Farthing's errors."""


class ConfigurationError(FarthingError):
    """Configuration is missing or invalid."""


class NotFoundError(FarthingError):
    """A named object does not exist in the caller's scope."""


class IntegrityError(FarthingError):
    """The ledger failed verification; the message names the first bad entry."""
