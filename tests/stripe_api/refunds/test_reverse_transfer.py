"""Refunds of destination charges with ``reverse_transfer``: the connected account's share comes
back in proportion to each refund, linked both ways, all or nothing; the ledger reconciles."""

from __future__ import annotations

from typing import Any, cast

import pytest
import sqlalchemy as sa
import stripe

from farthing.db.schema import ledger_journal as journal
from farthing.stripe_api._request import Partition
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, scope_of
from tests.stripe_api.transfers.conftest import balance, connected, fee, fund

AMOUNT = 10_000
APPLICATION_FEE = 1_000
SHARE = AMOUNT - APPLICATION_FEE
BANK = {
    "object": "bank_account", "country": "US", "currency": "usd",
    "account_number": "000123456789", "routing_number": "110000000",
}  # fmt: skip


def _destination_charge(account: Account, seller: Partition) -> stripe.Charge:
    params = {
        "amount": AMOUNT, "currency": "usd", "payment_method": "pm_card_bypassPending",
        "confirm": True, "application_fee_amount": APPLICATION_FEE,
        "transfer_data": {"destination": seller.tenant_id},
    }  # fmt: skip
    intent = account.test.v1.payment_intents.create(params=cast("Any", params))
    return account.test.v1.charges.retrieve(str(intent.latest_charge))


def _journal_entries(server: Server) -> int:
    with server.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(journal)).scalar_one())


def _refund(account: Account, **params: Any) -> stripe.Refund:
    return account.test.v1.refunds.create(params=cast("Any", params))


def test_refunds_reverse_the_transfer_in_proportion(v1_server: Server, account: Account) -> None:
    seller = connected(v1_server, account)
    charge = _destination_charge(account, seller)
    platform = scope_of(account)
    assert balance(v1_server, seller) == (SHARE, 0)
    assert balance(v1_server, platform) == (APPLICATION_FEE - fee(AMOUNT), 0)
    entries = _journal_entries(v1_server)
    first = _refund(account, charge=charge.id, amount=2_500, reverse_transfer=True)
    # The reversal and the refund are one post to the ledger (one journal entry): the effect
    # locks its accounts together, in one order, as every other payments effect does.
    assert _journal_entries(v1_server) == entries + 1
    transfer = account.test.v1.transfers.retrieve(str(charge.transfer))
    (reversal,) = transfer.reversals.data
    assert first.transfer_reversal == reversal.id
    assert (reversal.amount, reversal.source_refund) == (SHARE * 2_500 // AMOUNT, first.id)
    assert transfer.amount_reversed == 2_250
    expanded = account.test.v1.refunds.retrieve(first.id, params={"expand": ["transfer_reversal"]})
    assert cast("Any", expanded.transfer_reversal).amount == 2_250
    back = account.test.v1.transfers.reversals.retrieve(
        transfer.id, reversal.id, params={"expand": ["source_refund"]}
    )
    assert cast("Any", back.source_refund).id == first.id
    assert balance(v1_server, seller) == (SHARE - 2_250, 0)
    assert_consistent(v1_server, platform, seller)
    # 33 of 10,000: 29.7 of the share, rounded down to 29; the rest catches the remainder up.
    small = _refund(account, charge=charge.id, amount=33, reverse_transfer=True)
    small_reversal = account.test.v1.transfers.reversals.retrieve(
        str(charge.transfer), str(small.transfer_reversal)
    )
    assert small_reversal.amount == SHARE * 2_533 // AMOUNT - 2_250
    rest = _refund(account, charge=charge.id, reverse_transfer=True)
    assert rest.amount == AMOUNT - 2_533
    transfer = account.test.v1.transfers.retrieve(str(charge.transfer))
    assert (transfer.amount_reversed, transfer.reversed) == (SHARE, True)
    # Everything went back: the seller's share, the platform's fee and Farthing's fee.
    assert balance(v1_server, seller) == (0, 0)
    assert balance(v1_server, platform) == (0, 0)
    events = [e.type for e in account.test.v1.events.list(params={"limit": 100}).data]
    assert events.count("transfer.reversed") == 3
    assert_consistent(v1_server, platform, seller)


def test_without_reverse_transfer_the_platform_pays_the_refund(
    v1_server: Server, account: Account
) -> None:
    seller = connected(v1_server, account)
    charge = _destination_charge(account, seller)
    fund(account, 20_000)  # So that the platform can cover the whole refund itself.
    before = balance(v1_server, scope_of(account))
    refund = _refund(account, charge=charge.id, amount=4_000)
    assert refund.transfer_reversal is None
    assert balance(v1_server, seller) == (SHARE, 0)
    fee_back = fee(AMOUNT) * 4_000 // AMOUNT
    assert balance(v1_server, scope_of(account)) == (before[0] - (4_000 - fee_back), 0)
    assert_consistent(v1_server, scope_of(account), seller)


def test_reverse_transfer_needs_a_destination_charge(v1_server: Server, account: Account) -> None:
    fund(account)
    (charge,) = account.test.v1.charges.list().data
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _refund(account, charge=charge.id, reverse_transfer=True)
    assert refused.value.param == "reverse_transfer"
    assert account.test.v1.charges.retrieve(charge.id).amount_refunded == 0
    assert account.test.v1.refunds.list().data == []
    assert_consistent(v1_server, scope_of(account))


def test_a_seller_without_the_funds_refuses_the_whole_refund(
    v1_server: Server, account: Account
) -> None:
    seller = connected(v1_server, account)
    charge = _destination_charge(account, seller)
    fund(account, 20_000)  # The platform could pay the refund itself: the seller is the limit.
    # The seller pays most of its share out to its bank.
    account.test.v1.accounts.external_accounts.create(
        seller.tenant_id, params=cast("Any", {"external_account": BANK})
    )
    as_seller = cast("Any", {"stripe_account": seller.tenant_id})
    account.test.v1.payouts.create(
        params={"amount": SHARE - 100, "currency": "usd"}, options=as_seller
    )
    before = (balance(v1_server, seller), balance(v1_server, scope_of(account)))
    with pytest.raises(stripe.InvalidRequestError) as refused:
        _refund(account, charge=charge.id, amount=5_000, reverse_transfer=True)
    assert refused.value.code == "balance_insufficient"
    # Nothing happened: no refund, no reversal, balances as they were.
    assert account.test.v1.charges.retrieve(charge.id).amount_refunded == 0
    assert account.test.v1.refunds.list().data == []
    assert account.test.v1.transfers.retrieve(str(charge.transfer)).amount_reversed == 0
    assert (balance(v1_server, seller), balance(v1_server, scope_of(account))) == before
    # A refund small enough for what the seller has left goes through.
    refund = _refund(account, charge=charge.id, amount=100, reverse_transfer=True)
    assert refund.transfer_reversal is not None
    assert balance(v1_server, seller) == (100 - SHARE * 100 // AMOUNT, 0)
    assert_consistent(v1_server, scope_of(account), seller)


def test_a_transfer_reversed_by_hand_caps_what_refunds_reverse(
    v1_server: Server, account: Account
) -> None:
    seller = connected(v1_server, account)
    charge = _destination_charge(account, seller)
    account.test.v1.transfers.reversals.create(str(charge.transfer), params={"amount": 8_000})
    refund = _refund(account, charge=charge.id, reverse_transfer=True)
    reversal = account.test.v1.transfers.reversals.retrieve(
        str(charge.transfer), str(refund.transfer_reversal)
    )
    assert reversal.amount == SHARE - 8_000  # What was left to reverse, not the whole share.
    assert balance(v1_server, seller) == (0, 0)
    assert_consistent(v1_server, scope_of(account), seller)
