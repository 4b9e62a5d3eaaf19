"""PaymentMethod parameters, checked and bounded, and the object's JSON shape.

Card data is checked as Stripe checks it when a card is created: a malformed number, expiry or
CVC is a 402 ``card_error`` (``incorrect_number``, ``invalid_expiry_month``, ...), which the SDK
raises as ``CardError``. Messages never repeat the number or the CVC.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from farthing.http._errors import ApiError
from farthing.http._limits import bounded_int
from farthing.stripe_api._form import FormValue
from farthing.stripe_api._params import MetadataChange, parse_metadata
from farthing.stripe_api._request import Params, unknown_param
from farthing.stripe_api.test_cards import brand_of

__all__ = [
    "PAN_LENGTH_MAX",
    "PAN_LENGTH_MIN",
    "CardInput",
    "Fields",
    "parse_create",
    "parse_update",
    "payment_method_object",
]

# ISO/IEC 7812 card numbers have 12 to 19 digits.
PAN_LENGTH_MIN = 12
PAN_LENGTH_MAX = 19
CVC_LENGTH = 3
CVC_LENGTH_AMEX = 4
# Cards are not issued for longer than this; a later year is a typo.
EXP_YEARS_AHEAD_MAX = 50
TWO_DIGIT_YEAR_MAX = 99
TEXT_LENGTH_MAX = {"name": 256, "email": 512}
_IGNORED = frozenset({"expand"})
_CARD_PARAMS = frozenset({"number", "exp_month", "exp_year", "cvc"})


@dataclass(frozen=True, slots=True)
class CardInput:
    number: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class Fields:
    """Only what the request named; a billing value of None unsets it."""

    billing: dict[str, str | None]
    metadata: MetadataChange | None


def _invalid(message: str, param: str, code: str = "parameter_invalid") -> ApiError:
    return ApiError(400, type_="invalid_request_error", code=code, message=message, param=param)


def card_error(code: str, message: str, param: str) -> ApiError:
    return ApiError(402, type_="card_error", code=code, message=message, param=param)


def _luhn(number: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(number)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _digits(value: FormValue | None, param: str) -> str:
    if value is None:
        raise _invalid(f"Missing required param: {param}.", param, "parameter_missing")
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {param}.", param)
    return value


def _number(value: FormValue | None) -> str:
    number = _digits(value, "card[number]")
    if not (
        number.isascii()
        and number.isdecimal()
        and PAN_LENGTH_MIN <= len(number) <= PAN_LENGTH_MAX
        and _luhn(number)
    ):
        raise card_error("incorrect_number", "Your card number is incorrect.", "number")
    return number


def _expiry(card: dict[str, FormValue]) -> tuple[int, int]:
    month_text = _digits(card.get("exp_month"), "card[exp_month]")
    year_text = _digits(card.get("exp_year"), "card[exp_year]")
    month = bounded_int(month_text, 1, 12)
    if month is None:
        raise card_error(
            "invalid_expiry_month", "Your card's expiration month is invalid.", "exp_month"
        )
    today = dt.datetime.now(tz=dt.UTC).date()
    valid_year = year_text.isascii() and year_text.isdecimal() and len(year_text) <= 4
    year = int(year_text) if valid_year else 0
    if valid_year and year <= TWO_DIGIT_YEAR_MAX:
        year += 2000  # Stripe accepts two-digit years.
    if not today.year <= year <= today.year + EXP_YEARS_AHEAD_MAX:
        raise card_error(
            "invalid_expiry_year", "Your card's expiration year is invalid.", "exp_year"
        )
    if (year, month) < (today.year, today.month):
        raise card_error(
            "invalid_expiry_month", "Your card's expiration date is in the past.", "exp_month"
        )
    return month, year


def _check_cvc(value: FormValue | None, number: str) -> None:
    """The CVC is checked here and then dropped: it is never stored, logged or returned."""
    if value is None:
        return
    length = CVC_LENGTH_AMEX if brand_of(number) == "amex" else CVC_LENGTH
    if not (
        isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) == length
    ):
        raise card_error("invalid_cvc", "Your card's security code is invalid.", "cvc")


def _card(value: FormValue | None) -> CardInput:
    if value is None:
        raise _invalid("Missing required param: card.", "card", "parameter_missing")
    if not isinstance(value, dict):
        raise _invalid("card must be a hash.", "card")
    for name in value:
        if name not in _CARD_PARAMS:
            raise unknown_param(f"card[{name}]")
    number = _number(value.get("number"))
    month, year = _expiry(value)
    _check_cvc(value.get("cvc"), number)
    return CardInput(number=number, exp_month=month, exp_year=year)


def _billing(value: FormValue) -> dict[str, str | None]:
    if value == "":
        return dict.fromkeys(TEXT_LENGTH_MAX)
    if not isinstance(value, dict):
        raise _invalid("billing_details must be a hash.", "billing_details")
    billing: dict[str, str | None] = {}
    for name, item in value.items():
        param = f"billing_details[{name}]"
        if name not in TEXT_LENGTH_MAX:
            raise unknown_param(param)
        if not isinstance(item, str) or len(item) > TEXT_LENGTH_MAX[name]:
            raise _invalid(
                f"{param} is a string of at most {TEXT_LENGTH_MAX[name]} characters.", param
            )
        billing[name] = item or None
    return billing


def parse_update(params: Params) -> Fields:
    billing: dict[str, str | None] = {}
    metadata = None
    for name, value in params.items():
        if name == "billing_details":
            billing = _billing(value)
        elif name == "metadata":
            metadata = parse_metadata(value)
        elif name not in _IGNORED:
            raise unknown_param(name)
    return Fields(billing=billing, metadata=metadata)


def parse_create(params: Params) -> tuple[CardInput, Fields]:
    kind = params.get("type")
    if kind is None:
        raise _invalid("Missing required param: type.", "type", "parameter_missing")
    if kind != "card":
        raise _invalid("Only type=card is supported.", "type")
    card = _card(params.get("card"))
    rest = {name: value for name, value in params.items() if name not in {"type", "card"}}
    return card, parse_update(rest)


_NO_ADDRESS = dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state"))


def payment_method_object(row: Any, *, livemode: bool) -> dict[str, Any]:
    """The PaymentMethod as Stripe shows it: the card only masked (brand, last4, fingerprint)."""
    return {
        "id": row.id,
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": dict(_NO_ADDRESS),
            "email": row.billing_email,
            "name": row.billing_name,
            "phone": None,
            "tax_id": None,
        },
        "card": {
            "brand": row.brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": None,
            },
            "country": row.country,
            "display_brand": row.brand,
            "exp_month": row.exp_month,
            "exp_year": row.exp_year,
            "fingerprint": row.fingerprint,
            "funding": row.funding,
            "generated_from": None,
            "last4": row.last4,
            "networks": {"available": [row.brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": row.created,
        "customer": row.customer_id,
        "livemode": livemode,
        "metadata": row.metadata_,
        "type": row.type,
    }
