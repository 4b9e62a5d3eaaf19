"""Card processing behind an interface; Farthing ships a simulated processor for test mode.

The simulated processor answers from Stripe's documented test cards (farthing.stripe_api.
test_cards): each card number has one outcome. Live mode has no processor unless one is
configured, and then confirmation fails with a clear error: nothing is ever faked as live.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from farthing.stripe_api.test_cards import TEST_CARDS_BY_NUMBER

__all__ = ["Authorization", "CardProcessor", "Decision", "SimulatedProcessor"]


class Decision(enum.Enum):
    approved = "approved"
    declined = "declined"
    authentication_required = "authentication_required"


@dataclass(frozen=True, slots=True, kw_only=True)
class Authorization:
    decision: Decision
    # For declines: Stripe's error code (card_declined, expired_card, ...) and decline code.
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None
    # The network settles at once: the funds skip the pending balance (test card ...0077).
    available_at_once: bool = False


class CardProcessor(Protocol):
    def authorize(
        self, *, card_number: str, amount_minor: int, currency: str, authenticated: bool
    ) -> Authorization:
        """Ask the network to authorise ``amount_minor``; ``authenticated``: the cardholder has
        passed 3-D Secure for this payment."""
        ...


_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "test_mode_live_card": "Your card was declined. Your request was in test mode, but used a "
    "non test (live) card. For a list of valid test cards, visit: "
    "https://stripe.com/docs/testing.",
}


class SimulatedProcessor:
    """Reproduces Stripe's test cards. Any other number is declined, as Stripe's test mode
    declines real cards."""

    def authorize(
        self, *, card_number: str, amount_minor: int, currency: str, authenticated: bool
    ) -> Authorization:
        assert amount_minor > 0
        del currency
        card = TEST_CARDS_BY_NUMBER.get(card_number)
        if card is None:
            return _declined("card_declined", "test_mode_live_card")
        if card.outcome == "requires_action":
            if authenticated:
                return Authorization(decision=Decision.approved)
            return Authorization(decision=Decision.authentication_required)
        if card.outcome in {"succeeded", "succeeded_available"}:
            return Authorization(
                decision=Decision.approved,
                available_at_once=card.outcome == "succeeded_available",
            )
        code, decline_code = card.outcome.split(":")
        return _declined(code, decline_code)


def _declined(code: str, decline_code: str) -> Authorization:
    return Authorization(
        decision=Decision.declined,
        code=code,
        decline_code=decline_code,
        message=_MESSAGES[decline_code],
    )
