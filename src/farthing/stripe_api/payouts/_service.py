"""Payouts and the simulated bank rail. Each operation runs inside one write transaction
(``write``) and posts one payments-ledger movement.

Ledger steps per payout ``po`` (ids derive from it, see payments._ledger):
- creation: ``{po}.payout``, a pending transfer (hold) available -> ``farthing.bank``; a pending
  debit already lowers the spendable balance, so the ``payout`` balance transaction (-amount) is
  recorded as available at once and the reconciliation invariant holds.
- paid: ``{po}.paid`` posts the hold. Failed: ``{po}.failed`` voids it (funds back) and a
  ``payout_failure`` (+amount) is recorded. Canceled while pending: ``{po}.canceled`` voids it
  and a ``payout_cancel`` (+amount) is recorded.

The rail is lazy: whenever a scope's payouts are read or written, its due payouts move on
(pending -> in_transit at ``in_transit_at_ns``, -> paid or failed at ``arrive_at_ns``, as the
bank account's test number decides), at most ``RAIL_STEPS_MAX`` per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_external_accounts as banks
from farthing.db.schema import stripe_payouts as payouts
from farthing.http._errors import ApiError
from farthing.ledger import TransferEvent, TransferFlags
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._params import MetadataChange, invalid, merge_metadata
from farthing.stripe_api.events import emit
from farthing.stripe_api.payment_intents._service import Context, Outcome
from farthing.stripe_api.payments import (
    BalanceEntry,
    Movement,
    TransferCode,
    available_account,
    bank_account,
    record,
    require_done,
    settle_due,
)
from farthing.stripe_api.payouts._banks import FAILURE_MESSAGES, PAID

__all__ = [
    "RAIL_STEPS_MAX",
    "PayoutFields",
    "advance",
    "cancel",
    "create",
    "load_payout",
    "payout_object",
    "update",
    "with_rail",
]

# Payouts the rail moves on per request; the rest move at the next one.
RAIL_STEPS_MAX = 100
_NS_PER_S = 10**9
_OPEN = ("pending", "in_transit")


@dataclass(frozen=True, slots=True, kw_only=True)
class PayoutFields:
    amount: int
    currency: str
    destination: str | None = None
    description: str | None = None
    statement_descriptor: str | None = None
    metadata: MetadataChange | None = None


def payout_object(row: objects.ObjectRow, *, livemode: bool) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "payout",
        "amount": row["amount"],
        "application_fee": None,
        "application_fee_amount": None,
        "arrival_date": row["arrival_date"],
        "automatic": False,
        "balance_transaction": row["balance_transaction_id"],
        "created": row["created"],
        "currency": row["currency"],
        "description": row["description"],
        "destination": row["destination"],
        "failure_balance_transaction": row["failure_balance_transaction_id"],
        "failure_code": row["failure_code"],
        "failure_message": row["failure_message"],
        "livemode": livemode,
        "metadata": row["metadata"],
        "method": row["method"],
        "original_payout": None,
        "reversed_by": None,
        "source_type": "card",
        "statement_descriptor": row["statement_descriptor"],
        "status": row["status"],
        "type": "bank_account",
    }


def _no_rail() -> ApiError:
    return ApiError(
        400,
        type_="invalid_request_error",
        code="bank_rail_not_configured",
        message="Live mode has no bank rail configured, so live payouts cannot be created. "
        "Farthing never simulates live payouts; use a test key.",
    )


# -- the bank rail -------------------------------------------------------------------------


def advance(ctx: Context, movement: Movement) -> None:
    """Move the scope's due payouts on; their ledger events join ``movement``."""
    due = objects.load_many(
        ctx.connection,
        payouts,
        ctx.scope,
        sa.or_(
            sa.and_(payouts.c.status == "pending", payouts.c.in_transit_at_ns <= ctx.now_ns),
            sa.and_(payouts.c.status == "in_transit", payouts.c.arrive_at_ns <= ctx.now_ns),
        ),
        limit=RAIL_STEPS_MAX,
        for_update=True,
    )
    for row in due:
        if row["arrive_at_ns"] > ctx.now_ns:
            objects.update(ctx.connection, payouts, ctx.scope, row["id"], status="in_transit")
        else:
            _arrive(ctx, movement, row)
        after = load_payout(ctx, row["id"])
        event = {"in_transit": "payout.updated", "paid": "payout.paid", "failed": "payout.failed"}
        payout = payout_object(after, livemode=ctx.scope.livemode)
        emit(ctx.connection, ctx.scope, event[after["status"]], payout)


def _arrive(ctx: Context, movement: Movement, row: objects.ObjectRow) -> None:
    # The bank account may have been deleted since; its test number still decides.
    bank = objects.load(ctx.connection, banks, ctx.scope, row["destination"])
    outcome = "no_account" if bank is None else bank["rail_outcome"]
    movement.involve(ctx.scope.tenant_id, row["currency"])
    if outcome == PAID:
        movement.add(
            TransferEvent(
                id=f"{row['id']}.paid",
                pending_id=f"{row['id']}.payout",
                flags=TransferFlags.post_pending,
                code=TransferCode.payout_paid,
            )
        )
        objects.update(ctx.connection, payouts, ctx.scope, row["id"], status="paid")
        return
    txn_id = _return_funds(ctx, movement, row, "failed", "payout_failure")
    objects.update(
        ctx.connection, payouts, ctx.scope, row["id"],
        status="failed", failure_code=outcome,
        failure_message=FAILURE_MESSAGES.get(outcome, "The payout failed."),
        failure_balance_transaction_id=txn_id,
    )  # fmt: skip


def _return_funds(
    ctx: Context, movement: Movement, row: objects.ObjectRow, step: str, kind: str
) -> str:
    """Void the payout's hold (funds back in the available balance) and record it."""
    movement.add(
        TransferEvent(
            id=f"{row['id']}.{step}",
            pending_id=f"{row['id']}.payout",
            flags=TransferFlags.void_pending,
            code=TransferCode.payout_failed,
        )
    )
    entry = BalanceEntry(
        amount=row["amount"], currency=row["currency"], fee=0, fee_details=(), type=kind,
        reporting_category="payout_reversal", source_id=row["id"], available_on=ctx.now_s,
        payout_id=row["id"],
    )  # fmt: skip
    return record(ctx.connection, ctx.scope, entry, now_s=ctx.now_s, available=True)


def _movement(ctx: Context) -> Movement:
    movement = ctx.payments.ledger.movement(ctx.connection, ctx.scope)
    advance(ctx, movement)
    return movement


def _post(ctx: Context, movement: Movement, message: str) -> None:
    require_done(movement.post(ctx.connection), message=message)


def with_rail(ctx: Context) -> None:
    """Move the rail on for a read (its one movement of the request)."""
    _post(ctx, _movement(ctx), "The bank rail could not record a payout.")


# -- operations ----------------------------------------------------------------------------


def load_payout(ctx: Context, payout_id: str, *, for_update: bool = False) -> objects.ObjectRow:
    row = objects.load(ctx.connection, payouts, ctx.scope, payout_id, for_update=for_update)
    if row is None:
        raise objects.missing("payout", payout_id)
    return row


def _destination(ctx: Context, fields: PayoutFields) -> objects.ObjectRow:
    if fields.destination is None:
        found = objects.load_many(
            ctx.connection, banks, ctx.scope,
            banks.c.currency == fields.currency, banks.c.default_for_currency,
            banks.c.deleted.is_(False), limit=1,
        )  # fmt: skip
        if not found:
            raise invalid(
                f"You have no default bank account for {fields.currency}: add one with "
                "POST /v1/accounts/{account}/external_accounts.",
                "destination",
            )
        return found[0]
    bank = objects.load(ctx.connection, banks, ctx.scope, fields.destination)
    if bank is None or bank["deleted"]:
        raise objects.missing("external_account", fields.destination, "destination")
    if bank["currency"] != fields.currency:
        raise invalid(
            f"The bank account {bank['id']} takes {bank['currency']}, not {fields.currency}.",
            "currency",
        )
    return bank


def create(ctx: Context, fields: PayoutFields) -> Outcome:
    if ctx.scope.livemode:
        raise _no_rail()
    bank = _destination(ctx, fields)
    tenant, currency, amount = ctx.scope.tenant_id, fields.currency, fields.amount
    movement = _movement(ctx)
    movement.involve(tenant, currency)
    # Due pending funds become available first (their settlement precedes the hold).
    settle_due(ctx.connection, movement, ctx.scope, now_s=ctx.now_s)
    payout_id = objects.new_id("po_")
    movement.add(
        TransferEvent(
            id=f"{payout_id}.payout",
            debit_account_id=available_account(tenant, currency),
            credit_account_id=bank_account(currency),
            amount_minor=amount,
            flags=TransferFlags.pending,
            code=TransferCode.payout,
        )
    )
    entry = BalanceEntry(
        amount=-amount, currency=currency, fee=0, fee_details=(), type="payout",
        reporting_category="payout", source_id=payout_id, available_on=ctx.now_s,
        description=fields.description, payout_id=payout_id,
    )  # fmt: skip
    txn_id = record(ctx.connection, ctx.scope, entry, now_s=ctx.now_s, available=True)
    delay_s = ctx.payments.settings.payout_delay_s
    row: objects.ObjectRow = {
        "id": payout_id, "created": ctx.now_s, "metadata": merge_metadata({}, fields.metadata),
        "amount": amount, "currency": currency, "status": "pending",
        "destination": bank["id"], "arrival_date": ctx.now_s + 2 * delay_s,
        "in_transit_at_ns": ctx.now_ns + delay_s * _NS_PER_S,
        "arrive_at_ns": ctx.now_ns + 2 * delay_s * _NS_PER_S, "method": "standard",
        "description": fields.description, "statement_descriptor": fields.statement_descriptor,
        "failure_code": None, "failure_message": None, "balance_transaction_id": txn_id,
        "failure_balance_transaction_id": None,
    }  # fmt: skip
    objects.insert(ctx.connection, payouts, ctx.scope, row)
    _post(ctx, movement, "You have insufficient available funds in your balance for this payout.")
    payout = payout_object(row, livemode=ctx.scope.livemode)
    emit(ctx.connection, ctx.scope, "payout.created", payout)
    return 200, payout


def update(ctx: Context, payout_id: str, metadata: MetadataChange | None) -> Outcome:
    movement = _movement(ctx)
    row = load_payout(ctx, payout_id, for_update=True)
    if metadata is not None:
        row["metadata"] = merge_metadata(row["metadata"], metadata)
        objects.update(ctx.connection, payouts, ctx.scope, payout_id, metadata=row["metadata"])
    _post(ctx, movement, "The bank rail could not record a payout.")
    return 200, payout_object(load_payout(ctx, payout_id), livemode=ctx.scope.livemode)


def cancel(ctx: Context, payout_id: str) -> Outcome:
    movement = _movement(ctx)
    row = load_payout(ctx, payout_id, for_update=True)
    if row["status"] != "pending":
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="payout_not_cancelable",
            message=f"Payout {payout_id} cannot be canceled: its status is {row['status']}; "
            "only pending payouts can be canceled.",
        )
    _return_funds(ctx, movement, row, "canceled", "payout_cancel")
    objects.update(ctx.connection, payouts, ctx.scope, payout_id, status="canceled")
    _post(ctx, movement, "The cancelation could not be recorded.")
    payout = payout_object(load_payout(ctx, payout_id), livemode=ctx.scope.livemode)
    emit(ctx.connection, ctx.scope, "payout.canceled", payout)
    return 200, payout
