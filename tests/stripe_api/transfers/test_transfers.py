"""Transfers from a platform's available balance to its connected accounts, and reversals:
each scenario ends with the ledger verified and every involved balance reconciled."""

from __future__ import annotations

from typing import Any, cast

import pytest
import sqlalchemy as sa
import stripe

from farthing.db.schema import stripe_balance_transactions as transactions
from farthing.db.schema import stripe_transfers
from farthing.stripe_api._request import Partition
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, scope_of
from tests.stripe_api.transfers.conftest import balance, connected, fee, fund


def _transfer(account: Account, seller: Partition, amount: int, **extra: Any) -> stripe.Transfer:
    params = {"amount": amount, "currency": "usd", "destination": seller.tenant_id} | extra
    return account.test.v1.transfers.create(params=cast("Any", params))


def _types(server: Server, scope: Partition) -> list[tuple[str, int, str]]:
    with server.engine.connect() as connection:
        rows = connection.execute(
            sa.select(transactions.c.type, transactions.c.amount, transactions.c.status)
            .where(transactions.c.tenant_id == scope.tenant_id, transactions.c.mode == scope.mode)
            .order_by(transactions.c.seq)
        ).all()
    return [(row.type, row.amount, row.status) for row in rows]


def test_transfer_moves_available_funds(v1_server: Server, account: Account) -> None:
    seller = connected(v1_server, account)
    available = fund(account)
    transfer = _transfer(
        account, seller, 2_500, metadata={"order": "42"}, transfer_group="ORDER42",
        description="seller share",
    )  # fmt: skip
    assert transfer.id.startswith("tr_")
    assert transfer.object == "transfer"
    assert (transfer.amount, transfer.currency, transfer.destination) == (
        2_500,
        "usd",
        seller.tenant_id,
    )
    assert transfer.amount_reversed == 0
    assert transfer.reversed is False
    assert transfer.livemode is False
    assert transfer.metadata.to_dict() == {"order": "42"}
    assert transfer.transfer_group == "ORDER42"
    assert str(transfer.destination_payment).startswith("py_")
    assert transfer.reversals.data == []
    assert transfer.reversals.url == f"/v1/transfers/{transfer.id}/reversals"
    assert balance(v1_server, scope_of(account)) == (available - 2_500, 0)
    assert balance(v1_server, seller) == (2_500, 0)
    assert _types(v1_server, seller) == [("payment", 2_500, "available")]
    as_seller = cast("Any", {"stripe_account": seller.tenant_id})
    seller_balance = account.test.v1.balance.retrieve(options=as_seller)
    assert [(b.amount, b.currency) for b in seller_balance.available] == [(2_500, "usd")]
    platform_txn = account.test.v1.balance_transactions.retrieve(str(transfer.balance_transaction))
    assert (platform_txn.type, platform_txn.amount, platform_txn.source) == (
        "transfer", -2_500, transfer.id,
    )  # fmt: skip
    assert platform_txn.reporting_category == "transfer"
    again = account.test.v1.transfers.retrieve(transfer.id)
    assert again.to_dict() == transfer.to_dict()
    updated = account.test.v1.transfers.update(
        transfer.id, params={"metadata": {"order": ""}, "description": "changed"}
    )
    assert updated.metadata.to_dict() == {}
    assert updated.description == "changed"
    assert_consistent(v1_server, scope_of(account), seller)


def test_insufficient_funds_change_nothing(v1_server: Server, account: Account) -> None:
    seller = connected(v1_server, account)
    available = fund(account, 1_000)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _transfer(account, seller, available + 1)
    assert refused.value.code == "balance_insufficient"
    assert balance(v1_server, scope_of(account)) == (available, 0)
    assert balance(v1_server, seller) == (0, 0)
    assert _types(v1_server, seller) == []
    assert account.test.v1.transfers.list().data == []
    assert_consistent(v1_server, scope_of(account), seller)


def test_destination_must_be_a_connected_account(v1_server: Server, account: Account) -> None:
    fund(account, 1_000)
    other = connected(v1_server, account, mode="live")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _transfer(account, other, 100)
    assert refused.value.param == "destination"
    with pytest.raises(stripe.InvalidRequestError):
        account.test.v1.transfers.retrieve("tr_missing")
    assert_consistent(v1_server, scope_of(account))


def test_list_pages_and_filters(v1_server: Server, account: Account) -> None:
    seller, other = connected(v1_server, account), connected(v1_server, account)
    fund(account, 10_000)
    made = [_transfer(account, seller if i % 2 else other, 100 + i).id for i in range(7)]
    walked = [t.id for t in account.test.v1.transfers.list(params={"limit": 2}).auto_paging_iter()]
    assert walked == made[::-1]
    to_seller = account.test.v1.transfers.list(params={"destination": seller.tenant_id})
    assert [t.id for t in to_seller.data] == made[1::2][::-1]
    assert_consistent(v1_server, scope_of(account), seller, other)


def test_idempotent_replay_transfers_once(v1_server: Server, account: Account) -> None:
    seller = connected(v1_server, account)
    available = fund(account)
    params = cast("Any", {"amount": 700, "currency": "usd", "destination": seller.tenant_id})
    options = cast("Any", {"idempotency_key": "transfer-once"})
    first = account.test.v1.transfers.create(params=params, options=options)
    second = account.test.v1.transfers.create(params=params, options=options)
    assert first.id == second.id
    with v1_server.engine.connect() as connection:
        count = connection.execute(
            sa.select(sa.func.count()).where(stripe_transfers.c.tenant_id == account.id)
        ).scalar_one()
    assert count == 1
    assert balance(v1_server, scope_of(account)) == (available - 700, 0)
    assert balance(v1_server, seller) == (700, 0)
    assert_consistent(v1_server, scope_of(account), seller)


def test_reversals_partial_full_and_over(v1_server: Server, account: Account) -> None:
    seller = connected(v1_server, account)
    available = fund(account)
    transfer = _transfer(account, seller, 1_000)
    reversals = account.test.v1.transfers.reversals
    partial = reversals.create(transfer.id, params={"amount": 300, "metadata": {"why": "part"}})
    assert partial.id.startswith("trr_")
    assert (partial.object, partial.amount, partial.transfer) == (
        "transfer_reversal",
        300,
        transfer.id,
    )
    assert balance(v1_server, scope_of(account)) == (available - 700, 0)
    assert balance(v1_server, seller) == (700, 0)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        reversals.create(transfer.id, params={"amount": 701})
    assert refused.value.param == "amount"
    rest = reversals.create(transfer.id)
    assert rest.amount == 700
    after = account.test.v1.transfers.retrieve(transfer.id)
    assert (after.amount_reversed, after.reversed) == (1_000, True)
    assert [r.id for r in after.reversals.data] == [rest.id, partial.id]
    with pytest.raises(stripe.InvalidRequestError):
        reversals.create(transfer.id, params={"amount": 1})
    listed = reversals.list(transfer.id, params={"limit": 1}).auto_paging_iter()
    assert [r.id for r in listed] == [rest.id, partial.id]
    assert cast("Any", reversals.retrieve(transfer.id, partial.id).metadata).to_dict() == {
        "why": "part"
    }
    assert balance(v1_server, scope_of(account)) == (available, 0)
    assert balance(v1_server, seller) == (0, 0)
    assert [t[0] for t in _types(v1_server, seller)] == [
        "payment",
        "payment_refund",
        "payment_refund",
    ]
    refund_txn = account.test.v1.balance_transactions.retrieve(str(partial.balance_transaction))
    assert (refund_txn.type, refund_txn.amount) == ("transfer_refund", 300)
    assert refund_txn.reporting_category == "transfer_reversal"
    assert_consistent(v1_server, scope_of(account), seller)


def test_destination_charge_transfer_is_listed_and_reversible(
    v1_server: Server, account: Account
) -> None:
    """A destination charge's transfer is a transfer like any other; while its funds are
    pending, the reversal moves pending funds back."""
    seller = connected(v1_server, account)
    params = {
        "amount": 5_000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
        "application_fee_amount": 500, "transfer_data": {"destination": seller.tenant_id},
    }  # fmt: skip
    intent = account.test.v1.payment_intents.create(params=cast("Any", params))
    charge = account.test.v1.charges.retrieve(str(intent.latest_charge))
    transfer = account.test.v1.transfers.retrieve(str(charge.transfer))
    assert (transfer.amount, transfer.source_transaction) == (4_500, charge.id)
    assert [t.id for t in account.test.v1.transfers.list().data] == [transfer.id]
    reversal = account.test.v1.transfers.reversals.create(transfer.id, params={"amount": 1_500})
    assert reversal.amount == 1_500
    assert balance(v1_server, seller) == (0, 3_000)
    assert balance(v1_server, scope_of(account)) == (0, 5_000 - fee(5_000) - 3_000)
    assert_consistent(v1_server, scope_of(account), seller)
