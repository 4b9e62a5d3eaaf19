"""Account parameters: Stripe's form strings checked and bounded, and the object's JSON shape."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from farthing.http._errors import ApiError
from farthing.stripe_api._form import FormValue
from farthing.stripe_api._params import MetadataChange, Reader, invalid
from farthing.stripe_api._request import Params

__all__ = [
    "BUSINESS_TYPES",
    "CAPABILITIES",
    "EMAIL_LENGTH_MAX",
    "AccountFields",
    "account_object",
    "not_a_platform",
    "parse_create",
    "parse_update",
]

# Column widths in farthing.db.schema.stripe_accounts.
EMAIL_LENGTH_MAX = 512
BUSINESS_TYPES = frozenset({"individual", "company", "non_profit", "government_entity"})
# What every Farthing account can do: there is no onboarding or verification, so both are
# active from creation (and the only capabilities the payments API implements).
CAPABILITIES = ("card_payments", "transfers")
_TYPE_LENGTH_MAX = 16
_COUNTRY = re.compile(r"[A-Z]{2}")
_DEFAULT_COUNTRY = "US"
# Stripe's default settlement currency of common countries; any other country defaults to usd
# unless default_currency says otherwise.
_EURO_COUNTRIES = frozenset(
    {"AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR"}
    | {"IE", "IT", "LT", "LU", "LV", "MT", "NL", "PT", "SI", "SK"}
)
_CURRENCY_OF_COUNTRY = {
    "US": "usd",
    "GB": "gbp",
    "CA": "cad",
    "AU": "aud",
    "NZ": "nzd",
    "JP": "jpy",
    "CH": "chf",
    "SE": "sek",
    "NO": "nok",
    "DK": "dkk",
    "PL": "pln",
    "SG": "sgd",
    "HK": "hkd",
    "MX": "mxn",
    "BR": "brl",
    "IN": "inr",
} | dict.fromkeys(_EURO_COUNTRIES, "eur")


@dataclass(frozen=True, slots=True)
class AccountFields:
    """Only the fields the request named; ``country`` and ``default_currency`` on create only."""

    text: dict[str, str | None]
    metadata: MetadataChange | None
    country: str | None = None
    default_currency: str | None = None


def _type(reader: Reader) -> None:
    kind = reader.string("type", _TYPE_LENGTH_MAX)
    if kind is None or kind == "custom":
        return
    if kind in {"express", "standard"}:
        raise invalid(
            f"Farthing creates custom accounts only: {kind} accounts need Stripe's hosted "
            "onboarding and dashboard, which Farthing does not have. Use type=custom.",
            "type",
        )
    raise invalid("Invalid type: must be custom.", "type")


def _capabilities(value: FormValue | None) -> None:
    """``capabilities[NAME][requested]=true`` for the capabilities every account has."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid("capabilities must be a hash.", "capabilities")
    for name, item in value.items():
        param = f"capabilities[{name}]"
        if name not in CAPABILITIES:
            raise invalid(
                f"Unsupported capability: {name[:40]}. Farthing offers "
                f"{' and '.join(CAPABILITIES)}.",
                param,
            )
        if not isinstance(item, dict) or set(item) != {"requested"}:
            raise invalid(f"{param} takes requested=true.", param)
        if item["requested"] != "true":
            # Nothing stores a capability turned off, so it would come back active: refuse.
            raise invalid(f"{name} cannot be turned off in Farthing.", f"{param}[requested]")


def _business_type(reader: Reader) -> dict[str, str | None]:
    if not reader.has("business_type"):
        return {}
    value = reader.string("business_type", max(map(len, BUSINESS_TYPES)))
    if value is not None and value not in BUSINESS_TYPES:
        raise invalid(
            f"Invalid business_type: must be one of {', '.join(sorted(BUSINESS_TYPES))}.",
            "business_type",
        )
    return {"business_type": value}


def _text(reader: Reader) -> dict[str, str | None]:
    text = _business_type(reader)
    if reader.has("email"):
        text["email"] = reader.string("email", EMAIL_LENGTH_MAX)
    return text


def parse_create(params: Params) -> AccountFields:
    """The create parameters; 400 for any unknown or malformed one."""
    reader = Reader(params)
    _type(reader)
    country = reader.string("country", 2) or _DEFAULT_COUNTRY
    if not _COUNTRY.fullmatch(country):
        raise invalid("country is a two-letter ISO 3166-1 code such as US.", "country")
    currency = reader.currency("default_currency", required=False)
    _capabilities(reader.raw("capabilities"))
    fields = AccountFields(
        text=_text(reader),
        metadata=reader.metadata(),
        country=country,
        default_currency=currency or _CURRENCY_OF_COUNTRY.get(country, "usd"),
    )
    reader.expand()
    reader.finish()
    return fields


def parse_update(params: Params) -> AccountFields:
    reader = Reader(params)
    fields = AccountFields(text=_text(reader), metadata=reader.metadata())
    _capabilities(reader.raw("capabilities"))
    reader.expand()
    reader.finish()
    return fields


def account_object(row: Any) -> dict[str, Any]:
    """The account as Stripe shows it (the fields integrations read; no onboarding details)."""
    return {
        "id": row.id,
        "object": "account",
        "business_type": row.business_type,
        "capabilities": dict.fromkeys(CAPABILITIES, "active") if row.charges_enabled else {},
        "charges_enabled": row.charges_enabled,
        "country": row.country,
        "created": row.created,
        "default_currency": row.default_currency,
        "details_submitted": row.charges_enabled,
        "email": row.email,
        "metadata": row.metadata_,
        "payouts_enabled": row.payouts_enabled,
        "type": row.type,
    }


def not_a_platform() -> ApiError:
    return ApiError(
        400,
        type_="invalid_request_error",
        code="platform_account_required",
        message="Only platforms can work with connected accounts: this request acts for a "
        "connected account (Stripe-Account), which cannot have connected accounts of its own.",
    )
