"""Table definitions (SQLAlchemy Core); Alembic migrations are generated from them.

Money columns are 64-bit integers in minor units. Transfer rows are append-only: balances after
each transfer are stored on the row itself, so the balance at any past moment is one indexed
lookup (never a sum over postings).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

__all__ = [
    "api_keys",
    "audit_head",
    "audit_log",
    "audit_pruned",
    "ledger_accounts",
    "ledger_failed_transfers",
    "ledger_history_marks",
    "ledger_holds",
    "ledger_journal",
    "ledger_journal_head",
    "ledger_limit_changes",
    "ledger_transfers",
    "ledgers",
    "metadata",
    "stripe_accounts",
    "stripe_balance_transactions",
    "stripe_charges",
    "stripe_customers",
    "stripe_event_stream_cursors",
    "stripe_events",
    "stripe_external_accounts",
    "stripe_idempotency_keys",
    "stripe_payment_intents",
    "stripe_payment_methods",
    "stripe_payouts",
    "stripe_refunds",
    "stripe_transfer_reversals",
    "stripe_transfers",
    "stripe_webhook_attempts",
    "stripe_webhook_deliveries",
    "stripe_webhook_endpoints",
    "tenants",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL; INTEGER on SQLite so that an INTEGER PRIMARY KEY is the rowid.
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # acct_...
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at_ns", BigInt, nullable=False),
    # A connected account (Stripe Connect) belongs to a platform and exists in one mode only;
    # its money lives in the platform's payments ledger. NULL for top-level accounts.
    sa.Column("parent_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=True),
    sa.Column("mode", sa.String(4), nullable=True),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # key_...
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    # SHA-256 of the secret; the secret itself is shown once and never stored.
    sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("redacted", sa.String(40), nullable=False),
    sa.Column("created_at_ns", BigInt, nullable=False),
    sa.Column("expires_at_ns", BigInt, nullable=True),
    sa.Column("revoked_at_ns", BigInt, nullable=True),
    # Restricted keys (rk_...): JSON object resource -> "read" | "write". NULL: a secret key.
    sa.Column("permissions", sa.Text, nullable=True),
    sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
)

# Ledgers per (tenant, mode): test and live never share accounts. `native` is the tenant's own
# ledger behind /ledger/v1; `payments` holds the money of the Stripe-compatible API (the
# platform's and its connected accounts' balances) and is written only by Farthing itself, so a
# tenant's native API key can never post to it.
ledgers = sa.Table(
    "ledgers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    sa.Column("purpose", sa.String(8), nullable=False, server_default="native"),
    # HMAC of (id, tenant_id, mode, purpose) under the journal key (``farthing.ledger.owner_mac``).
    sa.Column("owner_mac", sa.String(64), nullable=False),
    sa.UniqueConstraint("tenant_id", "mode", "purpose"),
)

ledger_accounts = sa.Table(
    "ledger_accounts",
    metadata,
    sa.Column("pk", BigInt, primary_key=True, autoincrement=True),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("id", sa.String(64), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("flags", sa.Integer, nullable=False),
    sa.Column("limit_minor", sa.BigInteger, nullable=False),
    sa.Column("limit_initial_minor", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.Text, nullable=True),
    sa.Column("debits_pending", sa.BigInteger, nullable=False),
    sa.Column("debits_posted", sa.BigInteger, nullable=False),
    sa.Column("credits_pending", sa.BigInteger, nullable=False),
    sa.Column("credits_posted", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.Column("journal_seq", sa.BigInteger, nullable=False),
    # The head of the account's history (see ledger_transfers): its newest transfer, and how
    # many transfers it has had. Derived, rebuilt and checked by `farthing verify`.
    sa.Column("last_transfer_ts", sa.BigInteger, nullable=True),
    sa.Column("transfers_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("ledger_id", "id"),
    # Half-empty pages let PostgreSQL update balances in place (HOT), without index writes.
    postgresql_with={"fillfactor": "50"},
)

ledger_transfers = sa.Table(
    "ledger_transfers",
    metadata,
    # Unique and strictly increasing in commit order: the transfer's timestamp and its cursor.
    sa.Column("ts", BigInt, primary_key=True, autoincrement=False),
    sa.Column("ledger_id", sa.Integer, nullable=False),
    sa.Column("id", sa.String(80), nullable=False),
    sa.Column("debit_pk", sa.BigInteger, nullable=False),
    sa.Column("credit_pk", sa.BigInteger, nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("pending_id", sa.String(64), nullable=True),
    sa.Column("timeout_s", sa.Integer, nullable=False),
    sa.Column("expires_at_ns", sa.BigInteger, nullable=True),
    sa.Column("code", sa.Integer, nullable=False),
    sa.Column("flags", sa.Integer, nullable=False),
    sa.Column("metadata", sa.Text, nullable=True),
    sa.Column("journal_seq", sa.BigInteger, nullable=False),
    # Balances of the debit (dr_) and credit (cr_) accounts right after this transfer.
    sa.Column("dr_debits_pending", sa.BigInteger, nullable=False),
    sa.Column("dr_debits_posted", sa.BigInteger, nullable=False),
    sa.Column("dr_credits_pending", sa.BigInteger, nullable=False),
    sa.Column("dr_credits_posted", sa.BigInteger, nullable=False),
    sa.Column("cr_debits_pending", sa.BigInteger, nullable=False),
    sa.Column("cr_debits_posted", sa.BigInteger, nullable=False),
    sa.Column("cr_credits_pending", sa.BigInteger, nullable=False),
    sa.Column("cr_credits_posted", sa.BigInteger, nullable=False),
    # An account's history is a chain: each transfer links to the previous transfer of its
    # debit account and of its credit account. No per-account index is written per transfer
    # (two index entries per transfer were half of SQLite's time per batch); every
    # HISTORY_MARK_EVERY-th link of an account is indexed in ledger_history_marks instead, so a
    # look-up at any moment walks at most that many links. Derived, checked by `farthing verify`.
    sa.Column("dr_previous_ts", sa.BigInteger, nullable=True),
    sa.Column("cr_previous_ts", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("ledger_id", "id"),
)

# Every HISTORY_MARK_EVERY-th transfer of each account, by time: where history walks start.
ledger_history_marks = sa.Table(
    "ledger_history_marks",
    metadata,
    sa.Column("account_pk", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sqlite_with_rowid=False,
)

# Derived state of pending transfers (rebuilt and checked by `farthing verify`).
ledger_holds = sa.Table(
    "ledger_holds",
    metadata,
    sa.Column("transfer_ts", BigInt, primary_key=True, autoincrement=False),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("expires_at_ns", sa.BigInteger, nullable=True),
    sa.Index(
        "ix_ledger_holds_due",
        "expires_at_ns",
        postgresql_where=sa.text("state = 0 AND expires_at_ns IS NOT NULL"),
        sqlite_where=sa.text("state = 0 AND expires_at_ns IS NOT NULL"),
    ),
)

# Ids whose transfer failed on ledger state; a retry answers id_already_failed.
ledger_failed_transfers = sa.Table(
    "ledger_failed_transfers",
    metadata,
    sa.Column("ledger_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("result", sa.String(64), nullable=False),
    # Journaled like transfers: deleting a failure would let a retry succeed later.
    sa.Column("ts", sa.BigInteger, nullable=False, unique=True),
    sa.Column("journal_seq", sa.BigInteger, nullable=False),
)

ledger_limit_changes = sa.Table(
    "ledger_limit_changes",
    metadata,
    sa.Column("ts", BigInt, primary_key=True, autoincrement=False),
    sa.Column("account_pk", sa.BigInteger, nullable=False, index=True),
    sa.Column("limit_minor", sa.BigInteger, nullable=False),
    sa.Column("previous_limit_minor", sa.BigInteger, nullable=False),
    sa.Column("journal_seq", sa.BigInteger, nullable=False),
)

ledger_journal = sa.Table(
    "ledger_journal",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("accounts_count", sa.Integer, nullable=False),
    sa.Column("limit_changes_count", sa.Integer, nullable=False),
    sa.Column("transfers_count", sa.Integer, nullable=False),
    sa.Column("failed_count", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
)

# A single row: the newest journal entry. Locking it serialises appends across processes.
ledger_journal_head = sa.Table(
    "ledger_journal_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)


# Stripe-compatible API (/v1). Objects are scoped by (tenant_id, mode); their public ids are
# random, so `seq` (strictly increasing in insertion order) orders lists and backs cursors.
stripe_customers = sa.Table(
    "stripe_customers",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),  # cus_...
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),  # unix seconds, as Stripe shows it
    sa.Column("email", sa.String(512), nullable=True),
    sa.Column("name", sa.String(256), nullable=True),
    sa.Column("description", sa.String(500), nullable=True),
    sa.Column("phone", sa.String(40), nullable=True),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON object of strings
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
    sa.Index(None, "tenant_id", "mode", "seq"),
)

# Stripe's Idempotency-Key: the first result of a POST, stored in the transaction of its effect.
# `status` is NULL while the first request is still executing.
stripe_idempotency_keys = sa.Table(
    "stripe_idempotency_keys",
    metadata,
    sa.Column("tenant_id", sa.String(40), primary_key=True),
    sa.Column("mode", sa.String(4), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    # Random per claim: only the claimant may store the result, so a claim taken over after
    # its timeout can never be completed by the request that abandoned it.
    sa.Column("claim", sa.String(32), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),  # SHA-256 of method, path, params
    sa.Column("created_at_ns", sa.BigInteger, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("body", sa.Text, nullable=True),
    sa.Index(None, "created_at_ns"),  # `farthing prune` takes the expired ones oldest first.
)

# PaymentMethods of type card. The card number exists only as `pan_sealed` (farthing.vault:
# AES-256-GCM under a per-row data key wrapped by the vault key, bound to tenant, mode and id);
# the CVC is checked on creation and never stored.
stripe_payment_methods = sa.Table(
    "stripe_payment_methods",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),  # pm_...
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("customer_id", sa.String(40), nullable=True),
    sa.Column("brand", sa.String(16), nullable=False),
    sa.Column("last4", sa.String(4), nullable=False),
    sa.Column("exp_month", sa.Integer, nullable=False),
    sa.Column("exp_year", sa.Integer, nullable=False),
    sa.Column("funding", sa.String(16), nullable=False),
    sa.Column("country", sa.String(2), nullable=True),
    sa.Column("fingerprint", sa.String(16), nullable=False),
    sa.Column("billing_name", sa.String(256), nullable=True),
    sa.Column("billing_email", sa.String(512), nullable=True),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON object of strings
    sa.Column("vault_key_id", sa.String(16), nullable=False),  # which vault key sealed the PAN
    sa.Column("pan_sealed", sa.LargeBinary, nullable=False),
    sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
    sa.Index(None, "tenant_id", "mode", "seq"),
    sa.Index(None, "tenant_id", "mode", "customer_id", "seq"),
)


def _object_table(name: str, *columns: sa.Column[Any] | sa.Index) -> sa.Table:
    """A /v1 object table: seq orders lists, (tenant_id, mode) scopes every query."""
    return sa.Table(
        name,
        metadata,
        sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("mode", sa.String(4), nullable=False),
        sa.Column("created", sa.BigInteger, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),  # JSON object of strings
        *columns,
        sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
        sa.Index(None, "tenant_id", "mode", "seq"),
    )


# Connected accounts' profiles (the tenant row carries parent and mode).
stripe_accounts = _object_table(  # acct_...
    "stripe_accounts",
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("email", sa.String(512), nullable=True),
    sa.Column("default_currency", sa.String(3), nullable=False),
    sa.Column("business_type", sa.String(32), nullable=True),
    sa.Column("charges_enabled", sa.Boolean, nullable=False),
    sa.Column("payouts_enabled", sa.Boolean, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
)

# The money-moving objects. Amounts are integers in minor units; each movement is one or more
# balanced transfers in the payments ledger whose ids derive from the object's id, so the
# ledger's idempotency by id makes every step safe to retry.
stripe_payment_intents = _object_table(  # pi_...
    "stripe_payment_intents",
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("capture_method", sa.String(16), nullable=False),
    sa.Column("customer_id", sa.String(40), nullable=True),
    sa.Column("payment_method_id", sa.String(40), nullable=True),
    sa.Column("description", sa.String(1000), nullable=True),
    sa.Column("receipt_email", sa.String(512), nullable=True),
    sa.Column("amount_capturable", sa.BigInteger, nullable=False),
    sa.Column("amount_received", sa.BigInteger, nullable=False),
    sa.Column("latest_charge_id", sa.String(40), nullable=True),
    sa.Column("last_payment_error", sa.Text, nullable=True),  # JSON
    sa.Column("next_action", sa.Text, nullable=True),  # JSON
    sa.Column("return_url", sa.String(2048), nullable=True),
    # SHA-256 of the 3-D Secure challenge token; the token is only in the redirect URL.
    sa.Column("challenge_hash", sa.String(64), nullable=True),
    sa.Column("cancellation_reason", sa.String(32), nullable=True),
    sa.Column("canceled_at", sa.BigInteger, nullable=True),
    sa.Column("capture_before_ns", sa.BigInteger, nullable=True),
    sa.Column("transfer_destination", sa.String(40), nullable=True),
    sa.Column("application_fee_amount", sa.BigInteger, nullable=True),
    sa.Column("transfer_group", sa.String(128), nullable=True),
    sa.Index(None, "status", "capture_before_ns"),
)

stripe_charges = _object_table(  # ch_...
    "stripe_charges",
    sa.Column("payment_intent_id", sa.String(40), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("amount_captured", sa.BigInteger, nullable=False),
    sa.Column("amount_refunded", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("captured", sa.Boolean, nullable=False),
    sa.Column("customer_id", sa.String(40), nullable=True),
    sa.Column("payment_method_id", sa.String(40), nullable=False),
    sa.Column("card", sa.Text, nullable=False),  # JSON: brand, last4, exp, funding, ...
    sa.Column("description", sa.String(1000), nullable=True),
    sa.Column("failure_code", sa.String(64), nullable=True),
    sa.Column("failure_message", sa.String(500), nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),  # JSON
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("fee_refunded", sa.BigInteger, nullable=False),
    sa.Column("balance_transaction_id", sa.String(40), nullable=True),
    sa.Column("transfer_id", sa.String(40), nullable=True),
    sa.Column("destination", sa.String(40), nullable=True),
    sa.Column("application_fee_amount", sa.BigInteger, nullable=True),
    sa.Column("available_on", sa.BigInteger, nullable=False),
    sa.Index(None, "tenant_id", "mode", "payment_intent_id", "seq"),
)

stripe_refunds = _object_table(  # re_...
    "stripe_refunds",
    sa.Column("charge_id", sa.String(40), nullable=False),
    sa.Column("payment_intent_id", sa.String(40), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(32), nullable=True),
    sa.Column("fee_returned", sa.BigInteger, nullable=False),
    sa.Column("balance_transaction_id", sa.String(40), nullable=True),
    # The reversal of a destination charge's transfer made with it (reverse_transfer), else NULL.
    sa.Column("transfer_reversal_id", sa.String(40), nullable=True),
    sa.Index(None, "tenant_id", "mode", "charge_id", "seq"),
)

# One row per movement of an account's balance. `status` pending -> available when the
# payments ledger moved the net amount from the pending to the available account.
stripe_balance_transactions = _object_table(  # txn_...
    "stripe_balance_transactions",
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("fee", sa.BigInteger, nullable=False),
    sa.Column("fee_details", sa.Text, nullable=False),  # JSON list
    sa.Column("net", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("available_on", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("reporting_category", sa.String(32), nullable=False),
    sa.Column("source_id", sa.String(40), nullable=True),
    sa.Column("payout_id", sa.String(40), nullable=True),
    sa.Column("description", sa.String(1000), nullable=True),
    sa.Index(None, "status", "available_on"),
    sa.Index(None, "tenant_id", "mode", "source_id"),
)

stripe_transfers = _object_table(  # tr_...
    "stripe_transfers",
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("destination", sa.String(40), nullable=False),
    sa.Column("amount_reversed", sa.BigInteger, nullable=False),
    sa.Column("source_transaction", sa.String(40), nullable=True),
    sa.Column("transfer_group", sa.String(128), nullable=True),
    sa.Column("description", sa.String(1000), nullable=True),
    sa.Column("balance_transaction_id", sa.String(40), nullable=False),
    sa.Column("destination_payment_id", sa.String(40), nullable=False),
)

stripe_transfer_reversals = _object_table(  # trr_...
    "stripe_transfer_reversals",
    sa.Column("transfer_id", sa.String(40), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_transaction_id", sa.String(40), nullable=False),
    # The refund that reversed it (a refund with reverse_transfer), else NULL.
    sa.Column("source_refund_id", sa.String(40), nullable=True),
    sa.Index(None, "tenant_id", "mode", "transfer_id", "seq"),
)

# Bank accounts for payouts: only the last four digits and a keyed fingerprint are kept.
stripe_external_accounts = _object_table(  # ba_...
    "stripe_external_accounts",
    sa.Column("country", sa.String(2), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("account_holder_name", sa.String(256), nullable=True),
    sa.Column("bank_name", sa.String(128), nullable=True),
    sa.Column("routing_number", sa.String(32), nullable=True),
    sa.Column("last4", sa.String(4), nullable=False),
    sa.Column("fingerprint", sa.String(16), nullable=False),
    # What the simulated bank rail does with payouts here (Stripe's test account numbers).
    sa.Column("rail_outcome", sa.String(32), nullable=False),
    sa.Column("default_for_currency", sa.Boolean, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
)

stripe_payouts = _object_table(  # po_...
    "stripe_payouts",
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("destination", sa.String(40), nullable=False),
    sa.Column("arrival_date", sa.BigInteger, nullable=False),
    sa.Column("in_transit_at_ns", sa.BigInteger, nullable=False),
    sa.Column("arrive_at_ns", sa.BigInteger, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("description", sa.String(1000), nullable=True),
    sa.Column("statement_descriptor", sa.String(22), nullable=True),
    sa.Column("failure_code", sa.String(64), nullable=True),
    sa.Column("failure_message", sa.String(500), nullable=True),
    sa.Column("balance_transaction_id", sa.String(40), nullable=False),
    sa.Column("failure_balance_transaction_id", sa.String(40), nullable=True),
    sa.Index(None, "status", "in_transit_at_ns"),
)


# Events (transactional outbox): written in the transaction of the change they describe, so an
# event exists exactly when its change committed. `data` is the JSON of ``{"object": ...,
# "previous_attributes": ...}`` as of the change. Delivery state comes with webhooks.
stripe_events = sa.Table(
    "stripe_events",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),  # evt_...
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    sa.Column("created", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(40), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
    sa.Index(None, "tenant_id", "mode", "seq"),
    sa.Index(None, "tenant_id", "mode", "type", "seq"),
    sa.Index(None, "created"),
)


# Webhook endpoints. The signing secret is needed to sign, so it is sealed in the vault (never
# stored in the clear, never hashed); it is shown once, at creation or roll.
stripe_webhook_endpoints = _object_table(  # we_...
    "stripe_webhook_endpoints",
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.String(1000), nullable=True),
    sa.Column("enabled_events", sa.Text, nullable=False),  # JSON list; ["*"] for every event
    sa.Column("status", sa.String(16), nullable=False),  # enabled | disabled
    sa.Column("secret_key_id", sa.String(16), nullable=False),
    sa.Column("secret_sealed", sa.LargeBinary, nullable=False),
    # After a roll, the previous secret signs too until this moment (an overlap period).
    sa.Column("previous_secret_sealed", sa.LargeBinary, nullable=True),
    sa.Column("previous_secret_expires_ns", sa.BigInteger, nullable=True),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
)

# One delivery per (event, endpoint), created with the event in its transaction (the outbox).
stripe_webhook_deliveries = sa.Table(
    "stripe_webhook_deliveries",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | succeeded | abandoned
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_ns", sa.BigInteger, nullable=False),
    sa.Column("created_ns", sa.BigInteger, nullable=False),
    sa.CheckConstraint("mode IN ('test', 'live')", name="mode"),
    sa.UniqueConstraint("event_id", "endpoint_id"),
    sa.Index(None, "status", "next_attempt_ns"),
    sa.Index(None, "endpoint_id", "seq"),
)

# Every delivery attempt, for the API, the CLI and the merchant's debugging.
stripe_webhook_attempts = sa.Table(
    "stripe_webhook_attempts",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=True),
    sa.Column("delivery_seq", sa.BigInteger, nullable=False),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("mode", sa.String(4), nullable=False),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("attempted_at_ns", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("response_body", sa.String(1000), nullable=True),  # truncated
    sa.Column("error", sa.String(200), nullable=True),
    sa.Index(None, "delivery_seq", "seq"),
    sa.Index(None, "tenant_id", "mode", "endpoint_id", "seq"),
)

# How far each event stream (NATS JetStream) has published the outbox: events are published in
# seq order and the cursor moves after the stream acknowledged them (at-least-once).
stripe_event_stream_cursors = sa.Table(
    "stripe_event_stream_cursors",
    metadata,
    sa.Column("stream", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # PostgreSQL: the cursor waits at gaps in seq until every transaction that was running when
    # they were seen has ended, i.e. until the snapshot's xmin reaches gap_wait_xmax. The gaps
    # seen then are those up to gap_seen_seq (the last seq that snapshot showed).
    sa.Column("gap_wait_xmax", sa.BigInteger, nullable=True),
    sa.Column("gap_seen_seq", sa.BigInteger, nullable=True),
)


# The audit trail (PCI DSS 10.2): every authenticated request and administrative action, who
# (key id or operator, never a secret), what, when, from where and the outcome. Append-only and
# chained with HMAC like the ledger journal, so edits, deletions and reorderings are detected.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", BigInt, primary_key=True, autoincrement=False),
    sa.Column("occurred_at_ns", sa.BigInteger, nullable=False),
    sa.Column("actor_kind", sa.String(16), nullable=False),  # api_key | operator | anonymous
    sa.Column("actor", sa.String(120), nullable=False),  # key_... | user@host | -
    sa.Column("tenant_id", sa.String(40), nullable=True),
    sa.Column("mode", sa.String(4), nullable=True),
    sa.Column("on_behalf_of", sa.String(64), nullable=True),  # Stripe-Account
    sa.Column("action", sa.String(200), nullable=False),
    sa.Column("object_ids", sa.String(1000), nullable=True),  # space-separated
    sa.Column("origin", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(8), nullable=False),  # success | failure
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.Index(None, "actor", "occurred_at_ns"),
    sa.Index(None, "tenant_id", "occurred_at_ns"),
    sa.Index(None, "occurred_at_ns"),
    # Only prune records (farthing.audit's PRUNE_ACTION): prune finds the newest by it.
    sa.Index(
        "ix_audit_log_prunes",
        "seq",
        sqlite_where=sa.text("action = 'audit prune'"),
        postgresql_where=sa.text("action = 'audit prune'"),
    ),
)

# A single row: the newest audit record. Locking it serialises appends across processes.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)

# A single row: the records up to through_seq were pruned (``farthing audit prune``), and mac is
# the MAC of record through_seq, where the chain goes on. The database lets records up to
# through_seq be deleted and no others; a chained prune record must name the same pair.
audit_pruned = sa.Table(
    "audit_pruned",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("through_seq", sa.BigInteger, nullable=False),
    sa.Column("mac", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
