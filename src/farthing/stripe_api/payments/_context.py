"""What every money-moving endpoint needs, built once per app (``app.state.payments``)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from farthing.config import PaymentsSettings
from farthing.http._errors import ApiError
from farthing.stripe_api._request import Partition
from farthing.stripe_api.payments._ledger import PaymentsLedger
from farthing.stripe_api.payments._processor import CardProcessor
from farthing.vault import Vault

__all__ = ["Payments", "payments_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Payments:
    ledger: PaymentsLedger
    settings: PaymentsSettings
    vault: Vault | None
    test_processor: CardProcessor
    # No real processor ships with Farthing: live card payments fail until one is configured.
    live_processor: CardProcessor | None = None

    def processor(self, scope: Partition) -> CardProcessor:
        processor = self.live_processor if scope.livemode else self.test_processor
        if processor is None:
            raise ApiError(
                400,
                type_="invalid_request_error",
                code="processor_not_configured",
                message="Live mode has no card processor configured, so live card payments "
                "cannot be confirmed. Farthing never simulates live payments; use a test key.",
            )
        return processor

    def require_vault(self) -> Vault:
        if self.vault is None:
            raise ApiError(
                503,
                type_="api_error",
                code="vault_not_configured",
                message="The card vault has no key: set FARTHING_VAULT_KEY or "
                "FARTHING_VAULT_KEY_FILE (created by `farthing init`) and restart the server.",
            )
        return self.vault


def payments_of(request: Request) -> Payments:
    payments: Payments = request.app.state.payments
    return payments
