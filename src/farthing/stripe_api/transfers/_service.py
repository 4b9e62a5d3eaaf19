"""Transfers and transfer reversals. Each runs inside one write transaction (``write``): the
objects, balance transactions and payments-ledger transfers commit together or not at all.

Ledger steps (ids derive from the API object, see payments._ledger):
- ``{tr}.transfer``: platform available -> connected available; the platform records a
  ``transfer`` (-amount), the connected account a ``payment`` (+amount, source ``py_``).
- ``{trr}.reversal``: connected -> platform, where the transferred funds are: available, or
  still pending for a destination charge whose funds have not settled (as refunds do).
  The platform records a ``transfer_refund`` (+amount), the connected account a
  ``payment_refund`` (-amount, source ``pyr_``).

A shortage of funds is the ledger's ``exceeds_credits``, answered as 400 balance_insufficient by
`require_done`; the whole transaction rolls back, so nothing is half-applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from farthing.db.schema import stripe_balance_transactions as transactions
from farthing.db.schema import stripe_charges as charges
from farthing.db.schema import stripe_transfer_reversals as reversals
from farthing.db.schema import stripe_transfers as transfers
from farthing.http._errors import ApiError
from farthing.ledger import TransferEvent
from farthing.stripe_api import _objects as objects
from farthing.stripe_api._lists import list_envelope
from farthing.stripe_api._params import MetadataChange, invalid, merge_metadata
from farthing.stripe_api._request import Partition
from farthing.stripe_api.events import emit
from farthing.stripe_api.payment_intents._service import Context, Outcome
from farthing.stripe_api.payments import (
    BalanceEntry,
    Movement,
    TransferCode,
    available_account,
    pending_account,
    record,
    require_done,
    settle_due,
)
from farthing.stripe_api.payments._connect import destination_scope

__all__ = [
    "ReversalFields",
    "TransferFields",
    "create",
    "create_reversal",
    "load_transfer",
    "reversal_object",
    "reversals_url",
    "transfer_object",
    "update",
    "update_reversal",
]

# Reversals embedded in a transfer object (newest first); the rest are one list call away.
EMBEDDED_REVERSALS_MAX = 10
_INSUFFICIENT = (
    "You have insufficient available funds in your Farthing balance for this transfer. "
    "Funds become available when charges settle (or at once with test card 4000000000000077)."
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferFields:
    amount: int
    currency: str
    destination: str
    description: str | None = None
    metadata: MetadataChange | None = None
    transfer_group: str | None = None
    source_transaction: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReversalFields:
    amount: int | None = None
    metadata: MetadataChange | None = None


def reversals_url(transfer_id: str) -> str:
    return f"/v1/transfers/{transfer_id}/reversals"


def reversal_object(row: objects.ObjectRow, *, livemode: bool) -> dict[str, Any]:
    del livemode  # Transfer reversals carry no livemode field in Stripe's API.
    return {
        "id": row["id"],
        "object": "transfer_reversal",
        "amount": row["amount"],
        "balance_transaction": row["balance_transaction_id"],
        "created": row["created"],
        "currency": row["currency"],
        "destination_payment_refund": _payment_refund_id(row["id"]),
        "metadata": row["metadata"],
        "source_refund": row["source_refund_id"],
        "transfer": row["transfer_id"],
    }


def _payment_refund_id(reversal_id: str) -> str:
    # Derived from the reversal's id, so the connected side's py refund needs no column.
    return "pyr_" + reversal_id.removeprefix("trr_")


def transfer_object(
    connection: sa.Connection, scope: Partition, row: objects.ObjectRow
) -> dict[str, Any]:
    embedded = objects.load_many(
        connection,
        reversals,
        scope,
        reversals.c.transfer_id == row["id"],
        limit=objects.LOAD_MANY_MAX,
    )
    newest = list(reversed(embedded))[:EMBEDDED_REVERSALS_MAX]
    reversal_list = list_envelope(
        reversals_url(row["id"]),
        [reversal_object(item, livemode=scope.livemode) for item in newest],
        has_more=len(embedded) > EMBEDDED_REVERSALS_MAX,
    )
    reversal_list["total_count"] = len(embedded)
    return {
        "id": row["id"],
        "object": "transfer",
        "amount": row["amount"],
        "amount_reversed": row["amount_reversed"],
        "balance_transaction": row["balance_transaction_id"],
        "created": row["created"],
        "currency": row["currency"],
        "description": row["description"],
        "destination": row["destination"],
        "destination_payment": row["destination_payment_id"],
        "livemode": scope.livemode,
        "metadata": row["metadata"],
        "reversals": reversal_list,
        "reversed": row["amount_reversed"] >= row["amount"] > 0,
        "source_transaction": row["source_transaction"],
        "source_type": "card",
        "transfer_group": row["transfer_group"],
    }


def load_transfer(ctx: Context, transfer_id: str, *, for_update: bool = False) -> objects.ObjectRow:
    row = objects.load(ctx.connection, transfers, ctx.scope, transfer_id, for_update=for_update)
    if row is None:
        raise objects.missing("transfer", transfer_id)
    return row


def _check_source(ctx: Context, fields: TransferFields) -> None:
    """``source_transaction`` links the transfer to one of the caller's charges (reporting
    only: the funds always come from the available balance)."""
    if fields.source_transaction is None:
        return
    charge = objects.load(ctx.connection, charges, ctx.scope, fields.source_transaction)
    if charge is None:
        raise objects.missing("charge", fields.source_transaction, "source_transaction")
    if charge["currency"] != fields.currency:
        raise invalid("The source_transaction's currency differs from the transfer's.", "currency")


def two_sided_movement(ctx: Context, target: Partition, currency: str) -> Movement:
    """A movement that first settles both sides' due funds, so what has become available by
    now can be transferred (settlement events precede the transfer in the movement)."""
    movement = ctx.payments.ledger.movement(ctx.connection, ctx.scope)
    movement.involve(ctx.scope.tenant_id, currency)
    movement.involve(target.tenant_id, currency)
    settle_due(ctx.connection, movement, ctx.scope, now_s=ctx.now_s)
    settle_due(ctx.connection, movement, target, now_s=ctx.now_s)
    return movement


def create(ctx: Context, fields: TransferFields) -> Outcome:
    target = destination_scope(ctx.connection, ctx.scope, fields.destination, param="destination")
    _check_source(ctx, fields)
    transfer_id, payment_id = objects.new_id("tr_"), objects.new_id("py_")
    currency, amount = fields.currency, fields.amount
    movement = two_sided_movement(ctx, target, currency)
    movement.add(
        TransferEvent(
            id=f"{transfer_id}.transfer",
            debit_account_id=available_account(ctx.scope.tenant_id, currency),
            credit_account_id=available_account(target.tenant_id, currency),
            amount_minor=amount,
            code=TransferCode.transfer,
        )
    )
    platform_txn = _record(ctx, ctx.scope, -amount, currency, "transfer", "transfer", transfer_id)
    _record(ctx, target, amount, currency, "payment", "charge", payment_id)
    row: objects.ObjectRow = {
        "id": transfer_id, "created": ctx.now_s,
        "metadata": merge_metadata({}, fields.metadata), "amount": amount,
        "currency": currency, "destination": target.tenant_id, "amount_reversed": 0,
        "source_transaction": fields.source_transaction,
        "transfer_group": fields.transfer_group, "description": fields.description,
        "balance_transaction_id": platform_txn, "destination_payment_id": payment_id,
    }  # fmt: skip
    objects.insert(ctx.connection, transfers, ctx.scope, row)
    require_done(movement.post(ctx.connection), message=_INSUFFICIENT)
    transfer = transfer_object(ctx.connection, ctx.scope, row)
    emit(ctx.connection, ctx.scope, "transfer.created", transfer)
    return 200, transfer


def _record(  # noqa: PLR0913 - one balance transaction, spelled out
    ctx: Context,
    scope: Partition,
    amount: int,
    currency: str,
    kind: str,
    category: str,
    source_id: str,
    *,
    available_on: int | None = None,
) -> str:
    """A balance transaction without fee; available at once unless ``available_on`` (the date
    the pending funds it moves settle) is given."""
    entry = BalanceEntry(
        amount=amount, currency=currency, fee=0, fee_details=(), type=kind,
        reporting_category=category, source_id=source_id,
        available_on=ctx.now_s if available_on is None else available_on,
    )  # fmt: skip
    return record(ctx.connection, scope, entry, now_s=ctx.now_s, available=available_on is None)


def update(
    ctx: Context, transfer_id: str, description: str | None, metadata: MetadataChange | None
) -> Outcome:
    row = load_transfer(ctx, transfer_id, for_update=True)
    changes: dict[str, Any] = {}
    if metadata is not None:
        changes["metadata"] = merge_metadata(row["metadata"], metadata)
    if description is not None:
        changes["description"] = description
    if changes:
        objects.update(ctx.connection, transfers, ctx.scope, transfer_id, **changes)
    return 200, transfer_object(ctx.connection, ctx.scope, row | changes)


# -- reversals -----------------------------------------------------------------------------


def _reversal_amount(row: objects.ObjectRow, asked: int | None) -> int:
    remaining = int(row["amount"] - row["amount_reversed"])
    amount = remaining if asked is None else asked
    if remaining == 0 or amount > remaining:
        raise ApiError(
            400,
            type_="invalid_request_error",
            code="amount_too_large" if remaining else "transfer_already_reversed",
            message=f"You cannot reverse {amount} of transfer {row['id']}: only {remaining} "
            f"({row['currency']}) of it has not been reversed yet.",
            param="amount",
        )
    return amount


def _pending_until(ctx: Context, target: Partition, row: objects.ObjectRow) -> int | None:
    """When the transferred funds are still pending on the connected side (a destination charge
    not yet settled): the date they settle; None when they are available."""
    payment = objects.load_many(
        ctx.connection,
        transactions,
        target,
        transactions.c.source_id == row["destination_payment_id"],
        limit=1,
    )
    if not payment or payment[0]["status"] == "available":
        return None
    return int(payment[0]["available_on"])


def reversal_target(ctx: Context, row: objects.ObjectRow) -> Partition:
    """The connected account a transfer went to. Checked at creation; a later deletion of the
    connected account must not strand the platform's right to reverse."""
    return Partition(
        tenant_id=row["destination"], mode=ctx.scope.mode, platform_id=ctx.scope.platform_id
    )


def create_reversal(
    ctx: Context,
    transfer_id: str,
    fields: ReversalFields,
    *,
    source_refund: str | None = None,
    movement: Movement | None = None,
) -> Outcome:
    """Move ``fields.amount`` (default: what is left) of a transfer back to the platform.

    ``source_refund``: the refund this reversal is part of (``reverse_transfer``); that refund
    passes its ``movement`` (from ``two_sided_movement``) and posts it once, so the effect
    locks its ledger accounts together (``Movement``)."""
    row = load_transfer(ctx, transfer_id, for_update=True)
    amount = _reversal_amount(row, fields.amount)
    currency = row["currency"]
    target = reversal_target(ctx, row)
    posts = movement is None
    if movement is None:
        movement = two_sided_movement(ctx, target, currency)
    pending_until = _pending_until(ctx, target, row)
    account = pending_account if pending_until is not None else available_account
    reversal_id = objects.new_id("trr_")
    movement.add(
        TransferEvent(
            id=f"{reversal_id}.reversal",
            debit_account_id=account(target.tenant_id, currency),
            credit_account_id=account(ctx.scope.tenant_id, currency),
            amount_minor=amount,
            code=TransferCode.transfer_reversal,
        )
    )
    txn_id = _record(
        ctx, ctx.scope, amount, currency, "transfer_refund", "transfer_reversal", reversal_id,
        available_on=pending_until,
    )  # fmt: skip
    _record(
        ctx, target, -amount, currency, "payment_refund", "transfer_reversal",
        _payment_refund_id(reversal_id), available_on=pending_until,
    )  # fmt: skip
    reversal: objects.ObjectRow = {
        "id": reversal_id, "created": ctx.now_s,
        "metadata": merge_metadata({}, fields.metadata), "transfer_id": transfer_id,
        "amount": amount, "currency": currency, "balance_transaction_id": txn_id,
        "source_refund_id": source_refund,
    }  # fmt: skip
    objects.insert(ctx.connection, reversals, ctx.scope, reversal)
    objects.update(
        ctx.connection, transfers, ctx.scope, transfer_id,
        amount_reversed=row["amount_reversed"] + amount,
    )  # fmt: skip
    if posts:
        require_done(
            movement.post(ctx.connection),
            message="The connected account's balance is insufficient to reverse this transfer.",
        )
    transfer = transfer_object(ctx.connection, ctx.scope, load_transfer(ctx, transfer_id))
    emit(ctx.connection, ctx.scope, "transfer.reversed", transfer)
    return 200, reversal_object(reversal, livemode=ctx.scope.livemode)


def load_reversal(ctx: Context, transfer_id: str, reversal_id: str) -> objects.ObjectRow:
    row = objects.load(ctx.connection, reversals, ctx.scope, reversal_id, for_update=True)
    if row is None or row["transfer_id"] != transfer_id:
        raise objects.missing("transfer_reversal", reversal_id)
    return row


def update_reversal(
    ctx: Context, transfer_id: str, reversal_id: str, metadata: MetadataChange | None
) -> Outcome:
    row = load_reversal(ctx, transfer_id, reversal_id)
    if metadata is not None:
        row["metadata"] = merge_metadata(row["metadata"], metadata)
        objects.update(ctx.connection, reversals, ctx.scope, reversal_id, metadata=row["metadata"])
    return 200, reversal_object(row, livemode=ctx.scope.livemode)
