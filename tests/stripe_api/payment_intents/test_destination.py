"""Destination charges: the connected account receives the amount minus the application fee,
the platform keeps the application fee minus Farthing's fee; both reconcile with the ledger."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
import sqlalchemy as sa
import stripe

from farthing.db.schema import stripe_accounts, stripe_balance_transactions, tenants
from farthing.stripe_api._request import Partition
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, scope_of
from tests.stripe_api.payment_intents.test_payment_intents import _balance, _fee

# Two platform transactions each (the transfer line, then the charge): more than 500 in all, the
# batch an earlier settlement cut at, which split a pair.
DESTINATION_CHARGES = 260


def _connected(server: Server, platform: Account) -> str:
    """A connected account of the platform in test mode, made directly in the database."""
    account_id = "acct_" + secrets.token_hex(12)
    with server.engine.begin() as connection:
        connection.execute(
            tenants.insert().values(
                id=account_id, name="seller", created_at_ns=time.time_ns(),
                parent_id=platform.id, mode="test",
            )
        )  # fmt: skip
        connection.execute(
            stripe_accounts.insert().values(
                id=account_id, tenant_id=platform.id, mode="test", created=int(time.time()),
                metadata="{}", type="custom", country="US", default_currency="usd",
                charges_enabled=True, payouts_enabled=True,
            )
        )  # fmt: skip
    return account_id


def test_destination_charge_splits_the_money(v1_server: Server, account: Account) -> None:
    seller = _connected(v1_server, account)
    intent = account.test.v1.payment_intents.create(
        params={
            "amount": 10_000,
            "currency": "usd",
            "payment_method": "pm_card_bypassPending",
            "confirm": True,
            "application_fee_amount": 1_000,
            "transfer_data": {"destination": seller},
        }
    )
    assert intent.status == "succeeded"
    charge = account.test.v1.charges.retrieve(str(intent.latest_charge))
    assert charge.transfer is not None
    assert _balance(account) == (1_000 - _fee(10_000), 0)
    seller_scope = Partition(tenant_id=seller, mode="test", platform_id=account.id)
    assert_consistent(v1_server, scope_of(account), seller_scope)
    transfers = account.test.v1.balance_transactions.list(params={"type": "transfer"}).data
    assert [t.amount for t in transfers] == [-9_000]


def test_destination_must_be_own_connected_account(v1_server: Server, account: Account) -> None:
    stranger = _connected(v1_server, account)
    with v1_server.engine.begin() as connection:
        connection.execute(tenants.update().where(tenants.c.id == stranger).values(mode="live"))
    with pytest.raises(stripe.InvalidRequestError) as refused:
        account.test.v1.payment_intents.create(
            params={"amount": 500, "currency": "usd", "transfer_data": {"destination": stranger}}
        )
    assert refused.value.param == "transfer_data[destination]"
    assert_consistent(v1_server, scope_of(account))


def test_everything_due_settles_together(v1_server: Server, account: Account) -> None:
    """More due transactions than any batch: a destination charge's transfer line (recorded
    before its charge line) and the charge must settle in one go, or the settlement takes the
    transfer line's amount from an available balance that does not have it."""
    seller = _connected(v1_server, account)
    first = account.test.v1.payment_intents.create(
        params={"amount": 100, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert first.status == "succeeded"

    def destination_charge(_: int) -> str:
        # The application fee pays exactly Farthing's fee: each charge nets the platform 0.
        return account.test.v1.payment_intents.create(
            params={
                "amount": 1_000,
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": True,
                "application_fee_amount": _fee(1_000),
                "transfer_data": {"destination": seller},
            }
        ).status

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(destination_charge, range(DESTINATION_CHARGES))) == {"succeeded"}
    platform, seller_scope = scope_of(account), Partition(seller, "test", account.id)
    assert _balance(account) == (0, 100 - _fee(100))
    with v1_server.engine.begin() as connection:
        # Time passes: every pending transaction of both accounts comes due.
        connection.execute(
            stripe_balance_transactions.update()
            .where(stripe_balance_transactions.c.tenant_id.in_([account.id, seller]))
            .values(available_on=stripe_balance_transactions.c.available_on - 10**6)
        )
    assert _balance(account) == (100 - _fee(100), 0)
    assert_consistent(v1_server, platform, seller_scope)
    with v1_server.engine.connect() as connection:
        statuses = connection.execute(
            sa.select(stripe_balance_transactions.c.status)
            .where(stripe_balance_transactions.c.tenant_id == account.id)
            .distinct()
        ).scalars()
        assert set(statuses) == {"available"}
    later = account.test.v1.payment_intents.create(
        params={"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}
    )
    assert later.status == "succeeded"
    assert_consistent(v1_server, platform, seller_scope)


@pytest.mark.parametrize("application_fee", [None, 0, 59 - 1])
def test_an_application_fee_below_farthings_fee_is_refused_up_front(
    v1_server: Server, account: Account, application_fee: int | None
) -> None:
    """The platform pays Farthing's fee out of the application fee; less would leave it owing,
    so the intent is refused when made, before any card is asked."""
    seller = _connected(v1_server, account)
    assert _fee(1_000) == 59
    params: dict[str, Any] = {
        "amount": 1_000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        "transfer_data": {"destination": seller},
    }  # fmt: skip
    if application_fee is not None:
        params["application_fee_amount"] = application_fee
    with pytest.raises(stripe.InvalidRequestError) as refused:
        account.test.v1.payment_intents.create(params=cast("Any", params))
    assert refused.value.param == "application_fee_amount"
    assert account.test.v1.payment_intents.list().data == []
    assert_consistent(v1_server, scope_of(account))


def test_the_application_fee_never_exceeds_what_is_charged(
    v1_server: Server, account: Account
) -> None:
    seller = _connected(v1_server, account)
    params: dict[str, Any] = {
        "amount": 5_000, "currency": "usd", "payment_method": "pm_card_visa",
        "capture_method": "manual", "application_fee_amount": 4_000,
        "transfer_data": {"destination": seller},
    }  # fmt: skip
    intent = account.test.v1.payment_intents.create(params=cast("Any", params))
    with pytest.raises(stripe.InvalidRequestError) as lowered:
        account.test.v1.payment_intents.update(intent.id, params={"amount": 1_000})
    assert lowered.value.param == "amount"
    assert account.test.v1.payment_intents.retrieve(intent.id).amount == 5_000
    held = account.test.v1.payment_intents.confirm(intent.id)
    assert held.status == "requires_capture"
    with pytest.raises(stripe.InvalidRequestError) as short:
        account.test.v1.payment_intents.capture(intent.id, params={"amount_to_capture": 3_999})
    assert short.value.param == "amount_to_capture"
    assert account.test.v1.payment_intents.retrieve(intent.id).status == "requires_capture"
    captured = account.test.v1.payment_intents.capture(
        intent.id, params={"amount_to_capture": 4_500}
    )
    assert captured.status == "succeeded"
    seller_scope = Partition(seller, "test", account.id)
    transfers = account.test.v1.transfers.list(params={"destination": seller}).data
    assert [t.amount for t in transfers] == [500]
    assert_consistent(v1_server, scope_of(account), seller_scope)


def _come_due(server: Server, account: Account, intent: stripe.PaymentIntent) -> None:
    """Time passes for one charge: its transactions, and its transfer's on both sides, are due
    (other charges made in the same second stay pending)."""
    charge = account.test.v1.charges.retrieve(str(intent.latest_charge))
    due = [str(charge.balance_transaction)]
    if charge.transfer is not None:
        transfer = account.test.v1.transfers.retrieve(str(charge.transfer))
        due.append(str(transfer.balance_transaction))
    txns = stripe_balance_transactions.c
    with server.engine.begin() as connection:
        if charge.transfer is not None:
            payment = sa.select(txns.id).where(txns.source_id == transfer.destination_payment)
            due.extend(connection.execute(payment).scalars())
        connection.execute(
            stripe_balance_transactions.update().where(txns.id.in_(due)).values(available_on=1)
        )


def test_refunding_a_pending_destination_charge_leaves_other_charges_settleable(
    v1_server: Server, account: Account
) -> None:
    """A destination charge's pending group holds only the application fee less Farthing's fee.
    A refund without reverse_transfer must not borrow the rest from other pending charges: when
    one of those came due first, no settlement could go through (every balance read, payout and
    transfer failed until the destination charge came due too)."""
    seller = _connected(v1_server, account)

    def pay(method: str, **extra: Any) -> stripe.PaymentIntent:
        params = {"amount": 10_000, "currency": "usd", "payment_method": method, "confirm": True}
        return account.test.v1.payment_intents.create(params=cast("Any", params | extra))

    pay("pm_card_bypassPending", amount=20_000)
    other = pay("pm_card_visa")
    destination = pay(
        "pm_card_visa", application_fee_amount=1_000, transfer_data={"destination": seller}
    )
    left_pending = 1_000 - _fee(10_000)
    assert _balance(account) == (20_000 - _fee(20_000), 10_000 - _fee(10_000) + left_pending)
    refund = account.test.v1.refunds.create(params={"payment_intent": destination.id})
    # The charge's group could not cover it: taken from what is available.
    after_refund = 20_000 - _fee(20_000) - (10_000 - _fee(10_000))
    assert _balance(account) == (after_refund, 10_000 - _fee(10_000) + left_pending)
    refund_txn = account.test.v1.balance_transactions.retrieve(str(refund.balance_transaction))
    assert refund_txn.status == "available"
    platform, seller_scope = scope_of(account), Partition(seller, "test", account.id)
    assert_consistent(v1_server, platform, seller_scope)

    _come_due(v1_server, account, other)
    assert _balance(account) == (after_refund + 10_000 - _fee(10_000), left_pending)
    transfer = {"amount": 100, "currency": "usd", "destination": seller}
    account.test.v1.transfers.create(params=cast("Any", transfer))
    assert_consistent(v1_server, platform, seller_scope)

    _come_due(v1_server, account, destination)
    assert _balance(account) == (after_refund + 10_000 - _fee(10_000) - 100 + left_pending, 0)
    assert_consistent(v1_server, platform, seller_scope)
