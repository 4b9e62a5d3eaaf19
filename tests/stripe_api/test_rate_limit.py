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
from tests.stripe_api.conftest import VAULT_KEY, Account, new_account, server_env_with

BURST = 3
ATTEMPTS_MAX = 20


def _listed(client: stripe.StripeClient, counts: list[int]) -> bool:
    try:
        counts.append(len(client.v1.customers.list().data))
    except stripe.RateLimitError:
        return False
    return True


def _create_until_limited(account: Account) -> tuple[int, stripe.RateLimitError]:
    """The bucket refills one token a second: on a loaded machine a request may get one more
    through, so keep going (boundedly) until the limit answers."""
    for created in range(ATTEMPTS_MAX):
        try:
            account.test.v1.customers.create(params={"email": "a@example.com"})
        except stripe.RateLimitError as error:
            return created, error
    pytest.fail(f"{ATTEMPTS_MAX} requests in a row were not rate limited")


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
        created, limited = _create_until_limited(busy)
        assert BURST <= created < ATTEMPTS_MAX
        assert limited.http_status == 429
        body = limited.json_body
        assert isinstance(body, dict)
        assert body["error"]["type"] == "rate_limit_error"
        # The refused request did nothing; the same account's live key has its own bucket.
        assert len(busy.live.v1.customers.list().data) == 0
        assert quiet.test.v1.customers.list().data == []
        counts: list[int] = []
        poll_until(lambda: _listed(busy.test, counts), deadline_s=10, interval_s=0.5)
        assert counts == [created]
