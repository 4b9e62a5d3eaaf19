"""Per-key rate limiting: past its burst a key gets Stripe's 429 rate_limit_error, which the SDK
raises as RateLimitError; other keys are unaffected; the bucket refills with time."""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import pytest
import stripe

from tests.http import conftest as http_conftest
from tests.http.conftest import poll_until, serving
from tests.stripe_api.conftest import VAULT_KEY, new_account, server_env_with

BURST = 3


def _listed(client: stripe.StripeClient, counts: list[int]) -> bool:
    try:
        counts.append(len(client.v1.customers.list().data))
    except stripe.RateLimitError:
        return False
    return True


def test_a_key_past_its_burst_is_rate_limited(tmp_path: Path) -> None:
    env = server_env_with(
        FARTHING_VAULT_KEY=VAULT_KEY.hex(),
        FARTHING_RATE_LIMIT_PER_S="1",
        FARTHING_RATE_LIMIT_BURST=str(BURST),
    )
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving("sqlite", tmp_path))
        busy, quiet = new_account(server), new_account(server)
        for _ in range(BURST):
            busy.test.v1.customers.create(params={"email": "a@example.com"})
        with pytest.raises(stripe.RateLimitError) as limited:
            busy.test.v1.customers.create(params={"email": "a@example.com"})
        assert limited.value.http_status == 429
        body = limited.value.json_body
        assert isinstance(body, dict)
        assert body["error"]["type"] == "rate_limit_error"
        # The refused request did nothing; the same account's live key has its own bucket.
        assert len(busy.live.v1.customers.list().data) == 0
        assert quiet.test.v1.customers.list().data == []
        counts: list[int] = []
        poll_until(lambda: _listed(busy.test, counts), deadline_s=10, interval_s=0.5)
        assert counts == [BURST]
