"""Per-key rate limiting: a token bucket per API key, in process memory or shared in Redis.

Each key may make ``rate_per_s`` requests per second on average and ``burst`` at once. A request
over the limit gets Stripe's 429 ``rate_limit_error`` (the SDK's ``RateLimitError``) before it
does anything. One server process keeps its buckets in memory; with ``FARTHING_REDIS_URL`` every
process shares them in Redis, so N processes allow one burst per key, not N.

When Redis cannot be reached the shared limiter fails closed: 503 ``rate_limiter_unavailable``
(see docs/security.md for why), never an unlimited pass.

Requests without a valid key have no key to count against: their failures are counted per client
address (``auth_failure_limiter_for``), in the same buckets' store.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import threading
import time
from typing import Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from farthing.config import REDIS_KEY_PREFIX_LENGTH_MAX, Settings
from farthing.http._errors import ApiError

__all__ = [
    "AddressLimiter",
    "InMemoryRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "address_group",
    "anonymous_audit_budget_for",
    "auth_failure_limiter_for",
    "authentication_throttled",
    "peer_bucket",
    "rate_limited",
    "rate_limiter_for",
    "rate_limiter_unavailable",
]

_log = logging.getLogger("farthing.http")

# Buckets kept at once; beyond this the idle ones are dropped (a full bucket is the default).
BUCKETS_MAX = 100_000
# Redis is on every request's path: a slow or unreachable Redis must cost a request at most
# about (1 + retries) * (connect + read) timeouts, never hang a worker thread.
REDIS_CONNECT_TIMEOUT_S = 0.5
REDIS_READ_TIMEOUT_S = 0.5
# One immediate retry replaces a pooled connection that a Redis restart closed.
REDIS_RETRIES_MAX = 1
# Above the server's worker threads (40): a request never waits for a free connection.
REDIS_CONNECTIONS_MAX = 64
# Tokens are counted in millionths inside Redis, so that refills of a fraction of a token add up
# exactly in integers (Lua numbers are doubles: exact up to 2**53, far above these values).
MICRO = 1_000_000
# An idle bucket refills completely within burst / rate seconds; kept a little longer than that,
# its expiry (a missing bucket counts as full) then forgets nothing.
BUCKET_TTL_MARGIN_S = 1
# The audit trail records failed requests without a key from every address together up to this
# many times one address's allowance (farthing.audit's anonymous budget).
AUTH_FAILURES_ALL_FACTOR = 10
# One host commonly holds a whole IPv6 /64: its addresses share one bucket.
IPV6_PEER_PREFIX_BITS = 64
# Bucket names per address. Key ids never hold ':', so no key's bucket is one.
_PEER_BUCKET = "auth-failures:peer:"
_ALL_BUCKET = "auth-failures:all"
ADDRESS_LENGTH_MAX = 64

# KEYS[1]: the bucket. ARGV: rate in micro-tokens per microsecond (= tokens per second),
# capacity in micro-tokens, TTL in milliseconds. Returns 1 when a token was taken, else 0.
# The clock is the Redis server's (TIME): processes with skewed clocks share one timeline.
_BUCKET_SCRIPT_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local ttl_ms = tonumber(ARGV[3])
local cost = 1000000
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
local elapsed = now - at
if elapsed < 0 then
  elapsed = 0
end
-- Capped at a full refill so that elapsed * rate stays small and exact.
local refill_us = math.floor(capacity / rate) + 1
if elapsed > refill_us then
  elapsed = refill_us
end
tokens = math.min(capacity, tokens + elapsed * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%d', tokens), 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return allowed
"""


class RateLimiter(Protocol):
    def allow(self, key_id: str) -> bool:
        """Take one token from the key's bucket; False when it is empty. May raise ApiError
        (503) when the limiter cannot decide."""
        ...


class InMemoryRateLimiter:
    def __init__(self, *, rate_per_s: int, burst: int) -> None:
        assert rate_per_s > 0
        assert burst >= 1
        self._rate = rate_per_s
        self._burst = burst
        # key id -> (tokens, monotonic time of the last refill); tokens are request counts.
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (float(self._burst), now))
            tokens = min(float(self._burst), tokens + (now - last) * self._rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            if len(self._buckets) >= BUCKETS_MAX and key_id not in self._buckets:
                self._drop_full(now)
            self._buckets[key_id] = (tokens, now)
            assert 0.0 <= tokens <= self._burst
            return allowed

    def _drop_full(self, now: float) -> None:
        refilled = [
            key for key, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self._rate >= self._burst
        ]  # fmt: skip
        for key in refilled:
            del self._buckets[key]
        if len(self._buckets) >= BUCKETS_MAX:
            self._buckets.clear()  # Everyone busy: forgetting grants at most one burst each.


class RedisRateLimiter:
    """The token bucket as one Lua script in Redis: read, refill, take and write are atomic, so
    concurrent requests on several processes never take the same token twice."""

    def __init__(self, *, url: str, rate_per_s: int, burst: int, key_prefix: str) -> None:
        assert 0 < len(key_prefix) <= REDIS_KEY_PREFIX_LENGTH_MAX
        pool = redis.ConnectionPool.from_url(
            url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
            socket_timeout=REDIS_READ_TIMEOUT_S,
            max_connections=REDIS_CONNECTIONS_MAX,
            retry=Retry(NoBackoff(), REDIS_RETRIES_MAX),
        )
        self._client = redis.Redis(connection_pool=pool)
        # EVALSHA, loading the script again if the server lost it (a restart, SCRIPT FLUSH).
        self._script = self._client.register_script(_BUCKET_SCRIPT_LUA)
        self._prefix = key_prefix
        self._args = _bucket_args(rate_per_s, burst)

    def with_rate(self, *, rate_per_s: int, burst: int) -> RedisRateLimiter:
        """Another limit on the same Redis connections and key prefix."""
        other = copy.copy(self)
        other._args = _bucket_args(rate_per_s, burst)  # noqa: SLF001 - an instance of this class
        return other

    def allow(self, key_id: str) -> bool:
        try:
            taken = self._script(keys=[self._prefix + key_id], args=self._args)
        except redis.RedisError as error:
            # The class only: messages of connection errors may name hosts, never needed here.
            _log.warning("rate limiter unavailable: %s", type(error).__name__)
            raise rate_limiter_unavailable() from None
        assert taken in (0, 1), taken
        return bool(taken == 1)

    def close(self) -> None:
        self._client.close()


def _bucket_args(rate_per_s: int, burst: int) -> tuple[int, int, int]:
    assert rate_per_s > 0
    assert burst >= 1
    ttl_s = -(-burst // rate_per_s) + BUCKET_TTL_MARGIN_S
    return (rate_per_s, burst * MICRO, ttl_s * 1000)


def rate_limiter_for(settings: Settings) -> RateLimiter:
    """Shared buckets in Redis when FARTHING_REDIS_URL is set, else this process's own."""
    if settings.redis_url is None:
        return InMemoryRateLimiter(
            rate_per_s=settings.rate_limit_per_s, burst=settings.rate_limit_burst
        )
    return RedisRateLimiter(
        url=settings.redis_url,
        rate_per_s=settings.rate_limit_per_s,
        burst=settings.rate_limit_burst,
        key_prefix=settings.redis_key_prefix,
    )


def address_group(address: str) -> str:
    """What counts as one client: an IPv4 address, or the /64 an IPv6 address lies in; anything
    else (a Unix socket, a test client's name) as its bounded text."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:ADDRESS_LENGTH_MAX]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PEER_PREFIX_BITS), strict=False))
    return str(ip)


def peer_bucket(address: str) -> str:
    """The bucket of a client address (``address_group``)."""
    return _PEER_BUCKET + address_group(address)


class AddressLimiter:
    """A limit per client address (``peer_bucket``), and optionally one of every address
    together, counted in ``RateLimiter`` buckets."""

    def __init__(self, *, per_address: RateLimiter, every_address: RateLimiter | None) -> None:
        self._per_address = per_address
        self._every_address = every_address

    def allow(self, address: str) -> bool:
        """Count one event from the address; False when it is over a limit."""
        if not self._per_address.allow(peer_bucket(address)):
            return False  # Not counted against everyone: one address cannot drain the rest.
        return self._every_address is None or self._every_address.allow(_ALL_BUCKET)


def auth_failure_limiter_for(settings: Settings, keys: RateLimiter) -> AddressLimiter:
    """Failed authentications (missing, unknown, revoked or expired keys) per client address,
    kept where the keys' buckets are (``keys``: this process, or Redis). Past the limit a failing
    request is answered 429 instead of 401, so a client cannot make the server look keys up
    without end. Requests with a valid key never count, so a flood from a shared address does not
    lock its honest clients out; and there is no limit of every address together, which a few
    addresses could drain to turn everyone's 401s into 429s."""
    rate, burst = settings.auth_failures_per_s, settings.auth_failure_burst
    if isinstance(keys, RedisRateLimiter):
        per_address: RateLimiter = keys.with_rate(rate_per_s=rate, burst=burst)
    else:
        per_address = InMemoryRateLimiter(rate_per_s=rate, burst=burst)
    return AddressLimiter(per_address=per_address, every_address=None)


def anonymous_audit_budget_for(settings: Settings) -> AddressLimiter:
    """How many failed requests without a valid key each process records one by one: per client
    address as for failed authentications, and ten times that for every address together. Kept
    in this process's memory, so it holds while Redis is down."""
    rate, burst = settings.auth_failures_per_s, settings.auth_failure_burst
    return AddressLimiter(
        per_address=InMemoryRateLimiter(rate_per_s=rate, burst=burst),
        every_address=InMemoryRateLimiter(
            rate_per_s=rate * AUTH_FAILURES_ALL_FACTOR, burst=burst * AUTH_FAILURES_ALL_FACTOR
        ),
    )


def authentication_throttled() -> ApiError:
    return ApiError(
        429,
        type_="rate_limit_error",
        code="authentication_rate_limit",
        message="Too many requests without a valid API key from this address. "
        "Check the key you use, then wait before retrying.",
    )


def rate_limited() -> ApiError:
    return ApiError(
        429,
        type_="rate_limit_error",
        code="rate_limit",
        message="Too many requests hit the API too quickly. Reduce the rate of your requests.",
    )


def rate_limiter_unavailable() -> ApiError:
    return ApiError(
        503,
        type_="api_error",
        code="rate_limiter_unavailable",
        message="The API is temporarily unavailable. Retry the request shortly.",
    )
