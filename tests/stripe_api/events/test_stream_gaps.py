"""The event stream never skips an event that commits late.

On PostgreSQL an event's seq is taken at insert: a transaction can hold seq 10 while one holding
11 commits first, or roll 10 back for good. The publisher waits at such a gap until every
transaction running when it saw the gap has ended; then the gap is filled or final.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import nats
import pytest
import sqlalchemy as sa

from farthing.auth import create_tenant
from farthing.db.engine import begin_write, create_engine
from farthing.db.schema import stripe_event_stream_cursors as cursors
from farthing.stripe_api._request import Partition
from farthing.stripe_api.events import emit
from farthing.stripe_api.events._stream import (
    GAP_WAIT_WARN_S,
    _Cursor,
    _ready,
    _watch_wait,
    ensure_stream,
    publish_pending,
)
from tests.conftest import JOURNAL_KEY
from tests.http.conftest import poll_until
from tests.stripe_api.events.test_stream import _nats_url, _stream_messages


def _rows(*seqs: int) -> list[dict[str, Any]]:
    return [{"seq": seq} for seq in seqs]


def _seqs(rows: list[Any]) -> list[int]:
    return [row["seq"] for row in rows]


# -- the rule, on its own ----------------------------------------------------------------------


def test_sqlite_publishes_everything_in_order() -> None:
    ready, cursor = _ready(_Cursor(3), _rows(5, 9), None)
    assert (_seqs(ready), cursor) == ([5, 9], _Cursor(9))


def test_contiguous_events_go_out_whatever_runs() -> None:
    ready, cursor = _ready(_Cursor(3), _rows(4, 5, 6), (100, 120))
    assert (_seqs(ready), cursor) == ([4, 5, 6], _Cursor(6))


def test_a_gap_waits_for_the_transactions_running_when_it_was_seen() -> None:
    # Seq 6 is missing while transactions 100..119 may still run: stop before it.
    ready, cursor = _ready(_Cursor(3), _rows(4, 5, 7, 8, 10), (100, 120))
    assert (_seqs(ready), cursor) == ([4, 5], _Cursor(5, 120, 10))
    # Later, transaction 110 still runs: still waiting.
    ready, cursor = _ready(cursor, _rows(7, 8, 10, 11), (110, 130))
    assert (_seqs(ready), cursor) == ([], _Cursor(5, 120, 10))
    # Everything older than 120 ended: 6 and 9 (both seen then) are final; 12 is seen afresh.
    ready, cursor = _ready(cursor, _rows(7, 8, 10, 11, 13), (125, 140))
    assert (_seqs(ready), cursor) == ([7, 8, 10, 11], _Cursor(11, 140, 13))


def test_a_filled_gap_goes_out_in_order() -> None:
    ready, cursor = _ready(_Cursor(0), _rows(2), (100, 101))
    assert (_seqs(ready), cursor) == ([], _Cursor(0, 101, 2))
    ready, cursor = _ready(cursor, _rows(1, 2), (100, 102))
    assert (_seqs(ready), cursor) == ([1, 2], _Cursor(2))


def test_a_gap_with_nothing_running_is_final_at_once() -> None:
    ready, cursor = _ready(_Cursor(0), _rows(2, 3), (100, 100))
    assert (_seqs(ready), cursor) == ([2, 3], _Cursor(3))


def test_known_gaps_beyond_the_batch_keep_their_wait() -> None:
    # The wait covers gaps up to 20; this batch ends at 8, so 9..20 keep it.
    ready, cursor = _ready(_Cursor(5, 120, 20), _rows(7, 8), (125, 130))
    assert (_seqs(ready), cursor) == ([7, 8], _Cursor(8, 120, 20))


def test_a_wait_from_another_servers_history_starts_afresh() -> None:
    # A restored database's cursor waits for xmax 5,000,000 that this server has not reached.
    ready, cursor = _ready(_Cursor(5, 5_000_000, 9), _rows(7), (300, 300))
    assert (_seqs(ready), cursor) == ([7], _Cursor(7, 300, 9))
    ready, cursor = _ready(_Cursor(5, 5_000_000, 9), _rows(7), (300, 310))
    assert (_seqs(ready), cursor) == ([], _Cursor(5, 310, 9))


def test_a_long_wait_is_reported_once() -> None:
    stream = "S_" + secrets.token_hex(4)
    waiting = _Cursor(5, 120, 9)
    assert not _watch_wait(stream, waiting, 1_000.0)
    assert not _watch_wait(stream, waiting, 1_000.0 + GAP_WAIT_WARN_S - 1)
    assert _watch_wait(stream, waiting, 1_000.0 + GAP_WAIT_WARN_S)
    assert not _watch_wait(stream, waiting, 1_000.0 + 10 * GAP_WAIT_WARN_S)  # Said once.
    # Another gap (or none) starts the clock again.
    assert not _watch_wait(stream, _Cursor(7, 130, 9), 5_000.0)
    assert _watch_wait(stream, _Cursor(7, 130, 9), 5_000.0 + GAP_WAIT_WARN_S)
    assert not _watch_wait(stream, _Cursor(9), 6_000.0)


# -- on the machine's PostgreSQL and NATS ------------------------------------------------------


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = create_engine(postgres_url)
    yield engine
    engine.dispose()


def _scope(engine: sa.Engine) -> Partition:
    with begin_write(engine) as connection:
        tenant = create_tenant(connection, name="stream", journal_key=JOURNAL_KEY)
    return Partition(tenant_id=tenant, mode="test", platform_id=tenant)


def _emit(connection: sa.Connection, scope: Partition, name: str) -> str:
    return emit(connection, scope, "customer.created", {"id": name, "object": "customer"})


async def _publish(engine: sa.Engine, url: str, stream: str) -> int:
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        subjects = "farthing_test." + stream.lower()
        await ensure_stream(js, stream=stream, subject_prefix=subjects)
        return await publish_pending(engine, js, stream=stream, subject_prefix=subjects)
    finally:
        await connection.close()


def _published(url: str, stream: str) -> list[str]:
    found = asyncio.run(_stream_messages(url, stream, "farthing_test." + stream.lower()))
    return [event_id for _, _, event_id in found]


@pytest.mark.parametrize("late", ["commits", "rolls back"])
def test_an_event_committed_late_is_not_skipped(pg_engine: sa.Engine, late: str) -> None:
    url = _nats_url()
    stream = "FT_" + secrets.token_hex(6).upper()
    scope = _scope(pg_engine)
    with begin_write(pg_engine) as connection:
        first = _emit(connection, scope, "cus_first")
    with pg_engine.connect() as slow:
        transaction = slow.begin()
        held = _emit(slow, scope, "cus_held")  # Takes the next seq, not committed yet.
        with begin_write(pg_engine) as connection:
            after = _emit(connection, scope, "cus_after")  # The seq after it, committed.
        assert asyncio.run(_publish(pg_engine, url, stream)) == 1
        # The cursor waits before the held seq, though the event after it is committed.
        assert asyncio.run(_publish(pg_engine, url, stream)) == 0
        with pg_engine.connect() as connection:
            waiting = connection.execute(sa.select(cursors).where(cursors.c.stream == stream))
            row = waiting.one()
        assert row.gap_wait_xmax is not None
        assert _published(url, stream) == [first]
        if late == "commits":
            transaction.commit()
        else:
            transaction.rollback()
    expected = [first, held, after] if late == "commits" else [first, after]

    def caught_up() -> bool:
        # A round can publish nothing while the gap waits for transactions elsewhere on the
        # server (other tests') to end.
        asyncio.run(_publish(pg_engine, url, stream))
        return len(_published(url, stream)) >= len(expected)

    poll_until(caught_up, deadline_s=60)
    assert _published(url, stream) == expected
