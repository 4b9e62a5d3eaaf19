"""Many clients paying, capturing, refunding and transferring at once against one server on
PostgreSQL and SQLite: totals are conserved, no balance goes below zero, each effect happens
exactly once."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import stripe

from farthing.stripe_api._request import Partition
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, scope_of
from tests.stripe_api.payment_intents.test_payment_intents import _balance, _fee

CLIENTS = 8
PAYMENTS_PER_CLIENT = 6


def _client_run(account: Account, seed: int, seller: str) -> tuple[int, int]:
    """Pay, sometimes capture manually, sometimes refund (twice with one key), sometimes transfer
    to a connected account; returns what this client added to the platform and to the seller."""
    rng = random.Random(seed)
    kept = sent = 0
    for n in range(PAYMENTS_PER_CLIENT):
        amount = rng.randrange(500, 5_000)
        manual = rng.random() < 0.5
        params: Any = {
            "amount": amount,
            "currency": "usd",
            "payment_method": "pm_card_bypassPending",
            "confirm": True,
            "capture_method": "manual" if manual else "automatic",
        }
        key: stripe.RequestOptions = {"idempotency_key": f"pay-{seed}-{n}"}
        intent = account.test.v1.payment_intents.create(params=params, options=key)
        if manual:
            intent = account.test.v1.payment_intents.capture(intent.id)
        fee = _fee(amount)
        refund = rng.randrange(0, amount) if rng.random() < 0.5 else 0
        if refund:
            options: stripe.RequestOptions = {"idempotency_key": f"refund-{seed}-{n}"}
            refund_params: Any = {"payment_intent": intent.id, "amount": refund}
            first = account.test.v1.refunds.create(params=refund_params, options=options)
            again = account.test.v1.refunds.create(params=refund_params, options=options)
            assert first.id == again.id
            fee -= fee * refund // amount
        kept += amount - refund - fee
        if rng.random() < 0.5:
            sent += _transfer(account, seller, rng.randrange(1, 2_000), f"tr-{seed}-{n}")
    return kept - sent, sent


def _transfer(account: Account, seller: str, amount: int, key: str) -> int:
    """Move funds to the seller; another client may have spent them first (then nothing moves)."""
    params: Any = {"amount": amount, "currency": "usd", "destination": seller}
    try:
        account.test.v1.transfers.create(params=params, options={"idempotency_key": key})
    except stripe.InvalidRequestError as error:
        if error.code != "balance_insufficient":
            raise
        return 0
    return amount


def test_concurrent_payments_refunds_and_transfers(v1_server: Server, account: Account) -> None:
    seller = account.test.v1.accounts.create(params={"type": "custom", "country": "US"}).id
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda seed: _client_run(account, seed, seller), range(CLIENTS)))
    expected = sum(platform for platform, _sent in results)
    sent = sum(to_seller for _platform, to_seller in results)
    transfers = list(account.test.v1.transfers.list(params={"limit": 100}).auto_paging_iter())
    assert sent > 0  # Transfers ran concurrently with the payments, not only refusals.
    assert sum(t.amount for t in transfers) == sent
    charges = list(account.test.v1.charges.list(params={"limit": 100}).auto_paging_iter())
    assert len(charges) == CLIENTS * PAYMENTS_PER_CLIENT
    assert _balance(account) == (expected, 0)
    refunds = list(account.test.v1.refunds.list(params={"limit": 100}).auto_paging_iter())
    assert sum(r.amount for r in refunds) == sum(c.amount_refunded for c in charges)
    assert all(c.amount_refunded <= c.amount_captured for c in charges)
    seller_balance = account.test.v1.balance.retrieve(options={"stripe_account": seller})
    assert [entry.amount for entry in seller_balance.available] == [sent]
    seller_scope = Partition(tenant_id=seller, mode="test", platform_id=account.id)
    assert_consistent(v1_server, scope_of(account), seller_scope)


STAMPEDE = 50


def test_fifty_identical_payments_charge_once(v1_server: Server, account: Account) -> None:
    """Fifty concurrent requests with one Idempotency-Key: one intent, one charge, one movement;
    the others get the same intent replayed or 409 while the first is still executing."""
    start = threading.Barrier(STAMPEDE)
    options: stripe.RequestOptions = {"idempotency_key": "stampede-pay"}
    params: Any = {
        "amount": 4_200,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "confirm": True,
    }

    def pay() -> str | None:
        start.wait()
        try:
            return account.test.v1.payment_intents.create(params=params, options=options).id
        except stripe.APIError as error:  # 409: the first request was still executing.
            if error.http_status != 409:
                raise
            return None

    with ThreadPoolExecutor(STAMPEDE) as pool:
        results = list(pool.map(lambda _: pay(), range(STAMPEDE)))
    ids = {result for result in results if result is not None}
    assert len(ids) == 1
    assert len(account.test.v1.charges.list().data) == 1
    assert _balance(account) == (0, 4_200 - _fee(4_200))
    assert_consistent(v1_server, scope_of(account))
