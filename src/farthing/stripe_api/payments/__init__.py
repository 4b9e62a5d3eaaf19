"""Money movement shared by the /v1 resources: the payments ledger, balance transactions,
pricing and the card processor interface."""

from __future__ import annotations

from farthing.stripe_api.payments._balance import (
    BalanceEntry,
    balance_object,
    balance_transaction_object,
    ledger_balance,
    record,
    settle_due,
)
from farthing.stripe_api.payments._context import Payments, payments_of
from farthing.stripe_api.payments._integrity import check_partition, check_payments
from farthing.stripe_api.payments._ledger import (
    Movement,
    PaymentsLedger,
    TransferCode,
    available_account,
    bank_account,
    card_network_account,
    chain,
    fees_account,
    insufficient_funds,
    pending_account,
    require_done,
)
from farthing.stripe_api.payments._processor import (
    Authorization,
    CardProcessor,
    Decision,
    SimulatedProcessor,
)

__all__ = [
    "Authorization",
    "BalanceEntry",
    "CardProcessor",
    "Decision",
    "Movement",
    "Payments",
    "PaymentsLedger",
    "SimulatedProcessor",
    "TransferCode",
    "available_account",
    "balance_object",
    "balance_transaction_object",
    "bank_account",
    "card_network_account",
    "chain",
    "check_partition",
    "check_payments",
    "fees_account",
    "insufficient_funds",
    "ledger_balance",
    "payments_of",
    "pending_account",
    "record",
    "require_done",
    "settle_due",
]
