"""PaymentIntent parameters and the object's JSON shape."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from farthing.stripe_api._lists import ID_LENGTH_MAX
from farthing.stripe_api._objects import ObjectRow
from farthing.stripe_api._params import MetadataChange, Reader, invalid
from farthing.stripe_api._request import Params

__all__ = [
    "CaptureFields",
    "ConfirmFields",
    "IntentFields",
    "intent_object",
    "parse_cancel",
    "parse_capture",
    "parse_confirm",
    "parse_create",
    "parse_update",
]

CAPTURE_METHODS = frozenset({"automatic", "automatic_async", "manual"})
CANCELLATION_REASONS = frozenset({"duplicate", "fraudulent", "requested_by_customer", "abandoned"})
DESCRIPTION_LENGTH_MAX = 1000
EMAIL_LENGTH_MAX = 512
URL_LENGTH_MAX = 2048
TRANSFER_GROUP_LENGTH_MAX = 128
# Accepted for SDK compatibility, without effect (docs/stripe-coverage.md lists them).
IGNORED_PARAMS = (
    "automatic_payment_methods",
    "payment_method_options",
    "setup_future_usage",
    "statement_descriptor",
    "statement_descriptor_suffix",
    "use_stripe_sdk",
    "mandate_data",
    "off_session",
    "error_on_requires_action",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentFields:
    """Create and update parameters; None where the request did not name the field."""

    amount: int | None = None
    currency: str | None = None
    customer: str | None = None
    payment_method: str | None = None
    capture_method: str | None = None
    description: str | None = None
    receipt_email: str | None = None
    return_url: str | None = None
    metadata: MetadataChange | None = None
    destination: str | None = None
    application_fee_amount: int | None = None
    transfer_group: str | None = None
    confirm: bool = False
    expand: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfirmFields:
    payment_method: str | None = None
    return_url: str | None = None
    capture_method: str | None = None
    expand: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureFields:
    amount_to_capture: int | None = None
    expand: tuple[str, ...] = ()


def _payment_method_types(reader: Reader) -> None:
    value = reader.raw("payment_method_types")
    if value is None:
        return
    items = list(value.values()) if isinstance(value, dict) else value
    if not isinstance(items, list) or any(item != "card" for item in items):
        raise invalid(
            "Farthing supports the payment method type 'card' only.", "payment_method_types"
        )


def _transfer_data(reader: Reader) -> str | None:
    value = reader.raw("transfer_data")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"destination"}:
        raise invalid("transfer_data takes destination only.", "transfer_data")
    destination = value["destination"]
    if not isinstance(destination, str) or not 0 < len(destination) <= ID_LENGTH_MAX:
        raise invalid(
            "transfer_data[destination] must be an account id.", "transfer_data[destination]"
        )
    return destination


def _common(reader: Reader) -> dict[str, Any]:
    _payment_method_types(reader)
    reader.ignore(*IGNORED_PARAMS)
    method = reader.string("capture_method", 32)
    if method is not None and method not in CAPTURE_METHODS:
        raise invalid(
            "capture_method must be automatic, automatic_async or manual.", "capture_method"
        )
    return {
        "customer": reader.string("customer", ID_LENGTH_MAX),
        "payment_method": reader.string("payment_method", ID_LENGTH_MAX),
        "capture_method": method,
        "description": reader.string("description", DESCRIPTION_LENGTH_MAX),
        "receipt_email": reader.string("receipt_email", EMAIL_LENGTH_MAX),
        "metadata": reader.metadata(),
        "transfer_group": reader.string("transfer_group", TRANSFER_GROUP_LENGTH_MAX),
        "expand": reader.expand(),
    }


# Schemes a browser would run or read locally rather than visit; apps' own schemes are fine.
_RETURN_SCHEMES_REFUSED = frozenset({"javascript", "data", "vbscript", "file", "blob"})


def _return_url(reader: Reader) -> str | None:
    """Where the 3-D Secure page sends the browser: an absolute URL (https, http, or an app's
    own scheme, as Stripe allows for mobile redirects)."""
    url = reader.string("return_url", URL_LENGTH_MAX)
    if url is None:
        return None
    scheme, _, rest = url.partition(":")
    valid = scheme.isascii() and scheme[:1].isalpha() and rest != ""
    valid = valid and all(c.isalnum() or c in "+-." for c in scheme)
    if not valid or scheme.lower() in _RETURN_SCHEMES_REFUSED:
        raise invalid(
            "return_url must be an absolute URL (https, or an app's scheme).", "return_url"
        )
    return url


def parse_create(params: Params) -> IntentFields:
    reader = Reader(params)
    fields = _common(reader)
    amount = reader.amount("amount", required=True)
    currency = reader.currency()
    destination = _transfer_data(reader)
    fee = reader.integer("application_fee_amount", 0, amount or 0)
    if fee is not None and destination is None:
        raise invalid(
            "application_fee_amount needs transfer_data[destination] (destination charges).",
            "application_fee_amount",
        )
    confirm = bool(reader.boolean("confirm"))
    return_url = _return_url(reader)
    if return_url is not None and not confirm:
        raise invalid("return_url can only be passed when confirm=true.", "return_url")
    reader.finish()
    return IntentFields(
        amount=amount,
        currency=currency,
        destination=destination,
        application_fee_amount=fee,
        confirm=confirm,
        return_url=return_url,
        **fields,
    )


def parse_update(params: Params) -> IntentFields:
    reader = Reader(params)
    fields = _common(reader)
    amount = reader.amount("amount")
    currency = reader.currency(required=False)
    reader.finish()
    return IntentFields(amount=amount, currency=currency, **fields)


def parse_confirm(params: Params) -> ConfirmFields:
    reader = Reader(params)
    _payment_method_types(reader)
    reader.ignore(*IGNORED_PARAMS, "receipt_email")
    method = reader.string("capture_method", 32)
    if method is not None and method not in CAPTURE_METHODS:
        raise invalid(
            "capture_method must be automatic, automatic_async or manual.", "capture_method"
        )
    fields = ConfirmFields(
        payment_method=reader.string("payment_method", ID_LENGTH_MAX),
        return_url=_return_url(reader),
        capture_method=method,
        expand=reader.expand(),
    )
    reader.finish()
    return fields


def parse_capture(params: Params) -> CaptureFields:
    reader = Reader(params)
    reader.ignore("statement_descriptor", "statement_descriptor_suffix", "final_capture")
    fields = CaptureFields(
        amount_to_capture=reader.amount("amount_to_capture"), expand=reader.expand()
    )
    reader.finish()
    return fields


def parse_cancel(params: Params) -> tuple[str | None, tuple[str, ...]]:
    reader = Reader(params)
    reason = reader.string("cancellation_reason", 32)
    if reason is not None and reason not in CANCELLATION_REASONS:
        raise invalid(
            "cancellation_reason must be one of " + ", ".join(sorted(CANCELLATION_REASONS)) + ".",
            "cancellation_reason",
        )
    paths = reader.expand()
    reader.finish()
    return reason, paths


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def intent_object(row: ObjectRow, *, livemode: bool) -> dict[str, Any]:
    destination = row["transfer_destination"]
    return {
        "id": row["id"],
        "object": "payment_intent",
        "amount": row["amount"],
        "amount_capturable": row["amount_capturable"],
        "amount_details": {"tip": {}},
        "amount_received": row["amount_received"],
        "application": None,
        "application_fee_amount": row["application_fee_amount"],
        "automatic_payment_methods": None,
        "canceled_at": row["canceled_at"],
        "cancellation_reason": row["cancellation_reason"],
        "capture_method": row["capture_method"],
        "client_secret": None,
        "confirmation_method": "automatic",
        "created": row["created"],
        "currency": row["currency"],
        "customer": row["customer_id"],
        "description": row["description"],
        "last_payment_error": _json(row["last_payment_error"]),
        "latest_charge": row["latest_charge_id"],
        "livemode": livemode,
        "metadata": row["metadata"],
        "next_action": _json(row["next_action"]),
        "on_behalf_of": None,
        "payment_method": row["payment_method_id"],
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": row["receipt_email"],
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "status": row["status"],
        "transfer_data": None if destination is None else {"destination": destination},
        "transfer_group": row["transfer_group"],
    }
