"""An uncaptured authorisation expires after its time to live (7 days by default; one second on
this test's server, configured with FARTHING_AUTHORIZATION_TTL_S, and funds available at once
with FARTHING_AVAILABLE_DELAY_S=0)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast
from unittest import mock

import pytest
import sqlalchemy as sa
import stripe

from farthing.db.schema import ledger_holds, ledger_transfers
from farthing.db.schema import stripe_payment_intents as intents
from tests.conftest import postgres_server_url, waiting_on_a_lock
from tests.http import conftest as http_conftest
from tests.http.conftest import Server, poll_until, serving
from tests.stripe_api.conftest import (
    VAULT_KEY,
    assert_consistent,
    new_account,
    scope_of,
    server_env_with,
)
from tests.stripe_api.payment_intents.test_payment_intents import _balance, _fee, _pay


@contextlib.contextmanager
def _expiring(kind: str, tmp_path: Path, ttl_s: int) -> Iterator[Server]:
    """A server whose authorisations live ``ttl_s`` seconds, funds available at once."""
    env = server_env_with(
        FARTHING_VAULT_KEY=VAULT_KEY.hex(),
        FARTHING_AUTHORIZATION_TTL_S=str(ttl_s),
        FARTHING_AVAILABLE_DELAY_S="0",
    )
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving(kind, tmp_path))
        yield server


def test_uncaptured_authorisation_expires_and_cannot_be_captured(tmp_path: Path) -> None:
    with _expiring("sqlite", tmp_path, ttl_s=1) as server:
        account = new_account(server)
        held = _pay(account, "pm_card_visa", amount=1_500, capture_method="manual")
        paid = _pay(account, "pm_card_visa", amount=2_000)
        # Delay 0: the automatic charge's funds are available as soon as it succeeds.
        assert _balance(account) == (2_000 - _fee(2_000), 0)
        poll_until(
            lambda: account.test.v1.payment_intents.retrieve(held.id).status == "canceled",
            deadline_s=30,
        )
        expired = account.test.v1.payment_intents.retrieve(held.id)
        assert expired.cancellation_reason == "automatic"
        with pytest.raises(stripe.InvalidRequestError) as late:
            account.test.v1.payment_intents.capture(held.id)
        assert late.value.code == "payment_intent_unexpected_state"
        charge = account.test.v1.charges.retrieve(cast("str", expired.latest_charge))
        assert (charge.captured, charge.amount_refunded) == (False, 1_500)
        assert paid.status == "succeeded"
        assert _balance(account) == (2_000 - _fee(2_000), 0)
        assert_consistent(server, scope_of(account))


@pytest.mark.parametrize("action", ["capture", "cancel"])
def test_an_authorisation_expiring_while_a_request_waits(tmp_path: Path, action: str) -> None:
    """The request reads its clock, then waits for the intent's lock past the authorisation's
    deadline; the ledger, reading its clock later, finds the hold expired. A capture is refused
    with 400 (not a 500) and changes nothing; a cancel succeeds, the hold being released."""
    if postgres_server_url() is None:
        pytest.skip("needs PostgreSQL (row locks)")
    with _expiring("postgresql", tmp_path, ttl_s=2) as server:
        account = new_account(server)
        held = _pay(account, "pm_card_visa", amount=1_500, capture_method="manual")
        with server.engine.connect() as blocker:
            transaction = blocker.begin()
            blocker.execute(
                sa.select(intents.c.id).where(intents.c.id == held.id).with_for_update()
            ).one()
            # The ledger's hold expires a little after the intent's capture_before (its clock is
            # read later in the authorising request): wait for the hold's own expiry.
            deadline_ns = blocker.execute(
                sa.select(ledger_holds.c.expires_at_ns)
                .join(ledger_transfers, ledger_transfers.c.ts == ledger_holds.c.transfer_ts)
                .where(ledger_transfers.c.id == f"{held.latest_charge}.auth")
            ).scalar_one()
            with ThreadPoolExecutor(1) as pool:
                call = getattr(account.test.v1.payment_intents, action)
                answer = pool.submit(call, held.id)
                poll_until(lambda: waiting_on_a_lock(server.engine), deadline_s=30)
                poll_until(lambda: time.time_ns() > deadline_ns, deadline_s=30)
                transaction.rollback()
                if action == "capture":
                    with pytest.raises(stripe.InvalidRequestError) as refused:
                        answer.result(timeout=30)
                    assert refused.value.code == "payment_intent_unexpected_state"
                else:
                    assert answer.result(timeout=30).status == "canceled"
        after = account.test.v1.payment_intents.retrieve(held.id)
        assert after.status == "canceled"
        charge = account.test.v1.charges.retrieve(cast("str", after.latest_charge))
        assert (charge.captured, charge.amount_refunded) == (False, 1_500)
        assert _balance(account) == (0, 0)
        assert_consistent(server, scope_of(account))
