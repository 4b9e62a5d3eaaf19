"""Customer parameters: Stripe's form strings checked and bounded, and the object's JSON shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from farthing.http._errors import ApiError
from farthing.stripe_api._form import FormValue
from farthing.stripe_api._params import (
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_LENGTH_MAX,
    MetadataChange,
    parse_metadata,
)
from farthing.stripe_api._request import Params, unknown_param

__all__ = [
    "METADATA_KEYS_MAX",
    "METADATA_KEY_LENGTH_MAX",
    "METADATA_VALUE_LENGTH_MAX",
    "CustomerFields",
    "MetadataChange",
    "parse_fields",
]

# Column widths in farthing.db.schema.stripe_customers.
TEXT_LENGTH_MAX = {"email": 512, "name": 256, "description": 500, "phone": 40}
# Accepted for SDK compatibility; Customers has no expandable field implemented yet.
_IGNORED = frozenset({"expand"})


def _invalid(message: str, param: str) -> ApiError:
    return ApiError(
        400, type_="invalid_request_error", code="parameter_invalid", message=message, param=param
    )


@dataclass(frozen=True, slots=True)
class CustomerFields:
    """Only the fields the request named: a value, or None to unset it (``email=``)."""

    text: dict[str, str | None]
    metadata: MetadataChange | None


def _text(name: str, value: FormValue) -> str | None:
    if not isinstance(value, str):
        raise _invalid(f"Invalid string: {name}.", name)
    if len(value) > TEXT_LENGTH_MAX[name]:
        raise _invalid(f"{name} has at most {TEXT_LENGTH_MAX[name]} characters.", name)
    return value or None


def parse_fields(params: Params) -> CustomerFields:
    """The create or update parameters; 400 for any unknown or malformed one."""
    text: dict[str, str | None] = {}
    metadata = None
    for name, value in params.items():
        if name in TEXT_LENGTH_MAX:
            text[name] = _text(name, value)
        elif name == "metadata":
            metadata = parse_metadata(value)
        elif name not in _IGNORED:
            raise unknown_param(name)
    return CustomerFields(text=text, metadata=metadata)


def customer_object(row: Any, *, livemode: bool) -> dict[str, Any]:
    """The customer as Stripe shows it; fields Farthing does not manage yet are their empty value,
    present rather than missing because integrations read them unconditionally."""
    return {
        "id": row.id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": row.created,
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": row.description,
        "discount": None,
        "email": row.email,
        "invoice_prefix": None,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": livemode,
        "metadata": row.metadata_,
        "name": row.name,
        "next_invoice_sequence": 1,
        "phone": row.phone,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
