"""Limits per client address (IPv6 per /64): failed authentications per address only; the audit
budget per address and for every address together, where one address over its own limit does
not spend everyone's."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from farthing.config import Settings
from farthing.http._ratelimit import (
    AUTH_FAILURES_ALL_FACTOR,
    AddressLimiter,
    InMemoryRateLimiter,
    address_group,
    anonymous_audit_budget_for,
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
    assert address_group("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_group("203.0.113.7") == "203.0.113.7"
    # Never a key's bucket: key ids hold no ':'.
    assert ":" in peer_bucket("203.0.113.7")


def _limiter(*, per_address: int, every_address: int) -> AddressLimiter:
    return AddressLimiter(
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


def _settings() -> Settings:
    return Settings(
        database_url="sqlite://",
        journal_key=JOURNAL_KEY,
        auth_failures_per_s=1,
        auth_failure_burst=2,
    )


def test_failed_authentications_are_limited_per_address_only() -> None:
    """No limit of every address together: a few addresses cannot turn everyone's 401s into
    429s."""
    limiter = auth_failure_limiter_for(_settings(), InMemoryRateLimiter(rate_per_s=1, burst=1))
    addresses = [f"10.0.{n // 250}.{n % 250}" for n in range(1000)]
    assert all(limiter.allow(address) for address in addresses for _ in range(2))
    assert not any(limiter.allow(address) for address in addresses[:10])


def test_the_audit_budget_has_a_limit_of_every_address() -> None:
    budget = anonymous_audit_budget_for(_settings())
    every = 2 * AUTH_FAILURES_ALL_FACTOR
    allowed = [budget.allow(f"10.0.{n // 250}.{n % 250}") for n in range(every)]
    assert allowed == [True] * every
    assert not budget.allow("10.9.9.9")
    assert sum(budget.allow("10.0.0.0") for _ in range(5)) == 0
