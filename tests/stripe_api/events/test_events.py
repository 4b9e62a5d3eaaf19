"""/v1/events: every state change emits an event in the change's own transaction, with the object
as of the change; events are scoped like every object, filterable and paginated."""

from __future__ import annotations

from typing import Any, cast

import pytest
import stripe

from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, new_account, scope_of
from tests.stripe_api.payment_intents.test_payment_intents import _pay
from tests.stripe_api.transfers.conftest import connected, fund


def _types(account: Account, **params: Any) -> list[str]:
    listed = account.test.v1.events.list(params=cast("Any", {"limit": 100} | params))
    return [event.type for event in listed.auto_paging_iter()]


def test_a_payment_emits_its_events_in_order(v1_server: Server, account: Account) -> None:
    intent = _pay(account, "pm_card_visa", amount=2_000)
    assert _types(account) == [
        "payment_intent.succeeded",
        "charge.succeeded",
        "payment_intent.created",
    ]
    newest = account.test.v1.events.list(params={"limit": 1}).data[0]
    assert newest.id.startswith("evt_")
    assert newest.livemode is False
    obj = cast("dict[str, Any]", newest.data.object)
    assert (obj["id"], obj["status"], obj["amount_received"]) == (intent.id, "succeeded", 2_000)
    created = account.test.v1.events.list(params={"type": "payment_intent.created"}).data[0]
    # The object as of the change: the intent had just been created, unconfirmed.
    assert cast("dict[str, Any]", created.data.object)["status"] == "requires_confirmation"
    fetched = account.test.v1.events.retrieve(newest.id)
    assert fetched.to_dict() == newest.to_dict()
    assert _types(account, types=["charge.*"]) == ["charge.succeeded"]
    assert_consistent(v1_server, scope_of(account))


def test_declines_refunds_and_settlement(v1_server: Server, account: Account) -> None:
    with pytest.raises(stripe.CardError):
        _pay(account, "pm_card_chargeDeclined")
    # The decline is answered with an error, but its state change committed with its events.
    assert _types(account, types=["charge.failed", "payment_intent.payment_failed"]) == [
        "payment_intent.payment_failed",
        "charge.failed",
    ]
    paid = _pay(account, "pm_card_bypassPending", amount=3_000)
    assert "balance.available" in _types(account)
    account.test.v1.refunds.create(params={"payment_intent": paid.id, "amount": 500})
    assert _types(account)[:2] == ["refund.created", "charge.refunded"]
    refunded = account.test.v1.events.list(params={"type": "charge.refunded"}).data[0]
    assert cast("dict[str, Any]", refunded.data.object)["amount_refunded"] == 500
    refund = account.test.v1.refunds.list().data[0]
    account.test.v1.refunds.update(refund.id, params={"metadata": {"ticket": "7"}})
    updated = account.test.v1.events.list(params={"type": "refund.updated"}).data[0]
    assert updated.data.previous_attributes is not None
    assert updated.data.previous_attributes.to_dict() == {"metadata": {}}
    assert_consistent(v1_server, scope_of(account))


def test_updates_carry_previous_attributes(account: Account) -> None:
    customer = account.test.v1.customers.create(params={"email": "old@example.com"})
    account.test.v1.customers.update(customer.id, params={"email": "new@example.com"})
    updated = account.test.v1.events.list(params={"type": "customer.updated"}).data[0]
    assert updated.data.previous_attributes is not None
    assert updated.data.previous_attributes.to_dict() == {"email": "old@example.com"}
    assert cast("dict[str, Any]", updated.data.object)["email"] == "new@example.com"
    # An update that changes nothing is no event.
    account.test.v1.customers.update(customer.id, params={"email": "new@example.com"})
    assert _types(account, type="customer.updated") == ["customer.updated"]


def test_refused_requests_emit_nothing(v1_server: Server, account: Account) -> None:
    intent = _pay(account, "pm_card_visa", amount=1_000, capture_method="manual")
    before = _types(account)
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 5_000})
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.refunds.create(params={"payment_intent": intent.id})
    assert _types(account) == before
    assert before[0] == "payment_intent.amount_capturable_updated"
    account.test.v1.payment_intents.capture(intent.id)
    assert _types(account)[:2] == ["payment_intent.succeeded", "charge.captured"]
    assert_consistent(v1_server, scope_of(account))


def test_events_are_scoped_to_account_and_mode(v1_server: Server, account: Account) -> None:
    account.test.v1.customers.create(params={"email": "a@example.com"})
    event = account.test.v1.events.list().data[0]
    stranger = new_account(v1_server)
    with pytest.raises(stripe.InvalidRequestError):
        stranger.test.v1.events.retrieve(event.id)
    with pytest.raises(stripe.InvalidRequestError):
        account.live.v1.events.retrieve(event.id)
    assert stranger.test.v1.events.list().data == []
    assert account.live.v1.events.list().data == []
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.events.list(params={"type": "customer.created", "types": ["x.y"]})


def test_transfers_emit_events(v1_server: Server, account: Account) -> None:
    seller = connected(v1_server, account)
    fund(account)
    transfer = account.test.v1.transfers.create(
        params={"amount": 1_000, "currency": "usd", "destination": seller.tenant_id}
    )
    account.test.v1.transfers.reversals.create(transfer.id, params={"amount": 400})
    assert _types(account, types=["transfer.*"]) == ["transfer.reversed", "transfer.created"]
    reversed_event = account.test.v1.events.list(params={"type": "transfer.reversed"}).data[0]
    assert cast("dict[str, Any]", reversed_event.data.object)["amount_reversed"] == 400
    assert_consistent(v1_server, scope_of(account), seller)


@pytest.mark.parametrize(
    ("number", "outcome"), [("000123456789", "payout.paid"), ("000111111116", "payout.failed")]
)
def test_payouts_emit_events(
    v1_server: Server, account: Account, number: str, outcome: str
) -> None:
    fund(account)
    bank = account.test.v1.accounts.external_accounts.create(
        account.id,
        params=cast(
            "Any",
            {
                "external_account": {
                    "object": "bank_account", "country": "US", "currency": "usd",
                    "account_number": number, "routing_number": "110000000",
                }
            },
        ),
    )  # fmt: skip
    payout = account.test.v1.payouts.create(
        params={"amount": 1_000, "currency": "usd", "destination": bank.id}
    )
    account.test.v1.payouts.retrieve(payout.id)  # The simulated rail moves on as it is read.
    assert _types(account, types=["payout.*"]) == [outcome, "payout.created"]
    assert_consistent(v1_server, scope_of(account))
