"""Rate limits shared in Redis (FARTHING_REDIS_URL): two real `farthing serve` processes on one
database and one Redis allow a key one burst between them, not one each; other keys are not
affected; an unreachable Redis fails closed (503 ``rate_limiter_unavailable``).

Needs FARTHING_TEST_REDIS_URL (`.ci/run` sets the machine's Redis); skips without it, fails
without it under CI=true. Every test uses its own key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import httpx
import pytest
import redis

from farthing.http._errors import ApiError
from farthing.http._ratelimit import (
    REDIS_CONNECT_TIMEOUT_S,
    REDIS_READ_TIMEOUT_S,
    REDIS_RETRIES_MAX,
    RedisRateLimiter,
)
from tests.http import conftest as http_conftest
from tests.http.conftest import (
    HOST,
    Server,
    Tenant,
    assert_error,
    free_port,
    new_tenant,
    running_server,
    serving,
)

REDIS_ENV = "FARTHING_TEST_REDIS_URL"
BURST = 5
AUTH_FAILURE_BURST = 2  # Unlike BURST: a limiter sized like the keys' would fail the test.
RATE_PER_S = 1
ATTEMPTS_MAX = 40
THREADS = 8
CALLS_PER_THREAD = 40


def redis_server_url() -> str:
    """The Redis server for tests; skip (or fail in CI) when there is none."""
    url = os.environ.get(REDIS_ENV)
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {REDIS_ENV} is not set: the shared rate-limit suite must run")
    pytest.skip(f"{REDIS_ENV} not set")
    return ""


@pytest.fixture
def redis_prefix() -> Iterator[tuple[str, str]]:
    """(Redis URL, a key prefix of this test's own); the test's keys are deleted afterwards."""
    url = redis_server_url()
    prefix = f"farthing-test:{secrets.token_hex(8)}:"
    yield url, prefix
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=prefix + "*"):
            client.delete(key)
    finally:
        client.close()


def _env(url: str, prefix: str) -> dict[str, str]:
    return http_conftest.server_env() | {
        "FARTHING_REDIS_URL": url,
        "FARTHING_REDIS_KEY_PREFIX": prefix,
        "FARTHING_RATE_LIMIT_PER_S": str(RATE_PER_S),
        "FARTHING_RATE_LIMIT_BURST": str(BURST),
    }


@contextlib.contextmanager
def _two_servers(directory: Path, env: dict[str, str]) -> Iterator[tuple[Server, str]]:
    """Two `farthing serve` processes on one SQLite database: (first, second's base URL)."""
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            first = stack.enter_context(serving("sqlite", directory))
            second = stack.enter_context(
                running_server(first.database_url, directory / "second.log")
            )
        yield first, second


def _status(base_url: str, secret: str) -> int:
    response = httpx.get(
        f"{base_url}/v1/customers", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert response.status_code in (200, 429), response.text
    return response.status_code


def test_two_processes_share_one_burst(tmp_path: Path, redis_prefix: tuple[str, str]) -> None:
    url, prefix = redis_prefix
    with _two_servers(tmp_path, _env(url, prefix)) as (first, second):
        busy, quiet = new_tenant(first), new_tenant(first)
        bases = (first.base_url, second)
        allowed = 0
        for attempt in range(ATTEMPTS_MAX):
            if _status(bases[attempt % 2], busy.test_secret) == 429:
                break
            allowed += 1
        else:
            pytest.fail(f"{ATTEMPTS_MAX} requests in a row were not rate limited")
        # One bucket between both: each process alone would have allowed BURST (2 * BURST in
        # all). A refill of one token a second may let a slow run through once or twice more.
        assert BURST <= allowed < 2 * BURST
        # Another key, and the same tenant's live key, have buckets of their own on both.
        for base_url in bases:
            assert _status(base_url, quiet.test_secret) == 200
            assert _status(base_url, busy.live_secret) == 200
        for tenant in (busy, quiet):
            tenant.client.close()
        stored = redis.Redis.from_url(url)
        try:
            keys = {key.decode() for key in stored.scan_iter(match=prefix + "*")}
            assert len(keys) == 3  # busy (test, live) and quiet (test)
            for key in keys:
                tokens, at = stored.hmget(key, ["tokens", "at"])
                # Integers: micro-tokens and microseconds.
                assert tokens is not None
                assert tokens.isdigit()
                assert at is not None
                assert at.isdigit()
                assert 0 < stored.pttl(key) <= (BURST // RATE_PER_S + 1) * 1000
        finally:
            stored.close()


def test_two_processes_share_the_failed_authentication_limit(
    tmp_path: Path, redis_prefix: tuple[str, str]
) -> None:
    """Its own size (not the keys' BURST), one bucket per address between both processes."""
    url, prefix = redis_prefix
    env = _env(url, prefix) | {
        "FARTHING_AUTH_FAILURES_PER_S": str(RATE_PER_S),
        "FARTHING_AUTH_FAILURE_BURST": str(AUTH_FAILURE_BURST),
    }
    with _two_servers(tmp_path, env) as (first, second):
        bases = (first.base_url, second)
        failed = 0
        for attempt in range(ATTEMPTS_MAX):
            status = _status_without_key(bases[attempt % 2])
            if status == 429:
                break
            failed += 1
        else:
            pytest.fail(f"{ATTEMPTS_MAX} failed authentications in a row were not throttled")
        assert AUTH_FAILURE_BURST <= failed < 2 * AUTH_FAILURE_BURST
        stored = redis.Redis.from_url(url)
        try:
            keys = {key.decode() for key in stored.scan_iter(match=prefix + "*")}
        finally:
            stored.close()
        assert keys == {prefix + "auth-failures:peer:127.0.0.1"}


def _status_without_key(base_url: str) -> int:
    response = httpx.get(
        f"{base_url}/v1/customers", headers={"Authorization": "Bearer sk_test_0"}, timeout=30
    )
    assert response.status_code in (401, 429), response.text
    return response.status_code


def _limiter(url: str, prefix: str, *, burst: int) -> RedisRateLimiter:
    return RedisRateLimiter(url=url, rate_per_s=RATE_PER_S, burst=burst, key_prefix=prefix)


def test_the_bucket_is_atomic_under_concurrency(redis_prefix: tuple[str, str]) -> None:
    """Threads on two clients (as two processes would be) take exactly the burst between them,
    plus at most what refilled meanwhile."""
    url, prefix = redis_prefix
    burst = THREADS * CALLS_PER_THREAD // 4
    limiters = [_limiter(url, prefix, burst=burst) for _ in range(2)]
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def hammer(limiter: RedisRateLimiter) -> None:
        start.wait()
        taken = [limiter.allow("key_shared") for _ in range(CALLS_PER_THREAD)]
        with lock:
            results.extend(taken)

    began = time.monotonic()
    threads = [threading.Thread(target=hammer, args=(limiters[n % 2],)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed_s = time.monotonic() - began
    for limiter in limiters:
        limiter.close()
    assert len(results) == THREADS * CALLS_PER_THREAD
    assert burst <= sum(results) <= burst + int(elapsed_s * RATE_PER_S) + 1


def test_the_bucket_refills_on_the_redis_clock(redis_prefix: tuple[str, str]) -> None:
    """Ageing the stored refill time by two seconds (instead of sleeping) returns two tokens."""
    url, prefix = redis_prefix
    limiter = _limiter(url, prefix, burst=2)
    client = redis.Redis.from_url(url)
    try:
        taken = [limiter.allow("key_refill") for _ in range(3)]
        assert taken[:2] == [True, True]
        bucket = prefix + "key_refill"
        at = int(client.hget(bucket, "at") or b"0")
        client.hset(bucket, "at", str(at - 2 * 1_000_000))
        assert [limiter.allow("key_refill") for _ in range(2)] == [True, True]
        assert limiter.allow("key_refill") is False
    finally:
        client.close()
        limiter.close()


@pytest.mark.parametrize("redis_is", ["refusing", "stalled"])
def test_an_unreachable_redis_fails_closed_within_the_timeouts(redis_is: str) -> None:
    """Nothing listening, or a listener that never answers (a hung Redis): either way a 503
    within (1 + retries) x (connect + read) timeouts."""
    with contextlib.ExitStack() as stack:
        port = free_port()
        if redis_is == "stalled":
            listener = stack.enter_context(socket.create_server((HOST, 0), backlog=16))
            port = listener.getsockname()[1]  # the kernel accepts; nobody ever reads or writes
        limiter = RedisRateLimiter(
            url=f"redis://{HOST}:{port}/0", rate_per_s=1, burst=1, key_prefix="unused:"
        )
        stack.callback(limiter.close)
        began = time.monotonic()
        with pytest.raises(ApiError) as raised:
            limiter.allow("key_any")
        elapsed_s = time.monotonic() - began
    bound_s = (REDIS_RETRIES_MAX + 1) * (REDIS_CONNECT_TIMEOUT_S + REDIS_READ_TIMEOUT_S)
    assert elapsed_s <= bound_s + 1.0
    assert (raised.value.status, raised.value.code) == (503, "rate_limiter_unavailable")


def test_a_server_without_its_redis_answers_503(tmp_path: Path) -> None:
    """Fail closed: no request passes unlimited. A wrong key gets 503 too: its failure cannot be
    counted against its address's limit."""
    env = _env(f"redis://{HOST}:{free_port()}/0", "unused:")
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving("sqlite", tmp_path))
        tenant: Tenant = new_tenant(server)
        with tenant.client as client:
            error = assert_error(
                client.get("/v1/customers"), 503, type_="api_error", code="rate_limiter_unavailable"
            )
            assert "redis" not in error["message"].lower()
            ledger = client.get("/ledger/v1/accounts/alice")
            assert_error(ledger, 503, type_="api_error", code="rate_limiter_unavailable")
        with server.client("sk_test_unknown") as anonymous:
            wrong = anonymous.get("/v1/customers")
            assert_error(wrong, 503, type_="api_error", code="rate_limiter_unavailable")
        log = (tmp_path / "server.log").read_text()
        assert "rate limiter unavailable: ConnectionError" in log
