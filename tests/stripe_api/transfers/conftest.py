"""Helpers of the transfer and payout suites: connected accounts made directly in the database
(independent of the accounts API), funded platforms, and balances read from the ledger."""

from __future__ import annotations

import secrets
import time
from typing import Any, cast

from farthing.db.schema import stripe_accounts, tenants
from farthing.ledger_service import LedgerService
from farthing.stripe_api._request import Partition
from farthing.stripe_api.payments import PaymentsLedger, ledger_balance
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import Server
from tests.stripe_api.conftest import Account


def fee(amount: int) -> int:
    """Farthing's default pricing: 2.9% rounded half up, plus 30 minor units."""
    return (amount * 290 + 5_000) // 10_000 + 30


def connected(server: Server, platform: Account, mode: str = "test") -> Partition:
    """A connected account of the platform, made directly in the database."""
    account_id = "acct_" + secrets.token_hex(12)
    with server.engine.begin() as connection:
        connection.execute(
            tenants.insert().values(
                id=account_id, name="seller", created_at_ns=time.time_ns(),
                parent_id=platform.id, mode=mode,
            )
        )  # fmt: skip
        connection.execute(
            stripe_accounts.insert().values(
                id=account_id, tenant_id=platform.id, mode=mode, created=int(time.time()),
                metadata="{}", type="custom", country="US", default_currency="usd",
                charges_enabled=True, payouts_enabled=True,
            )
        )  # fmt: skip
    return Partition(tenant_id=account_id, mode=mode, platform_id=platform.id)


def fund(account: Account, amount: int = 10_000) -> int:
    """Pay ``amount`` with the card whose funds are available at once; the available net."""
    params = {
        "amount": amount,
        "currency": "usd",
        "payment_method": "pm_card_bypassPending",
        "confirm": True,
    }
    intent = account.test.v1.payment_intents.create(params=cast("Any", params))
    assert intent.status == "succeeded"
    return amount - fee(amount)


def balance(server: Server, scope: Partition, currency: str = "usd") -> tuple[int, int]:
    """(available, pending) of a scope as the payments ledger holds them."""
    ledger = PaymentsLedger(LedgerService(server.engine, journal_key=JOURNAL_KEY))
    with server.engine.connect() as connection:
        return ledger_balance(connection, ledger, scope).get(currency, (0, 0))
