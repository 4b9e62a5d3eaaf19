"""`farthing verify`: replay the whole ledger from the journal and compare with what is stored.

One streaming pass in commit order checks that
- every journal entry's MAC chains to the one before (keyed: forging needs the secret key),
- every entry's digest matches the records it covers, and no record lies outside an entry,
- the balances stored on every transfer row equal the replayed balances at that moment,
- no account ever broke its limit, and holds were resolved at most once,
then, at the end, that stored balances, limits and hold states equal the replay, and that debits
equal credits per currency. The first failure is raised with the entry it concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from farthing._errors import IntegrityError
from farthing.db.schema import (
    ledger_accounts,
    ledger_holds,
    ledger_journal,
    ledger_journal_head,
    ledger_limit_changes,
    ledger_transfers,
)
from farthing.ledger import (
    GENESIS_MAC,
    AccountFlags,
    HoldState,
    TransferFlags,
    digest_records,
    entry_mac,
)
from farthing.ledger_service._records import (
    ACCOUNT_RECORD_COLUMNS,
    LIMIT_CHANGE_COLUMNS,
    TRANSFER_COLUMNS,
    account_record,
    limit_change_record,
    transfer_record,
)

__all__ = ["VerifyReport", "verify_ledger"]

STREAM_CHUNK_ROWS = 10_000
ProgressCallback = Callable[[int, int], None]


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
    # (ledger_id, pending id) -> [amount, state, ts]
    holds: dict[tuple[int, str], list[int]] = field(default_factory=dict)
    transfers: int = 0


def _stream(
    connection: sa.Connection, table: sa.Table, columns: tuple[str, ...], order: str
) -> Iterator[sa.Row[Any]]:
    statement = sa.select(*(table.c[name] for name in columns)).order_by(table.c[order])
    result = connection.execution_options(yield_per=STREAM_CHUNK_ROWS).execute(statement)
    yield from result


def _take(stream: Iterator[sa.Row[Any]], count: int, seq: int, what: str) -> list[sa.Row[Any]]:
    rows = []
    for _ in range(count):
        row = next(stream, None)
        if row is None:
            msg = f"journal entry {seq}: {what} missing (entry counts {count})"
            raise IntegrityError(msg)
        if row.journal_seq != seq:
            msg = f"journal entry {seq}: {what} row belongs to entry {row.journal_seq}"
            raise IntegrityError(msg)
        rows.append(row)
    return rows


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
        report = _verify(connection, journal_key, progress)
        connection.rollback()
    if expect_head is not None and (report.head_seq, report.head_mac) != expect_head:
        msg = f"journal head is {report.head_seq}:{report.head_mac}, expected {expect_head}"
        raise IntegrityError(msg)
    return report


def _verify(
    connection: sa.Connection, key: bytes, progress: ProgressCallback | None
) -> VerifyReport:
    total = connection.execute(sa.select(sa.func.count()).select_from(ledger_journal)).scalar_one()
    # Four ordered streams over one snapshot, merged by journal entry.
    accounts = _stream(connection, ledger_accounts, ACCOUNT_RECORD_COLUMNS, "created_ns")
    limits = _stream(connection, ledger_limit_changes, LIMIT_CHANGE_COLUMNS, "ts")
    transfers = _stream(connection, ledger_transfers, TRANSFER_COLUMNS, "ts")
    replay = _Replay()
    previous_mac, previous_seq, previous_ts = GENESIS_MAC, 0, 0
    entries = connection.execution_options(yield_per=STREAM_CHUNK_ROWS).execute(
        sa.select(ledger_journal).order_by(ledger_journal.c.seq)
    )
    for done, entry in enumerate(entries, start=1):
        if entry.seq != previous_seq + 1:
            msg = f"journal entry {previous_seq + 1} missing (next is {entry.seq})"
            raise IntegrityError(msg)
        records = _replay_entry(entry, replay, accounts, limits, transfers, previous_ts)
        counts = (entry.accounts_count, entry.limit_changes_count, entry.transfers_count)
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
        previous_mac, previous_seq, previous_ts = mac, entry.seq, entry.ts
        if progress is not None:
            progress(done, total)
    for stream, what in ((accounts, "account"), (limits, "limit change"), (transfers, "transfer")):
        extra = next(stream, None)
        if extra is not None:
            msg = f"{what} row outside the journal (journal_seq {extra.journal_seq})"
            raise IntegrityError(msg)
    _check_head(connection, previous_seq, previous_mac)
    _check_final_state(connection, replay)
    return VerifyReport(
        entries=previous_seq,
        accounts=len(replay.accounts),
        transfers=replay.transfers,
        head_seq=previous_seq,
        head_mac=previous_mac,
    )


def _replay_entry(  # noqa: PLR0913
    entry: sa.Row[Any],
    replay: _Replay,
    accounts: Iterator[sa.Row[Any]],
    limits: Iterator[sa.Row[Any]],
    transfers: Iterator[sa.Row[Any]],
    previous_ts: int,
) -> list[str]:
    records: list[str] = []
    for row in _take(accounts, entry.accounts_count, entry.seq, "account"):
        records.append(account_record(tuple(row)))
        _check_ts(entry, row.created_ns, previous_ts)
        replay.accounts[row.pk] = [0, 0, 0, 0, row.limit_initial_minor, row.flags, row.currency]
    for row in _take(limits, entry.limit_changes_count, entry.seq, "limit change"):
        records.append(limit_change_record(tuple(row)))
        _check_ts(entry, row.ts, previous_ts)
        _apply_limit_change(entry.seq, replay, row)
    for row in _take(transfers, entry.transfers_count, entry.seq, "transfer"):
        records.append(transfer_record(tuple(row)))
        _check_ts(entry, row.ts, previous_ts)
        _apply_transfer(entry.seq, replay, row)
    return records


def _check_ts(entry: sa.Row[Any], ts: int, previous_ts: int) -> None:
    if not previous_ts < ts <= entry.ts:
        msg = f"journal entry {entry.seq}: record timestamp {ts} outside the entry"
        raise IntegrityError(msg)


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
    flags = TransferFlags(row.flags)
    amount = row.amount
    if amount <= 0:
        msg = f"{where} has a non-positive amount"
        raise IntegrityError(msg)
    if flags == TransferFlags.none:
        debit[1] += amount
        credit[3] += amount
    elif flags == TransferFlags.pending:
        debit[0] += amount
        credit[2] += amount
        replay.holds[(row.ledger_id, row.id)] = [amount, HoldState.pending, row.ts]
    else:
        hold = replay.holds.get((row.ledger_id, row.pending_id))
        if hold is None or hold[1] != HoldState.pending:
            msg = f"{where} resolves a hold that is not pending"
            raise IntegrityError(msg)
        posts = flags == TransferFlags.post_pending
        if amount > hold[0] or (not posts and amount != hold[0]):
            msg = f"{where} resolves a hold for a different amount"
            raise IntegrityError(msg)
        debit[0] -= hold[0]
        credit[2] -= hold[0]
        if posts:
            debit[1] += amount
            credit[3] += amount
            hold[1] = HoldState.posted
        else:
            hold[1] = HoldState.voided if flags == TransferFlags.void_pending else HoldState.expired
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
    replay.transfers += 1


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


def _check_head(connection: sa.Connection, seq: int, mac: str) -> None:
    head = connection.execute(sa.select(ledger_journal_head)).one()
    if (head.seq, head.mac) != (seq, mac):
        msg = f"journal head ({head.seq}) does not match the last entry ({seq})"
        raise IntegrityError(msg)


def _check_final_state(connection: sa.Connection, replay: _Replay) -> None:
    totals: dict[str, list[int]] = {}
    a = ledger_accounts
    rows = connection.execution_options(yield_per=STREAM_CHUNK_ROWS).execute(
        sa.select(
            a.c.pk, a.c.id, a.c.debits_pending, a.c.debits_posted, a.c.credits_pending,
            a.c.credits_posted, a.c.limit_minor, a.c.currency,
        )
    )  # fmt: skip
    for row in rows:
        account = replay.accounts.get(row.pk)
        stored = [row.debits_pending, row.debits_posted, row.credits_pending, row.credits_posted]
        if account is None or account[:5] != [*stored, row.limit_minor]:
            msg = f"account {row.id!r}: stored balances or limit differ from the sum of postings"
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


def _check_holds(connection: sa.Connection, replay: _Replay) -> None:
    by_ts = {hold[2]: hold[1] for hold in replay.holds.values()}
    rows = connection.execute(sa.select(ledger_holds.c.transfer_ts, ledger_holds.c.state))
    stored = {row[0]: row[1] for row in rows}
    if stored != by_ts:
        msg = "hold states differ from the journal's pending transfers"
        raise IntegrityError(msg)
