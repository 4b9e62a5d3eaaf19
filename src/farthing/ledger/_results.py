"""Named result codes for expected rejections, in order of precedence.

When an event breaks several rules, the code listed first below is the one returned. The order
follows TigerBeetle's: the request's own shape first, then idempotency (``exists*``), then the
state of the ledger. See docs/ledger.md for the meaning of every code.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSIENT_TRANSFER_RESULTS", "CreateAccountResult", "CreateTransferResult"]


class CreateAccountResult(enum.Enum):
    """Outcome of one create_accounts event; the declaration order is the precedence."""

    ok = "ok"
    linked_event_failed = "linked_event_failed"
    linked_event_chain_open = "linked_event_chain_open"
    id_invalid = "id_invalid"
    flags_are_mutually_exclusive = "flags_are_mutually_exclusive"
    currency_invalid = "currency_invalid"
    code_invalid = "code_invalid"
    limit_invalid = "limit_invalid"
    limit_requires_balance_flag = "limit_requires_balance_flag"
    metadata_invalid = "metadata_invalid"
    exists_with_different_flags = "exists_with_different_flags"
    exists_with_different_currency = "exists_with_different_currency"
    exists_with_different_code = "exists_with_different_code"
    exists_with_different_limit = "exists_with_different_limit"
    exists_with_different_metadata = "exists_with_different_metadata"
    exists = "exists"


class CreateTransferResult(enum.Enum):
    """Outcome of one create_transfers event; the declaration order is the precedence."""

    ok = "ok"
    linked_event_failed = "linked_event_failed"
    linked_event_chain_open = "linked_event_chain_open"
    # The event's own shape: no ledger state is consulted.
    id_invalid = "id_invalid"
    flags_are_mutually_exclusive = "flags_are_mutually_exclusive"
    pending_id_must_be_empty = "pending_id_must_be_empty"
    pending_id_required = "pending_id_required"
    pending_id_invalid = "pending_id_invalid"
    pending_id_must_be_different = "pending_id_must_be_different"
    timeout_reserved_for_pending_transfer = "timeout_reserved_for_pending_transfer"
    timeout_invalid = "timeout_invalid"
    debit_account_id_required = "debit_account_id_required"
    debit_account_id_invalid = "debit_account_id_invalid"
    credit_account_id_required = "credit_account_id_required"
    credit_account_id_invalid = "credit_account_id_invalid"
    accounts_must_be_different = "accounts_must_be_different"
    amount_required = "amount_required"
    amount_must_be_positive = "amount_must_be_positive"
    amount_invalid = "amount_invalid"
    code_invalid = "code_invalid"
    metadata_invalid = "metadata_invalid"
    # Idempotency: a committed transfer with this id.
    exists_with_different_flags = "exists_with_different_flags"
    exists_with_different_pending_id = "exists_with_different_pending_id"
    exists_with_different_timeout = "exists_with_different_timeout"
    exists_with_different_debit_account_id = "exists_with_different_debit_account_id"
    exists_with_different_credit_account_id = "exists_with_different_credit_account_id"
    exists_with_different_amount = "exists_with_different_amount"
    exists_with_different_code = "exists_with_different_code"
    exists_with_different_metadata = "exists_with_different_metadata"
    exists = "exists"
    # A transient failure of this id was recorded: a retry must not succeed later.
    id_already_failed = "id_already_failed"
    # Ledger state.
    debit_account_not_found = "debit_account_not_found"
    credit_account_not_found = "credit_account_not_found"
    accounts_must_have_the_same_currency = "accounts_must_have_the_same_currency"
    pending_transfer_not_found = "pending_transfer_not_found"
    pending_transfer_not_pending = "pending_transfer_not_pending"
    pending_transfer_has_different_debit_account_id = (
        "pending_transfer_has_different_debit_account_id"
    )
    pending_transfer_has_different_credit_account_id = (
        "pending_transfer_has_different_credit_account_id"
    )
    pending_transfer_has_different_amount = "pending_transfer_has_different_amount"
    exceeds_pending_transfer_amount = "exceeds_pending_transfer_amount"
    pending_transfer_already_posted = "pending_transfer_already_posted"
    pending_transfer_already_voided = "pending_transfer_already_voided"
    pending_transfer_expired = "pending_transfer_expired"
    overflows_debits_pending = "overflows_debits_pending"
    overflows_credits_pending = "overflows_credits_pending"
    overflows_debits_posted = "overflows_debits_posted"
    overflows_credits_posted = "overflows_credits_posted"
    overflows_debits = "overflows_debits"
    overflows_credits = "overflows_credits"
    exceeds_credits = "exceeds_credits"
    exceeds_debits = "exceeds_debits"


_T = CreateTransferResult
# Failures that depend on ledger state rather than on the event itself. The id of a transfer that
# failed this way is remembered, so that a retry after the state changed cannot succeed
# (TigerBeetle's id_already_failed): a retry can never change an outcome.
TRANSIENT_TRANSFER_RESULTS: frozenset[CreateTransferResult] = frozenset(
    {
        _T.debit_account_not_found,
        _T.credit_account_not_found,
        _T.pending_transfer_not_found,
        _T.pending_transfer_expired,
        _T.overflows_debits_pending,
        _T.overflows_credits_pending,
        _T.overflows_debits_posted,
        _T.overflows_credits_posted,
        _T.overflows_debits,
        _T.overflows_credits,
        _T.exceeds_credits,
        _T.exceeds_debits,
    }
)
