"""External bank accounts (``/v1/accounts/{id}/external_accounts``): where payouts go.

Only the last four digits and a fingerprint keyed by the vault are stored, never the account
number; the idempotency layer sees the number only as a keyed digest (see the router). In test
mode the number must be one of Stripe's test bank account numbers, and it decides what the
simulated bank rail does with payouts to the account (``rail_outcome``), as on Stripe. Live mode
has no bank rail (payouts are refused), so live accounts keep ``rail_outcome = "live"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_external_accounts as banks
from farthing.http._errors import ApiError
from farthing.ledger import is_currency
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._form import FormValue
from farthing.stripe_api._params import MetadataChange, invalid, merge_metadata, missing_param
from farthing.stripe_api._request import Partition
from farthing.stripe_api.payment_intents._service import Context, Outcome
from farthing.stripe_api.payments._connect import destination_scope

__all__ = [
    "FAILURE_MESSAGES",
    "LIVE_OUTCOME",
    "PAID",
    "BankFields",
    "bank_account_object",
    "create",
    "delete",
    "load_bank",
    "owner_scope",
    "parse_bank",
    "update",
]

PAID = "paid"
LIVE_OUTCOME = "live"
# Stripe's test bank account numbers (docs.stripe.com/connect/testing#payouts): US numbers
# (routing 110000000) and the German test IBANs, which stand for any EU country.
TEST_BANK_OUTCOMES = {
    "000123456789": PAID,
    "000111111116": "no_account",
    "000111111113": "account_closed",
    "000222222227": "insufficient_funds",
    "000333333335": "debit_not_authorized",
    "000444444440": "invalid_currency",
    "DE89370400440532013000": PAID,
    "DE62370400440532013001": "no_account",
    "DE89370400440532013002": "account_closed",
    "DE89370400440532013003": "insufficient_funds",
    "DE89370400440532013004": "debit_not_authorized",
    "DE89370400440532013005": "invalid_currency",
}
FAILURE_MESSAGES = {
    "no_account": "The bank account details on file are probably incorrect. No bank account "
    "could be located with those details.",
    "account_closed": "The bank account has been closed.",
    "insufficient_funds": "The bank account could not receive the payout (insufficient_funds).",
    "debit_not_authorized": "Debit transactions are not approved on the bank account. "
    "(Bank accounts must be set up for both credit and debit payouts.)",
    "invalid_currency": "The bank was unable to process this payout because of its currency. "
    "This is probably because the bank account cannot accept payments in that currency.",
}
TEST_BANK_NAME = "STRIPE TEST BANK"
ACCOUNT_NUMBER_LENGTH_MIN = 4
ACCOUNT_NUMBER_LENGTH_MAX = 34  # an IBAN's longest
ROUTING_NUMBER_LENGTH_MAX = 32
HOLDER_NAME_LENGTH_MAX = 256
COUNTRY_LENGTH = 2
# Bank accounts per account and currency considered when choosing a new default.
BANKS_PER_CURRENCY_MAX = 100
_PARAM = "external_account"
_FIELDS = frozenset(
    {
        "object", "country", "currency", "account_number", "routing_number",
        "account_holder_name", "account_holder_type", "account_type", "metadata",
        "default_for_currency",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class BankFields:
    country: str
    currency: str
    account_number: str
    routing_number: str | None
    account_holder_name: str | None
    default_for_currency: bool
    metadata: MetadataChange | None


def bank_account_object(row: objects.ObjectRow) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "bank_account",
        "account": row["tenant_id"],
        "account_holder_name": row["account_holder_name"],
        "account_holder_type": None,
        "account_type": None,
        "available_payout_methods": ["standard"],
        "bank_name": row["bank_name"],
        "country": row["country"],
        "currency": row["currency"],
        "default_for_currency": row["default_for_currency"],
        "fingerprint": row["fingerprint"],
        "last4": row["last4"],
        "metadata": row["metadata"],
        "routing_number": row["routing_number"],
        "status": "new",
    }


def _text(value: FormValue | None, name: str, length_max: int) -> str | None:
    param = f"{_PARAM}[{name}]"
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > length_max:
        raise invalid(f"{param} is a string of at most {length_max} characters.", param)
    return value


def _required(value: FormValue | None, name: str, length_max: int) -> str:
    text = _text(value, name, length_max)
    if text is None:
        raise missing_param(f"{_PARAM}[{name}]")
    return text


def parse_bank(
    value: FormValue | None, default_for_currency: bool | None, metadata: MetadataChange | None
) -> BankFields:
    """``external_account`` as a hash of bank details (the form the SDKs send without a token);
    the number is checked for shape here and never echoed in an error."""
    if value is None:
        raise missing_param(_PARAM)
    if not isinstance(value, dict):
        raise invalid(
            "Tokens are not supported: send external_account[object]=bank_account with "
            "country, currency, account_number and routing_number.",
            _PARAM,
        )
    for name in value:
        if name not in _FIELDS:
            raise invalid(f"Received unknown parameter: {_PARAM}[{name}]", f"{_PARAM}[{name}]")
    if value.get("object") != "bank_account":
        raise invalid("external_account[object] must be bank_account.", f"{_PARAM}[object]")
    country = _required(value.get("country"), "country", COUNTRY_LENGTH).upper()
    currency = _required(value.get("currency"), "currency", 3).lower()
    if not is_currency(currency.upper()):
        raise invalid(f"Invalid currency: {currency}.", f"{_PARAM}[currency]")
    number = _required(value.get("account_number"), "account_number", ACCOUNT_NUMBER_LENGTH_MAX)
    number = number.replace(" ", "").upper()
    if len(number) < ACCOUNT_NUMBER_LENGTH_MIN or not (number.isascii() and number.isalnum()):
        raise invalid("The account number is not valid.", f"{_PARAM}[account_number]")
    nested_default = value.get("default_for_currency")
    return BankFields(
        country=country,
        currency=currency,
        account_number=number,
        routing_number=_text(
            value.get("routing_number"), "routing_number", ROUTING_NUMBER_LENGTH_MAX
        ),
        account_holder_name=_text(
            value.get("account_holder_name"), "account_holder_name", HOLDER_NAME_LENGTH_MAX
        ),
        default_for_currency=bool(default_for_currency) or nested_default == "true",
        metadata=metadata,
    )


def owner_scope(ctx: Context, account_id: str) -> Partition:
    """The caller's own account, or one of its connected accounts; anything else is 404."""
    if account_id == ctx.scope.tenant_id:
        return ctx.scope
    try:
        return destination_scope(ctx.connection, ctx.scope, account_id, param="account")
    except ApiError:
        raise objects.missing("account", account_id, "account") from None


def _rail_outcome(ctx: Context, number: str) -> str:
    if ctx.scope.livemode:
        return LIVE_OUTCOME
    outcome = TEST_BANK_OUTCOMES.get(number)
    if outcome is None:
        raise invalid(
            "You must use a test bank account number in test mode. Try 000123456789 or see "
            "more options at https://docs.stripe.com/connect/testing#payouts.",
            f"{_PARAM}[account_number]",
        )
    return outcome


def _active(*conditions: sa.ColumnElement[bool]) -> list[sa.ColumnElement[bool]]:
    return [banks.c.deleted.is_(False), *conditions]


def create(ctx: Context, account_id: str, fields: BankFields) -> Outcome:
    owner = owner_scope(ctx, account_id)
    outcome = _rail_outcome(ctx, fields.account_number)
    vault = ctx.payments.require_vault()
    routing = fields.routing_number or ""
    objects.lock_account(ctx.connection, owner)  # One default per currency, even when racing.
    current = objects.load_many(
        ctx.connection, banks, owner,
        *_active(banks.c.currency == fields.currency, banks.c.default_for_currency), limit=1,
    )  # fmt: skip
    # The first account of a currency becomes its default, as on Stripe.
    default = fields.default_for_currency or not current
    if default:
        _unset_default(ctx, owner, fields.currency)
    row: objects.ObjectRow = {
        "id": objects.new_id("ba_"), "created": ctx.now_s,
        "metadata": merge_metadata({}, fields.metadata), "country": fields.country,
        "currency": fields.currency, "account_holder_name": fields.account_holder_name,
        "bank_name": None if ctx.scope.livemode else TEST_BANK_NAME,
        "routing_number": fields.routing_number, "last4": fields.account_number[-4:],
        # Keyed by the vault and per account: equal for the same bank account of one owner.
        "fingerprint": vault.fingerprint(
            owner.tenant_id, f"bank\x1f{fields.country}\x1f{routing}\x1f{fields.account_number}"
        ),
        "rail_outcome": outcome, "default_for_currency": default, "deleted": False,
    }  # fmt: skip
    objects.insert(ctx.connection, banks, owner, row)
    return 200, bank_account_object(row | {"tenant_id": owner.tenant_id})


def load_bank(
    ctx: Context, owner: Partition, bank_id: str, *, for_update: bool = False
) -> objects.ObjectRow:
    row = objects.load(ctx.connection, banks, owner, bank_id, for_update=for_update)
    if row is None or row["deleted"]:
        raise objects.missing("external_account", bank_id)
    return row


def update(
    ctx: Context,
    account_id: str,
    bank_id: str,
    changes: dict[str, Any],
) -> Outcome:
    """``changes``: metadata (a MetadataChange), account_holder_name, default_for_currency."""
    owner = owner_scope(ctx, account_id)
    row = load_bank(ctx, owner, bank_id, for_update=True)
    values: dict[str, Any] = {}
    if changes.get("metadata") is not None:
        values["metadata"] = merge_metadata(row["metadata"], changes["metadata"])
    if changes.get("account_holder_name") is not None:
        values["account_holder_name"] = changes["account_holder_name"]
    if changes.get("default_for_currency") and not row["default_for_currency"]:
        _unset_default(ctx, owner, row["currency"])
        values["default_for_currency"] = True
    if values:
        objects.update(ctx.connection, banks, owner, bank_id, **values)
    return 200, bank_account_object(row | values)


def _unset_default(ctx: Context, owner: Partition, currency: str) -> None:
    for other in objects.load_many(
        ctx.connection, banks, owner,
        *_active(banks.c.currency == currency, banks.c.default_for_currency),
        limit=BANKS_PER_CURRENCY_MAX, for_update=True,
    ):  # fmt: skip
        objects.update(ctx.connection, banks, owner, other["id"], default_for_currency=False)


def delete(ctx: Context, account_id: str, bank_id: str) -> Outcome:
    """Soft delete (payouts keep naming the account); the newest other account of the currency
    becomes its default, so payouts without a destination keep working."""
    owner = owner_scope(ctx, account_id)
    row = load_bank(ctx, owner, bank_id, for_update=True)
    objects.update(ctx.connection, banks, owner, bank_id, deleted=True, default_for_currency=False)
    if row["default_for_currency"]:
        rest = objects.load_many(
            ctx.connection, banks, owner, *_active(banks.c.currency == row["currency"]),
            limit=BANKS_PER_CURRENCY_MAX, for_update=True,
        )  # fmt: skip
        if rest:
            objects.update(ctx.connection, banks, owner, rest[-1]["id"], default_for_currency=True)
    return 200, {"id": bank_id, "object": "bank_account", "deleted": True}
