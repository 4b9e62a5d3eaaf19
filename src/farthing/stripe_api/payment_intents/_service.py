"""PaymentIntent operations. Each runs inside one write transaction (``run_idempotent``): the
intent, its charge, balance transactions and the payments-ledger transfers commit together.

Ledger steps per charge ``ch`` (ids derive from it, see payments._ledger):
- automatic capture: ``ch.charge`` card network -> merchant pending (amount), ``ch.fee``
  merchant pending -> Farthing fees, and for a destination charge ``ch.destination`` platform
  pending -> connected pending (amount - application fee); one linked chain.
- manual capture: ``ch.auth``, a pending transfer (hold) network -> merchant pending with the
  authorisation's time to live; capture posts it (``ch.capture``, partially if asked, releasing
  the rest) in the chain above; cancel voids it (``ch.void``); the ledger expires it unposted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_charges as charges
from farthing.db.schema import stripe_payment_intents as intents
from farthing.db.schema import stripe_transfers
from farthing.http._errors import ApiError
from farthing.ledger import CreateTransferResult, TransferEvent, TransferFlags
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._params import MetadataChange, invalid, merge_metadata
from farthing.stripe_api._request import Partition
from farthing.stripe_api.charges import charge_object
from farthing.stripe_api.customers import _repository as customers
from farthing.stripe_api.events import emit
from farthing.stripe_api.payment_intents._schemas import (
    CaptureFields,
    ConfirmFields,
    IntentFields,
    intent_object,
)
from farthing.stripe_api.payment_methods import _service as payment_methods
from farthing.stripe_api.payment_methods._schemas import payment_method_object
from farthing.stripe_api.payments import (
    Authorization,
    BalanceEntry,
    Decision,
    Movement,
    Payments,
    TransferCode,
    card_network_account,
    chain,
    fees_account,
    pending_account,
    record,
    require_done,
    settle_due,
)
from farthing.stripe_api.payments._connect import destination_scope

__all__ = [
    "Outcome",
    "cancel",
    "capture",
    "complete_challenge",
    "confirm",
    "create",
    "expire_due",
    "load_intent",
    "render",
    "update",
]

Outcome = tuple[int, dict[str, Any]]
CHALLENGE_TOKEN_BYTES = 32
_CANCELABLE = frozenset(
    {"requires_payment_method", "requires_confirmation", "requires_action", "requires_capture"}
)
_CONFIRMABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})
_EDITABLE = frozenset({"requires_payment_method", "requires_confirmation", "requires_action"})
_DOC_URL = "https://docs.stripe.com/error-codes/"


@dataclass(frozen=True, slots=True)
class Context:
    """One request's view: where (scope), with what (payments), when (seconds and ns)."""

    connection: sa.Connection
    payments: Payments
    scope: Partition
    origin: str
    now_ns: int

    @property
    def now_s(self) -> int:
        return self.now_ns // 10**9


def context(
    connection: sa.Connection, payments: Payments, scope: Partition, origin: str
) -> Context:
    return Context(connection, payments, scope, origin.rstrip("/"), time.time_ns())


def _unexpected_state(row: objects.ObjectRow, action: str) -> ApiError:
    return ApiError(
        400,
        type_="invalid_request_error",
        code="payment_intent_unexpected_state",
        message=f"You cannot {action} this PaymentIntent because it has a status of "
        f"{row['status']}.",
    )


def render(ctx: Context, row: objects.ObjectRow) -> dict[str, Any]:
    return intent_object(row, livemode=ctx.scope.livemode)


def _announce(
    ctx: Context, intent_id: str, *intent_events: str, charge_event: str | None = None
) -> dict[str, Any]:
    """The intent as it is now, with the events of this change written in its transaction
    (charge event first, as Stripe sends them); returns the rendered intent."""
    row = load_intent(ctx, intent_id)
    if charge_event is not None:
        emit(ctx.connection, ctx.scope, charge_event, charge_view(ctx, row["latest_charge_id"]))
    intent = render(ctx, row)
    for event_type in intent_events:
        emit(ctx.connection, ctx.scope, event_type, intent)
    return intent


def load_intent(ctx: Context, intent_id: str) -> objects.ObjectRow:
    """The intent, locked, with an expired authorisation already canceled."""
    row = objects.load(ctx.connection, intents, ctx.scope, intent_id, for_update=True)
    if row is None:
        raise objects.missing("payment_intent", intent_id)
    return _expire_if_due(ctx, row)


def _expire_if_due(ctx: Context, row: objects.ObjectRow) -> objects.ObjectRow:
    before = row["capture_before_ns"]
    if row["status"] != "requires_capture" or before is None or before > ctx.now_ns:
        return row
    # The ledger expires the hold by itself; the intent and charge record that it happened.
    charge = objects.load(ctx.connection, charges, ctx.scope, row["latest_charge_id"])
    assert charge is not None
    objects.update(
        ctx.connection, charges, ctx.scope, charge["id"], amount_refunded=charge["amount"]
    )
    changes = {
        "status": "canceled",
        "cancellation_reason": "automatic",
        "canceled_at": ctx.now_s,
        "amount_capturable": 0,
    }
    objects.update(ctx.connection, intents, ctx.scope, row["id"], **changes)
    expired = row | changes
    emit(ctx.connection, ctx.scope, "payment_intent.canceled", render(ctx, expired))
    return expired


def expire_due(ctx: Context) -> None:
    """Cancel the scope's authorisations past their time to live (bounded per call)."""
    due = objects.load_many(
        ctx.connection,
        intents,
        ctx.scope,
        intents.c.status == "requires_capture",
        intents.c.capture_before_ns <= ctx.now_ns,
        limit=100,
        for_update=True,
    )
    for row in due:
        _expire_if_due(ctx, row)


# -- create and update ---------------------------------------------------------------------


def _check_customer(ctx: Context, customer_id: str | None) -> None:
    if customer_id is not None and customers.load(ctx.connection, ctx.scope, customer_id) is None:
        raise objects.missing("customer", customer_id, "customer")


def _resolve_method(ctx: Context, method_id: str | None, customer_id: str | None) -> str | None:
    if method_id is None:
        return None
    vault = ctx.payments.require_vault()
    method = payment_methods.resolve(ctx.connection, ctx.scope, vault, method_id, "payment_method")
    if method.customer_id is not None and method.customer_id != customer_id:
        raise invalid(
            "The provided PaymentMethod is attached to another customer.", "payment_method"
        )
    return method.id


def _check_application_fee(
    ctx: Context, row: objects.ObjectRow, amount: int, *, param: str
) -> None:
    """A destination charge of ``amount``: its application fee may not exceed the amount, and
    must pay Farthing's fee on it, for the platform's share is the application fee less that fee
    and no balance may go below zero (a platform that kept less would owe the difference)."""
    if row["transfer_destination"] is None:
        return
    application_fee = row["application_fee_amount"] or 0
    processing_fee = ctx.payments.settings.price(row["currency"]).fee_for(amount)
    if application_fee > amount:
        raise invalid(
            f"application_fee_amount ({application_fee}) cannot be larger than the amount "
            f"charged ({amount}).",
            param,
        )
    if application_fee < processing_fee:
        raise invalid(
            f"application_fee_amount ({application_fee}) must cover Farthing's fee on this "
            f"charge ({processing_fee} {row['currency']}): the platform pays it from the "
            "application fee, and no balance may go below zero.",
            param,
        )


def create(ctx: Context, fields: IntentFields) -> Outcome:
    assert fields.amount is not None
    assert fields.currency is not None
    _check_customer(ctx, fields.customer)
    if fields.destination is not None:
        destination_scope(
            ctx.connection, ctx.scope, fields.destination, param="transfer_data[destination]"
        )
    method_id = _resolve_method(ctx, fields.payment_method, fields.customer)
    row: objects.ObjectRow = {
        "id": objects.new_id("pi_"),
        "created": ctx.now_s,
        "metadata": merge_metadata({}, fields.metadata),
        "amount": fields.amount,
        "currency": fields.currency,
        "status": "requires_payment_method" if method_id is None else "requires_confirmation",
        "capture_method": fields.capture_method or "automatic",
        "customer_id": fields.customer,
        "payment_method_id": method_id,
        "description": fields.description,
        "receipt_email": fields.receipt_email,
        "amount_capturable": 0,
        "amount_received": 0,
        "transfer_destination": fields.destination,
        "application_fee_amount": fields.application_fee_amount,
        "transfer_group": fields.transfer_group,
    }
    _check_application_fee(ctx, row, fields.amount, param="application_fee_amount")
    objects.insert(ctx.connection, intents, ctx.scope, row)
    created = _announce(ctx, row["id"], "payment_intent.created")
    if fields.confirm:
        return confirm(ctx, row["id"], ConfirmFields(return_url=fields.return_url))
    return 200, created


def update(ctx: Context, intent_id: str, fields: IntentFields) -> Outcome:
    row = load_intent(ctx, intent_id)
    changes: dict[str, Any] = {}
    money: dict[str, Any] = {
        "amount": fields.amount,
        "currency": fields.currency,
        "customer_id": fields.customer,
    }
    money |= {"payment_method_id": fields.payment_method, "capture_method": fields.capture_method}
    money = {name: value for name, value in money.items() if value is not None}
    if money and row["status"] not in _EDITABLE:
        raise _unexpected_state(row, "update")
    if "customer_id" in money:
        _check_customer(ctx, money["customer_id"])
    if "payment_method_id" in money:
        customer = money.get("customer_id", row["customer_id"])
        money["payment_method_id"] = _resolve_method(ctx, money["payment_method_id"], customer)
        changes["status"] = "requires_confirmation"
    if row["status"] == "requires_action" and any(row[k] != v for k, v in money.items()):
        # The cardholder's challenge was for the old terms; it must not approve the new ones.
        changes |= {"status": "requires_confirmation", "next_action": None, "challenge_hash": None}
    changes |= money
    if "amount" in money or "currency" in money:
        terms = row | money
        _check_application_fee(ctx, terms, terms["amount"], param="amount")
    for name in ("description", "receipt_email", "transfer_group"):
        value = getattr(fields, name)
        if value is not None:
            changes[name] = value
    if fields.metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], fields.metadata)
    if changes:
        objects.update(ctx.connection, intents, ctx.scope, intent_id, **changes)
    return 200, render(ctx, load_intent(ctx, intent_id))


def update_metadata(row: objects.ObjectRow, change: MetadataChange | None) -> dict[str, str]:
    return merge_metadata(row["metadata"], change)


# -- confirm -------------------------------------------------------------------------------


def confirm(ctx: Context, intent_id: str, fields: ConfirmFields) -> Outcome:
    row = load_intent(ctx, intent_id)
    if row["status"] not in _CONFIRMABLE:
        raise _unexpected_state(row, "confirm")
    changes: dict[str, Any] = {}
    if fields.payment_method is not None:
        changes["payment_method_id"] = _resolve_method(
            ctx, fields.payment_method, row["customer_id"]
        )
    if fields.capture_method is not None:
        changes["capture_method"] = fields.capture_method
    if fields.return_url is not None:
        changes["return_url"] = fields.return_url
    row |= changes
    if row["payment_method_id"] is None:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="payment_intent_unexpected_state",
            message="You cannot confirm this PaymentIntent because it's missing a payment "
            "method. Update it with a payment_method or confirm with one.",
            param="payment_method",
        )
    if changes:
        objects.update(ctx.connection, intents, ctx.scope, intent_id, **changes)
    return _attempt(ctx, row, authenticated=False)


def _attempt(ctx: Context, row: objects.ObjectRow, *, authenticated: bool) -> Outcome:
    """Ask the processor; approve, decline or ask the cardholder to authenticate."""
    processor = ctx.payments.processor(ctx.scope)
    vault = ctx.payments.require_vault()
    number = payment_methods.card_number(ctx.connection, ctx.scope, vault, row["payment_method_id"])
    authorization = processor.authorize(
        card_number=number,
        amount_minor=row["amount"],
        currency=row["currency"],
        authenticated=authenticated,
    )
    del number
    if authorization.decision is Decision.authentication_required:
        return _require_action(ctx, row)
    if authorization.decision is Decision.declined:
        return _decline(ctx, row, authorization)
    return _approve(ctx, row, authorization)


def _require_action(ctx: Context, row: objects.ObjectRow) -> Outcome:
    token = secrets.token_urlsafe(CHALLENGE_TOKEN_BYTES)
    url = f"{ctx.origin}/3ds/{row['id']}?token={token}"
    next_action = {
        "type": "redirect_to_url",
        "redirect_to_url": {"url": url, "return_url": row.get("return_url")},
    }
    objects.update(
        ctx.connection,
        intents,
        ctx.scope,
        row["id"],
        status="requires_action",
        next_action=json.dumps(next_action),
        challenge_hash=hashlib.sha256(token.encode()).hexdigest(),
    )
    return 200, _announce(ctx, row["id"], "payment_intent.requires_action")


def challenge_matches(row: objects.ObjectRow, token: str) -> bool:
    expected = row["challenge_hash"]
    if expected is None or row["status"] != "requires_action":
        return False
    return hmac.compare_digest(expected, hashlib.sha256(token.encode()).hexdigest())


def complete_challenge(
    ctx: Context, intent_id: str, token: str, *, approved: bool
) -> Outcome | None:
    """The cardholder passed or failed 3-D Secure on Farthing's challenge page. None when the
    token no longer matches the locked intent: a second answer (a double click, or approve and
    fail sent together) or a challenge that a new confirm replaced."""
    row = load_intent(ctx, intent_id)
    if not challenge_matches(row, token):
        return None
    objects.update(
        ctx.connection, intents, ctx.scope, intent_id, next_action=None, challenge_hash=None
    )
    row |= {"next_action": None, "challenge_hash": None}
    if approved:
        return _attempt(ctx, row, authenticated=True)
    error = {
        "type": "invalid_request_error",
        "code": "payment_intent_authentication_failure",
        "message": "The provided PaymentMethod has failed authentication. You can provide "
        "payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent "
        "again.",
        "doc_url": _DOC_URL + "#payment_intent_authentication_failure",
        "payment_method": _method_object(ctx, row["payment_method_id"]),
    }
    objects.update(
        ctx.connection,
        intents,
        ctx.scope,
        intent_id,
        status="requires_payment_method",
        payment_method_id=None,
        last_payment_error=json.dumps(error),
    )
    return 200, _announce(ctx, intent_id, "payment_intent.payment_failed")


def _method_object(ctx: Context, method_id: str) -> dict[str, Any]:
    vault = ctx.payments.require_vault()
    method = payment_methods.resolve(ctx.connection, ctx.scope, vault, method_id, "payment_method")
    return payment_method_object(method, livemode=ctx.scope.livemode)


def _card_details(ctx: Context, method_id: str) -> str:
    method = _method_object(ctx, method_id)
    card = method["card"]
    keep = ("brand", "country", "exp_month", "exp_year", "fingerprint", "funding", "last4")
    details = {name: card[name] for name in keep}
    details |= {"network": card["brand"], "checks": card["checks"], "three_d_secure": None}
    return json.dumps(details)


def _new_charge(ctx: Context, row: objects.ObjectRow, outcome: dict[str, Any]) -> objects.ObjectRow:
    charge: objects.ObjectRow = {
        "id": objects.new_id("ch_"),
        "created": ctx.now_s,
        "metadata": row["metadata"],
        "payment_intent_id": row["id"],
        "amount": row["amount"],
        "amount_captured": 0,
        "amount_refunded": 0,
        "currency": row["currency"],
        "status": "succeeded",
        "captured": False,
        "customer_id": row["customer_id"],
        "payment_method_id": row["payment_method_id"],
        "card": _card_details(ctx, row["payment_method_id"]),
        "description": row["description"],
        "outcome": json.dumps(outcome),
        "fee": 0,
        "fee_refunded": 0,
        "destination": row["transfer_destination"],
        "application_fee_amount": row["application_fee_amount"],
        "available_on": ctx.now_s,
    }
    return charge


def _decline(ctx: Context, row: objects.ObjectRow, authorization: Authorization) -> Outcome:
    assert authorization.code is not None
    outcome = {
        "network_status": "declined_by_network",
        "reason": authorization.decline_code,
        "risk_level": "normal",
        "seller_message": "The bank did not return any further details with this decline.",
        "type": "issuer_declined",
    }
    charge = _new_charge(ctx, row, outcome) | {
        "status": "failed",
        "failure_code": authorization.code,
        "failure_message": authorization.message,
    }
    objects.insert(ctx.connection, charges, ctx.scope, charge)
    error: dict[str, Any] = {
        "type": "card_error",
        "code": authorization.code,
        "decline_code": authorization.decline_code,
        "message": authorization.message,
        "charge": charge["id"],
        "doc_url": _DOC_URL + "#" + authorization.code,
        "payment_method": _method_object(ctx, row["payment_method_id"]),
    }
    objects.update(
        ctx.connection,
        intents,
        ctx.scope,
        row["id"],
        status="requires_payment_method",
        payment_method_id=None,
        latest_charge_id=charge["id"],
        last_payment_error=json.dumps(error),
        next_action=None,
    )
    # The decline is committed with the intent's new state, and answered as Stripe does: 402.
    intent = _announce(
        ctx, row["id"], "payment_intent.payment_failed", charge_event="charge.failed"
    )
    return 402, {"error": error | {"payment_intent": intent}}


def _approve(ctx: Context, row: objects.ObjectRow, authorization: Authorization) -> Outcome:
    outcome = {
        "network_status": "approved_by_network",
        "reason": None,
        "risk_level": "normal",
        "seller_message": "Payment complete.",
        "type": "authorized",
    }
    charge = _new_charge(ctx, row, outcome)
    if authorization.available_at_once:
        charge["outcome"] = json.dumps(outcome | {"available_at_once": True})
    objects.insert(ctx.connection, charges, ctx.scope, charge)
    movement = ctx.payments.ledger.movement(ctx.connection, ctx.scope)
    movement.involve(ctx.scope.tenant_id, row["currency"])
    changes: dict[str, Any] = {
        "latest_charge_id": charge["id"],
        "last_payment_error": None,
        "next_action": None,
    }
    if row["capture_method"] == "manual":
        ttl_s = ctx.payments.settings.authorization_ttl_s
        movement.add(
            TransferEvent(
                id=f"{charge['id']}.auth",
                debit_account_id=card_network_account(row["currency"]),
                credit_account_id=pending_account(ctx.scope.tenant_id, row["currency"]),
                amount_minor=row["amount"],
                timeout_s=ttl_s,
                flags=TransferFlags.pending,
                code=TransferCode.authorization,
            )
        )
        changes |= {
            "status": "requires_capture",
            "amount_capturable": row["amount"],
            "capture_before_ns": ctx.now_ns + ttl_s * 10**9,
        }
    else:
        _capture_money(ctx, movement, charge, row["amount"], via_hold=False)
        changes |= {"status": "succeeded", "amount_received": row["amount"]}
    objects.update(ctx.connection, intents, ctx.scope, row["id"], **changes)
    require_done(movement.post(ctx.connection), message="The payment could not be recorded.")
    manual = row["capture_method"] == "manual"
    event = "payment_intent.amount_capturable_updated" if manual else "payment_intent.succeeded"
    return 200, _announce(ctx, row["id"], event, charge_event="charge.succeeded")


# -- money ---------------------------------------------------------------------------------


def _capture_events(
    ctx: Context, charge: objects.ObjectRow, amount: int, fee: int, *, via_hold: bool
) -> list[TransferEvent]:
    """Card funds in (posting the hold, or a new transfer), then the fee out."""
    currency, tenant, charge_id = charge["currency"], ctx.scope.tenant_id, charge["id"]
    events = [
        TransferEvent(
            id=f"{charge_id}.capture",
            pending_id=f"{charge_id}.auth",
            amount_minor=amount,
            flags=TransferFlags.post_pending,
            code=TransferCode.capture,
        )
        if via_hold
        else TransferEvent(
            id=f"{charge_id}.charge",
            debit_account_id=card_network_account(currency),
            credit_account_id=pending_account(tenant, currency),
            amount_minor=amount,
            code=TransferCode.charge,
        )
    ]
    if fee > 0:
        events.append(
            TransferEvent(
                id=f"{charge_id}.fee",
                debit_account_id=pending_account(tenant, currency),
                credit_account_id=fees_account(currency),
                amount_minor=fee,
                code=TransferCode.fee,
            )
        )
    return events


def _capture_money(
    ctx: Context, movement: Movement, charge: objects.ObjectRow, amount: int, *, via_hold: bool
) -> None:
    """Ledger transfers and balance transactions of capturing ``amount`` of a charge."""
    currency, charge_id = charge["currency"], charge["id"]
    fee = ctx.payments.settings.price(currency).fee_for(amount)
    events = _capture_events(ctx, charge, amount, fee, via_hold=via_hold)
    outcome = json.loads(charge["outcome"])
    delay_s = 0 if outcome.get("available_at_once") else ctx.payments.settings.available_delay_s
    available_on = ctx.now_s + delay_s
    transfer_id, destination_events, target = _destination(
        ctx, movement, charge, amount, available_on
    )
    events.extend(destination_events)
    movement.add(*chain(events))
    txn_id = record(
        ctx.connection,
        ctx.scope,
        BalanceEntry(
            amount=amount,
            currency=currency,
            fee=fee,
            fee_details=(("stripe_fee", fee, "Farthing processing fees"),) if fee else (),
            type="charge",
            reporting_category="charge",
            source_id=charge_id,
            available_on=available_on,
            description=charge["description"],
        ),
        now_s=ctx.now_s,
    )
    objects.update(
        ctx.connection,
        charges,
        ctx.scope,
        charge_id,
        captured=True,
        amount_captured=amount,
        fee=fee,
        balance_transaction_id=txn_id,
        available_on=available_on,
        transfer_id=transfer_id,
    )
    # After the chain above in the movement: settlement moves what the chain brought in.
    settle_due(ctx.connection, movement, ctx.scope, now_s=ctx.now_s)
    if target is not None:
        settle_due(ctx.connection, movement, target, now_s=ctx.now_s)


def _destination(
    ctx: Context,
    movement: Movement,
    charge: objects.ObjectRow,
    amount: int,
    available_on: int,
) -> tuple[str | None, list[TransferEvent], Partition | None]:
    """A destination charge hands amount minus the application fee to the connected account."""
    destination = charge["destination"]
    if destination is None:
        return None, [], None
    target = destination_scope(ctx.connection, ctx.scope, destination, param="destination")
    currency = charge["currency"]
    application_fee = charge["application_fee_amount"] or 0
    assert 0 <= application_fee <= amount  # _check_application_fee, at create, update, capture
    share = amount - application_fee
    movement.involve(destination, currency)
    transfer_id = objects.new_id("tr_")
    payment_id = objects.new_id("py_")
    platform_txn = record(
        ctx.connection,
        ctx.scope,
        BalanceEntry(
            amount=-share, currency=currency, fee=0, fee_details=(), type="transfer",
            reporting_category="transfer", source_id=transfer_id, available_on=available_on,
        ),
        now_s=ctx.now_s,
    )  # fmt: skip
    record(
        ctx.connection,
        target,
        BalanceEntry(
            amount=share, currency=currency, fee=0, fee_details=(), type="payment",
            reporting_category="charge", source_id=payment_id, available_on=available_on,
        ),
        now_s=ctx.now_s,
    )  # fmt: skip
    objects.insert(
        ctx.connection,
        stripe_transfers,
        ctx.scope,
        {
            "id": transfer_id, "created": ctx.now_s, "metadata": {}, "amount": share,
            "currency": currency, "destination": destination, "amount_reversed": 0,
            "source_transaction": charge["id"], "transfer_group": None, "description": None,
            "balance_transaction_id": platform_txn, "destination_payment_id": payment_id,
        },
    )  # fmt: skip
    if share == 0:
        return transfer_id, [], target
    return (
        transfer_id,
        [
            TransferEvent(
                id=f"{charge['id']}.destination",
                debit_account_id=pending_account(ctx.scope.tenant_id, currency),
                credit_account_id=pending_account(destination, currency),
                amount_minor=share,
                code=TransferCode.transfer,
            )
        ],
        target,
    )


def capture(ctx: Context, intent_id: str, fields: CaptureFields) -> Outcome:
    row = load_intent(ctx, intent_id)
    if row["status"] != "requires_capture":
        raise _unexpected_state(row, "capture")
    amount = fields.amount_to_capture or row["amount_capturable"]
    if amount > row["amount_capturable"]:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="amount_too_large",
            message=f"amount_to_capture ({amount}) is larger than amount_capturable "
            f"({row['amount_capturable']}).",
            param="amount_to_capture",
        )
    _check_application_fee(ctx, row, amount, param="amount_to_capture")
    charge = objects.load(
        ctx.connection, charges, ctx.scope, row["latest_charge_id"], for_update=True
    )
    assert charge is not None
    movement = ctx.payments.ledger.movement(ctx.connection, ctx.scope)
    movement.involve(ctx.scope.tenant_id, row["currency"])
    _capture_money(ctx, movement, charge, amount, via_hold=True)
    # The uncaptured remainder is released, and Stripe counts it as refunded.
    objects.update(
        ctx.connection, charges, ctx.scope, charge["id"], amount_refunded=row["amount"] - amount
    )
    objects.update(
        ctx.connection, intents, ctx.scope, intent_id,
        status="succeeded", amount_received=amount, amount_capturable=0,
    )  # fmt: skip
    results = movement.post(ctx.connection)
    if CreateTransferResult.pending_transfer_expired in results:
        # The ledger's clock, read after this request's, saw the authorisation expire while the
        # request waited (for the intent's lock, say). Nothing of this capture is kept; the next
        # read of the intent records the cancellation.
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="payment_intent_unexpected_state",
            message="You cannot capture this PaymentIntent because its authorization expired.",
        )
    require_done(results, message="The capture could not be recorded.")
    return 200, _announce(
        ctx, intent_id, "payment_intent.succeeded", charge_event="charge.captured"
    )


def cancel(ctx: Context, intent_id: str, reason: str | None) -> Outcome:
    row = load_intent(ctx, intent_id)
    if row["status"] not in _CANCELABLE:
        raise _unexpected_state(row, "cancel")
    if row["status"] == "requires_capture":
        charge_id = row["latest_charge_id"]
        movement = ctx.payments.ledger.movement(ctx.connection, ctx.scope)
        movement.involve(ctx.scope.tenant_id, row["currency"])
        movement.add(
            TransferEvent(
                id=f"{charge_id}.void",
                pending_id=f"{charge_id}.auth",
                flags=TransferFlags.void_pending,
                code=TransferCode.release,
            )
        )
        results = movement.post(ctx.connection)
        # An authorisation that expired meanwhile has released its hold already: cancel anyway.
        if results != [CreateTransferResult.pending_transfer_expired]:
            require_done(results, message="The cancelation could not be recorded.")
        objects.update(ctx.connection, charges, ctx.scope, charge_id, amount_refunded=row["amount"])
    objects.update(
        ctx.connection, intents, ctx.scope, intent_id,
        status="canceled", cancellation_reason=reason, canceled_at=ctx.now_s,
        amount_capturable=0, next_action=None, challenge_hash=None,
    )  # fmt: skip
    return 200, _announce(ctx, intent_id, "payment_intent.canceled")


def charge_view(ctx: Context, charge_id: str) -> dict[str, Any]:
    charge = objects.load(ctx.connection, charges, ctx.scope, charge_id)
    assert charge is not None
    return charge_object(charge, livemode=ctx.scope.livemode)
