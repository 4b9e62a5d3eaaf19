"""The real server on loopback: `farthing serve` as a subprocess, one per database kind.

Every HTTP test talks to that process over TCP with httpx (or a raw socket where the test needs
control of the bytes on the wire). Tests share a server but never a tenant: each test creates its
own tenant and keys, so tenant isolation keeps them independent.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from farthing.auth import Mode, create_key, create_tenant
from farthing.db.engine import create_engine
from farthing.db.schema import api_keys
from tests.conftest import JOURNAL_KEY, _migrate, _postgres_database, postgres_server_url

FARTHING = str(Path(sys.executable).with_name("farthing"))
HOST = "127.0.0.1"
STARTUP_DEADLINE_S = 30.0
SHUTDOWN_DEADLINE_S = 15.0
REQUEST_TIMEOUT_S = 60.0
ERROR_KEYS = {"type", "code", "message", "param"}


class ServerStartError(Exception):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def server_env() -> dict[str, str]:
    """The server's environment: the test journal key, nothing inherited that could redirect it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARTHING_")}
    env["FARTHING_JOURNAL_KEY"] = JOURNAL_KEY.hex()
    # The suites send many bad keys from one address to servers they share;
    # tests/http/test_auth_throttle.py checks the limit with its own server.
    env["FARTHING_AUTH_FAILURES_PER_S"] = env["FARTHING_AUTH_FAILURE_BURST"] = "1000000"
    return env


def _wait_until_answering(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    """Poll until the server answers HTTP, it exits, or the deadline passes."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while True:
        try:
            response = httpx.get(f"{base_url}/openapi.json", timeout=2.0)
        except httpx.TransportError:
            pass
        else:
            if response.status_code == 200:
                return
        if time.monotonic() > deadline:
            msg = f"server did not answer within {STARTUP_DEADLINE_S}s:\n{log.read_text()}"
            raise ServerStartError(msg)
        try:
            # Waiting on the process doubles as the poll interval and notices an early exit.
            code = process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        msg = f"server exited with {code} during start-up:\n{log.read_text()}"
        raise ServerStartError(msg)


@contextmanager
def running_server(database_url: str, log: Path, *, clean_log: bool = True) -> Iterator[str]:
    """Start `farthing serve` on a free loopback port; yield its base URL; stop it (SIGTERM).

    On exit, asserts that the server shut down cleanly and (unless `clean_log` is off, for tests
    of known bugs) logged no traceback: an unhandled error anywhere during the tests shows here.
    """
    for _attempt in range(3):
        port = free_port()
        base_url = f"http://{HOST}:{port}"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [
                    FARTHING,
                    "serve",
                    "--database-url",
                    database_url,
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=server_env(),
            )
        try:
            _wait_until_answering(process, base_url, log)
        except ServerStartError:
            _stop(process)
            if "address already in use" in log.read_text().lower():
                continue  # Another process took the port between probe and bind.
            raise
        break
    else:
        pytest.fail("no free port after 3 attempts")
    try:
        yield base_url
    finally:
        code = _stop(process)
    output = log.read_text()
    # Uvicorn re-raises the signal after a graceful shutdown, so SIGTERM is a clean exit.
    assert code in (0, -signal.SIGTERM), f"server exited with {code}:\n{output}"
    assert "Application shutdown complete" in output, output
    if clean_log:
        assert "Traceback" not in output, output


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=SHUTDOWN_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@dataclass(frozen=True, slots=True)
class Server:
    base_url: str
    database_url: str
    kind: str
    engine: sa.Engine

    def client(self, secret: str | None = None) -> httpx.Client:
        headers = {} if secret is None else {"Authorization": f"Bearer {secret}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=REQUEST_TIMEOUT_S)


@contextmanager
def serving(kind: str, directory: Path, *, clean_log: bool = True) -> Iterator[Server]:
    """A migrated database of `kind` and `farthing serve` on it."""
    if kind == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{directory / 'farthing.db'}"])
    else:
        base = postgres_server_url()
        assert base is not None
        urls = _postgres_database(base)
    for url in urls:
        _migrate(url)
        engine = create_engine(url)
        try:
            with running_server(url, directory / "server.log", clean_log=clean_log) as base_url:
                yield Server(base_url=base_url, database_url=url, kind=kind, engine=engine)
        finally:
            engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """`farthing serve` on a migrated database of each kind, shared by the session."""
    with serving(request.param, tmp_path_factory.mktemp(f"server-{request.param}")) as started:
        yield started


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    test_secret: str
    live_secret: str
    client: httpx.Client  # Authenticated with the test-mode key.


def new_tenant(server: Server, name: str = "http tenant") -> Tenant:
    with server.engine.begin() as connection:
        tenant_id = create_tenant(connection, name=name, journal_key=JOURNAL_KEY)
        test_secret = create_key(connection, tenant_id=tenant_id, mode=Mode.test)
        live_secret = create_key(connection, tenant_id=tenant_id, mode=Mode.live)
    return Tenant(tenant_id, test_secret, live_secret, server.client(test_secret))


@pytest.fixture
def tenant(server: Server) -> Iterator[Tenant]:
    """A new tenant with test and live keys; its client uses the test key."""
    created = new_tenant(server)
    with created.client:
        yield created


def key_id_of(engine: sa.Engine, secret: str) -> str:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with engine.connect() as connection:
        key_id: str = connection.execute(
            sa.select(api_keys.c.id).where(api_keys.c.secret_hash == digest)
        ).scalar_one()
    return key_id


def assert_error(
    response: httpx.Response, status: int, *, type_: str, code: str | None = None
) -> dict[str, Any]:
    """The response is `status` in the API's error format, with no internal detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= ERROR_KEYS, error
    assert {"type", "code", "message"} <= set(error), error
    assert error["type"] == type_, error
    if code is not None:
        assert error["code"] == code, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert isinstance(error.get("param", ""), str), error
    for leak in ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3", "pydantic"):
        assert leak not in response.text, response.text
    return error


def poll_until(check: Callable[[], bool], *, deadline_s: float, interval_s: float = 0.05) -> None:
    """Re-evaluate `check` until it holds; fail after the deadline (no fixed waits)."""
    deadline = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {deadline_s}s")
        time.sleep(interval_s)


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_exchange(base_url: str, chunks: Iterator[bytes], *, timeout_s: float = 30.0) -> RawResponse:
    """Write the given bytes on a fresh TCP connection and read one response (Content-Length)."""
    url = httpx.URL(base_url)
    assert url.port is not None
    with socket.create_connection((url.host, url.port), timeout=timeout_s) as connection:
        for chunk in chunks:
            connection.sendall(chunk)
        received = b""
        while b"\r\n\r\n" not in received:
            data = connection.recv(65536)
            assert data, f"connection closed before a response: {received!r}"
            received += data
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(body) < length:
            data = connection.recv(65536)
            assert data, "connection closed mid-body"
            body += data
    return RawResponse(int(status_line.split()[1]), headers, body[:length])
