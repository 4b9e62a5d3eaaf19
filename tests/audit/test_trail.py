"""The audit trail's chain on SQLite and PostgreSQL: append, verify, tamper detection, query."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from farthing.audit import (
    AuditQuery,
    AuditRecord,
    AuditTamperedError,
    AuditWriter,
    append,
    audit_key_from,
    clean_id,
    clean_text,
    query,
    record_operator_action,
    safe_id,
    verify,
)
from farthing.db.engine import begin_write, create_engine
from farthing.db.schema import audit_head, audit_log
from tests.conftest import JOURNAL_KEY

KEY = audit_key_from(JOURNAL_KEY)


def _record(n: int, *, actor: str = "key_a", tenant: str = "acct_a") -> AuditRecord:
    return AuditRecord(
        occurred_at_ns=1_700_000_000_000_000_000 + n,
        actor_kind="api_key",
        actor=actor,
        tenant_id=tenant,
        mode="test",
        action="POST /v1/customers/{customer}",
        object_ids=(f"cus_{n}",),
        origin="127.0.0.1",
        outcome="success",
        status=200,
        request_id=f"req_{n}",
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    created = create_engine(database_url)
    yield created
    created.dispose()


def drop_append_only_guard(connection: sa.Connection) -> None:
    """What an intruder with write access to the database would do first."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER USER")
        connection.exec_driver_sql("ALTER TABLE audit_pruned DISABLE TRIGGER USER")
    else:
        for trigger in (
            "audit_log_no_update",
            "audit_log_no_delete",
            "audit_pruned_no_delete",
            "audit_pruned_forward_only",
        ):
            connection.exec_driver_sql(f"DROP TRIGGER {trigger}")


def _fill(engine: sa.Engine, count: int) -> None:
    with begin_write(engine) as connection:
        append(connection, KEY, [_record(n) for n in range(1, count + 1)])


def test_clean_text_masks_card_numbers_and_separators() -> None:
    assert clean_text("4242424242424242", length_max=64) == "[digits]"
    assert clean_text("pm_\x1f\x1e\x00é x", length_max=64) == "pm_???? x"
    assert clean_id("pm_\x1f x") == "pm_??x"


def test_ids_of_our_own_keep_their_digits() -> None:
    """Random hex ids can hold long digit runs; they are recorded as they are (a card number
    can only come in through what a client sends, which is masked)."""
    digits_id = "key_4453431340263115484ffdd6"
    assert safe_id(digits_id) == digits_id
    assert clean_id(digits_id) == "key_[digits]ffdd6"
    record = _record(1, actor=digits_id, tenant="acct_98303ae6fc29012348372871")
    assert record.actor == digits_id
    assert clean_text("a" * 100, length_max=10) == "a" * 10
    assert clean_text("req_12345678901", length_max=64) == "req_12345678901"  # 11 digits stay


def test_append_then_verify_and_query(engine: sa.Engine) -> None:
    _fill(engine, 5)
    with begin_write(engine) as connection:
        append(connection, KEY, [_record(6, actor="key_b", tenant="acct_b")])
    report = verify(engine, KEY)
    assert (report.records, report.head_seq) == (6, 6)
    by_key = query(engine, AuditQuery(key_id="key_b"))
    assert [stored.seq for stored in by_key] == [6]
    assert by_key[0].record == _record(6, actor="key_b", tenant="acct_b")
    assert [s.seq for s in query(engine, AuditQuery(object_id="cus_3"))] == [3]
    assert query(engine, AuditQuery(object_id="cus_%")) == []  # wildcards are literal
    assert len(query(engine, AuditQuery(account="acct_a"))) == 5
    since = _record(2).occurred_at_ns
    window = query(engine, AuditQuery(since_ns=since, until_ns=since + 2))
    assert [stored.seq for stored in window] == [3, 2]
    assert [s.seq for s in query(engine, AuditQuery(limit=2))] == [6, 5]


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("UPDATE audit_log SET actor = 'key_evil' WHERE seq = 3", "audit record 3"),
        ("UPDATE audit_log SET status = 404 WHERE seq = 4", "audit record 4"),
        ("UPDATE audit_log SET object_ids = NULL WHERE seq = 2", "audit record 2"),
        ("DELETE FROM audit_log WHERE seq = 3", "audit record 3 is missing"),
        ("UPDATE audit_log SET mac = (SELECT mac FROM audit_log WHERE seq = 1) WHERE seq = 2",
         "audit record 2"),
        ("UPDATE audit_log SET actor = 'x\x1fy' WHERE seq = 5", "audit record 5"),
        ("DELETE FROM audit_log WHERE seq = 6", "chain ends at record 5"),
    ],
)  # fmt: skip
def test_tampering_is_detected_and_named(engine: sa.Engine, statement: str, named: str) -> None:
    _fill(engine, 6)
    verify(engine, KEY)
    with engine.begin() as connection:
        drop_append_only_guard(connection)
        connection.exec_driver_sql(statement)
    with pytest.raises(AuditTamperedError, match=named):
        verify(engine, KEY)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET status = 200",
        "DELETE FROM audit_log WHERE seq = 1",
        "TRUNCATE audit_log",
    ],
)
def test_the_database_refuses_to_change_records(engine: sa.Engine, statement: str) -> None:
    _fill(engine, 2)
    if statement.startswith("TRUNCATE") and engine.dialect.name != "postgresql":
        statement = "DELETE FROM audit_log"  # SQLite has no TRUNCATE; DELETE is its form.
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as connection:
        connection.exec_driver_sql(statement)
    assert verify(engine, KEY).records == 2


def test_reordering_is_detected(engine: sa.Engine) -> None:
    _fill(engine, 4)
    with engine.begin() as connection:  # Swap records 2 and 3, MACs included.
        drop_append_only_guard(connection)
        connection.execute(audit_log.update().where(audit_log.c.seq == 2).values(seq=-2))
        connection.execute(audit_log.update().where(audit_log.c.seq == 3).values(seq=2))
        connection.execute(audit_log.update().where(audit_log.c.seq == -2).values(seq=3))
    with pytest.raises(AuditTamperedError, match="audit record 2"):
        verify(engine, KEY)


def test_truncation_with_the_head_needs_the_expected_head(engine: sa.Engine) -> None:
    _fill(engine, 5)
    report = verify(engine, KEY)
    with engine.begin() as connection:
        fourth = connection.execute(
            sa.select(audit_log.c.mac).where(audit_log.c.seq == 4)
        ).scalar_one()
        drop_append_only_guard(connection)
        connection.execute(audit_log.delete().where(audit_log.c.seq == 5))
        connection.execute(audit_head.update().values(seq=4, mac=fourth))
    assert verify(engine, KEY).records == 4  # Consistent on its own...
    with pytest.raises(AuditTamperedError, match="before the expected head 5"):
        verify(engine, KEY, expect_head=(report.head_seq, report.head_mac))  # ...but not vs 5.
    with pytest.raises(AuditTamperedError, match="differs from the expected head"):
        verify(engine, KEY, expect_head=(4, report.head_mac))


def test_a_wrong_key_does_not_verify(engine: sa.Engine) -> None:
    _fill(engine, 2)
    with pytest.raises(AuditTamperedError, match="audit record 1"):
        verify(engine, audit_key_from(bytes(32)))


def test_operator_action_commits_with_its_transaction(engine: sa.Engine) -> None:
    def failing_action() -> None:
        with begin_write(engine) as connection:
            record_operator_action(connection, KEY, action="keys.create", object_ids=("key_x",))
            raise RuntimeError  # The action failed: its record rolls back with it.

    with pytest.raises(RuntimeError):
        failing_action()
    with begin_write(engine) as connection:
        record_operator_action(connection, KEY, action="keys.revoke", object_ids=("key_y",))
    (stored,) = query(engine, AuditQuery())
    assert stored.record.action == "keys.revoke"
    assert stored.record.actor_kind == "operator"
    assert "@" in stored.record.actor
    assert verify(engine, KEY).records == 1


def test_concurrent_writers_keep_one_chain(engine: sa.Engine) -> None:
    """Two writers (as two server processes would have) and direct appends, all at once."""
    writers = [AuditWriter(engine, key=KEY), AuditWriter(engine, key=KEY)]
    per_thread = 40

    def submit_all(writer: AuditWriter, base: int) -> None:
        futures = [writer.try_submit(_record(base + n)) for n in range(per_thread)]
        assert all(future is not None and future.result(timeout=60) for future in futures)

    threads = [
        threading.Thread(target=submit_all, args=(writer, 1000 * (i + 1)))
        for i, writer in enumerate(writers)
    ]
    threads.append(threading.Thread(target=_fill, args=(engine, per_thread)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for writer in writers:
        writer.stop()
    assert verify(engine, KEY).records == 3 * per_thread
