"""Stripe's test cards: the ``pm_card_*`` presets and what each card does.

One table for the whole API: PaymentMethods use it to materialise presets and to refuse test
cards in live mode; the simulated processor will read each card's outcome from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["PRESETS", "TEST_CARDS_BY_NUMBER", "TestCard", "brand_of"]


@dataclass(frozen=True, slots=True)
class TestCard:
    number: str
    brand: str
    funding: str
    country: str
    # What a charge on the card does: "succeeded", a decline code ("card_declined:lost_card"),
    # "requires_action" (3-D Secure) or "succeeded_available" (funds skip the pending state).
    outcome: str


_VISA = "visa"
_CARDS = (
    ("pm_card_visa", TestCard("4242424242424242", _VISA, "credit", "US", "succeeded")),
    ("pm_card_mastercard", TestCard("5555555555554444", "mastercard", "credit", "US", "succeeded")),
    ("pm_card_amex", TestCard("378282246310005", "amex", "credit", "US", "succeeded")),
    (
        "pm_card_chargeDeclined",
        TestCard("4000000000000002", _VISA, "credit", "US", "card_declined:generic_decline"),
    ),
    (
        "pm_card_chargeDeclinedInsufficientFunds",
        TestCard("4000000000009995", _VISA, "credit", "US", "card_declined:insufficient_funds"),
    ),
    (
        "pm_card_chargeDeclinedLostCard",
        TestCard("4000000000009987", _VISA, "credit", "US", "card_declined:lost_card"),
    ),
    (
        "pm_card_chargeDeclinedStolenCard",
        TestCard("4000000000009979", _VISA, "credit", "US", "card_declined:stolen_card"),
    ),
    (
        "pm_card_chargeDeclinedExpiredCard",
        TestCard("4000000000000069", _VISA, "credit", "US", "expired_card:expired_card"),
    ),
    (
        "pm_card_chargeDeclinedIncorrectCvc",
        TestCard("4000000000000127", _VISA, "credit", "US", "incorrect_cvc:incorrect_cvc"),
    ),
    (
        "pm_card_chargeDeclinedProcessingError",
        TestCard("4000000000000119", _VISA, "credit", "US", "processing_error:processing_error"),
    ),
    (
        "pm_card_authenticationRequired",
        TestCard("4000002500003155", _VISA, "credit", "US", "requires_action"),
    ),
    (
        "pm_card_threeDSecure2Required",
        TestCard("4000000000003220", _VISA, "credit", "US", "requires_action"),
    ),
    (
        "pm_card_bypassPending",
        TestCard("4000000000000077", _VISA, "credit", "US", "succeeded_available"),
    ),
)
PRESETS: MappingProxyType[str, TestCard] = MappingProxyType(dict(_CARDS))
TEST_CARDS_BY_NUMBER: MappingProxyType[str, TestCard] = MappingProxyType(
    {card.number: card for _preset, card in _CARDS}
)

# (brand, prefixes) in match order; enough to label the major networks from the number alone.
_BRAND_PREFIXES = (
    ("amex", ("34", "37")),
    ("visa", ("4",)),
    ("mastercard", tuple(str(n) for n in range(51, 56)) + tuple(str(n) for n in range(2221, 2721))),
    ("discover", ("6011", "65", *(str(n) for n in range(644, 650)))),
    ("diners", ("36", "38", *(str(n) for n in range(300, 306)))),
    ("jcb", ("35",)),
    ("unionpay", ("62",)),
)


def brand_of(number: str) -> str:
    for brand, prefixes in _BRAND_PREFIXES:
        if number.startswith(prefixes):
            return brand
    return "unknown"
