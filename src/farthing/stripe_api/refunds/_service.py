"""Refunds: full or partial, several per charge up to the captured amount.

Fee policy (docs/stripe-coverage.md): Farthing returns its processing fee in proportion to the
refunded amount, cumulatively rounded down, so that refunding a whole charge returns the whole
fee. A refund takes ``amount - fee returned`` from the merchant's balance where the charge's
funds are (pending until the charge settles, available after) and the returned fee from
Farthing's fee account; the card network receives ``amount``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_balance_transactions as transactions
from farthing.db.schema import stripe_charges as charges
from farthing.db.schema import stripe_payment_intents as intents
from farthing.db.schema import stripe_refunds as refunds
from farthing.db.schema import stripe_transfer_reversals as reversals
from farthing.db.schema import stripe_transfers as transfers
from farthing.http._errors import ApiError
from farthing.ledger import TransferEvent
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._params import MetadataChange, invalid, merge_metadata
from farthing.stripe_api.events import changed, emit
from farthing.stripe_api.payment_intents._service import Context, Outcome, charge_view
from farthing.stripe_api.payments import (
    BalanceEntry,
    Movement,
    TransferCode,
    available_account,
    card_network_account,
    chain,
    fees_account,
    pending_account,
    record,
    require_done,
    settle_due,
)
from farthing.stripe_api.transfers._service import (
    ReversalFields,
    create_reversal,
    load_transfer,
    reversal_target,
    two_sided_movement,
)

__all__ = ["RefundFields", "create", "refund_object", "update"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundFields:
    charge: str | None = None
    payment_intent: str | None = None
    amount: int | None = None
    reason: str | None = None
    metadata: MetadataChange | None = None
    # Take the connected account's share back too (destination charges only).
    reverse_transfer: bool = False


def refund_object(row: objects.ObjectRow, *, livemode: bool) -> dict[str, Any]:
    del livemode  # Refunds carry no livemode field in Stripe's API.
    return {
        "id": row["id"],
        "object": "refund",
        "amount": row["amount"],
        "balance_transaction": row["balance_transaction_id"],
        "charge": row["charge_id"],
        "created": row["created"],
        "currency": row["currency"],
        "destination_details": {"type": "card", "card": {"type": "refund"}},
        "metadata": row["metadata"],
        "payment_intent": row["payment_intent_id"],
        "reason": row["reason"],
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": row["status"],
        "transfer_reversal": row["transfer_reversal_id"],
    }


def _charge_of(ctx: Context, fields: RefundFields) -> objects.ObjectRow:
    charge_id = fields.charge
    if fields.payment_intent is not None:
        intent = objects.load(ctx.connection, intents, ctx.scope, fields.payment_intent)
        if intent is None:
            raise objects.missing("payment_intent", fields.payment_intent, "payment_intent")
        if intent["status"] != "succeeded":
            raise invalid(
                "This PaymentIntent has no successful charge to refund.", "payment_intent"
            )
        if charge_id is not None and charge_id != intent["latest_charge_id"]:
            raise invalid("The charge does not belong to this PaymentIntent.", "charge")
        charge_id = intent["latest_charge_id"]
    if charge_id is None:
        raise invalid("Provide charge or payment_intent.", "charge")
    charge = objects.load(ctx.connection, charges, ctx.scope, charge_id, for_update=True)
    if charge is None:
        raise objects.missing("charge", charge_id, "charge")
    if not charge["captured"] or charge["status"] != "succeeded":
        raise invalid("Only captured, successful charges can be refunded.", "charge")
    return charge


def _refundable(charge: objects.ObjectRow) -> int:
    # amount_refunded counts the uncaptured part a partial capture released, as Stripe does.
    return int(charge["amount"] - charge["amount_refunded"])


def create(ctx: Context, fields: RefundFields) -> Outcome:
    charge = _charge_of(ctx, fields)
    refundable = _refundable(charge)
    if refundable == 0:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="charge_already_refunded",
            message=f"Charge {charge['id']} has already been refunded.",
        )
    amount = refundable if fields.amount is None else fields.amount
    if amount > refundable:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="amount_too_large",
            message=f"Refund amount ({amount}) is greater than unrefunded amount on charge "
            f"({refundable}).",
            param="amount",
        )
    captured = charge["amount_captured"]
    refunded_before = captured - refundable
    fee_back = charge["fee"] * (refunded_before + amount) // captured - charge["fee_refunded"]
    assert 0 <= fee_back <= charge["fee"] - charge["fee_refunded"]
    refund_id = objects.new_id("re_")
    # The reversal first: the connected account's share comes back to the platform's balance,
    # from which the refund is then taken.
    if fields.reverse_transfer:
        movement, reversal_id = _reverse_transfer(ctx, charge, amount, refund_id)
    else:
        movement, reversal_id = ctx.payments.ledger.movement(ctx.connection, ctx.scope), None
    row = _record(
        ctx, charge, amount, fee_back, fields,
        refund_id=refund_id, reversal_id=reversal_id, movement=movement,
    )  # fmt: skip
    objects.update(
        ctx.connection, charges, ctx.scope, charge["id"],
        amount_refunded=charge["amount_refunded"] + amount,
        fee_refunded=charge["fee_refunded"] + fee_back,
    )  # fmt: skip
    refund = refund_object(row, livemode=ctx.scope.livemode)
    emit(ctx.connection, ctx.scope, "charge.refunded", charge_view(ctx, charge["id"]))
    emit(ctx.connection, ctx.scope, "refund.created", refund)
    return 200, refund


def _reverse_transfer(
    ctx: Context, charge: objects.ObjectRow, amount: int, refund_id: str
) -> tuple[Movement, str | None]:
    """Stripe's ``reverse_transfer``: reverse the charge's transfer in proportion to the refund,
    cumulatively rounded down, so that refunding the whole charge reverses the whole transfer.
    Returns the movement the refund joins, and the reversal's id, or None when nothing is left
    to reverse (a small refund's share rounds to 0, or the transfer was reversed by hand)."""
    transfer_id = charge["transfer_id"]
    if transfer_id is None:
        raise invalid(
            "reverse_transfer applies to destination charges; this charge has no transfer.",
            "reverse_transfer",
        )
    # Locked now: a reversal committing meanwhile would leave the cap below stale.
    transfer = load_transfer(ctx, transfer_id, for_update=True)
    captured = int(charge["amount_captured"])
    refunded_before = captured - _refundable(charge)
    share = (
        transfer["amount"] * (refunded_before + amount) // captured
        - transfer["amount"] * refunded_before // captured
    )
    share = min(share, int(transfer["amount"] - transfer["amount_reversed"]))
    assert share <= amount
    # One movement for the reversal and the refund, posted once (see Movement).
    movement = two_sided_movement(ctx, reversal_target(ctx, transfer), charge["currency"])
    if share <= 0:
        return movement, None
    status, reversal = create_reversal(
        ctx, transfer_id, ReversalFields(amount=share), source_refund=refund_id, movement=movement
    )
    assert status == 200
    return movement, str(reversal["id"])


def _record(  # noqa: PLR0913 - the refund's parts, each named
    ctx: Context,
    charge: objects.ObjectRow,
    amount: int,
    fee_back: int,
    fields: RefundFields,
    *,
    refund_id: str,
    reversal_id: str | None,
    movement: Movement,
) -> objects.ObjectRow:
    currency, tenant = charge["currency"], ctx.scope.tenant_id
    # Settle first: it takes the account's settlement turn before the charge's row is locked.
    # Locking the charge's first would deadlock with a settlement holding the turn and waiting
    # for that row (PostgreSQL aborted one of the two).
    settle_due(ctx.connection, movement, ctx.scope, now_s=ctx.now_s)
    # Locked: a settlement running now could move it from pending to available under us.
    charge_txn = objects.load(
        ctx.connection, transactions, ctx.scope, charge["balance_transaction_id"], for_update=True
    )
    assert charge_txn is not None
    # From pending only what the charge itself still holds there. A destination charge's
    # transfer line took most of it: borrowing the rest from other charges' pending funds left
    # this charge's group negative, and no settlement could go through until it came due too.
    from_available = charge_txn["status"] == "available"
    from_available = from_available or _pending_left(ctx, charge) < amount - fee_back
    account = available_account if from_available else pending_account
    source = account(tenant, currency)
    movement.involve(tenant, currency)
    # The refund and the fee return: both or neither.
    movement.add(*chain(_refund_events(refund_id, source, currency, amount, fee_back)))
    txn_id = record(
        ctx.connection,
        ctx.scope,
        BalanceEntry(
            amount=-amount, currency=currency, fee=-fee_back,
            fee_details=(("stripe_fee", -fee_back, "Farthing processing fees returned"),)
            if fee_back else (),
            type="refund", reporting_category="refund", source_id=refund_id,
            available_on=ctx.now_s if from_available else charge_txn["available_on"],
        ),
        now_s=ctx.now_s,
        available=from_available,
    )  # fmt: skip
    row: objects.ObjectRow = {
        "id": refund_id, "created": ctx.now_s, "metadata": merge_metadata({}, fields.metadata),
        "charge_id": charge["id"], "payment_intent_id": charge["payment_intent_id"],
        "amount": amount, "currency": currency, "status": "succeeded", "reason": fields.reason,
        "fee_returned": fee_back, "balance_transaction_id": txn_id,
        "transfer_reversal_id": reversal_id,
    }  # fmt: skip
    objects.insert(ctx.connection, refunds, ctx.scope, row)
    shortage = "Insufficient funds in the account's balance to refund this charge."
    if reversal_id is not None:
        shortage += " With reverse_transfer, the connected account's balance counts too."
    require_done(movement.post(ctx.connection), message=shortage)
    return row


def _refund_events(
    refund_id: str, source: str, currency: str, amount: int, fee_back: int
) -> list[TransferEvent]:
    """The merchant pays the refund less the fee Farthing returns; Farthing pays that fee."""
    events = []
    if amount - fee_back > 0:
        events.append(
            TransferEvent(
                id=f"{refund_id}.refund", debit_account_id=source,
                credit_account_id=card_network_account(currency),
                amount_minor=amount - fee_back, code=TransferCode.refund,
            )
        )  # fmt: skip
    if fee_back > 0:
        events.append(
            TransferEvent(
                id=f"{refund_id}.fee_return", debit_account_id=fees_account(currency),
                credit_account_id=card_network_account(currency),
                amount_minor=fee_back, code=TransferCode.fee_return,
            )
        )  # fmt: skip
    return events


def _pending_left(ctx: Context, charge: objects.ObjectRow) -> int:
    """The net the charge's group still holds in the pending balance: the charge, its refunds
    taken from pending, and a destination charge's transfer line and reversals (all share the
    charge's ``available_on``, so they settle together)."""
    tenant_id, mode = ctx.scope.tenant_id, ctx.scope.mode
    members = [
        transactions.c.id == charge["balance_transaction_id"],
        transactions.c.id.in_(
            sa.select(refunds.c.balance_transaction_id).where(
                refunds.c.tenant_id == tenant_id, refunds.c.mode == mode,
                refunds.c.charge_id == charge["id"],
            )
        ),
    ]  # fmt: skip
    if charge["transfer_id"] is not None:
        # The transfer's own line, and its reversals' (each row names the transfer).
        for table, names_it in ((transfers, transfers.c.id), (reversals, reversals.c.transfer_id)):
            rows = sa.select(table.c.balance_transaction_id).where(
                table.c.tenant_id == tenant_id, table.c.mode == mode,
                names_it == charge["transfer_id"],
            )  # fmt: skip
            members.append(transactions.c.id.in_(rows))
    left = ctx.connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(transactions.c.net), 0)).where(
            transactions.c.tenant_id == tenant_id,
            transactions.c.mode == mode,
            transactions.c.status == "pending",
            sa.or_(*members),
        )
    ).scalar_one()
    return int(left)


def update(ctx: Context, refund_id: str, metadata: MetadataChange | None) -> Outcome:
    row = objects.load(ctx.connection, refunds, ctx.scope, refund_id, for_update=True)
    if row is None:
        raise objects.missing("refund", refund_id)
    before = refund_object(row, livemode=ctx.scope.livemode)
    if metadata is not None:
        row["metadata"] = merge_metadata(row["metadata"], metadata)
        objects.update(ctx.connection, refunds, ctx.scope, refund_id, metadata=row["metadata"])
    refund = refund_object(row, livemode=ctx.scope.livemode)
    previous = changed(before, refund)
    if previous:
        emit(ctx.connection, ctx.scope, "refund.updated", refund, previous=previous)
    return 200, refund
