"""/v1/refunds end to end: partial and full refunds, the pro-rata fee return, refunds of
pending and of available funds, over-refunds refused; the ledger reconciles after each step."""

from __future__ import annotations

from typing import Any, cast

import pytest
import stripe

from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, scope_of
from tests.stripe_api.payment_intents.test_payment_intents import _balance, _fee, _pay


def _refund(account: Account, **params: Any) -> stripe.Refund:
    return account.test.v1.refunds.create(params=cast("Any", params))


@pytest.mark.parametrize("preset", ["pm_card_visa", "pm_card_bypassPending"])
def test_partial_then_full_refund_returns_the_whole_fee(
    v1_server: Server, account: Account, preset: str
) -> None:
    intent = _pay(account, preset, amount=10_000)
    charge_id = cast("str", intent.latest_charge)
    fee = _fee(10_000)
    first = _refund(account, payment_intent=intent.id, amount=2_500, reason="requested_by_customer")
    assert first.id.startswith("re_")
    assert (first.status, first.amount, first.charge) == ("succeeded", 2_500, charge_id)
    txn = account.test.v1.balance_transactions.retrieve(cast("str", first.balance_transaction))
    assert (txn.type, txn.amount, txn.fee) == ("refund", -2_500, -(fee * 2_500 // 10_000))
    assert txn.net == txn.amount - txn.fee
    assert_consistent(v1_server, scope_of(account))
    second = _refund(account, charge=charge_id)  # The rest.
    assert second.amount == 7_500
    charge = account.test.v1.charges.retrieve(charge_id)
    assert (charge.amount_refunded, charge.refunded) == (10_000, True)
    # Everything went back to the cardholder, the fee included: the balance is zero again.
    assert _balance(account) == (0, 0)
    with pytest.raises(stripe.InvalidRequestError) as again:
        _refund(account, charge=charge_id, amount=1)
    assert again.value.code == "charge_already_refunded"
    refunds = account.test.v1.refunds.list(params={"charge": charge_id}).data
    assert [refund.id for refund in refunds] == [second.id, first.id]
    assert_consistent(v1_server, scope_of(account))


def test_refund_of_a_partial_capture_is_bounded_by_the_captured_amount(
    v1_server: Server, account: Account
) -> None:
    intent = _pay(account, "pm_card_visa", amount=1_000, capture_method="manual")
    with pytest.raises(stripe.InvalidRequestError):
        _refund(account, payment_intent=intent.id)  # Not captured yet.
    account.test.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 700})
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        _refund(account, payment_intent=intent.id, amount=701)
    assert too_much.value.code == "amount_too_large"
    refund = _refund(account, payment_intent=intent.id)
    assert refund.amount == 700
    assert _balance(account) == (0, 0)
    assert_consistent(v1_server, scope_of(account))


def test_refund_needs_funds_once_they_left(v1_server: Server, account: Account) -> None:
    """Available funds can be refunded; the merchant's balance never goes below zero."""
    paid = _pay(account, "pm_card_bypassPending", amount=4_000)
    updated = _refund(account, payment_intent=paid.id, amount=1_000, metadata={"ticket": "9"})
    fetched = account.test.v1.refunds.update(updated.id, params={"metadata": {"ticket": "10"}})
    assert fetched.metadata is not None
    assert fetched.metadata.to_dict() == {"ticket": "10"}
    available, pending = _balance(account)
    assert pending == 0
    assert available == 4_000 - _fee(4_000) - (1_000 - _fee(4_000) * 1_000 // 4_000)
    assert_consistent(v1_server, scope_of(account))


def test_refund_errors(v1_server: Server, account: Account) -> None:
    with pytest.raises(stripe.InvalidRequestError):
        _refund(account)
    with pytest.raises(stripe.InvalidRequestError):
        _refund(account, charge="ch_missing")
    with pytest.raises(stripe.InvalidRequestError):
        _refund(account, charge="ch_x", reason="because")
    declined = None
    with pytest.raises(stripe.CardError) as error:
        _pay(account, "pm_card_chargeDeclined")
    declined = error.value.error.payment_intent if error.value.error else None
    assert declined is not None
    with pytest.raises(stripe.InvalidRequestError):
        _refund(account, charge=cast("str", declined.latest_charge))
    assert account.test.v1.refunds.list().data == []
    assert_consistent(v1_server, scope_of(account))


def test_idempotent_refund_refunds_once(v1_server: Server, account: Account) -> None:
    intent = _pay(account, "pm_card_visa", amount=3_000)
    options: stripe.RequestOptions = {"idempotency_key": "refund-once"}
    params: Any = {"payment_intent": intent.id, "amount": 1_000}
    first = account.test.v1.refunds.create(params=params, options=options)
    again = account.test.v1.refunds.create(params=params, options=options)
    assert first.id == again.id
    charge = account.test.v1.charges.retrieve(cast("str", intent.latest_charge))
    assert charge.amount_refunded == 1_000
    assert_consistent(v1_server, scope_of(account))
