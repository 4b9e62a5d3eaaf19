"""Failed authentications are limited per client address: past the burst, requests without a
valid key get 429 ``authentication_rate_limit`` instead of 401, and the audit trail tallies them
instead of growing by a record each. Valid keys from the same address are not affected."""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import httpx
import pytest
import stripe

from farthing.audit import AuditQuery, audit_key_from, query, verify
from tests.conftest import JOURNAL_KEY
from tests.http import conftest as http_conftest
from tests.http.conftest import Server, assert_error, new_tenant, serving

BURST = 5
ATTEMPTS_MAX = 60
THROTTLED_MORE = 20
LEDGER_ACCOUNT = "/ledger/v1/accounts/nobody"


def _bad_key(server: Server) -> httpx.Response:
    return httpx.get(
        server.base_url + LEDGER_ACCOUNT,
        headers={"Authorization": "Bearer sk_test_not_a_key"},
        timeout=30,
    )


def _fail_until_throttled(server: Server) -> int:
    """401s before the first 429. The bucket refills a token a second, so a slow machine may get
    one or two more through: keep going, boundedly."""
    for failed in range(ATTEMPTS_MAX):
        response = _bad_key(server)
        if response.status_code == 429:
            assert_error(response, 429, type_="rate_limit_error", code="authentication_rate_limit")
            return failed
        assert_error(response, 401, type_="authentication_error", code="api_key_invalid")
    pytest.fail(f"{ATTEMPTS_MAX} failed authentications in a row were not throttled")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_failed_authentications_are_throttled_and_tallied(kind: str, tmp_path: Path) -> None:
    env = http_conftest.server_env() | {
        "FARTHING_AUTH_FAILURES_PER_S": "1",
        "FARTHING_AUTH_FAILURE_BURST": str(BURST),
    }
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving(kind, tmp_path))
        tenant = new_tenant(server)
        stack.enter_context(tenant.client)
        head_before = verify(server.engine, audit_key_from(JOURNAL_KEY)).records
        failed = _fail_until_throttled(server)
        assert BURST <= failed < ATTEMPTS_MAX
        statuses = [_bad_key(server).status_code for _ in range(THROTTLED_MORE)]
        assert set(statuses) <= {401, 429}
        # Mostly throttled: the refill lets through about one a second.
        assert statuses.count(429) > THROTTLED_MORE // 2
        failed += statuses.count(401)
        missing = httpx.get(server.base_url + LEDGER_ACCOUNT, timeout=30)
        assert missing.status_code in (401, 429)
        # A valid key from the same address is served, and is counted against its own bucket.
        assert tenant.client.get(LEDGER_ACCOUNT).status_code == 404
        sdk = stripe.StripeClient("sk_test_not_a_key", base_addresses={"api": server.base_url})
        with pytest.raises(stripe.RateLimitError):
            sdk.v1.customers.list()
        _check_trail(server, head_before, failed=failed + (missing.status_code == 401))


def _check_trail(server: Server, head_before: int, *, failed: int) -> None:
    """Every 401 is a record. The first 429 is a record too, as a tally of one; the others wait
    for the next tally, a minute later (a very slow run may have passed one: then it counts
    them). The chain holds."""
    anonymous = [
        stored.record
        for stored in query(server.engine, AuditQuery(key_id="-", limit=1000))
        if stored.seq > head_before
    ]
    assert sorted(record.status for record in anonymous if record.status != 429) == [401] * failed
    tallies = sorted(
        (record for record in anonymous if record.status == 429),
        key=lambda record: record.occurred_at_ns,
    )
    assert tallies, anonymous
    assert tallies[0].action == "throttled 1 requests without a valid key"
    assert len(tallies) <= 2, tallies
    for tally in tallies:
        assert tally.origin == "127.0.0.1"
        assert tally.outcome == "failure"
    report = verify(server.engine, audit_key_from(JOURNAL_KEY))
    assert report.records == head_before + len(anonymous) + 1  # and the valid key's request
