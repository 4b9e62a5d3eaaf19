"""Many clients paying, capturing and refunding at once against one server on PostgreSQL and
SQLite: totals are conserved, no balance goes below zero, each effect happens exactly once."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import stripe

from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, assert_consistent, scope_of
from tests.stripe_api.payment_intents.test_payment_intents import _balance, _fee

CLIENTS = 8
PAYMENTS_PER_CLIENT = 6


def _client_run(account: Account, seed: int) -> int:
    """Pay, sometimes capture manually, sometimes refund twice at once with the same key and
    once with another; returns what this client expects to remain in the balance."""
    rng = random.Random(seed)
    kept = 0
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
    return kept


def test_concurrent_payments_and_refunds(v1_server: Server, account: Account) -> None:
    with ThreadPoolExecutor(CLIENTS) as pool:
        expected = sum(pool.map(lambda seed: _client_run(account, seed), range(CLIENTS)))
    charges = list(account.test.v1.charges.list(params={"limit": 100}).auto_paging_iter())
    assert len(charges) == CLIENTS * PAYMENTS_PER_CLIENT
    assert _balance(account) == (expected, 0)
    refunds = list(account.test.v1.refunds.list(params={"limit": 100}).auto_paging_iter())
    assert sum(r.amount for r in refunds) == sum(c.amount_refunded for c in charges)
    assert all(c.amount_refunded <= c.amount_captured for c in charges)
    assert_consistent(v1_server, scope_of(account))
