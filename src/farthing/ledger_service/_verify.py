"""`farthing verify`: replay the whole ledger from the journal and compare with what is stored.

One streaming pass in commit order checks that
- every journal entry's MAC chains to the one before (keyed: forging needs the secret key),
- every entry's digest matches the records it covers, no record lies outside an entry, and every
  stored value has its column's type (so a changed type cannot keep the same encoding),
- the balances stored on every transfer row equal the replayed balances at that moment,
- no account ever broke its limit, holds were resolved at most once, and no id both failed and
  committed,
then, at the end, that stored balances, limits and holds (state and expiry) equal the replay,
that debits equal credits per currency, and that the journal head names the last entry. The first
failure is raised as IntegrityError naming the entry or account it concerns.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from farthing._errors import IntegrityError
from farthing.db.schema import (
    ledger_accounts,
    ledger_failed_transfers,
    ledger_history_marks,
    ledger_holds,
    ledger_journal,
    ledger_journal_head,
    ledger_limit_changes,
    ledger_transfers,
    ledgers,
)
from farthing.ledger import (
    GENESIS_MAC,
    AccountFlags,
    HoldState,
    TransferFlags,
    digest_records,
    entry_mac,
    owner_mac,
)
from farthing.ledger_service._history import HISTORY_MARK_EVERY
from farthing.ledger_service._records import (
    ACCOUNT_RECORD_COLUMNS,
    FAILED_COLUMNS,
    LIMIT_CHANGE_COLUMNS,
    TRANSFER_COLUMNS,
    TRANSFER_LINK_COLUMNS,
    account_record,
    failed_record,
    limit_change_record,
    row_type_error,
    transfer_record,
)

__all__ = ["VerifyReport", "verify_ledger"]

STREAM_CHUNK_ROWS = 10_000
ProgressCallback = Callable[[int, int], None]
_ENCODERS: dict[str, Callable[[Any], str]] = {
    "A": account_record,
    "L": limit_change_record,
    "T": transfer_record,
    "F": failed_record,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyReport:
    entries: int
    accounts: int
    transfers: int
    head_seq: int
    head_mac: str


@dataclass(slots=True)
class _Replay:
    # pk -> [debits_pending, debits_posted, credits_pending, credits_posted, limit, flags, currency]
    accounts: dict[int, list[Any]] = field(default_factory=dict)
    # (ledger_id, pending id) -> [amount, state, ts, expires_at_ns]
    holds: dict[tuple[int, str], list[Any]] = field(default_factory=dict)
    committed: set[tuple[int, str]] = field(default_factory=set)
    failed: set[tuple[int, str]] = field(default_factory=set)
    transfers: int = 0
    # pk -> [newest transfer's ts, transfers so far]; and the history marks due (``_history``).
    chains: dict[int, list[Any]] = field(default_factory=dict)
    marks: set[tuple[int, int]] = field(default_factory=set)


@dataclass(slots=True)
class _Streams:
    """One ordered stream per journaled table, all over the same snapshot."""

    accounts: Iterator[sa.Row[Any]]
    limits: Iterator[sa.Row[Any]]
    transfers: Iterator[sa.Row[Any]]
    failed: Iterator[sa.Row[Any]]


def verify_ledger(
    engine: sa.Engine,
    *,
    journal_key: bytes,
    expect_head: tuple[int, str] | None = None,
    progress: ProgressCallback | None = None,
) -> VerifyReport:
    """Raise IntegrityError naming the first bad entry, or return a summary."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with contextlib.ExitStack() as cursors:
            report = _verify(connection, cursors, journal_key, progress)
        connection.rollback()
    if expect_head is not None and (report.head_seq, report.head_mac) != expect_head:
        msg = f"journal head is {report.head_seq}:{report.head_mac}, expected {expect_head}"
        raise IntegrityError(msg)
    return report


def _stream(
    connection: sa.Connection,
    cursors: contextlib.ExitStack,
    table: sa.Table,
    columns: tuple[str, ...],
    order: str,
) -> Iterator[sa.Row[Any]]:
    statement = sa.select(*(table.c[name] for name in columns)).order_by(table.c[order])
    # Per statement: Connection.execution_options() would change the connection itself.
    result = connection.execute(statement, execution_options={"yield_per": STREAM_CHUNK_ROWS})
    cursors.callback(result.close)  # Server-side cursors close even when verification fails.
    return iter(result)


def _verify(
    connection: sa.Connection,
    cursors: contextlib.ExitStack,
    key: bytes,
    progress: ProgressCallback | None,
) -> VerifyReport:
    total = connection.execute(sa.select(sa.func.count()).select_from(ledger_journal)).scalar_one()
    streams = _Streams(
        accounts=_stream(
            connection, cursors, ledger_accounts, ACCOUNT_RECORD_COLUMNS, "created_ns"
        ),
        limits=_stream(connection, cursors, ledger_limit_changes, LIMIT_CHANGE_COLUMNS, "ts"),
        transfers=_stream(
            connection,
            cursors,
            ledger_transfers,
            (*TRANSFER_COLUMNS, *TRANSFER_LINK_COLUMNS),
            "ts",
        ),
        failed=_stream(connection, cursors, ledger_failed_transfers, FAILED_COLUMNS, "ts"),
    )
    replay = _Replay()
    previous_mac, previous_seq, previous_ts = GENESIS_MAC, 0, 0
    entries = _stream(
        connection, cursors, ledger_journal, tuple(c.name for c in ledger_journal.columns), "seq"
    )
    for done, entry in enumerate(entries, start=1):
        if entry.seq != previous_seq + 1:
            msg = f"journal entry {previous_seq + 1} missing (next is {entry.seq})"
            raise IntegrityError(msg)
        _check_entry(entry, replay, streams, previous_ts, previous_mac, key)
        previous_mac, previous_seq, previous_ts = entry.mac, entry.seq, entry.ts
        if progress is not None:
            progress(done, total)
    for stream, what in (
        (streams.accounts, "account"),
        (streams.limits, "limit change"),
        (streams.transfers, "transfer"),
        (streams.failed, "failed transfer"),
    ):
        extra = next(stream, None)
        if extra is not None:
            msg = f"{what} row outside the journal (journal_seq {extra.journal_seq})"
            raise IntegrityError(msg)
    _check_head(connection, previous_seq, previous_ts, previous_mac)
    _check_final_state(connection, cursors, replay)
    _check_owners(connection, key)
    return VerifyReport(
        entries=previous_seq,
        accounts=len(replay.accounts),
        transfers=replay.transfers,
        head_seq=previous_seq,
        head_mac=previous_mac,
    )


def _check_entry(  # noqa: PLR0913
    entry: sa.Row[Any],
    replay: _Replay,
    streams: _Streams,
    previous_ts: int,
    previous_mac: str,
    key: bytes,
) -> None:
    counts = (
        entry.accounts_count,
        entry.limit_changes_count,
        entry.transfers_count,
        entry.failed_count,
    )
    rows = [
        *(("A", row.created_ns, row) for row in _take(streams.accounts, counts[0], entry, "A")),
        *(("L", row.ts, row) for row in _take(streams.limits, counts[1], entry, "L")),
        *(("T", row.ts, row) for row in _take(streams.transfers, counts[2], entry, "T")),
        *(("F", row.ts, row) for row in _take(streams.failed, counts[3], entry, "F")),
    ]
    rows.sort(key=lambda item: item[1])  # The order in which the commit applied them.
    records = []
    for kind, ts, row in rows:
        if not previous_ts < ts <= entry.ts:
            msg = f"journal entry {entry.seq}: record timestamp {ts} outside the entry"
            raise IntegrityError(msg)
        records.append(_ENCODERS[kind](tuple(row)))
        _replay_record(entry.seq, replay, kind, row)
    if digest_records(records) != entry.digest:
        msg = f"journal entry {entry.seq}: records do not match the digest"
        raise IntegrityError(msg)
    mac = entry_mac(
        key,
        previous_mac=previous_mac,
        seq=entry.seq,
        timestamp_ns=entry.ts,
        counts=counts,
        digest=entry.digest,
    )
    if mac != entry.mac:
        msg = f"journal entry {entry.seq}: MAC does not verify (edited, reordered or forged)"
        raise IntegrityError(msg)


_RECORD_LENGTHS = {
    "A": len(ACCOUNT_RECORD_COLUMNS),
    "L": len(LIMIT_CHANGE_COLUMNS),
    "T": len(TRANSFER_COLUMNS),
    "F": len(FAILED_COLUMNS),
}


def _take(
    stream: Iterator[sa.Row[Any]], count: int, entry: sa.Row[Any], kind: str
) -> list[sa.Row[Any]]:
    if not isinstance(count, int) or count < 0:
        msg = f"journal entry {entry.seq}: counts are not integers"
        raise IntegrityError(msg)
    rows = []
    for _ in range(count):
        row = next(stream, None)
        if row is None:
            msg = f"journal entry {entry.seq}: {kind} records missing (entry counts {count})"
            raise IntegrityError(msg)
        problem = row_type_error(kind, tuple(row)[: _RECORD_LENGTHS[kind]])
        if problem is not None:
            msg = f"journal entry {entry.seq}: {kind} record: {problem}"
            raise IntegrityError(msg)
        if row.journal_seq != entry.seq:
            msg = f"journal entry {entry.seq}: {kind} record belongs to entry {row.journal_seq}"
            raise IntegrityError(msg)
        rows.append(row)
    return rows


def _replay_record(seq: int, replay: _Replay, kind: str, row: sa.Row[Any]) -> None:
    if kind == "A":
        if row.pk in replay.accounts:
            msg = f"journal entry {seq}: account {row.id!r} created twice"
            raise IntegrityError(msg)
        replay.accounts[row.pk] = [0, 0, 0, 0, row.limit_initial_minor, row.flags, row.currency]
        replay.chains[row.pk] = [None, 0]
    elif kind == "L":
        _apply_limit_change(seq, replay, row)
    elif kind == "T":
        _apply_transfer(seq, replay, row)
        replay.committed.add((row.ledger_id, row.id))
    else:
        if (row.ledger_id, row.id) in replay.committed:
            msg = f"journal entry {seq}: transfer {row.id!r} failed after it was committed"
            raise IntegrityError(msg)
        replay.failed.add((row.ledger_id, row.id))


def _apply_limit_change(seq: int, replay: _Replay, row: sa.Row[Any]) -> None:
    account = replay.accounts.get(row.account_pk)
    if account is None or account[4] != row.previous_limit_minor:
        msg = f"journal entry {seq}: limit change at {row.ts} does not follow the account"
        raise IntegrityError(msg)
    account[4] = row.limit_minor
    _check_limit(seq, row.ts, account)


def _apply_transfer(seq: int, replay: _Replay, row: sa.Row[Any]) -> None:
    debit = replay.accounts.get(row.debit_pk)
    credit = replay.accounts.get(row.credit_pk)
    where = f"journal entry {seq}: transfer {row.id!r}"
    if debit is None or credit is None or debit[6] != credit[6] or debit[6] != row.currency:
        msg = f"{where} names unknown accounts or mixes currencies"
        raise IntegrityError(msg)
    if row.amount <= 0:
        msg = f"{where} has a non-positive amount"
        raise IntegrityError(msg)
    if (row.ledger_id, row.id) in replay.committed or (row.ledger_id, row.id) in replay.failed:
        msg = f"{where} reuses an id"
        raise IntegrityError(msg)
    _move_balances(where, replay, row, debit, credit)
    expected = (
        row.dr_debits_pending,
        row.dr_debits_posted,
        row.dr_credits_pending,
        row.dr_credits_posted,
        row.cr_debits_pending,
        row.cr_debits_posted,
        row.cr_credits_pending,
        row.cr_credits_posted,
    )
    if tuple(debit[:4]) + tuple(credit[:4]) != expected:
        msg = f"{where}: stored balance history differs from the replay"
        raise IntegrityError(msg)
    _check_limit(seq, row.ts, debit)
    _check_limit(seq, row.ts, credit)
    _link(where, replay, row)
    replay.transfers += 1


def _link(where: str, replay: _Replay, row: sa.Row[Any]) -> None:
    """The transfer's links in its accounts' histories, and the marks it makes (``_history``)."""
    sides = ((row.debit_pk, row.dr_previous_ts), (row.credit_pk, row.cr_previous_ts))
    for pk, previous_ts in sides:
        chain = replay.chains[pk]
        if previous_ts != chain[0] or type(previous_ts) not in {int, type(None)}:
            msg = f"{where}: its link in an account's history differs from the journal"
            raise IntegrityError(msg)
        chain[0] = row.ts
        chain[1] += 1
        if chain[1] % HISTORY_MARK_EVERY == 0:
            replay.marks.add((pk, row.ts))


def _move_balances(
    where: str, replay: _Replay, row: sa.Row[Any], debit: list[Any], credit: list[Any]
) -> None:
    flags = row.flags
    amount = row.amount
    if flags == TransferFlags.none:
        debit[1] += amount
        credit[3] += amount
        return
    if flags == TransferFlags.pending:
        debit[0] += amount
        credit[2] += amount
        hold = [amount, HoldState.pending, row.ts, row.expires_at_ns]
        replay.holds[(row.ledger_id, row.id)] = hold
        return
    resolved = replay.holds.get((row.ledger_id, row.pending_id))
    kinds = (TransferFlags.post_pending, TransferFlags.void_pending, TransferFlags.expire_pending)
    if flags not in kinds or resolved is None or resolved[1] != HoldState.pending:
        msg = f"{where} resolves a hold that is not pending (or has unknown flags)"
        raise IntegrityError(msg)
    posts = flags == TransferFlags.post_pending
    if amount > resolved[0] or (not posts and amount != resolved[0]):
        msg = f"{where} resolves a hold for a different amount"
        raise IntegrityError(msg)
    debit[0] -= resolved[0]
    credit[2] -= resolved[0]
    if posts:
        debit[1] += amount
        credit[3] += amount
        resolved[1] = HoldState.posted
    elif flags == TransferFlags.void_pending:
        resolved[1] = HoldState.voided
    else:
        resolved[1] = HoldState.expired


def _check_limit(seq: int, ts: int, account: list[Any]) -> None:
    debits_pending, debits_posted, credits_pending, credits_posted, limit, flags, _ = account
    if min(debits_pending, debits_posted, credits_pending, credits_posted) < 0:
        msg = f"journal entry {seq}: a balance went negative at {ts}"
        raise IntegrityError(msg)
    debits_limited = flags & AccountFlags.debits_must_not_exceed_credits
    if debits_limited and debits_pending + debits_posted > credits_posted + limit:
        msg = f"journal entry {seq}: debits exceed credits plus limit at {ts}"
        raise IntegrityError(msg)
    credits_limited = flags & AccountFlags.credits_must_not_exceed_debits
    if credits_limited and credits_pending + credits_posted > debits_posted + limit:
        msg = f"journal entry {seq}: credits exceed debits plus limit at {ts}"
        raise IntegrityError(msg)


def _check_head(connection: sa.Connection, seq: int, ts: int, mac: str) -> None:
    head = connection.execute(sa.select(ledger_journal_head)).one()
    if (head.seq, head.ts, head.mac) != (seq, ts, mac):
        msg = f"journal head ({head.seq}) does not match the last entry ({seq})"
        raise IntegrityError(msg)


def _check_final_state(
    connection: sa.Connection, cursors: contextlib.ExitStack, replay: _Replay
) -> None:
    totals: dict[str, list[int]] = {}
    columns = (
        "pk", "id", "debits_pending", "debits_posted", "credits_pending", "credits_posted",
        "limit_minor", "currency", "last_transfer_ts", "transfers_count",
    )  # fmt: skip
    for row in _stream(connection, cursors, ledger_accounts, columns, "pk"):
        account = replay.accounts.get(row.pk)
        stored = [row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted]
        if account is None or account[:5] != [*stored, row.limit_minor]:
            msg = f"account {row.id!r}: stored balances or limit differ from the sum of postings"
            raise IntegrityError(msg)
        if replay.chains[row.pk] != [row.last_transfer_ts, row.transfers_count]:
            msg = f"account {row.id!r}: stored history head differs from the journal"
            raise IntegrityError(msg)
        total = totals.setdefault(row.currency, [0, 0, 0, 0])
        for index in range(4):
            total[index] += stored[index]
    for currency, (debits_pending, debits_posted, credits_pending, credits_posted) in sorted(
        totals.items()
    ):
        if debits_posted != credits_posted or debits_pending != credits_pending:
            msg = f"{currency}: debits do not equal credits"
            raise IntegrityError(msg)
    _check_holds(connection, replay)
    _check_marks(connection, replay)


def _check_holds(connection: sa.Connection, replay: _Replay) -> None:
    expected = {hold[2]: (int(hold[1]), hold[3]) for hold in replay.holds.values()}
    h = ledger_holds
    rows = connection.execute(sa.select(h.c.transfer_ts, h.c.state, h.c.expires_at_ns))
    stored = {row[0]: (row[1], row[2]) for row in rows}
    if stored != expected:
        wrong = min(
            ts for ts in stored.keys() | expected.keys() if stored.get(ts) != expected.get(ts)
        )
        msg = f"hold of the transfer at {wrong}: state or expiry differs from the journal"
        raise IntegrityError(msg)


def _check_marks(connection: sa.Connection, replay: _Replay) -> None:
    m = ledger_history_marks
    stored = {(row[0], row[1]) for row in connection.execute(sa.select(m.c.account_pk, m.c.ts))}
    if stored != replay.marks:
        wrong = min(stored ^ replay.marks, key=lambda mark: mark[1])
        msg = f"history mark of account pk {wrong[0]} at {wrong[1]} differs from the journal"
        raise IntegrityError(msg)


def _check_owners(connection: sa.Connection, key: bytes) -> None:
    """Every ledger is sealed to its owner, and every account belongs to a ledger that is."""
    columns = (ledgers.c.id, ledgers.c.tenant_id, ledgers.c.mode, ledgers.c.purpose)
    rows = connection.execute(sa.select(*columns, ledgers.c.owner_mac).order_by(ledgers.c.id))
    for ledger_id, tenant_id, mode, purpose, mac in rows:
        owner = {"tenant_id": str(tenant_id), "mode": str(mode), "purpose": str(purpose)}
        if type(ledger_id) is not int or ledger_id < 1:  # Edited: no seal was made for it.
            msg = f"ledger {ledger_id!r}: not an id a ledger is created with"
            raise IntegrityError(msg)
        if not hmac.compare_digest(str(mac), owner_mac(key, ledger_id=ledger_id, **owner)):
            msg = f"ledger {ledger_id}: owner {tenant_id} {mode} {purpose} does not match its seal"
            raise IntegrityError(msg)
    orphan = connection.execute(
        sa.select(ledger_accounts.c.id)
        .where(~sa.exists().where(ledgers.c.id == ledger_accounts.c.ledger_id))
        .limit(1)
    ).scalar()
    if orphan is not None:
        msg = f"account {orphan!r} belongs to a ledger that does not exist"
        raise IntegrityError(msg)
