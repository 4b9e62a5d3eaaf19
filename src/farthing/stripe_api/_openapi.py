"""What /openapi.json says about each /v1 operation: its parameters and the object it answers.

FastAPI cannot infer any of it: the routes read Stripe's bracketed form encoding themselves
(`read_params`). The tables below state each operation's accepted parameters (anything else is a
400 `parameter_unknown`), their bounds, and the `object` it returns; the schemathesis suite
(tests/security/test_fuzz.py) holds the server to them in both directions.

Form conventions stated here: objects and lists use Stripe's bracketed keys (`metadata[k]=v`,
`expand[0]=x`: `deepObject` encoding); an empty text value is the same as leaving that parameter
out; integers and booleans are their decimal and `true`/`false` spellings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from farthing.stripe_api._lists import ID_LENGTH_MAX, LIST_LIMIT_MAX, TIMESTAMP_MAX
from farthing.stripe_api._params import (
    AMOUNT_MAX,
    EXPAND_PATHS_MAX,
    METADATA_KEY_LENGTH_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_LENGTH_MAX,
)
from farthing.stripe_api.accounts._schemas import BUSINESS_TYPES, CAPABILITIES, EMAIL_LENGTH_MAX
from farthing.stripe_api.customers._schemas import TEXT_LENGTH_MAX as CUSTOMER_TEXT
from farthing.stripe_api.events._router import TYPES_MAX
from farthing.stripe_api.events._service import EVENT_TYPE_LENGTH_MAX
from farthing.stripe_api.payment_intents._schemas import (
    CANCELLATION_REASONS,
    CAPTURE_METHODS,
    DESCRIPTION_LENGTH_MAX,
    IGNORED_PARAMS,
    TRANSFER_GROUP_LENGTH_MAX,
    URL_LENGTH_MAX,
)
from farthing.stripe_api.payment_methods._router import TYPE_LENGTH_MAX
from farthing.stripe_api.payment_methods._schemas import EXP_YEARS_AHEAD_MAX
from farthing.stripe_api.payment_methods._schemas import TEXT_LENGTH_MAX as BILLING_TEXT
from farthing.stripe_api.payouts._banks import (
    ACCOUNT_NUMBER_LENGTH_MAX,
    ACCOUNT_NUMBER_LENGTH_MIN,
    HOLDER_NAME_LENGTH_MAX,
    ROUTING_NUMBER_LENGTH_MAX,
)
from farthing.stripe_api.payouts._router import STATEMENT_DESCRIPTOR_LENGTH_MAX, STATUSES
from farthing.stripe_api.refunds._router import REASONS
from farthing.stripe_api.webhooks._attempts import ATTEMPTS_PAGE_MAX
from farthing.stripe_api.webhooks._service import ENABLED_EVENTS_MAX, ROLL_OVERLAP_S_MAX

__all__ = ["OPERATIONS", "Operation", "describe"]

Schema = dict[str, Any]
_FORM = "application/x-www-form-urlencoded"
# As Reader.expand reads them.
_EXPAND_PATH_LENGTH_MAX = 200


def _text(length_max: int) -> Schema:
    return {"type": "string", "maxLength": length_max}


def _choice(values: frozenset[str] | tuple[str, ...]) -> Schema:
    # The empty value means "not given", as for every parameter.
    return {"type": "string", "enum": [*sorted(values), ""]}


def _integer(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


ANY: Schema = {"description": "Accepted for compatibility, without effect."}
ID = _text(ID_LENGTH_MAX)
CURSOR: Schema = {"type": "string", "minLength": 1, "maxLength": ID_LENGTH_MAX}
AMOUNT = _integer(1, AMOUNT_MAX)
BOOLEAN: Schema = {"type": "boolean"}
CURRENCY: Schema = {"type": "string", "pattern": "^[A-Za-z]{3}$", "example": "usd"}
CURRENCY_OPTIONAL: Schema = {"type": "string", "pattern": "^([A-Za-z]{3})?$", "example": "usd"}
DESCRIPTION = _text(DESCRIPTION_LENGTH_MAX)
METADATA: Schema = {
    "anyOf": [
        {
            "type": "object",
            "maxProperties": METADATA_KEYS_MAX,
            # Keys of digits alone would read as list indexes; brackets would nest.
            "propertyNames": {
                "maxLength": METADATA_KEY_LENGTH_MAX,
                "pattern": r"^[^\[\]]*[^\[\]0-9][^\[\]]*$",
            },
            "additionalProperties": _text(METADATA_VALUE_LENGTH_MAX),
        },
        {"type": "string", "enum": [""], "description": "Clears all keys."},
    ]
}
_EXPAND_PATH: Schema = {"type": "string", "minLength": 1, "maxLength": _EXPAND_PATH_LENGTH_MAX}
EXPAND: Schema = {
    "anyOf": [_EXPAND_PATH, {"type": "array", "maxItems": EXPAND_PATHS_MAX, "items": _EXPAND_PATH}]
}
_BOUNDS: Schema = {
    "type": "object",
    "properties": {name: _integer(0, TIMESTAMP_MAX) for name in ("gt", "gte", "lt", "lte")},
    "additionalProperties": False,
}
TIMESTAMP_FILTER: Schema = {"anyOf": [_integer(0, TIMESTAMP_MAX), _BOUNDS]}
ARRIVAL_DATE_FILTER: Schema = {
    "anyOf": [
        _integer(0, TIMESTAMP_MAX),
        {**_BOUNDS, "properties": _BOUNDS["properties"] | {"eq": _integer(0, TIMESTAMP_MAX)}},
    ]
}
LIST: dict[str, Schema] = {
    "limit": _integer(1, LIST_LIMIT_MAX),
    "starting_after": CURSOR,
    "ending_before": CURSOR,
    "created": TIMESTAMP_FILTER,
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One /v1 operation: its query or form parameters (`required` among them) and what a 200
    answers: an object named `returns`, a list of them, or the stub of a deleted one."""

    returns: str
    params: dict[str, Schema] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    shape: str = "object"  # or "list" or "deleted"
    example: dict[str, Any] | None = None


def _listing(returns: str, **params: Schema) -> Operation:
    return Operation(returns, LIST | params, shape="list")


def _card() -> Schema:
    year = dt.datetime.now(tz=dt.UTC).year
    return {
        "type": "object",
        "properties": {
            "number": {
                "type": "string",
                "pattern": "^[0-9]{12,19}$",
                "example": "4242424242424242",
            },
            "exp_month": _integer(1, 12),
            "exp_year": {
                # Four digits, or two (20xx); the expiry may not be past or too far ahead.
                "anyOf": [
                    _integer(year, year + EXP_YEARS_AHEAD_MAX),
                    _integer(year % 100, min(99, year % 100 + EXP_YEARS_AHEAD_MAX)),
                ],
                "example": year + 1,
            },
            "cvc": {"type": "string", "pattern": "^[0-9]{3,4}$"},
        },
        "required": ["number", "exp_month", "exp_year"],
        "additionalProperties": False,
    }


BILLING: Schema = {
    "anyOf": [
        {
            "type": "object",
            "properties": {name: _text(length) for name, length in BILLING_TEXT.items()},
            "additionalProperties": False,
        },
        {"type": "string", "enum": [""], "description": "Clears the billing details."},
    ]
}
CAPABILITY: Schema = {
    "type": "object",
    "properties": {"requested": {"type": "boolean", "enum": [True]}},
    "required": ["requested"],
    "additionalProperties": False,
}
BANK_ACCOUNT: Schema = {
    "type": "object",
    "properties": {
        "object": {"type": "string", "enum": ["bank_account"]},
        "country": {"type": "string", "minLength": 1, "maxLength": 2, "example": "US"},
        "currency": CURRENCY,
        "account_number": {
            "type": "string",
            "minLength": ACCOUNT_NUMBER_LENGTH_MIN,
            "maxLength": ACCOUNT_NUMBER_LENGTH_MAX,
            "example": "000123456789",
        },
        "routing_number": _text(ROUTING_NUMBER_LENGTH_MAX),
        "account_holder_name": _text(HOLDER_NAME_LENGTH_MAX),
        "account_holder_type": ANY,
        "account_type": ANY,
        "metadata": ANY,
        "default_for_currency": {"description": "`true` makes it its currency's default."},
    },
    "required": ["object", "country", "currency", "account_number"],
    "additionalProperties": False,
}
_EVENT_TYPE = _text(EVENT_TYPE_LENGTH_MAX)
ENABLED_EVENTS: Schema = {
    "type": "array",
    "minItems": 1,
    "maxItems": ENABLED_EVENTS_MAX,
    "items": {"type": "string", "minLength": 1, "maxLength": EVENT_TYPE_LENGTH_MAX},
    "example": ["*"],
}
CUSTOMER: dict[str, Schema] = {
    **{name: _text(length) for name, length in CUSTOMER_TEXT.items()},
    "metadata": METADATA,
    "expand": ANY,
}
ACCOUNT: dict[str, Schema] = {
    "email": _text(EMAIL_LENGTH_MAX),
    "business_type": _choice(BUSINESS_TYPES),
    "metadata": METADATA,
    "capabilities": {
        "type": "object",
        "properties": dict.fromkeys(CAPABILITIES, CAPABILITY),
        "additionalProperties": False,
    },
    "expand": EXPAND,
}
# Accepted by payment intents for SDK compatibility, without effect.
_INTENT_IGNORED = dict.fromkeys(IGNORED_PARAMS, ANY)
_METHOD_TYPES: Schema = {"type": "array", "items": {"type": "string", "enum": ["card"]}}
INTENT: dict[str, Schema] = {
    "customer": ID,
    "payment_method": {**ID, "example": "pm_card_visa"},
    "capture_method": _choice(CAPTURE_METHODS),
    "description": DESCRIPTION,
    "receipt_email": _text(EMAIL_LENGTH_MAX),
    "metadata": METADATA,
    "transfer_group": _text(TRANSFER_GROUP_LENGTH_MAX),
    "expand": EXPAND,
    "payment_method_types": _METHOD_TYPES,
    **_INTENT_IGNORED,
}
WEBHOOK: dict[str, Schema] = {
    "url": {**_text(URL_LENGTH_MAX), "example": "https://example.com/hooks"},
    "enabled_events": ENABLED_EVENTS,
    "description": DESCRIPTION,
    "metadata": METADATA,
    "api_version": ANY,
    "connect": ANY,
    "expand": ANY,
}
_EXPANDS = {"expand": EXPAND}

OPERATIONS: dict[str, Operation] = {
    # Customers
    "GET /v1/customers": _listing("customer", expand=ANY),
    "POST /v1/customers": Operation("customer", CUSTOMER),
    "GET /v1/customers/{customer_id}": Operation("customer", {"expand": ANY}),
    "POST /v1/customers/{customer_id}": Operation("customer", CUSTOMER),
    "DELETE /v1/customers/{customer_id}": Operation("customer", shape="deleted"),
    # Connected accounts
    "GET /v1/accounts": _listing("account", expand=ANY),
    "POST /v1/accounts": Operation(
        "account",
        ACCOUNT
        | {
            "type": _choice(("custom",)),
            "country": {"type": "string", "pattern": "^([A-Z]{2})?$", "example": "US"},
            "default_currency": CURRENCY_OPTIONAL,
        },
    ),
    "GET /v1/accounts/{account_id}": Operation("account", {"expand": ANY}),
    "POST /v1/accounts/{account_id}": Operation("account", ACCOUNT),
    "DELETE /v1/accounts/{account_id}": Operation("account", shape="deleted"),
    "GET /v1/account": Operation("account", {"expand": ANY}),
    # Payment methods
    "GET /v1/payment_methods": _listing(
        "payment_method", expand=ANY, customer=ID, type=_text(TYPE_LENGTH_MAX)
    ),
    "POST /v1/payment_methods": Operation(
        "payment_method",
        {
            "type": {"type": "string", "enum": ["card"]},
            "card": _card(),
            "billing_details": BILLING,
            "metadata": METADATA,
            "expand": ANY,
        },
        required=("type", "card"),
    ),
    "GET /v1/customers/{customer_id}/payment_methods": _listing(
        "payment_method", expand=ANY, type=_text(TYPE_LENGTH_MAX)
    ),
    "GET /v1/payment_methods/{method_id}": Operation("payment_method", {"expand": ANY}),
    "POST /v1/payment_methods/{method_id}": Operation(
        "payment_method", {"billing_details": BILLING, "metadata": METADATA, "expand": ANY}
    ),
    "POST /v1/payment_methods/{method_id}/attach": Operation(
        "payment_method", {"customer": CURSOR, "expand": ANY}, required=("customer",)
    ),
    "POST /v1/payment_methods/{method_id}/detach": Operation("payment_method", {"expand": ANY}),
    # Payment intents, charges, balance, refunds
    "GET /v1/payment_intents": _listing("payment_intent", customer=ID, expand=EXPAND),
    "POST /v1/payment_intents": Operation(
        "payment_intent",
        INTENT
        | {
            "amount": {**AMOUNT, "example": 1000},
            "currency": CURRENCY,
            "confirm": BOOLEAN,
            "return_url": _text(URL_LENGTH_MAX),
            "transfer_data": {
                "type": "object",
                "properties": {"destination": CURSOR},
                "required": ["destination"],
                "additionalProperties": False,
            },
            "application_fee_amount": _integer(0, AMOUNT_MAX),
        },
        required=("amount", "currency"),
        example={"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa"},
    ),
    "GET /v1/payment_intents/{intent_id}": Operation(
        "payment_intent", {"expand": EXPAND, "client_secret": ANY}
    ),
    "POST /v1/payment_intents/{intent_id}": Operation(
        "payment_intent", INTENT | {"amount": AMOUNT, "currency": CURRENCY_OPTIONAL}
    ),
    "POST /v1/payment_intents/{intent_id}/confirm": Operation(
        "payment_intent",
        {
            "payment_method": INTENT["payment_method"],
            "return_url": _text(URL_LENGTH_MAX),
            "capture_method": _choice(CAPTURE_METHODS),
            "expand": EXPAND,
            "payment_method_types": _METHOD_TYPES,
            "receipt_email": ANY,
            **_INTENT_IGNORED,
        },
    ),
    "POST /v1/payment_intents/{intent_id}/capture": Operation(
        "payment_intent",
        {"amount_to_capture": AMOUNT, "expand": EXPAND}
        | dict.fromkeys(
            ("statement_descriptor", "statement_descriptor_suffix", "final_capture"), ANY
        ),
    ),
    "POST /v1/payment_intents/{intent_id}/cancel": Operation(
        "payment_intent",
        {"cancellation_reason": _choice(CANCELLATION_REASONS), "expand": EXPAND},
    ),
    "GET /v1/charges": _listing("charge", customer=ID, payment_intent=ID, expand=EXPAND),
    "GET /v1/charges/{charge_id}": Operation("charge", _EXPANDS),
    "GET /v1/balance": Operation("balance"),
    "GET /v1/balance_transactions": _listing(
        "balance_transaction",
        type=_text(TYPE_LENGTH_MAX),
        source=ID,
        payout=ID,
        currency=CURRENCY_OPTIONAL,
        expand=EXPAND,
    ),
    "GET /v1/balance_transactions/{txn_id}": Operation("balance_transaction", _EXPANDS),
    "GET /v1/refunds": _listing("refund", charge=ID, payment_intent=ID, expand=EXPAND),
    "POST /v1/refunds": Operation(
        "refund",
        {
            "charge": ID,
            "payment_intent": ID,
            "amount": AMOUNT,
            "reason": _choice(REASONS),
            "metadata": METADATA,
            "reverse_transfer": BOOLEAN,
            "expand": EXPAND,
        },
    ),
    "GET /v1/refunds/{refund_id}": Operation("refund", _EXPANDS),
    "POST /v1/refunds/{refund_id}": Operation("refund", {"metadata": METADATA, **_EXPANDS}),
    # Events and webhook endpoints
    "GET /v1/events": _listing(
        "event",
        type=_EVENT_TYPE,
        types={"type": "array", "minItems": 1, "maxItems": TYPES_MAX, "items": _EVENT_TYPE},
        delivery_success=ANY,
        expand=EXPAND,
    ),
    "GET /v1/events/{event_id}": Operation("event", _EXPANDS),
    "GET /v1/webhook_endpoints": _listing("webhook_endpoint", expand=ANY),
    "POST /v1/webhook_endpoints": Operation(
        "webhook_endpoint", WEBHOOK, required=("url", "enabled_events")
    ),
    "GET /v1/webhook_endpoints/{endpoint_id}": Operation("webhook_endpoint", _EXPANDS),
    "POST /v1/webhook_endpoints/{endpoint_id}": Operation(
        "webhook_endpoint", WEBHOOK | {"disabled": BOOLEAN}
    ),
    "DELETE /v1/webhook_endpoints/{endpoint_id}": Operation("webhook_endpoint", shape="deleted"),
    "GET /v1/webhook_endpoints/{endpoint_id}/attempts": Operation(
        "webhook_attempt", {"limit": _integer(1, ATTEMPTS_PAGE_MAX)}, shape="list"
    ),
    "POST /v1/webhook_endpoints/{endpoint_id}/roll_secret": Operation(
        "webhook_endpoint", {"expires_in": _integer(0, ROLL_OVERLAP_S_MAX)}
    ),
    # Transfers and reversals
    "GET /v1/transfers": _listing(
        "transfer", destination=ID, transfer_group=_text(TRANSFER_GROUP_LENGTH_MAX), expand=EXPAND
    ),
    "POST /v1/transfers": Operation(
        "transfer",
        {
            "amount": AMOUNT,
            "currency": CURRENCY,
            "destination": ID,
            "description": DESCRIPTION,
            "metadata": METADATA,
            "transfer_group": _text(TRANSFER_GROUP_LENGTH_MAX),
            "source_transaction": ID,
            "source_type": ANY,
            "expand": EXPAND,
        },
        required=("amount", "currency", "destination"),
    ),
    "GET /v1/transfers/{transfer_id}": Operation("transfer", _EXPANDS),
    "POST /v1/transfers/{transfer_id}": Operation(
        "transfer", {"description": DESCRIPTION, "metadata": METADATA, **_EXPANDS}
    ),
    "GET /v1/transfers/{transfer_id}/reversals": _listing("transfer_reversal", expand=EXPAND),
    "POST /v1/transfers/{transfer_id}/reversals": Operation(
        "transfer_reversal",
        {
            "amount": AMOUNT,
            "metadata": METADATA,
            "description": ANY,
            "refund_application_fee": ANY,
            **_EXPANDS,
        },
    ),
    "GET /v1/transfers/{transfer_id}/reversals/{reversal_id}": Operation(
        "transfer_reversal", _EXPANDS
    ),
    "POST /v1/transfers/{transfer_id}/reversals/{reversal_id}": Operation(
        "transfer_reversal", {"metadata": METADATA, **_EXPANDS}
    ),
    # Payouts and external accounts
    "GET /v1/payouts": _listing(
        "payout",
        arrival_date=ARRIVAL_DATE_FILTER,
        status=_choice(STATUSES),
        destination=ID,
        expand=EXPAND,
    ),
    "POST /v1/payouts": Operation(
        "payout",
        {
            "amount": AMOUNT,
            "currency": CURRENCY,
            "destination": ID,
            "description": DESCRIPTION,
            "statement_descriptor": _text(STATEMENT_DESCRIPTOR_LENGTH_MAX),
            "metadata": METADATA,
            "method": _choice(("standard",)),
            "source_type": ANY,
            "expand": EXPAND,
        },
        required=("amount", "currency"),
    ),
    "GET /v1/payouts/{payout_id}": Operation("payout", _EXPANDS),
    "POST /v1/payouts/{payout_id}": Operation("payout", {"metadata": METADATA, **_EXPANDS}),
    "POST /v1/payouts/{payout_id}/cancel": Operation("payout", _EXPANDS),
    "GET /v1/accounts/{account_id}/external_accounts": Operation(
        "bank_account", LIST | {"object": _choice(("bank_account", "card"))}, shape="list"
    ),
    "POST /v1/accounts/{account_id}/external_accounts": Operation(
        "bank_account",
        {
            "external_account": BANK_ACCOUNT,
            "default_for_currency": BOOLEAN,
            "metadata": METADATA,
            **_EXPANDS,
        },
        required=("external_account",),
    ),
    "GET /v1/accounts/{account_id}/external_accounts/{bank_id}": Operation(
        "bank_account", _EXPANDS
    ),
    "POST /v1/accounts/{account_id}/external_accounts/{bank_id}": Operation(
        "bank_account",
        {
            "metadata": METADATA,
            "default_for_currency": BOOLEAN,
            "account_holder_name": _text(HOLDER_NAME_LENGTH_MAX),
            **_EXPANDS,
        },
    ),
    "DELETE /v1/accounts/{account_id}/external_accounts/{bank_id}": Operation(
        "bank_account", shape="deleted"
    ),
}
# Objects that have no id of their own.
_WITHOUT_ID = frozenset({"balance", "webhook_attempt"})
_DEEP: Schema = {"style": "deepObject", "explode": True}


def _is_nested(schema: Schema) -> bool:
    """Objects and lists travel as bracketed keys (`a[b]=v`, `a[0]=v`)."""
    if schema.get("type") in ("object", "array"):
        return True
    return any(_is_nested(branch) for branch in schema.get("anyOf", ()))


def _result(operation: Operation) -> Schema:
    name = {"const": operation.returns}
    if operation.shape == "deleted":
        return {
            "type": "object",
            "required": ["id", "object", "deleted"],
            "properties": {"id": {"type": "string"}, "object": name, "deleted": {"const": True}},
        }
    required = ["object"] if operation.returns in _WITHOUT_ID else ["id", "object"]
    one: Schema = {
        "type": "object",
        "required": required,
        "properties": {"id": {"type": "string"}, "object": name},
    }
    if operation.shape == "object":
        return one
    return {
        "type": "object",
        "required": ["object", "url", "has_more", "data"],
        "properties": {
            "object": {"const": "list"},
            "url": {"type": "string"},
            "has_more": {"type": "boolean"},
            "data": {"type": "array", "items": one},
        },
    }


def _query(operation: Operation) -> list[Schema]:
    return [
        {"name": name, "in": "query", "required": name in operation.required, "schema": schema}
        | (_DEEP if _is_nested(schema) else {})
        for name, schema in operation.params.items()
    ]


def _form(operation: Operation) -> Schema:
    body: Schema = {
        "type": "object",
        "properties": operation.params,
        "additionalProperties": False,
    }
    if operation.required:
        body["required"] = list(operation.required)
    content: Schema = {
        "schema": body,
        "encoding": {
            name: _DEEP for name, schema in operation.params.items() if _is_nested(schema)
        },
    }
    if operation.example is not None:
        content["example"] = operation.example
    return {"required": bool(operation.required), "content": {_FORM: content}}


def describe(document: Schema) -> None:
    """Adds each /v1 operation's parameters and result to FastAPI's document, in place."""
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            known = OPERATIONS.get(f"{method.upper()} {path}")
            if known is None:
                continue  # tests/security/test_fuzz.py fails on any operation not described.
            if method == "post":
                operation["requestBody"] = _form(known)
            else:
                operation["parameters"] = [*operation.get("parameters", ()), *_query(known)]
            success = operation["responses"]["200"]
            success["content"] = {"application/json": {"schema": _result(known)}}
