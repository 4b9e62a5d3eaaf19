"""Pruning the audit trail: records past the retention go (into an archive first), oldest first;
verify goes on from where the newest prune record says the trail starts, so records deleted
behind the trail's back are still detected; a tampered record is never pruned."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from farthing.audit import (
    AuditQuery,
    AuditRecord,
    AuditTamperedError,
    PruneReport,
    StoredRecord,
    append,
    open_archive,
    prune,
    query,
    verify,
)
from farthing.audit._record import GENESIS_MAC, record_mac
from farthing.db.engine import begin_write, create_engine
from farthing.db.schema import audit_log, audit_pruned
from tests.audit.test_trail import KEY, drop_append_only_guard
from tests.test_cli import farthing

OLD_NS = 1_600_000_000_000_000_000  # September 2020
CUTOFF_NS = 1_650_000_000_000_000_000  # April 2022


def _record(n: int, occurred_at_ns: int) -> AuditRecord:
    return AuditRecord(
        occurred_at_ns=occurred_at_ns,
        actor_kind="api_key",
        actor="key_a",
        tenant_id="acct_a",
        mode="test",
        action="POST /v1/customers",
        object_ids=(f"cus_{n}",),
        origin="127.0.0.1",
        outcome="success",
        status=200,
    )


def _append(engine: sa.Engine, times_ns: list[int]) -> None:
    with begin_write(engine) as connection:
        append(connection, KEY, [_record(n, at) for n, at in enumerate(times_ns)])


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    created = create_engine(database_url)
    yield created
    created.dispose()


def _all(engine: sa.Engine) -> dict[int, StoredRecord]:
    return {stored.seq: stored for stored in query(engine, AuditQuery(limit=10_000))}


def test_prune_archives_then_deletes_and_verify_goes_on(engine: sa.Engine, tmp_path: Path) -> None:
    now_ns = time.time_ns()
    _append(engine, [OLD_NS + n for n in range(23)] + [now_ns + n for n in range(4)])
    before = _all(engine)
    path = tmp_path / "audit-archive.jsonl"
    with path.open("a") as archive:
        report = prune(engine, KEY, before_ns=CUTOFF_NS, archive=archive, batch_size=10)
    assert report == PruneReport(pruned=23, through_seq=23, batches=3)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 24))
    for line in lines:
        kept = before[line["seq"]]
        assert line == kept.as_dict() | {"mac": kept.mac}
    # The archive chains from the genesis to where the trail now starts.
    mac = GENESIS_MAC
    for line in lines:
        mac = record_mac(KEY, previous_mac=mac, seq=line["seq"], encoded=_encoded(before, line))
        assert mac == line["mac"]
    left = _all(engine)
    assert sorted(left) == list(range(24, 31))  # 4 new records, then one prune record per batch
    prunes = [left[seq].record for seq in (28, 29, 30)]
    assert [(r.action, r.actor_kind, r.object_ids[0]) for r in prunes] == [
        ("audit prune", "operator", f"through_{through}") for through in (10, 20, 23)
    ]
    assert prunes[-1].object_ids[1] == lines[-1]["mac"]
    report_after = verify(engine, KEY)
    assert (report_after.records, report_after.pruned_through, report_after.head_seq) == (7, 23, 30)


def _encoded(before: dict[int, StoredRecord], line: dict[str, object]) -> str:
    seq = line["seq"]
    assert isinstance(seq, int)
    return before[seq].record.encoded(seq)


def test_only_the_run_from_the_start_is_pruned(engine: sa.Engine) -> None:
    """A record inside the retention stops the run, even if older ones follow it."""
    now_ns = time.time_ns()
    _append(engine, [OLD_NS, OLD_NS + 1, now_ns, OLD_NS + 2])
    assert prune(engine, KEY, before_ns=CUTOFF_NS).pruned == 2
    assert sorted(_all(engine)) == [3, 4, 5]
    assert prune(engine, KEY, before_ns=CUTOFF_NS) == PruneReport(
        pruned=0, through_seq=2, batches=0
    )
    assert verify(engine, KEY).pruned_through == 2


def test_a_later_prune_takes_the_earlier_prune_record_with_it(engine: sa.Engine) -> None:
    _append(engine, [OLD_NS + n for n in range(5)])
    assert prune(engine, KEY, before_ns=CUTOFF_NS).through_seq == 5
    _append(engine, [OLD_NS + n for n in range(3)])  # 7, 8, 9 after the prune record 6
    assert prune(engine, KEY, before_ns=time.time_ns()).through_seq == 9
    assert sorted(_all(engine)) == [10]
    report = verify(engine, KEY)
    assert (report.records, report.pruned_through) == (1, 9)


def _pruned_trail(engine: sa.Engine) -> None:
    """Records 1 to 10 pruned; 11 to 13 kept; 14 the prune record."""
    _append(engine, [OLD_NS + n for n in range(10)] + [time.time_ns() + n for n in range(3)])
    assert prune(engine, KEY, before_ns=CUTOFF_NS, batch_size=100).through_seq == 10
    assert verify(engine, KEY).head_seq == 14


def _mac_of(connection: sa.Connection, seq: int) -> str:
    mac: str = connection.execute(
        sa.select(audit_log.c.mac).where(audit_log.c.seq == seq)
    ).scalar_one()
    return mac


def test_deleting_the_start_and_moving_it_along_is_detected(engine: sa.Engine) -> None:
    _pruned_trail(engine)
    with begin_write(engine) as connection:
        mac = _mac_of(connection, 11)
        connection.execute(audit_pruned.update().values(through_seq=11, mac=mac))
        connection.execute(audit_log.delete().where(audit_log.c.seq == 11))
    with pytest.raises(AuditTamperedError, match="no prune record names that start"):
        verify(engine, KEY)


@pytest.mark.parametrize(
    ("statement", "named"),
    [
        ("DELETE FROM audit_log WHERE seq = 11", "audit record 11 is missing"),
        ("UPDATE audit_pruned SET through_seq = 0, mac = '" + "0" * 64 + "'", "record 1 "),
        (
            (
                "UPDATE audit_log SET object_ids = 'through_11 ' || substr(object_ids, 12) "
                "WHERE seq = 14"
            ),
            "audit record 14 does not match its MAC",
        ),
    ],
)
def test_other_edits_around_a_prune_are_detected(
    engine: sa.Engine, statement: str, named: str
) -> None:
    _pruned_trail(engine)
    with begin_write(engine) as connection:
        drop_append_only_guard(connection)
        connection.exec_driver_sql(statement)
    with pytest.raises(AuditTamperedError, match=named):
        verify(engine, KEY)


def test_the_database_lets_only_pruned_records_go(engine: sa.Engine) -> None:
    _pruned_trail(engine)
    for statement in ("DELETE FROM audit_log WHERE seq = 11", "UPDATE audit_log SET status = 1"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as c:
            c.exec_driver_sql(statement)
    assert verify(engine, KEY).records == 4


def test_a_tampered_record_is_never_pruned(engine: sa.Engine) -> None:
    _append(engine, [OLD_NS + n for n in range(6)])
    with begin_write(engine) as connection:
        drop_append_only_guard(connection)
        connection.execute(audit_log.update().where(audit_log.c.seq == 4).values(status=500))
    with pytest.raises(AuditTamperedError, match="audit record 4"):
        prune(engine, KEY, before_ns=CUTOFF_NS, batch_size=2)
    # The batch holding it rolled back; the two before it, checked, were pruned.
    assert sorted(_all(engine)) == [3, 4, 5, 6, 7]
    with pytest.raises(AuditTamperedError, match="audit record 4"):
        verify(engine, KEY)


def test_the_command_keeps_a_year_and_archives_privately(sqlite_url: str, tmp_path: Path) -> None:
    engine = create_engine(sqlite_url)
    try:
        _append(engine, [OLD_NS + n for n in range(3)])
        archive = tmp_path / "archive.jsonl"
        common = ("audit", "prune", "--database-url", sqlite_url)
        refused = farthing(*common, "--older-than-days", "364", expect=2)
        assert "365" in refused.stderr
        done = farthing(*common, "--older-than-days", "365", "--archive", str(archive))
        assert json.loads(done.stdout) == {"pruned": 3, "through_seq": 3, "batches": 1}
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        assert len(archive.read_text().splitlines()) == 3
        verified = farthing("audit", "verify", "--database-url", sqlite_url)
        assert "ok: 1 audit records (1 to 3 pruned)" in verified.stderr
    finally:
        engine.dispose()


def test_prune_refuses_a_start_moved_behind_its_back(engine: sa.Engine, tmp_path: Path) -> None:
    """Records deleted at the start of a never-pruned trail, the start moved after them: the
    next prune must not go on from there (it would leave a trail with a hole that verifies)."""
    _append(engine, [OLD_NS + n for n in range(10)] + [time.time_ns()])
    with begin_write(engine) as connection:
        mac = _mac_of(connection, 5)
        connection.execute(audit_pruned.update().values(through_seq=5, mac=mac))
        connection.execute(audit_log.delete().where(audit_log.c.seq <= 5))
    archive = tmp_path / "archive.jsonl"
    with open_archive(archive) as file, pytest.raises(AuditTamperedError, match="no prune record"):
        prune(engine, KEY, before_ns=CUTOFF_NS, archive=file)
    assert archive.read_text() == ""
    assert sorted(_all(engine)) == list(range(6, 12))
    with pytest.raises(AuditTamperedError, match="no prune record names that start"):
        verify(engine, KEY)


def test_an_expected_head_that_was_pruned_cannot_pass(engine: sa.Engine) -> None:
    _pruned_trail(engine)
    with engine.connect() as connection:
        start = connection.execute(sa.select(audit_pruned)).one()
    assert verify(engine, KEY, expect_head=(10, start.mac)).records == 4  # the start itself
    with pytest.raises(AuditTamperedError, match="expected head 3 was pruned"):
        verify(engine, KEY, expect_head=(3, "f" * 64))
    with pytest.raises(AuditTamperedError, match="expected head 10 was pruned"):
        verify(engine, KEY, expect_head=(10, "f" * 64))


def test_the_start_only_moves_forward(engine: sa.Engine) -> None:
    _pruned_trail(engine)
    for statement in (
        "UPDATE audit_pruned SET through_seq = 3",
        "DELETE FROM audit_pruned",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="only moves forward"), engine.begin() as c:
            c.exec_driver_sql(statement)
    with begin_write(engine) as connection:  # An intruder drops the guards: verify names it.
        drop_append_only_guard(connection)
        connection.execute(audit_pruned.delete())
    with pytest.raises(AuditTamperedError, match="audit_pruned row is missing"):
        verify(engine, KEY)


def test_an_archive_cut_by_a_crash_is_mended(tmp_path: Path) -> None:
    path = tmp_path / "archive.jsonl"
    path.write_text('{"seq": 1}\n{"seq": 2, "acto')
    path.chmod(0o644)
    with open_archive(path) as archive:
        archive.write('{"seq": 2}\n')
    assert path.read_text() == '{"seq": 1}\n{"seq": 2}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(b"x" * 100_000)  # not an archive
    with pytest.raises(AuditTamperedError, match="does not end in archive lines"):
        open_archive(path)
