"""An uncaptured authorisation expires after its time to live (7 days by default; one second on
this test's server, configured with FARTHING_AUTHORIZATION_TTL_S, and funds available at once
with FARTHING_AVAILABLE_DELAY_S=0)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import cast
from unittest import mock

import pytest
import stripe

from tests.http import conftest as http_conftest
from tests.http.conftest import poll_until, serving
from tests.stripe_api.conftest import (
    VAULT_KEY,
    assert_consistent,
    new_account,
    scope_of,
    server_env_with,
)
from tests.stripe_api.payment_intents.test_payment_intents import _balance, _fee, _pay


def test_uncaptured_authorisation_expires_and_cannot_be_captured(tmp_path: Path) -> None:
    env = server_env_with(
        FARTHING_VAULT_KEY=VAULT_KEY.hex(),
        FARTHING_AUTHORIZATION_TTL_S="1",
        FARTHING_AVAILABLE_DELAY_S="0",
    )
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving("sqlite", tmp_path))
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
