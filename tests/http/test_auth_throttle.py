"""Requests without a valid key are limited and cannot grow the audit trail without bound.

Failed authentications are limited per client address: past the burst they get 429
``authentication_rate_limit`` instead of 401, while a valid key from the same address is served.
Every failed request without a valid key (a wrong key, none, an unknown path) is recorded one by
one only within a budget per address; the rest are tallied, and the tally is written when the
server stops (or every minute): each such request is in the trail exactly once, alone or counted.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from unittest import mock

import httpx
import pytest
import stripe

from farthing.audit import AuditQuery, AuditRecord, audit_key_from, query, verify
from farthing.auth import Mode, create_key, create_tenant
from farthing.db.engine import create_engine
from tests.conftest import JOURNAL_KEY
from tests.http import conftest as http_conftest
from tests.http.conftest import assert_error, running_server

BURST = 5
ATTEMPTS_MAX = 60
MORE = 20
BAD_KEY = {"Authorization": "Bearer sk_test_not_a_key"}
_TALLY = re.compile(r"tally of (\d+) requests without a valid key, the last at (\d+)")


def _fail_until_throttled(base_url: str) -> int:
    """401s before the first 429. The bucket refills a token a second, so a slow machine may get
    one or two more through: keep going, boundedly."""
    for failed in range(ATTEMPTS_MAX):
        response = httpx.get(f"{base_url}/ledger/v1/accounts/a", headers=BAD_KEY, timeout=30)
        if response.status_code == 429:
            assert_error(response, 429, type_="rate_limit_error", code="authentication_rate_limit")
            return failed + 1
        assert_error(response, 401, type_="authentication_error", code="api_key_invalid")
    pytest.fail(f"{ATTEMPTS_MAX} failed authentications in a row were not throttled")


def _flood(base_url: str, secret: str) -> int:
    """Failed requests without a valid key of several kinds; returns how many were sent."""
    sent = _fail_until_throttled(base_url)
    assert sent > BURST
    statuses = [
        httpx.get(f"{base_url}/v1/customers", headers=BAD_KEY, timeout=30).status_code
        for _ in range(MORE)
    ]
    assert set(statuses) <= {401, 429}
    assert statuses.count(429) > MORE // 2  # The refill lets about one a second through.
    # Not authentication failures, so not answered 429; recorded within the same budget.
    for _ in range(MORE):
        assert httpx.get(f"{base_url}/nope", timeout=30).status_code == 404
    sent += 2 * MORE
    sdk = stripe.StripeClient(
        "sk_test_not_a_key", base_addresses={"api": base_url}, max_network_retries=0
    )
    for _ in range(ATTEMPTS_MAX):  # The 404s took long enough for a token or two to come back.
        sent += 1
        try:
            sdk.v1.customers.list()
        except stripe.AuthenticationError:
            continue
        except stripe.RateLimitError:
            break
        pytest.fail("a wrong key was served")
    else:
        pytest.fail("the SDK never saw the limit")
    # A valid key from the same address is served all along.
    ok = httpx.get(f"{base_url}/v1/customers", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200, ok.text
    return sent


def test_failures_without_a_key_are_limited_and_each_is_in_the_trail_once(
    database_url: str, tmp_path: Path
) -> None:
    env = http_conftest.server_env() | {
        "FARTHING_AUTH_FAILURES_PER_S": "1",
        "FARTHING_AUTH_FAILURE_BURST": str(BURST),
    }
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            tenant = create_tenant(connection, name="throttle", journal_key=JOURNAL_KEY)
            secret = create_key(connection, tenant_id=tenant, mode=Mode.test)
        head_before = verify(engine, audit_key_from(JOURNAL_KEY)).head_seq
        with contextlib.ExitStack() as stack:
            with mock.patch.object(http_conftest, "server_env", return_value=env):
                base_url = stack.enter_context(running_server(database_url, tmp_path / "log"))
            sent = _flood(base_url, secret)
        # The server has stopped, writing its tally.
        anonymous = [
            stored.record
            for stored in query(engine, AuditQuery(key_id="-", limit=1000))
            if stored.seq > head_before
        ]
        _check_accounting(anonymous, sent)
        report = verify(engine, audit_key_from(JOURNAL_KEY))
        assert report.head_seq == head_before + len(anonymous) + 1  # and the valid key's
    finally:
        engine.dispose()


def _check_accounting(anonymous: list[AuditRecord], sent: int) -> None:
    alone = [record for record in anonymous if not _TALLY.fullmatch(record.action)]
    tallies = [record for record in anonymous if _TALLY.fullmatch(record.action)]
    counted = 0
    for tally in tallies:
        match = _TALLY.fullmatch(tally.action)
        assert match is not None
        counted += int(match[1])
        assert tally.occurred_at_ns <= int(match[2])
        assert (tally.origin, tally.outcome) == ("127.0.0.1", "failure")
        assert tally.status in (401, 404, 429)
    assert len(alone) + counted == sent
    # Alone: the budget's burst, then about one a second.
    assert BURST <= len(alone) < sent // 2, (len(alone), sent)
    assert {record.status for record in tallies} >= {404, 429}
