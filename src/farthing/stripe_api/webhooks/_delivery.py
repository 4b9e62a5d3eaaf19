"""The delivery worker: sends queued webhook deliveries, at least once, signed.

A worker claims due deliveries by pushing their next attempt one lease ahead in a short write
transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so several workers never send the same
attempt at once, and a worker that dies only delays its claims by one lease. Each attempt runs
under one deadline for the whole exchange (connect, send, the answer's headers and at most
``RESPONSE_BODY_BYTES_MAX`` of its body: a receiver that answers a byte at a time cannot hold a
sender past it), in a bounded thread pool (a slow receiver does not stall the others), and is
recorded; whatever goes wrong in one attempt is that attempt's failure, never the worker's.
Failures back off exponentially with jitter; after ``RETRY_WINDOW_NS`` (3 days) the delivery is
abandoned and its endpoint disabled.
"""

from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
import sqlalchemy as sa

from farthing.db.engine import begin_write
from farthing.db.schema import stripe_events as events
from farthing.db.schema import stripe_webhook_attempts as attempts
from farthing.db.schema import stripe_webhook_deliveries as deliveries
from farthing.db.schema import stripe_webhook_endpoints as endpoints
from farthing.stripe_api._request import Partition
from farthing.stripe_api.events import event_object, pending_webhooks
from farthing.stripe_api.webhooks._service import abandon_pending, secret_aad
from farthing.stripe_api.webhooks._signing import signature_header
from farthing.stripe_api.webhooks._urls import check_url, pinned
from farthing.vault import Vault

__all__ = ["ATTEMPT_TIMEOUT_S", "RETRY_WINDOW_NS", "deliver_due"]

ATTEMPT_TIMEOUT_S = 10  # Per network operation: a connect, a write, a read.
# The whole attempt, whatever the receiver does: every network operation's timeout is cut to
# what is left of it.
ATTEMPT_DURATION_MAX_S = 30
RETRY_WINDOW_NS = 3 * 24 * 3600 * 10**9
BACKOFF_BASE_S = 5
BACKOFF_MAX_S = 6 * 3600
CLAIM_BATCH_MAX = 50
SENDERS_MAX = 8
# Longer than a whole claimed batch can take (its attempts queue for SENDERS_MAX senders), so a
# lease never runs out while its delivery is still waiting or being sent.
LEASE_NS = (-(-CLAIM_BATCH_MAX // SENDERS_MAX) * ATTEMPT_DURATION_MAX_S + 20) * 10**9
RESPONSE_BODY_CHARS_MAX = 1000
RESPONSE_BODY_BYTES_MAX = 4 * RESPONSE_BODY_CHARS_MAX  # Enough for the characters kept.
ERROR_CHARS_MAX = 200
_NS = 10**9
_SSL_CONTEXT = httpx.create_ssl_context()  # Certificates verified, against the endpoint's name.
_log = logging.getLogger(__name__)


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
        .where(
            deliveries.c.status == "pending",
            deliveries.c.next_attempt_ns <= now_ns,
            # Disabling or deleting abandons queued deliveries; this holds in any case.
            endpoints.c.status == "enabled",
            endpoints.c.deleted.is_(False),
        )
        .order_by(deliveries.c.next_attempt_ns, deliveries.c.seq)
        .limit(limit)
    )  # fmt: skip
    if engine.dialect.name == "postgresql":
        query = query.with_for_update(of=deliveries, skip_locked=True)
    with begin_write(engine) as connection:
        rows = list(connection.execute(query).mappings())
        for row in rows:
            connection.execute(
                deliveries.update()
                .where(deliveries.c.seq == row["seq"])
                .values(next_attempt_ns=now_ns + LEASE_NS, attempts=row["attempts"] + 1)
            )
        # Counted with this claim's own deliveries still pending, as Stripe counts them.
        pending = pending_webhooks(connection, [row["event_id"] for row in rows])
        return [_to_claim(row, vault, now_ns, pending[row["event_id"]]) for row in rows]


def _to_claim(row: sa.RowMapping, vault: Vault, now_ns: int, pending: int) -> _Claim:
    scope = Partition(tenant_id=row["tenant_id"], mode=row["mode"], platform_id=row["tenant_id"])
    aad = secret_aad(scope, row["endpoint_id"])
    secrets = [vault.open(row["secret_sealed"], aad, key_id=row["secret_key_id"]).decode()]
    expires = row["previous_secret_expires_ns"]
    if row["previous_secret_sealed"] is not None and expires is not None and expires > now_ns:
        previous = vault.open(row["previous_secret_sealed"], aad, key_id=row["secret_key_id"])
        secrets.append(previous.decode())
    # The very object GET /v1/events/{id} returns.
    event = event_object(
        {"id": row["event_id"], "created": row["event_created"], "data": row["data"],
         "type": row["type"]},
        livemode=row["mode"] == "live", pending_webhooks=pending,
    )  # fmt: skip
    return _Claim(
        row["seq"], scope, row["event_id"], row["endpoint_id"], row["url"], tuple(secrets),
        json.dumps(event).encode(), row["created_ns"], row["attempts"] + 1,
    )  # fmt: skip


def _send(claim: _Claim, *, allow_loopback: bool) -> _Result:
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
        status, body = _post(claim, addresses, header, started + ATTEMPT_DURATION_MAX_S)
    except Exception as error:  # noqa: BLE001 - any failure is this attempt's, recorded
        elapsed = int((time.monotonic() - started) * 1000)
        return _Result(None, None, f"{type(error).__name__}: {error}"[:ERROR_CHARS_MAX], elapsed)
    elapsed = int((time.monotonic() - started) * 1000)
    return _Result(status, body, None, elapsed)


def _post(
    claim: _Claim, addresses: tuple[str, ...], header: str, deadline_s: float
) -> tuple[int, str]:
    """POST to the checked addresses in turn (the next only if one refuses the connection);
    the status and the start of the body."""
    for index, address in enumerate(addresses):
        request = pinned(claim.url, address)
        headers = [
            (b"Host", request.host_header.encode()),
            (b"Content-Type", b"application/json"),
            (b"Stripe-Signature", header.encode()),
            (b"Accept-Encoding", b"identity"),  # The body is kept as sent: nothing to inflate.
            (b"User-Agent", b"Farthing webhooks"),
        ]
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), ATTEMPT_TIMEOUT_S)
        # A pool of its own, without kept-alive connections: the pool knows a connection by
        # address alone, and one made for another endpoint's name (its TLS certificate) must
        # never carry this one's events. No proxy: the connection goes to the address checked.
        with httpcore.ConnectionPool(
            ssl_context=_SSL_CONTEXT,
            max_keepalive_connections=0,
            network_backend=_DeadlineBackend(deadline_s),
        ) as pool:
            try:
                with pool.stream(
                    "POST",
                    str(request.url),
                    headers=headers,
                    content=claim.payload,
                    extensions={"timeout": timeouts, **request.extensions},
                ) as response:
                    return response.status, _start_of(response)
            except httpcore.ConnectError:
                if index == len(addresses) - 1 or time.monotonic() >= deadline_s:
                    raise
    raise AssertionError("check_url(must_resolve=True) returns at least one address")


def _start_of(response: httpcore.Response) -> str:
    """The body's first RESPONSE_BODY_CHARS_MAX characters; the rest is never read."""
    body = bytearray()
    for chunk in response.iter_stream():
        body += chunk
        if len(body) >= RESPONSE_BODY_BYTES_MAX:
            break
    text = bytes(body[:RESPONSE_BODY_BYTES_MAX]).decode("utf-8", errors="replace")
    return text[:RESPONSE_BODY_CHARS_MAX]


def _within(deadline_s: float, timeout: float | None, expired: type[Exception]) -> float:
    """How long one network operation may wait: its own timeout, cut to what the attempt has
    left; ``expired`` once nothing is left."""
    left = deadline_s - time.monotonic()
    if left <= 0:
        msg = f"the attempt took longer than {ATTEMPT_DURATION_MAX_S} s"
        raise expired(msg)
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the attempt has left."""

    def __init__(self, inner: httpcore.NetworkStream, deadline_s: float) -> None:
        self._inner = inner
        self._deadline_s = deadline_s

    def _left(self, timeout: float | None) -> float:
        return _within(self._deadline_s, timeout, httpcore.ReadTimeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout))
        return _DeadlineStream(tls, self._deadline_s)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def __init__(self, deadline_s: float) -> None:
        self._deadline_s = deadline_s

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        limit = _within(self._deadline_s, timeout, httpcore.ConnectTimeout)
        stream = super().connect_tcp(host, port, limit, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline_s)


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
                abandon_pending(connection, claim.scope, claim.endpoint_id)
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
        result = _send(claim, allow_loopback=allow_loopback)
        try:
            _record(engine, claim, result, at_ns if now_ns is not None else time.time_ns(), rng)
        except Exception:  # noqa: BLE001 - logged; one attempt's trouble must not stop the rest
            # Unrecorded, the attempt is retried when its lease runs out; the others go on.
            _log.exception("webhook delivery %d: recording its attempt failed", claim.delivery_seq)

    with ThreadPoolExecutor(min(SENDERS_MAX, len(claims))) as pool:
        list(pool.map(attempt, claims))
    return len(claims)
