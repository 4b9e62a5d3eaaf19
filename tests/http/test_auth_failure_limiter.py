"""The failed-authentication limiter: per client address (IPv6 per /64), and for every address
together; an address over its own limit does not use up everyone's allowance."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from farthing.config import Settings
from farthing.http._ratelimit import (
    AUTH_FAILURES_ALL_FACTOR,
    AuthFailureLimiter,
    InMemoryRateLimiter,
    auth_failure_limiter_for,
    peer_bucket,
)
from tests.conftest import JOURNAL_KEY


@pytest.fixture(autouse=True)
def stopped_clock() -> Iterator[None]:
    """No refill while a test runs: every count below is exact."""
    with mock.patch("farthing.http._ratelimit.time.monotonic", return_value=1_000.0):
        yield


def test_ipv4_addresses_count_alone_and_ipv6_by_64() -> None:
    assert peer_bucket("203.0.113.7") != peer_bucket("203.0.113.8")
    assert peer_bucket("2001:db8:1:2::1") == peer_bucket("2001:db8:1:2:ffff::9")
    assert peer_bucket("2001:db8:1:2::1") != peer_bucket("2001:db8:1:3::1")
    assert peer_bucket("::ffff:203.0.113.7") == peer_bucket("203.0.113.7")
    assert peer_bucket("testclient") == peer_bucket("testclient")
    assert len(peer_bucket("x" * 10_000)) < 100
    # Never a key's bucket: key ids hold no ':'.
    assert ":" in peer_bucket("203.0.113.7")


def _limiter(*, per_address: int, every_address: int) -> AuthFailureLimiter:
    return AuthFailureLimiter(
        per_address=InMemoryRateLimiter(rate_per_s=1, burst=per_address),
        every_address=InMemoryRateLimiter(rate_per_s=1, burst=every_address),
    )


def test_each_address_has_its_burst() -> None:
    limiter = _limiter(per_address=3, every_address=100)
    assert [limiter.allow("203.0.113.7") for _ in range(5)] == [True] * 3 + [False] * 2
    assert limiter.allow("203.0.113.8")
    # Addresses of one IPv6 /64 share a bucket.
    ipv6 = [limiter.allow(f"2001:db8::{n}") for n in range(1, 6)]
    assert ipv6 == [True] * 3 + [False] * 2
    assert limiter.allow("2001:db8:0:1::1")


def test_every_address_together_is_limited() -> None:
    limiter = _limiter(per_address=3, every_address=7)
    # One address over its own limit costs nobody else anything.
    assert sum(limiter.allow("198.51.100.1") for _ in range(50)) == 3
    allowed = [limiter.allow(f"203.0.113.{n}") for n in range(10)]
    assert allowed == [True] * 4 + [False] * 6
    assert not limiter.allow("192.0.2.1")


def test_settings_size_both_limits() -> None:
    settings = Settings(
        database_url="sqlite://",
        journal_key=JOURNAL_KEY,
        auth_failures_per_s=1,
        auth_failure_burst=2,
    )
    keys = InMemoryRateLimiter(rate_per_s=1, burst=1)
    limiter = auth_failure_limiter_for(settings, keys)
    every = 2 * AUTH_FAILURES_ALL_FACTOR
    allowed = [limiter.allow(f"10.0.{n // 250}.{n % 250}") for n in range(every)]
    assert allowed == [True] * every
    assert not limiter.allow("10.9.9.9")
    assert sum(limiter.allow("10.0.0.0") for _ in range(5)) == 0
