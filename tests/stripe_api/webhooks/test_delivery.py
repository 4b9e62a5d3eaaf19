"""The delivery worker against a real HTTP receiver on loopback: signed deliveries that
stripe.Webhook.construct_event accepts, retries with backoff through an outage, abandonment after
three days, the URL guard at delivery time (on the very addresses the worker connects to), and two
workers never sending one delivery twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa
import stripe

from farthing import worker
from farthing.audit import AuditQuery, query
from farthing.config import Settings
from farthing.db.schema import (
    stripe_webhook_attempts,
    stripe_webhook_deliveries,
    stripe_webhook_endpoints,
)
from farthing.stripe_api import webhooks
from farthing.stripe_api.webhooks import _delivery as delivery
from farthing.stripe_api.webhooks import _urls as urls
from farthing.stripe_api.webhooks import deliver_due
from farthing.stripe_api.webhooks._delivery import (
    LEASE_NS,
    RETRY_WINDOW_NS,
    _claim,
    _record,
    _Result,
)
from farthing.stripe_api.webhooks._urls import ADDRESSES_MAX
from farthing.vault import Vault
from tests.http import conftest as http_conftest
from tests.http.conftest import FARTHING, Server, poll_until, serving
from tests.stripe_api.conftest import VAULT_KEY, Account, new_account, server_env_with

VAULT = Vault(VAULT_KEY)
HOUR_NS = 3600 * 10**9


class Receiver:
    """A webhook receiver: records every request (and its Host header), answers ``status``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, path: str | None = None) -> None:
        self.status = 200
        self.received: list[tuple[bytes, str]] = []
        self.hosts: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        # A path of its own: an earlier test's endpoint may name this port (the OS reuses
        # ports), and the deliveries still due to it must not count as this receiver's.
        path = path or "/hooks/" + secrets.token_hex(8)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if len(body) < length:
                    return  # The sender died mid-request (the SIGKILL test): nothing arrived.
                if self.path != path:
                    self.send_response(410)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.received.append((body, self.headers["Stripe-Signature"]))
                    receiver.hosts.append(self.headers["Host"])
                    status = receiver.status
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"down")

            def log_message(self, *args: Any) -> None:
                del args

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.path = path
        self.url = f"http://{host}:{self.port}{path}"


@contextlib.contextmanager
def receiving(
    host: str = "127.0.0.1", port: int = 0, path: str | None = None
) -> Iterator[Receiver]:
    started = Receiver(host, port, path)
    thread = threading.Thread(target=started.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield started
    finally:
        started.server.shutdown()
        started.server.server_close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hook_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    env = server_env_with(FARTHING_VAULT_KEY=VAULT_KEY.hex(), FARTHING_WEBHOOK_ALLOW_LOOPBACK="1")
    directory: Path = tmp_path_factory.mktemp(f"hooks-{request.param}")
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving(request.param, directory))
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as started:
        yield started


def _endpoint(account: Account, receiver: Receiver) -> str:
    created = account.test.v1.webhook_endpoints.create(
        params={"url": receiver.url, "enabled_events": ["*"]}
    )
    assert created.secret is not None
    return created.secret


def _deliver(server: Server, now_ns: int | None = None, *, loopback: bool = True) -> int:
    return deliver_due(server.engine, VAULT, allow_loopback=loopback, now_ns=now_ns)


def _column_of(server: Server, account: Account, column: sa.Column[Any]) -> list[Any]:
    """One column of the account's rows of the column's table (deliveries or attempts)."""
    with server.engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(column).where(column.table.c.tenant_id == account.id)
            ).scalars()
        )


def _statuses(server: Server, account: Account) -> list[str]:
    return _column_of(server, account, stripe_webhook_deliveries.c.status)


def test_deliveries_are_signed_like_stripe(hook_server: Server, receiver: Receiver) -> None:
    account = new_account(hook_server)
    secret = _endpoint(account, receiver)
    customer = account.test.v1.customers.create(params={"email": "ada@example.com"})
    assert _deliver(hook_server) == 1
    ((body, signature),) = receiver.received
    event = stripe.Webhook.construct_event(body, signature, secret)
    assert event.type == "customer.created"
    assert event.data.object["id"] == customer.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body + b"x", signature, secret)
    assert _statuses(hook_server, account) == ["succeeded"]
    with hook_server.engine.connect() as connection:
        (attempt,) = connection.execute(
            sa.select(stripe_webhook_attempts).where(
                stripe_webhook_attempts.c.tenant_id == account.id
            )
        ).all()
    assert attempt.status_code == 200
    assert attempt.response_body == "ok"
    assert _deliver(hook_server) == 0  # Nothing twice.
    # The very event the API shows, but for the webhooks still pending: this one was when sent.
    sent, shown = json.loads(body), json.loads(str(account.test.v1.events.retrieve(event.id)))
    assert (sent.pop("pending_webhooks"), shown.pop("pending_webhooks")) == (1, 0)
    assert sent == shown


def test_pending_webhooks_counts_what_is_still_to_deliver(hook_server: Server) -> None:
    account = new_account(hook_server)
    with receiving() as up, receiving() as down:
        _endpoint(account, up)
        _endpoint(account, down)
        down.status = 503
        account.test.v1.customers.create(params={"name": "counted"})
        (event,) = account.test.v1.events.list().data
        assert event.pending_webhooks == 2
        assert account.test.v1.events.retrieve(event.id).pending_webhooks == 2
        assert _deliver(hook_server) == 2
        # Both were pending when claimed; the failed one still is.
        for body, _signature in up.received + down.received:
            assert json.loads(body)["pending_webhooks"] == 2
        assert account.test.v1.events.retrieve(event.id).pending_webhooks == 1
        assert account.test.v1.events.list().data[0].pending_webhooks == 1
        assert _deliver(hook_server, time.time_ns() + RETRY_WINDOW_NS + HOUR_NS) == 1
        assert account.test.v1.events.retrieve(event.id).pending_webhooks == 0


def test_an_outage_delays_but_loses_nothing(hook_server: Server, receiver: Receiver) -> None:
    account = new_account(hook_server)
    secret = _endpoint(account, receiver)
    receiver.status = 503
    ids = [account.test.v1.customers.create(params={"name": f"c{n}"}).id for n in range(5)]
    assert _deliver(hook_server) == 5
    assert _statuses(hook_server, account) == ["pending"] * 5
    assert _deliver(hook_server) == 0  # Backing off: nothing is due right away.
    receiver.status = 200
    receiver.received.clear()
    assert _deliver(hook_server, time.time_ns() + HOUR_NS) == 5
    delivered = {
        stripe.Webhook.construct_event(body, signature, secret).data.object["id"]
        for body, signature in receiver.received
    }
    assert delivered == set(ids)
    assert _statuses(hook_server, account) == ["succeeded"] * 5


def test_after_three_days_a_delivery_is_abandoned(hook_server: Server, receiver: Receiver) -> None:
    account = new_account(hook_server)
    _endpoint(account, receiver)
    receiver.status = 500
    account.test.v1.customers.create(params={"name": "late"})
    assert _deliver(hook_server, time.time_ns() + RETRY_WINDOW_NS + HOUR_NS) == 1
    assert _statuses(hook_server, account) == ["abandoned"]
    (endpoint,) = account.test.v1.webhook_endpoints.list().data
    assert endpoint.status == "disabled"
    # What else was queued for it is abandoned too: no worker sends to a disabled endpoint.
    with hook_server.engine.begin() as connection:
        connection.execute(
            stripe_webhook_endpoints.update()
            .where(stripe_webhook_endpoints.c.id == endpoint.id)
            .values(status="enabled")
        )
    account.test.v1.customers.create(params={"name": "first"})
    account.test.v1.customers.create(params={"name": "second"})
    with hook_server.engine.begin() as connection:
        first = connection.execute(
            sa.select(sa.func.min(stripe_webhook_deliveries.c.seq)).where(
                stripe_webhook_deliveries.c.tenant_id == account.id,
                stripe_webhook_deliveries.c.status == "pending",
            )
        ).scalar_one()
        # The first of them is older than the retry window; the second is not yet due.
        connection.execute(
            stripe_webhook_deliveries.update()
            .where(stripe_webhook_deliveries.c.tenant_id == account.id)
            .where(stripe_webhook_deliveries.c.status == "pending")
            .values(next_attempt_ns=sa.case(
                (stripe_webhook_deliveries.c.seq == first, 0), else_=2**62
            ), created_ns=0)
        )  # fmt: skip
    _deliver(hook_server)
    assert _statuses(hook_server, account) == ["abandoned"] * 3


def test_a_worker_whose_lease_ran_out_cannot_undo_the_next_ones_result(
    hook_server: Server, receiver: Receiver
) -> None:
    """Worker A claims a delivery and is slow; its lease runs out, worker B claims it again and
    succeeds. A's late failure is recorded as an attempt but changes nothing: no abandoning of a
    delivery that succeeded, no disabling of its endpoint."""
    account = new_account(hook_server)
    _endpoint(account, receiver)
    account.test.v1.customers.create(params={"name": "slow"})
    now = time.time_ns()
    (first,) = _claim(hook_server.engine, VAULT, now, 10)
    (second,) = _claim(hook_server.engine, VAULT, now + LEASE_NS + 1, 10)
    assert second.attempts == first.attempts + 1
    rng = random.Random(1)
    _record(hook_server.engine, second, _Result(200, "ok", None, 5), now + LEASE_NS + 2, rng)
    late = now + RETRY_WINDOW_NS + HOUR_NS  # So late that a failure would abandon it.
    _record(hook_server.engine, first, _Result(None, None, "ReadTimeout", 40_000), late, rng)
    assert _statuses(hook_server, account) == ["succeeded"]
    (endpoint,) = account.test.v1.webhook_endpoints.list().data
    assert endpoint.status == "enabled"
    with hook_server.engine.connect() as connection:
        recorded = connection.execute(
            sa.select(sa.func.count()).where(stripe_webhook_attempts.c.tenant_id == account.id)
        ).scalar_one()
    assert recorded == 2  # Both attempts happened, and both are in the history.


def test_the_url_guard_holds_at_delivery(hook_server: Server, receiver: Receiver) -> None:
    account = new_account(hook_server)
    _endpoint(account, receiver)
    account.test.v1.customers.create(params={"name": "x"})
    assert _deliver(hook_server, loopback=False) == 1
    assert receiver.received == []
    (error,) = _attempt_errors(hook_server, account)
    assert error is not None
    assert "loopback" in error


def test_two_workers_never_send_one_delivery_twice(hook_server: Server, receiver: Receiver) -> None:
    account = new_account(hook_server)
    secret = _endpoint(account, receiver)
    for n in range(30):
        account.test.v1.customers.create(params={"name": f"c{n}"})
    start = threading.Barrier(2)

    def work() -> None:
        start.wait()
        while _deliver(hook_server) > 0:
            pass

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = [stripe.Webhook.construct_event(b, s, secret).id for b, s in receiver.received]
    assert len(events) == len(set(events)) == 30


def test_a_slow_receiver_does_not_stall_the_others(hook_server: Server) -> None:
    """The slow endpoint answers only once the fast one has its delivery. Deliveries are claimed
    in order, so the slow endpoint's (created first) is sent first: were deliveries sent one
    after the other, the fast one would arrive only after the slow one's wait ran out, and the
    slow receiver would record that it waited in vain."""
    fast, slow = Receiver(), Receiver()
    fast_arrived = threading.Event()
    waited_in_vain: list[bool] = []
    fast_record = fast.received.append

    def on_fast(item: tuple[bytes, str]) -> None:
        fast_record(item)
        fast_arrived.set()

    def on_slow(item: tuple[bytes, str]) -> None:
        waited_in_vain.append(not fast_arrived.wait(timeout=5))

    fast.received = mock.MagicMock(append=on_fast)
    slow.received = mock.MagicMock(append=on_slow)
    threads = [threading.Thread(target=r.server.serve_forever, daemon=True) for r in (fast, slow)]
    for thread in threads:
        thread.start()
    try:
        account = new_account(hook_server)
        for receiver in (slow, fast):
            _endpoint(account, receiver)
        account.test.v1.customers.create(params={"name": "x"})
        assert _deliver(hook_server) == 2
    finally:
        for receiver in (fast, slow):
            receiver.server.shutdown()
            receiver.server.server_close()
    assert fast_arrived.is_set()
    assert waited_in_vain == [False]
    assert _statuses(hook_server, account) == ["succeeded", "succeeded"]


def test_a_worker_killed_mid_delivery_loses_nothing(hook_server: Server) -> None:
    """SIGKILL `farthing worker` while its sends hang; after the lease, another worker delivers
    every event (at least once; ids de-duplicate what was sent twice)."""
    receiver = Receiver()
    killed = threading.Event()
    seen: list[tuple[bytes, str]] = []

    def on_request(item: tuple[bytes, str]) -> None:
        seen.append(item)
        killed.wait(timeout=30)  # The worker dies while this request is in flight.

    receiver.received = mock.MagicMock(append=on_request)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    account = new_account(hook_server)
    secret = _endpoint(account, receiver)
    ids = {account.test.v1.customers.create(params={"name": f"c{n}"}).id for n in range(10)}
    env = server_env_with(
        FARTHING_VAULT_KEY=VAULT_KEY.hex(),
        FARTHING_WEBHOOK_ALLOW_LOOPBACK="1",
        FARTHING_DATABASE_URL=hook_server.database_url,
    )
    worker = subprocess.Popen([FARTHING, "worker"], env=env)
    try:
        poll_until(lambda: len(seen) > 0, deadline_s=30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        killed.set()
    receiver.received = seen  # From now on the receiver answers at once.
    while _deliver(hook_server, time.time_ns() + LEASE_NS + HOUR_NS) > 0:
        pass
    receiver.server.shutdown()
    receiver.server.server_close()
    delivered = {
        stripe.Webhook.construct_event(body, signature, secret).data.object["id"]
        for body, signature in seen
    }
    assert delivered == ids
    assert _statuses(hook_server, account) == ["succeeded"] * 10


def _cli(server: Server, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = server_env_with(FARTHING_DATABASE_URL=server.database_url)
    done = subprocess.run(
        [FARTHING, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == expect, done.stderr
    return done


def test_attempts_are_listed_and_events_resent(hook_server: Server, receiver: Receiver) -> None:
    account = new_account(hook_server)
    secret = _endpoint(account, receiver)
    (endpoint,) = account.test.v1.webhook_endpoints.list().data
    receiver.status = 500
    account.test.v1.customers.create(params={"name": "x"})
    _deliver(hook_server)
    receiver.status = 200
    _deliver(hook_server, time.time_ns() + HOUR_NS)
    with hook_server.client(account.test_secret) as client:
        listed = client.get(f"/v1/webhook_endpoints/{endpoint.id}/attempts").json()
    assert [attempt["status_code"] for attempt in listed["data"]] == [200, 500]
    printed = _cli(
        hook_server, "events", "attempts", "--endpoint", endpoint.id, "--account", account.id
    )
    codes = [json.loads(line)["status_code"] for line in printed.stdout.splitlines()]
    assert codes == [200, 500]
    event_id = stripe.Webhook.construct_event(*receiver.received[-1], secret).id
    _cli(
        hook_server,
        "events",
        "resend",
        event_id,
        "--endpoint",
        endpoint.id,
        "--account",
        account.id,
    )
    assert _deliver(hook_server) == 1
    assert stripe.Webhook.construct_event(*receiver.received[-1], secret).id == event_id
    (resent,) = query(hook_server.engine, AuditQuery(account=account.id, object_id=event_id))
    assert (resent.record.action, resent.record.actor_kind) == ("events.resend", "operator")
    assert resent.record.object_ids == (event_id, endpoint.id)
    stranger = new_account(hook_server)
    _cli(
        hook_server,
        "events",
        "resend",
        event_id,
        "--endpoint",
        endpoint.id,
        "--account",
        stranger.id,
        expect=1,
    )


def test_a_rolled_secret_overlaps_with_the_old_one(hook_server: Server, receiver: Receiver) -> None:
    account = new_account(hook_server)
    old = _endpoint(account, receiver)
    (endpoint,) = account.test.v1.webhook_endpoints.list().data
    with hook_server.client(account.test_secret) as client:
        rolled = client.post(f"/v1/webhook_endpoints/{endpoint.id}/roll_secret").json()
        new = rolled["secret"]
        assert new.startswith("whsec_")
        assert new != old
        assert "secret" not in client.get(f"/v1/webhook_endpoints/{endpoint.id}").json()
        account.test.v1.customers.create(params={"name": "during overlap"})
        _deliver(hook_server)
        body, signature = receiver.received[-1]
        # During the overlap both secrets sign: receivers on either verify.
        for secret in (old, new):
            stripe.Webhook.construct_event(body, signature, secret)
        ended = client.post(
            f"/v1/webhook_endpoints/{endpoint.id}/roll_secret", data={"expires_in": "0"}
        ).json()
    account.test.v1.customers.create(params={"name": "after"})
    _deliver(hook_server)
    body, signature = receiver.received[-1]
    stripe.Webhook.construct_event(body, signature, ended["secret"])
    for retired in (old, new):
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, signature, retired)


def test_serve_can_run_the_worker_in_process(tmp_path: Path, receiver: Receiver) -> None:
    env = server_env_with(
        FARTHING_VAULT_KEY=VAULT_KEY.hex(),
        FARTHING_WEBHOOK_ALLOW_LOOPBACK="1",
        FARTHING_SERVE_WORKER="1",
    )
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving("sqlite", tmp_path))
        account = new_account(server)
        secret = _endpoint(account, receiver)
        customer = account.test.v1.customers.create(params={"name": "in process"})
        # No worker runs here: the server itself delivers.
        poll_until(lambda: len(receiver.received) > 0, deadline_s=30)
    event = stripe.Webhook.construct_event(*receiver.received[0], secret)
    assert event.data.object["id"] == customer.id


HOOK_NAME = "hooks.farthing.test"  # Resolves nowhere: the tests answer its look-ups themselves.


@contextlib.contextmanager
def answering(answers: Callable[[int], list[str]]) -> Iterator[list[str]]:
    """DNS for HOOK_NAME: its n-th look-up (from 0) gets ``answers(n)``; other names resolve as
    usual. Yields the names looked up, in order."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        if host != HOOK_NAME:
            return real(host, port, *args, **kwargs)
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port or 0))
            for address in answers(looked_up.count(HOOK_NAME) - 1)
        ]

    with mock.patch.object(socket, "getaddrinfo", getaddrinfo):
        yield looked_up


def _named_hook(server: Server, receiver: Receiver) -> Account:
    """A new account whose endpoint names HOOK_NAME at the receiver's port, with one event
    queued for it. Created through the server, whose DNS does not know the name: accepted,
    checked at delivery."""
    account = new_account(server)
    account.test.v1.webhook_endpoints.create(
        params={
            "url": f"http://{HOOK_NAME}:{receiver.port}{receiver.path}",
            "enabled_events": ["*"],
        }
    )
    account.test.v1.customers.create(params={"name": "x"})
    return account


def _attempt_errors(server: Server, account: Account) -> list[str | None]:
    return _column_of(server, account, stripe_webhook_attempts.c.error)


def test_a_delivery_connects_to_the_address_it_checked(hook_server: Server) -> None:
    """DNS rebinding: the name answers an allowed address to the check, then another. The POST
    must go to the checked one; an HTTP client that looked the name up again would not."""
    with (
        receiving("127.0.0.1") as checked,
        receiving("127.0.0.2", checked.port, checked.path) as other,
    ):
        account = _named_hook(hook_server, checked)
        with answering(lambda n: ["127.0.0.1"] if n == 0 else ["127.0.0.2"]) as looked_up:
            assert _deliver(hook_server) == 1
    assert looked_up.count(HOOK_NAME) == 1
    assert len(checked.received) == 1
    assert other.received == []
    assert checked.hosts == [f"{HOOK_NAME}:{checked.port}"]  # The name, as the receiver expects.
    assert _statuses(hook_server, account) == ["succeeded"]


def test_the_next_checked_address_is_tried_when_one_refuses(
    hook_server: Server, receiver: Receiver
) -> None:
    account = _named_hook(hook_server, receiver)
    with answering(lambda n: ["127.0.0.3", "127.0.0.1"]):  # Nothing listens on 127.0.0.3.
        assert _deliver(hook_server) == 1
    assert len(receiver.received) == 1
    assert _statuses(hook_server, account) == ["succeeded"]


def test_a_forbidden_address_anywhere_in_the_answer_refuses(
    hook_server: Server, receiver: Receiver
) -> None:
    account = _named_hook(hook_server, receiver)
    with answering(lambda n: ["93.184.216.34", "127.0.0.1"]):
        assert _deliver(hook_server, loopback=False) == 1
    assert receiver.received == []
    (error,) = _attempt_errors(hook_server, account)
    assert error is not None
    assert "loopback" in error


def test_a_name_with_more_addresses_than_can_be_checked_is_refused(
    hook_server: Server, receiver: Receiver
) -> None:
    """Every address is checked, and any could be connected to: a longer answer is refused, not
    cut short (the 17th address could be an internal one)."""
    account = _named_hook(hook_server, receiver)
    with answering(lambda n: [f"127.0.0.{i}" for i in range(2, 2 + ADDRESSES_MAX)] + ["127.0.0.1"]):
        assert _deliver(hook_server) == 1
    assert receiver.received == []
    (error,) = _attempt_errors(hook_server, account)
    assert error is not None
    assert f"more than {ADDRESSES_MAX} addresses" in error


def _endpoint_url(server: Server, account: Account, url: str) -> None:
    """Point the account's only endpoint at ``url`` as an older version could have stored it."""
    with server.engine.begin() as connection:
        connection.execute(
            stripe_webhook_endpoints.update()
            .where(stripe_webhook_endpoints.c.tenant_id == account.id)
            .values(url=url)
        )


def test_one_broken_endpoint_fails_its_own_attempt_only(
    hook_server: Server, receiver: Receiver
) -> None:
    """Whatever an attempt raises is that attempt's failure: the others are sent and recorded."""
    broken, healthy = new_account(hook_server), new_account(hook_server)
    _endpoint(broken, receiver)
    _endpoint_url(hook_server, broken, receiver.url + "/ctl\x01x")  # No client sends this.
    _endpoint(healthy, receiver)
    unexpected = new_account(hook_server)
    _endpoint(unexpected, receiver)
    _endpoint_url(hook_server, unexpected, receiver.url + "/unexpected")

    def pinned(url: str, address: str) -> Any:
        if url.endswith("/unexpected"):
            raise RuntimeError("something nobody foresaw")
        return urls.pinned(url, address)

    for account in (broken, healthy, unexpected):
        account.test.v1.customers.create(params={"name": "x"})
    with mock.patch.object(delivery, "pinned", pinned):
        _deliver(hook_server)
    assert len(receiver.received) == 1
    assert _statuses(hook_server, healthy) == ["succeeded"]
    for account, cause in ((broken, "control characters"), (unexpected, "RuntimeError")):
        assert _statuses(hook_server, account) == ["pending"]  # Retried later, like any failure.
        (error,) = _attempt_errors(hook_server, account)
        assert error is not None
        assert cause in error


@pytest.mark.parametrize("how", ["delete", "disable"])
def test_a_deleted_or_disabled_endpoint_gets_nothing_more(
    hook_server: Server, receiver: Receiver, how: str
) -> None:
    account = new_account(hook_server)
    _endpoint(account, receiver)
    (endpoint,) = account.test.v1.webhook_endpoints.list().data
    receiver.status = 500
    account.test.v1.customers.create(params={"name": "x"})
    assert _deliver(hook_server) == 1  # Failed: queued for a retry.
    account.test.v1.customers.create(params={"name": "y"})  # Queued, never tried.
    receiver.status = 200
    if how == "delete":
        account.test.v1.webhook_endpoints.delete(endpoint.id)
    else:
        account.test.v1.webhook_endpoints.update(endpoint.id, params={"disabled": True})
    assert _statuses(hook_server, account) == ["abandoned", "abandoned"]
    _deliver(hook_server, time.time_ns() + HOUR_NS)
    assert len(receiver.received) == 1  # Only the first, failed attempt.
    if how == "disable":
        # A resend would wait for ever: refused until the endpoint is enabled again.
        event_id = account.test.v1.events.list().data[0].id
        refused = _cli(
            hook_server, "events", "resend", event_id, "--endpoint", endpoint.id,
            "--account", account.id, expect=1,
        )  # fmt: skip
        assert "disabled" in refused.stderr
        assert _statuses(hook_server, account) == ["abandoned", "abandoned"]


def _raw_receiver(answer: Callable[[socket.socket], None]) -> Iterator[tuple[str, list[str]]]:
    """A receiver on a raw socket: reads the request, then ``answer``s as it likes. Yields its
    URL and what became of each answer ("done" or the error that cut it short)."""
    listener = socket.create_server(("127.0.0.1", 0))
    outcomes: list[str] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.settimeout(30)
                    request = b""
                    while b"\r\n\r\n" not in request:
                        request += connection.recv(65536)
                    try:
                        answer(connection)
                        outcomes.append("done")
                    except OSError as error:
                        outcomes.append(type(error).__name__)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hooks", outcomes
    finally:
        listener.close()


def _deliver_bounded(server: Server, *, limit_s: float) -> None:
    """Deliver in a thread that must finish within ``limit_s`` (it never does if unbounded)."""
    worker = threading.Thread(target=_deliver, args=(server,), daemon=True)
    worker.start()
    worker.join(timeout=limit_s)
    assert not worker.is_alive(), f"an attempt outlived {limit_s} s"


def test_a_receiver_that_answers_a_byte_at_a_time_is_cut_off(hook_server: Server) -> None:
    """Each byte comes within the read timeout, so only a deadline for the whole attempt ends
    it: a sender (and the delivery's lease) is never held longer than that."""

    def trickle(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(600):  # Headers that never end.
            connection.sendall(b"X")
            time.sleep(0.1)  # The slow receiver's pace, not a wait for anything.

    account = new_account(hook_server)
    with (
        mock.patch.object(delivery, "ATTEMPT_DURATION_MAX_S", 2),
        contextlib.contextmanager(_raw_receiver)(trickle) as (url, _outcomes),
    ):
        account.test.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["*"]})
        account.test.v1.customers.create(params={"name": "x"})
        _deliver_bounded(hook_server, limit_s=15)
    (error,) = _attempt_errors(hook_server, account)
    assert error is not None
    assert "Timeout" in error
    assert _statuses(hook_server, account) == ["pending"]


def test_only_the_start_of_an_answer_is_read(hook_server: Server) -> None:
    body = b"A" * 2000 + b"B" * (64 * 1024 * 1024)

    def huge(connection: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        connection.sendall(head + body)

    account = new_account(hook_server)
    with contextlib.contextmanager(_raw_receiver)(huge) as (url, outcomes):
        account.test.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["*"]})
        account.test.v1.customers.create(params={"name": "x"})
        _deliver_bounded(hook_server, limit_s=60)
        poll_until(lambda: len(outcomes) == 1, deadline_s=30)
    # The worker hung up long before the receiver could send it all.
    assert outcomes != ["done"]
    with hook_server.engine.connect() as connection:
        (kept,) = connection.execute(
            sa.select(stripe_webhook_attempts.c.response_body).where(
                stripe_webhook_attempts.c.tenant_id == account.id
            )
        ).scalars()
    assert kept == "A" * 1000
    assert _statuses(hook_server, account) == ["succeeded"]


def test_the_worker_outlives_a_failed_round(hook_server: Server) -> None:
    """A database or NATS outage fails a round; the worker says so and goes on polling."""
    rounds: list[str] = []
    second_round = threading.Event()

    def deliver(*_args: Any, **_kwargs: Any) -> int:
        rounds.append("round")
        if len(rounds) == 1:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("database went away"))
        second_round.set()
        return 0

    async def run_two_rounds() -> None:
        settings = Settings.from_env(database_url=hook_server.database_url)
        task = asyncio.create_task(
            worker.run_worker(hook_server.engine, VAULT, settings, once=False, poll_s=0.05)
        )
        assert await asyncio.to_thread(second_round.wait, 30)
        assert not task.done()
        task.cancel()

    with mock.patch.object(webhooks, "deliver_due", deliver):
        asyncio.run(run_two_rounds())
    assert rounds[:2] == ["round", "round"]
