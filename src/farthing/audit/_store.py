"""The audit trail in the database: append (chained), verify, query."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from farthing._errors import FarthingError
from farthing.audit._record import GENESIS_MAC, AuditRecord, record_mac
from farthing.db.schema import audit_head, audit_log, audit_pruned

__all__ = [
    "APPEND_BATCH_SIZE_MAX",
    "PRUNE_ACTION",
    "PRUNE_THROUGH_PREFIX",
    "QUERY_LIMIT_MAX",
    "AuditQuery",
    "AuditReport",
    "AuditTamperedError",
    "StoredRecord",
    "append",
    "check_row",
    "check_start",
    "prune_claim",
    "query",
    "records_after",
    "verify",
]

APPEND_BATCH_SIZE_MAX = 1000
QUERY_LIMIT_MAX = 10_000
VERIFY_PAGE_SIZE_MAX = 5000
# The record ``farthing audit prune`` appends: object ids (through_<seq>, MAC of that record).
PRUNE_ACTION = "audit prune"
PRUNE_THROUGH_PREFIX = "through_"


class AuditTamperedError(FarthingError):
    """The audit trail does not verify; the message names the first bad record."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    records: int
    head_seq: int
    head_mac: str
    # Records up to this seq were pruned; the chain was checked from the next one.
    pruned_through: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredRecord:
    seq: int
    record: AuditRecord
    mac: str

    def as_dict(self) -> dict[str, object]:
        """The record as ``farthing audit list`` prints it (JSON-ready)."""
        record = self.record
        return {
            "seq": self.seq,
            "occurred_at_ns": record.occurred_at_ns,
            "actor_kind": record.actor_kind,
            "actor": record.actor,
            "account": record.tenant_id,
            "mode": record.mode,
            "on_behalf_of": record.on_behalf_of,
            "action": record.action,
            "object_ids": list(record.object_ids),
            "origin": record.origin,
            "outcome": record.outcome,
            "status": record.status,
            "request_id": record.request_id,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditQuery:
    """Filters of ``farthing audit list``; every one optional, results newest first."""

    key_id: str | None = None
    account: str | None = None
    object_id: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        assert 0 < self.limit <= QUERY_LIMIT_MAX
        for bound in (self.since_ns, self.until_ns):
            assert bound is None or 0 <= bound < 2**63


def append(connection: sa.Connection, key: bytes, records: Sequence[AuditRecord]) -> int:
    """Number and chain ``records`` after the current head, inside the caller's transaction;
    returns the new head's seq. Locking the head row serialises appenders across processes
    (SQLite's write transactions are serial already)."""
    assert 0 < len(records) <= APPEND_BATCH_SIZE_MAX
    locked = sa.select(audit_head.c.seq, audit_head.c.mac).where(audit_head.c.id == 1)
    if connection.dialect.name == "postgresql":
        locked = locked.with_for_update()
    head = connection.execute(locked).one()
    seq, mac = int(head.seq), str(head.mac)
    rows = []
    for record in records:
        seq += 1
        mac = record_mac(key, previous_mac=mac, seq=seq, encoded=record.encoded(seq))
        rows.append(_row(seq, record, mac))
    connection.execute(audit_log.insert(), rows)
    updated = connection.execute(
        audit_head.update().where(audit_head.c.id == 1).values(seq=seq, mac=mac)
    )
    assert updated.rowcount == 1
    return seq


def _row(seq: int, record: AuditRecord, mac: str) -> dict[str, object]:
    return {
        "seq": seq,
        "occurred_at_ns": record.occurred_at_ns,
        "actor_kind": record.actor_kind,
        "actor": record.actor,
        "tenant_id": record.tenant_id,
        "mode": record.mode,
        "on_behalf_of": record.on_behalf_of,
        "action": record.action,
        "object_ids": record.object_ids_text,
        "origin": record.origin,
        "outcome": record.outcome,
        "status": record.status,
        "request_id": record.request_id,
        "mac": mac,
    }


def _stored(row: sa.Row[tuple[object, ...]]) -> StoredRecord:
    values = row._mapping  # noqa: SLF001 - SQLAlchemy's public mapping view of a row
    record = AuditRecord(
        occurred_at_ns=values["occurred_at_ns"],
        actor_kind=values["actor_kind"],
        actor=values["actor"],
        tenant_id=values["tenant_id"],
        mode=values["mode"],
        on_behalf_of=values["on_behalf_of"],
        action=values["action"],
        object_ids=tuple((values["object_ids"] or "").split()),
        origin=values["origin"],
        outcome=values["outcome"],
        status=values["status"],
        request_id=values["request_id"],
    )
    return StoredRecord(seq=values["seq"], record=record, mac=values["mac"])


def records_after(
    connection: sa.Connection, after: int, limit: int
) -> list[sa.Row[tuple[object, ...]]]:
    """Up to ``limit`` stored records after seq ``after``, oldest first."""
    return list(
        connection.execute(
            sa.select(audit_log)
            .where(audit_log.c.seq > after)
            .order_by(audit_log.c.seq)
            .limit(limit)
        ).all()
    )


def _pages(connection: sa.Connection, after: int) -> Iterator[sa.Row[tuple[object, ...]]]:
    while True:
        rows = records_after(connection, after, VERIFY_PAGE_SIZE_MAX)
        yield from rows
        if len(rows) < VERIFY_PAGE_SIZE_MAX:
            return
        after = rows[-1].seq


def prune_claim(record: AuditRecord) -> tuple[int, str] | None:
    """The (seq, MAC) a prune record names as the trail's new start; None for other records."""
    ids = record.object_ids
    if (
        record.action != PRUNE_ACTION
        or len(ids) != 2
        or not ids[0].startswith(PRUNE_THROUGH_PREFIX)
    ):
        return None
    seq_text = ids[0][len(PRUNE_THROUGH_PREFIX) :]
    if not seq_text.isdigit() or len(ids[1]) != len(GENESIS_MAC):
        return None
    return int(seq_text), ids[1]


def verify(
    engine: sa.Engine,
    key: bytes,
    *,
    expect_head: tuple[int, str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Recompute the chain from the trail's start; AuditTamperedError names the first bad record.

    The start is the genesis, or after the records ``farthing audit prune`` deleted: then the
    newest prune record in the chain must name that very start.
    """
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # One snapshot for every read: a prune or an append committing meanwhile is seen
            # wholly or not at all, never as a trail whose start and records disagree.
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            head = connection.execute(sa.select(audit_head)).one()
            start = connection.execute(sa.select(audit_pruned)).one_or_none()
            if start is None:
                msg = "the audit_pruned row is missing: where the trail starts is unknown"
                raise AuditTamperedError(msg)
            through, start_mac = int(start.through_seq), str(start.mac)
            _check_expected_start(through, start_mac, expect_head)
            seq, mac, claim = _walk(
                connection, key, through, start_mac, expect_head, progress, int(head.seq)
            )
    check_start(through, start_mac, claim)
    if (seq, mac) != (int(head.seq), head.mac):
        msg = f"audit head says record {head.seq} but the chain ends at record {seq}"
        raise AuditTamperedError(msg)
    if expect_head is not None and seq < expect_head[0]:
        msg = f"audit trail ends at record {seq}, before the expected head {expect_head[0]}"
        raise AuditTamperedError(msg)
    return AuditReport(records=seq - through, head_seq=seq, head_mac=mac, pruned_through=through)


def _walk(  # noqa: PLR0913 - the walk's start, its checks and its progress
    connection: sa.Connection,
    key: bytes,
    seq: int,
    mac: str,
    expect_head: tuple[int, str] | None,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> tuple[int, str, tuple[int, str] | None]:
    """Check every record after ``seq``; returns the last seq, its MAC and the newest claim."""
    claim: tuple[int, str] | None = None
    for row in _pages(connection, seq):
        seq += 1
        stored = check_row(row, seq=seq, key=key, previous_mac=mac)
        mac = row.mac
        claim = prune_claim(stored.record) or claim
        if expect_head is not None and expect_head[0] == seq and expect_head[1] != mac:
            msg = f"audit record {seq} differs from the expected head"
            raise AuditTamperedError(msg)
        if progress is not None and seq % VERIFY_PAGE_SIZE_MAX == 0:
            progress(seq, total)
    return seq, mac, claim


def _check_expected_start(through: int, mac: str, expect_head: tuple[int, str] | None) -> None:
    """An expected head at or before the start can only be checked if it is the start itself."""
    if expect_head is None or expect_head[0] > through:
        return
    if expect_head != (through, mac):
        msg = (
            f"the expected head {expect_head[0]} was pruned (the trail starts after record "
            f"{through}): it cannot be checked; record a newer head"
        )
        raise AuditTamperedError(msg)


def check_start(through: int, mac: str, claim: tuple[int, str] | None) -> None:
    """A trail that does not start at the genesis must start where its newest prune says."""
    if through == 0 and mac == GENESIS_MAC and claim is None:
        return
    if claim != (through, mac):
        msg = (
            f"the trail starts after audit record {through}, "
            "but no prune record names that start (records deleted?)"
        )
        raise AuditTamperedError(msg)


def check_row(
    row: sa.Row[tuple[object, ...]], *, seq: int, key: bytes, previous_mac: str
) -> StoredRecord:
    """The row as a record, if it is record ``seq`` chained on from ``previous_mac``."""
    if row.seq != seq:
        msg = f"audit record {seq} is missing (next is {row.seq})"
        raise AuditTamperedError(msg)
    try:
        stored = _stored(row)
    except AssertionError:
        msg = f"audit record {seq} holds a value no audit record can hold"
        raise AuditTamperedError(msg) from None
    encoded = stored.record.encoded(seq)
    expected = record_mac(key, previous_mac=previous_mac, seq=seq, encoded=encoded)
    if expected != row.mac:
        msg = f"audit record {seq} does not match its MAC (edited, moved or forged)"
        raise AuditTamperedError(msg)
    return stored


def query(engine: sa.Engine, filters: AuditQuery) -> list[StoredRecord]:
    """Records matching every given filter, newest first."""
    statement = sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(filters.limit)
    if filters.key_id is not None:
        statement = statement.where(audit_log.c.actor == filters.key_id)
    if filters.account is not None:
        statement = statement.where(
            sa.or_(
                audit_log.c.tenant_id == filters.account,
                audit_log.c.on_behalf_of == filters.account,
            )
        )
    if filters.object_id is not None:
        # Ids are space-separated and never hold a space or a LIKE wildcard we did not escape.
        padded = sa.literal(" ") + audit_log.c.object_ids + sa.literal(" ")
        escaped = filters.object_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(padded.like(f"% {escaped} %", escape="\\"))
    if filters.since_ns is not None:
        statement = statement.where(audit_log.c.occurred_at_ns >= filters.since_ns)
    if filters.until_ns is not None:
        statement = statement.where(audit_log.c.occurred_at_ns < filters.until_ns)
    with engine.connect() as connection:
        return [_stored(row) for row in connection.execute(statement)]
