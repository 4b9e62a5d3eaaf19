"""Per-key rate limiting: a token bucket per API key, in process memory.

Each key may make ``rate_per_s`` requests per second on average and ``burst`` at once. A request
over the limit gets Stripe's 429 ``rate_limit_error`` (the SDK's ``RateLimitError``) before it
does anything. Several server processes each keep their own buckets; a shared store (Redis) is
the security-baseline issue's next step, behind the same ``allow`` interface.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

from farthing.http._errors import ApiError

__all__ = ["InMemoryRateLimiter", "RateLimiter", "rate_limited"]

# Buckets kept at once; beyond this the idle ones are dropped (a full bucket is the default).
BUCKETS_MAX = 100_000


class RateLimiter(Protocol):
    def allow(self, key_id: str) -> bool:
        """Take one token from the key's bucket; False when it is empty."""
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


def rate_limited() -> ApiError:
    return ApiError(
        429,
        type_="rate_limit_error",
        code="rate_limit",
        message="Too many requests hit the API too quickly. Reduce the rate of your requests.",
    )
