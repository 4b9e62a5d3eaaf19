"""`farthing prune`: expired events (with deliveries and attempts) and idempotency keys go;
anything a worker still owes, anything recent, and every other table stay."""

from __future__ import annotations

import concurrent.futures
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from farthing.auth import create_tenant
from farthing.db.engine import begin_write, create_engine
from farthing.db.schema import audit_log
from farthing.db.schema import stripe_event_stream_cursors as cursors
from farthing.db.schema import stripe_events as events
from farthing.db.schema import stripe_idempotency_keys as keys
from farthing.db.schema import stripe_webhook_attempts as attempts
from farthing.db.schema import stripe_webhook_deliveries as deliveries
from farthing.db.schema import stripe_webhook_endpoints as endpoints
from farthing.stripe_api import IDEMPOTENCY_TTL_NS
from farthing.stripe_api._request import Partition
from farthing.stripe_api.events import EVENT_RETENTION_S, emit
from farthing.stripe_api.retention import PruneReport, prune
from farthing.stripe_api.webhooks import resend
from tests.conftest import JOURNAL_KEY, explain, waiting_on_a_lock
from tests.http.conftest import poll_until
from tests.test_cli import cli_env, farthing

NOW_NS = time.time_ns()
NOW_S = NOW_NS // 1_000_000_000
OLD_S = NOW_S - EVENT_RETENTION_S - 60
RECENT_S = NOW_S - EVENT_RETENTION_S + 3600


@dataclass(frozen=True, slots=True)
class Estate:
    expired: frozenset[str]  # events that must go
    kept: frozenset[str]  # events that must stay
    expired_keys: frozenset[str]
    kept_keys: frozenset[str]


def _event(connection: sa.Connection, scope: Partition, created_s: int, *deliveries_of: str) -> str:
    event_id = emit(connection, scope, "customer.created", {"id": "cus_x", "object": "customer"})
    connection.execute(events.update().where(events.c.id == event_id).values(created=created_s))
    for index, status in enumerate(deliveries_of):
        seq = connection.execute(
            deliveries.insert().values(
                tenant_id=scope.tenant_id, mode=scope.mode, event_id=event_id,
                endpoint_id=f"we_{index}", status=status, attempts=1, next_attempt_ns=0,
                created_ns=created_s * 1_000_000_000,
            ).returning(deliveries.c.seq)
        ).scalar_one()  # fmt: skip
        connection.execute(
            attempts.insert().values(
                delivery_seq=seq, tenant_id=scope.tenant_id, mode=scope.mode,
                endpoint_id=f"we_{index}", event_id=event_id, attempted_at_ns=0, latency_ms=1,
                status_code=500, response_body=None, error=None,
            )
        )  # fmt: skip
    return event_id


def _key(connection: sa.Connection, scope: Partition, name: str, age_ns: int) -> str:
    connection.execute(
        keys.insert().values(
            tenant_id=scope.tenant_id, mode=scope.mode, key=name, claim="c" * 32,
            fingerprint="f" * 64, created_at_ns=NOW_NS - age_ns, status=200, body="{}",
        )
    )  # fmt: skip
    return name


def _estate(engine: sa.Engine, *, unpublished_from_s: int | None = None) -> Estate:
    with begin_write(engine) as connection:
        scope = Partition(
            tenant_id=(
                tenant := create_tenant(connection, name="retention", journal_key=JOURNAL_KEY)
            ),
            mode="test",
            platform_id=tenant,
        )
        expired = {
            _event(connection, scope, OLD_S),
            _event(connection, scope, OLD_S, "succeeded"),
            _event(connection, scope, OLD_S, "abandoned", "succeeded"),
        }
        kept = {
            _event(connection, scope, RECENT_S, "succeeded"),
            _event(connection, scope, NOW_S),
            # A worker still owes this one to an endpoint.
            _event(connection, scope, OLD_S, "succeeded", "pending"),
        }
        expired_keys = {
            _key(connection, scope, f"old-{n}", IDEMPOTENCY_TTL_NS + n + 1) for n in range(3)
        }
        kept_keys = {_key(connection, scope, "fresh", IDEMPOTENCY_TTL_NS // 2)}
        if unpublished_from_s is not None:
            late = _event(connection, scope, unpublished_from_s, "succeeded")
            last_published = connection.execute(
                sa.select(events.c.seq).where(events.c.id == late)
            ).scalar_one()
            connection.execute(cursors.insert().values(stream="S", seq=last_published - 1))
            kept.add(late)
    return Estate(
        frozenset(expired), frozenset(kept), frozenset(expired_keys), frozenset(kept_keys)
    )


def _left(engine: sa.Engine) -> tuple[set[str], set[str], int, int]:
    with engine.connect() as connection:
        event_ids = set(connection.execute(sa.select(events.c.id)).scalars())
        key_names = set(connection.execute(sa.select(keys.c.key)).scalars())
        # No orphans: every delivery has its event, every attempt its delivery.
        orphan_deliveries = connection.execute(
            sa.select(sa.func.count()).where(~deliveries.c.event_id.in_(sa.select(events.c.id)))
        ).scalar_one()
        orphan_attempts = connection.execute(
            sa.select(sa.func.count()).where(
                ~attempts.c.delivery_seq.in_(sa.select(deliveries.c.seq))
            )
        ).scalar_one()
    return event_ids, key_names, orphan_deliveries, orphan_attempts


@pytest.mark.parametrize("batch_size", [1, 2, 1_000])
def test_prune_takes_exactly_what_expired(engine: sa.Engine, batch_size: int) -> None:
    estate = _estate(engine)
    report = prune(engine, batch_size=batch_size, now_ns=NOW_NS)
    # 3 events; deliveries 0 + 1 + 2; one attempt per delivery; 3 keys.
    assert report == PruneReport(events=3, deliveries=3, attempts=3, idempotency_keys=3)
    event_ids, key_names, orphan_deliveries, orphan_attempts = _left(engine)
    assert event_ids == estate.kept
    assert key_names == estate.kept_keys
    assert (orphan_deliveries, orphan_attempts) == (0, 0)
    # Nothing more to take: pruning again changes nothing.
    assert prune(engine, batch_size=batch_size, now_ns=NOW_NS) == PruneReport()


def test_prune_finds_its_candidates_by_key(sqlite_url: str) -> None:
    """The candidate scan ends at the cutoff (created index), and each candidate's pending
    deliveries are looked up by event id: in seq order, or through the status index (SQLite's
    choice without statistics), a run read every newer event or every pending delivery
    (5,000 old events beside 100,000 pending deliveries: 1.4 s instead of 53 ms). SQLite only:
    PostgreSQL plans by statistics, and on a table this small a scan is its honest choice."""
    engine = create_engine(sqlite_url)
    _estate(engine)
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "ORDER BY stripe_events.created" in statement and not statement.startswith("EXPLAIN"):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        prune(engine, now_ns=NOW_NS)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert statements
    for statement, parameters in statements:
        plan = explain(engine, statement, parameters)
        assert "ix_stripe_events_created" in plan, plan
        assert not re.search(r"\bSCAN stripe_events\b", plan), plan
        assert "status_next_attempt_ns" not in plan, plan
        assert "(event_id=?)" in plan, plan
    engine.dispose()


def test_events_a_stream_has_not_published_stay(engine: sa.Engine) -> None:
    estate = _estate(engine, unpublished_from_s=OLD_S)
    report = prune(engine, now_ns=NOW_NS)
    assert report.events == 3
    event_ids, _keys, _, _ = _left(engine)
    assert event_ids == estate.kept


def test_farthing_prune_prints_the_report_and_is_audited(sqlite_url: str) -> None:
    engine = sa.create_engine(sqlite_url)
    try:
        _estate(engine)
    finally:
        engine.dispose()
    for bad in ("0", "10001"):
        refused = farthing("prune", "--database-url", sqlite_url, "--batch-size", bad, expect=2)
        assert "1 to 10000" in refused.stderr
    result = farthing("prune", "--database-url", sqlite_url, "--batch-size", "2", env=cli_env())
    assert json.loads(result.stdout) == {
        "events": 3, "deliveries": 3, "attempts": 3, "idempotency_keys": 3,
    }  # fmt: skip
    engine = sa.create_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            actions = list(connection.execute(sa.select(audit_log.c.action)).scalars())
    finally:
        engine.dispose()
    assert any("prune" in action for action in actions), actions


def test_the_newest_event_stays_so_no_seq_is_handed_out_twice(engine: sa.Engine) -> None:
    with begin_write(engine) as connection:
        tenant = create_tenant(connection, name="retention", journal_key=JOURNAL_KEY)
        scope = Partition(tenant_id=tenant, mode="test", platform_id=tenant)
        old = [_event(connection, scope, OLD_S, "succeeded") for _ in range(3)]
        newest_seq = connection.execute(sa.select(sa.func.max(events.c.seq))).scalar_one()
        connection.execute(cursors.insert().values(stream="S", seq=newest_seq))
    assert prune(engine, now_ns=NOW_NS).events == len(old) - 1
    with begin_write(engine) as connection:
        fresh = emit(connection, scope, "customer.created", {"id": "cus_y", "object": "customer"})
        fresh_seq = connection.execute(
            sa.select(events.c.seq).where(events.c.id == fresh)
        ).scalar_one()
    assert fresh_seq > newest_seq  # The stream's cursor cannot have passed it already.


def _endpoint(connection: sa.Connection, scope: Partition) -> str:
    endpoint_id = "we_" + secrets.token_hex(8)
    connection.execute(
        endpoints.insert().values(
            id=endpoint_id, tenant_id=scope.tenant_id, mode=scope.mode, created=NOW_S,
            metadata="{}", url="https://example.com/hook", description=None,
            enabled_events='["*"]', status="enabled", secret_key_id="k", secret_sealed=b"s",
        )
    )  # fmt: skip
    return endpoint_id


def test_a_resend_racing_prune_keeps_its_event(postgres_url: str) -> None:
    """A resend holds the event (FOR SHARE); prune, which started meanwhile, waits for it, sees
    the delivery pending again and keeps the event, so the worker can still send it."""
    engine = sa.create_engine(postgres_url)
    try:
        with begin_write(engine) as connection:
            tenant = create_tenant(connection, name="race", journal_key=JOURNAL_KEY)
            scope = Partition(tenant_id=tenant, mode="test", platform_id=tenant)
            old = _event(connection, scope, OLD_S, "succeeded")
            _event(connection, scope, NOW_S)  # The newest, never pruned.
            endpoint_id = _endpoint(connection, scope)
        with engine.connect() as resending, resending.begin():
            resend(resending, scope, old, endpoint_id)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pruning = pool.submit(prune, engine, now_ns=NOW_NS)
                poll_until(lambda: waiting_on_a_lock(engine), deadline_s=30)
                assert not pruning.done()
                resending.commit()
                report = pruning.result(timeout=30)
        assert report.events == 0
        with engine.connect() as connection:
            kept = connection.execute(
                sa.select(deliveries.c.status).where(deliveries.c.event_id == old)
            ).scalars()
            assert "pending" in list(kept)
            assert (
                connection.execute(
                    sa.select(sa.func.count()).where(events.c.id == old)
                ).scalar_one()
                == 1
            )
    finally:
        engine.dispose()


def test_concurrent_resends_of_one_event_queue_it_once(postgres_url: str) -> None:
    """Two resends of an event that has no delivery yet: they take turns on the event, so the
    second updates the delivery the first inserted instead of failing on the unique key."""
    engine = sa.create_engine(postgres_url)
    try:
        with begin_write(engine) as connection:
            tenant = create_tenant(connection, name="resend", journal_key=JOURNAL_KEY)
            scope = Partition(tenant_id=tenant, mode="test", platform_id=tenant)
            event_id = _event(connection, scope, NOW_S)
            endpoint_id = _endpoint(connection, scope)
        with engine.connect() as first, first.begin():
            resend(first, scope, event_id, endpoint_id)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:

                def second() -> None:
                    with begin_write(engine) as connection:
                        resend(connection, scope, event_id, endpoint_id)

                waiting = pool.submit(second)
                poll_until(lambda: waiting_on_a_lock(engine), deadline_s=30)
                first.commit()
                waiting.result(timeout=30)
        with engine.connect() as connection:
            queued = connection.execute(
                sa.select(deliveries.c.status).where(deliveries.c.event_id == event_id)
            ).scalars()
            assert list(queued) == ["pending"]
    finally:
        engine.dispose()
