"""The delivery worker: sends queued webhook deliveries, at least once, signed.

A worker claims due deliveries by pushing their next attempt one lease ahead in a short write
transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so several workers never send the same
attempt at once, and a worker that dies only delays its claims by one lease. Each attempt runs
with a timeout, in a bounded thread pool (a slow receiver does not stall the others), and is
recorded. Failures back off exponentially with jitter; after ``RETRY_WINDOW_NS`` (3 days) the
delivery is abandoned and its endpoint disabled.
"""

from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import sqlalchemy as sa

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_events as events
from farthing.db.schema import stripe_webhook_attempts as attempts
from farthing.db.schema import stripe_webhook_deliveries as deliveries
from farthing.db.schema import stripe_webhook_endpoints as endpoints
from farthing.http._errors import ApiError
from farthing.stripe_api._request import Partition
from farthing.stripe_api.webhooks._service import secret_aad
from farthing.stripe_api.webhooks._signing import signature_header
from farthing.stripe_api.webhooks._urls import check_url, pinned
from farthing.vault import Vault

__all__ = ["ATTEMPT_TIMEOUT_S", "RETRY_WINDOW_NS", "deliver_due"]

ATTEMPT_TIMEOUT_S = 10  # Per phase (connect, write, read, pool), as httpx counts it.
# The longest an attempt can take: every phase at its limit, and one more connect, for the next
# address is tried only while less than one timeout has passed.
ATTEMPT_DURATION_MAX_S = 5 * ATTEMPT_TIMEOUT_S
RETRY_WINDOW_NS = 3 * 24 * 3600 * 10**9
BACKOFF_BASE_S = 5
BACKOFF_MAX_S = 6 * 3600
CLAIM_BATCH_MAX = 50
SENDERS_MAX = 8
# Longer than a whole claimed batch can take (its attempts queue for SENDERS_MAX senders), so a
# lease never runs out while its delivery is still waiting or being sent.
LEASE_NS = (-(-CLAIM_BATCH_MAX // SENDERS_MAX) * ATTEMPT_DURATION_MAX_S + 20) * 10**9
RESPONSE_BODY_CHARS_MAX = 1000
ERROR_CHARS_MAX = 200
_NS = 10**9


@dataclass(frozen=True, slots=True)
class _Claim:
    delivery_seq: int
    scope: Partition
    event_id: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...]
    payload: bytes
    created_ns: int
    attempts: int


@dataclass(frozen=True, slots=True)
class _Result:
    status_code: int | None
    body: str | None
    error: str | None
    latency_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_ns(attempt: int, rng: random.Random) -> int:
    """Nanoseconds before attempt ``attempt + 1``: exponential, capped, with ±20% jitter."""
    base_ns: int = min(BACKOFF_BASE_S * 2 ** min(attempt, 32), BACKOFF_MAX_S) * _NS
    return base_ns * rng.randint(800, 1200) // 1000


def _claim(engine: sa.Engine, vault: Vault, now_ns: int, limit: int) -> list[_Claim]:
    query = (
        sa.select(deliveries, endpoints.c.url, endpoints.c.secret_sealed,
                  endpoints.c.secret_key_id, endpoints.c.previous_secret_sealed,
                  endpoints.c.previous_secret_expires_ns, events.c.data, events.c.type,
                  events.c.created.label("event_created"))
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.status == "pending", deliveries.c.next_attempt_ns <= now_ns)
        .order_by(deliveries.c.next_attempt_ns, deliveries.c.seq)
        .limit(limit)
    )  # fmt: skip
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(of=deliveries, skip_locked=True)
    claims = []
    with begin_write(engine) as connection:
        for row in connection.execute(query).mappings():
            connection.execute(
                deliveries.update()
                .where(deliveries.c.seq == row["seq"])
                .values(next_attempt_ns=now_ns + LEASE_NS, attempts=row["attempts"] + 1)
            )
            claims.append(_to_claim(row, vault, now_ns))
    return claims


def _to_claim(row: sa.RowMapping, vault: Vault, now_ns: int) -> _Claim:
    scope = Partition(tenant_id=row["tenant_id"], mode=row["mode"], platform_id=row["tenant_id"])
    aad = secret_aad(scope, row["endpoint_id"])
    secrets = [vault.open(row["secret_sealed"], aad, key_id=row["secret_key_id"]).decode()]
    expires = row["previous_secret_expires_ns"]
    if row["previous_secret_sealed"] is not None and expires is not None and expires > now_ns:
        previous = vault.open(row["previous_secret_sealed"], aad, key_id=row["secret_key_id"])
        secrets.append(previous.decode())
    event = {
        "id": row["event_id"], "object": "event", "api_version": None,
        "created": row["event_created"], "data": json.loads(row["data"]),
        "livemode": row["mode"] == "live", "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": row["type"],
    }  # fmt: skip
    return _Claim(
        row["seq"], scope, row["event_id"], row["endpoint_id"], row["url"], tuple(secrets),
        json.dumps(event).encode(), row["created_ns"], row["attempts"] + 1,
    )  # fmt: skip


def _send(claim: _Claim, client: httpx.Client, *, allow_loopback: bool) -> _Result:
    started = time.monotonic()
    try:
        # Checked again at delivery, on what the name resolves to now (DNS may have changed).
        addresses = check_url(
            claim.url,
            livemode=claim.scope.livemode,
            allow_loopback=allow_loopback,
            must_resolve=True,
        )
        header = signature_header(
            claim.secrets, timestamp_s=int(time.time()), payload=claim.payload
        )
        response = _post(client, claim, addresses, header, started)
    except (httpx.HTTPError, ApiError) as error:
        elapsed = int((time.monotonic() - started) * 1000)
        return _Result(None, None, f"{type(error).__name__}: {error}"[:ERROR_CHARS_MAX], elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    return _Result(response.status_code, response.text[:RESPONSE_BODY_CHARS_MAX], None, elapsed)


def _post(
    client: httpx.Client, claim: _Claim, addresses: tuple[str, ...], header: str, started: float
) -> httpx.Response:
    """POST to the checked addresses in turn, the next only if one refuses the connection early."""
    for index, address in enumerate(addresses):
        request = pinned(claim.url, address)
        headers = {
            "Host": request.host_header,
            "Content-Type": "application/json",
            "Stripe-Signature": header,
        }
        try:
            return client.post(
                request.url, content=claim.payload, headers=headers, extensions=request.extensions
            )
        except httpx.ConnectError:
            late = time.monotonic() - started >= ATTEMPT_TIMEOUT_S
            if late or index == len(addresses) - 1:
                raise
    raise AssertionError("check_url(must_resolve=True) returns at least one address")


def _record(
    engine: sa.Engine, claim: _Claim, result: _Result, now_ns: int, rng: random.Random
) -> None:
    with begin_write(engine) as connection:
        connection.execute(
            attempts.insert().values(
                delivery_seq=claim.delivery_seq, tenant_id=claim.scope.tenant_id,
                mode=claim.scope.mode, endpoint_id=claim.endpoint_id, event_id=claim.event_id,
                attempted_at_ns=now_ns, latency_ms=result.latency_ms,
                status_code=result.status_code, response_body=result.body, error=result.error,
            )
        )  # fmt: skip
        # Only while the lease is ours: a worker that claimed it after us counted one more
        # attempt, and its result is the one that stands.
        update = deliveries.update().where(
            deliveries.c.seq == claim.delivery_seq, deliveries.c.attempts == claim.attempts
        )
        if result.ok:
            connection.execute(update.values(status="succeeded"))
        elif now_ns - claim.created_ns >= RETRY_WINDOW_NS:
            if connection.execute(update.values(status="abandoned")).rowcount == 1:
                connection.execute(
                    endpoints.update()
                    .where(endpoints.c.id == claim.endpoint_id)
                    .values(status="disabled")
                )
        else:
            delay_ns = backoff_ns(claim.attempts, rng)
            connection.execute(update.values(next_attempt_ns=now_ns + delay_ns))


def deliver_due(
    engine: sa.Engine,
    vault: Vault,
    *,
    allow_loopback: bool,
    now_ns: int | None = None,
    limit: int = CLAIM_BATCH_MAX,
) -> int:
    """Send the deliveries due at ``now_ns`` (default: now); returns how many were attempted."""
    assert 0 < limit <= CLAIM_BATCH_MAX
    at_ns = time.time_ns() if now_ns is None else now_ns
    claims = _claim(engine, vault, at_ns, limit)
    if not claims:
        return 0
    rng = random.Random()  # noqa: S311 - jitter spreads retries; it protects nothing

    def attempt(claim: _Claim) -> None:
        # Recorded as soon as it is done, not after the whole batch: the lease covers it.
        result = _send(claim, client, allow_loopback=allow_loopback)
        _record(engine, claim, result, at_ns if now_ns is not None else time.time_ns(), rng)

    with (
        # No kept-alive connections: the pool knows a connection by address alone, and one made
        # for another endpoint's name (its TLS certificate) must never carry this one's events.
        # No proxy from the environment: the connection goes to the address checked.
        httpx.Client(
            timeout=ATTEMPT_TIMEOUT_S,
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        ) as client,
        ThreadPoolExecutor(min(SENDERS_MAX, len(claims))) as pool,
    ):
        list(pool.map(attempt, claims))
    return len(claims)
