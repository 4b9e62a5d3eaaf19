"""The Charge object as Stripe shows it."""

from __future__ import annotations

import json
from typing import Any

from farthing.stripe_api._objects import ObjectRow

__all__ = ["charge_object"]


def charge_object(row: ObjectRow, *, livemode: bool) -> dict[str, Any]:
    card = json.loads(row["card"])
    status = row["status"]
    return {
        "id": row["id"],
        "object": "charge",
        "amount": row["amount"],
        "amount_captured": row["amount_captured"],
        "amount_refunded": row["amount_refunded"],
        "application_fee_amount": row["application_fee_amount"],
        "balance_transaction": row["balance_transaction_id"],
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "captured": row["captured"],
        "created": row["created"],
        "currency": row["currency"],
        "customer": row["customer_id"],
        "description": row["description"],
        "disputed": False,
        "failure_code": row["failure_code"],
        "failure_message": row["failure_message"],
        "livemode": livemode,
        "metadata": row["metadata"],
        "outcome": json.loads(row["outcome"]),
        "paid": status == "succeeded",
        "payment_intent": row["payment_intent_id"],
        "payment_method": row["payment_method_id"],
        "payment_method_details": {"type": "card", "card": card},
        "refunded": row["amount_refunded"] == row["amount"] and row["amount"] > 0,
        "status": status,
        "transfer": row["transfer_id"],
        "transfer_data": None
        if row["destination"] is None
        else {"amount": None, "destination": row["destination"]},
    }
