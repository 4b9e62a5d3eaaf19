"""The event stream on the machine's NATS JetStream (FARTHING_TEST_NATS_URL; with CI=true a
missing setting fails instead of skipping): `farthing worker` SIGKILLed mid-stream loses
nothing, and what it published twice JetStream de-duplicates by event id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from unittest import mock

import nats
import pytest
import sqlalchemy as sa

from farthing.db.schema import stripe_event_stream_cursors as cursors
from farthing.db.schema import stripe_events
from farthing.stripe_api.events._stream import ensure_stream, publish_pending
from tests.http import conftest as http_conftest
from tests.http.conftest import FARTHING, Server, poll_until, serving
from tests.stripe_api.conftest import VAULT_KEY, new_account, server_env_with

EVENTS = 60
FINISH_DEADLINE_S = 60


def _nats_url() -> str:
    url = os.environ.get("FARTHING_TEST_NATS_URL")
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs FARTHING_TEST_NATS_URL (the machine's NATS server)")
        pytest.skip("FARTHING_TEST_NATS_URL is not set")
    return url


async def _stream_messages(url: str, stream: str, subjects: str) -> list[tuple[str, str, str]]:
    """(subject, Nats-Msg-Id, event id in the body) of every message, in stream order."""
    import json

    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        info = await js.stream_info(stream)
        found: list[tuple[str, str, str]] = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(stream, seq)
            body = json.loads(message.data or b"{}")
            message_id = (message.headers or {}).get("Nats-Msg-Id", "")
            found.append((str(message.subject), str(message_id), str(body["id"])))
        assert all(subject.startswith(subjects + ".") for subject, _, _ in found)
        return found
    finally:
        await connection.close()


async def _finish(server: Server, url: str, stream: str, subjects: str) -> None:
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        await ensure_stream(js, stream=stream, subject_prefix=subjects)
        # Until the cursor reaches the newest event: on PostgreSQL a round can publish nothing
        # while it waits at a gap for transactions elsewhere on the server to end.
        deadline = time.monotonic() + FINISH_DEADLINE_S
        while not _caught_up(server, stream):
            assert time.monotonic() < deadline, "the stream did not catch up"
            await publish_pending(server.engine, js, stream=stream, subject_prefix=subjects)
    finally:
        await connection.close()


def _caught_up(server: Server, stream: str) -> bool:
    with server.engine.connect() as connection:
        newest = connection.execute(sa.select(sa.func.max(stripe_events.c.seq))).scalar_one()
        cursor = connection.execute(
            sa.select(cursors.c.seq).where(cursors.c.stream == stream)
        ).scalar_one_or_none()
    return cursor is not None and cursor == newest


async def _count(url: str, stream: str) -> int:
    connection = await nats.connect(url)
    try:
        try:
            info = await connection.jetstream().stream_info(stream)
        except Exception:
            return 0
        return int(info.state.messages)
    finally:
        await connection.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_killed_publisher_loses_and_duplicates_nothing(tmp_path: Path, kind: str) -> None:
    url = _nats_url()
    stream = "FT_" + secrets.token_hex(6).upper()
    subjects = "farthing_test." + stream.lower()
    env = server_env_with(FARTHING_VAULT_KEY=VAULT_KEY.hex())
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving(kind, tmp_path))
        accounts = [new_account(server) for _ in range(2)]
        for n in range(EVENTS):
            accounts[n % 2].test.v1.customers.create(params={"name": f"c{n}"})
        worker_env = env | {
            "FARTHING_DATABASE_URL": server.database_url,
            "FARTHING_NATS_URL": url,
            "FARTHING_NATS_STREAM": stream,
            "FARTHING_NATS_SUBJECTS": subjects,
        }
        worker = subprocess.Popen([FARTHING, "worker"], env=worker_env)
        try:
            poll_until(lambda: asyncio.run(_count(url, stream)) > 0, deadline_s=30)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        asyncio.run(_finish(server, url, stream, subjects))
        with server.engine.connect() as connection:
            rows = connection.execute(
                sa.select(stripe_events.c.id, stripe_events.c.tenant_id).order_by(
                    stripe_events.c.seq
                )
            ).all()
        published = asyncio.run(_stream_messages(url, stream, subjects))
    assert len(rows) == EVENTS
    # Nothing lost, nothing twice (JetStream dropped what the restarted publisher repeated).
    assert sorted(event_id for _, _, event_id in published) == sorted(row.id for row in rows)
    assert all(message_id == event_id for _, message_id, event_id in published)
    # In order per account: each account's events appear in the order they happened.
    for account in accounts:
        mine = [row.id for row in rows if row.tenant_id == account.id]
        assert [e for subject, _, e in published if f".{account.id}." in subject] == mine


class _DiesAfter:
    """A JetStream context whose process 'dies' after ``left`` publishes: the batch's cursor
    never moves, exactly as when a publisher is killed between publishing and committing."""

    def __init__(self, js: Any, left: int) -> None:
        self._js = js
        self._left = left

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        if self._left == 0:
            raise RuntimeError("killed")
        self._left -= 1
        return await self._js.publish(*args, **kwargs)


async def _die_then_resume(server: Server, url: str, stream: str, subjects: str) -> None:
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        await ensure_stream(js, stream=stream, subject_prefix=subjects)
        with pytest.raises(RuntimeError):
            await publish_pending(
                server.engine, _DiesAfter(js, 7), stream=stream, subject_prefix=subjects
            )
        while await publish_pending(server.engine, js, stream=stream, subject_prefix=subjects):
            pass
    finally:
        await connection.close()


def test_a_publisher_dying_mid_batch_republishes_without_duplicates(tmp_path: Path) -> None:
    url = _nats_url()
    stream = "FT_" + secrets.token_hex(6).upper()
    subjects = "farthing_test." + stream.lower()
    env = server_env_with(FARTHING_VAULT_KEY=VAULT_KEY.hex())
    with contextlib.ExitStack() as stack:
        with mock.patch.object(http_conftest, "server_env", return_value=env):
            server = stack.enter_context(serving("sqlite", tmp_path))
        account = new_account(server)
        for n in range(20):
            account.test.v1.customers.create(params={"name": f"c{n}"})
        asyncio.run(_die_then_resume(server, url, stream, subjects))
        published = asyncio.run(_stream_messages(url, stream, subjects))
    event_ids = [event_id for _, _, event_id in published]
    # The first 7 went out twice (before and after the "death"); the stream kept each once.
    assert len(event_ids) == len(set(event_ids)) == 20
