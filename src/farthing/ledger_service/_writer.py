"""The write path: one database transaction per group of requests (group commit).

Order inside a commit, chosen so that several processes can write to PostgreSQL at once:
1. read the pending transfers the events name, only to learn their (immutable) accounts;
2. lock every account the commit touches, in primary-key order (no deadlock, no overdraft);
3. read transfers, holds and failed ids again, now that the accounts are locked;
4. run the pure engine; 5. lock the journal head, stamp timestamps, write rows, append the
journal entry; 6. commit. Only then are results returned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from farthing.db.engine import Dialect, dialect_of
from farthing.ledger import (
    EXPIRIES_PER_COMMIT_MAX,
    CreateTransferResult,
    HoldState,
    LedgerSlice,
    LiveAccount,
    SetLimitResult,
    StoredTransfer,
    Transfer,
    TransferFlags,
    apply_limit_change,
    create_accounts,
    create_transfers,
    digest_records,
    encode_metadata,
    entry_mac,
    expire_due_holds,
)
from farthing.ledger_service._history import Chain, link
from farthing.ledger_service._records import (
    account_record,
    failed_record,
    limit_change_record,
    transfer_record,
)
from farthing.ledger_service._requests import (
    CreateAccounts,
    CreateTransfers,
    Outcome,
    SetLimit,
    WriteRequest,
)
from farthing.ledger_service._sql import (
    INSERT_ACCOUNT_COLUMNS,
    PostgresOps,
    Row,
    SqliteOps,
    SqlOps,
    storable,
)

__all__ = ["LedgerWriter", "decode_metadata", "transfer_row"]

COMMIT_ATTEMPTS_MAX = 8
_INSERT_ACCOUNT = "INSERT INTO ledger_accounts ({}) VALUES ({})".format(  # noqa: S608 - constants
    ", ".join(INSERT_ACCOUNT_COLUMNS), ", ".join("?" * len(INSERT_ACCOUNT_COLUMNS))
)
# Accounts kept in memory between commits on SQLite (beyond this the cache starts over).
ACCOUNT_CACHE_SIZE_MAX = 1_000_000
# (ledger id, account id) -> (pk, balances, history head)
_Cache = dict[tuple[int, str], tuple[int, LiveAccount, Chain]]


def decode_metadata(text: str | None) -> tuple[tuple[str, str], ...]:
    import json  # noqa: PLC0415 - only the rare read of stored metadata needs it.

    if text is None:
        return ()
    loaded = json.loads(text)
    assert isinstance(loaded, dict)
    return tuple(sorted((str(key), str(value)) for key, value in loaded.items()))


@dataclass(slots=True)
class _LedgerWork:
    """One ledger's part of a commit."""

    ledger_id: int
    slice: LedgerSlice
    account_pks: dict[str, int] = field(default_factory=dict)
    # The head of each account's history (``_history``), advanced as the commit writes.
    chains: dict[str, Chain] = field(default_factory=dict)
    transfer_ts: dict[str, int] = field(default_factory=dict)
    # Accounts read from the database (not the cache) by this commit.
    loaded: list[str] = field(default_factory=list)


class LedgerWriter:
    """Commits write requests; thread-safe as long as each call uses its own connection."""

    def __init__(self, engine: sa.Engine, *, journal_key: bytes) -> None:
        self._engine = engine
        self._key = journal_key
        self._dialect = dialect_of(engine)
        self._ops: SqlOps = SqliteOps() if self._dialect is Dialect.sqlite else PostgresOps()
        # SQLite only: accounts as of journal entry ``_cache_seq``. BEGIN IMMEDIATE makes this
        # process the only writer, and an unchanged journal head proves that nobody else wrote
        # since, so cached accounts need not be read again. PostgreSQL always reads (and locks).
        self._cache: _Cache = {}
        self._cache_seq = -1

    def commit(self, requests: Sequence[WriteRequest]) -> list[Outcome]:
        """Apply the requests in order in one transaction; results only after the commit."""
        for attempt in range(COMMIT_ATTEMPTS_MAX):
            try:
                return self._commit_once(requests)
            except Exception as error:
                if not _is_retryable(error) or attempt + 1 == COMMIT_ATTEMPTS_MAX:
                    raise
        raise AssertionError("unreachable")

    def commit_within(
        self, connection: sa.Connection, requests: Sequence[WriteRequest]
    ) -> list[Outcome]:
        """Apply the requests inside the caller's open write transaction (on SQLite one begun
        with ``begin_write``), so that they commit or roll back with the caller's own rows.

        The caller must create accounts beforehand (``commit``): a new account's id can race
        with another process's on PostgreSQL, which would abort the caller's whole transaction.
        The account cache is not used; the journal head this advances invalidates it.
        """
        raw = connection.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            for attempt in range(COMMIT_ATTEMPTS_MAX):
                try:
                    outcomes, _works, _head_seq = self._run(cursor, requests, {})
                except StaleReadError:
                    # Raised while loading, before any write: safe to load again.
                    if attempt + 1 == COMMIT_ATTEMPTS_MAX:
                        raise
                else:
                    return outcomes
        finally:
            cursor.close()
        raise AssertionError("unreachable")

    def _commit_once(self, requests: Sequence[WriteRequest]) -> list[Outcome]:
        # The engine mutates cached accounts in place: until this commit is durable the cache
        # is detached, so a failed commit leaves nothing stale behind.
        cache, self._cache = self._cache, {}
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                self._ops.begin(cursor)
                outcomes, works, head_seq = self._run(cursor, requests, cache)
                raw.commit()
            except BaseException:
                raw.rollback()
                raise
            finally:
                cursor.close()
        finally:
            raw.close()
        if self._dialect is Dialect.sqlite:
            self._keep(cache, works, head_seq)
        return outcomes

    def _keep(
        self,
        cache: _Cache,
        works: list[_LedgerWork],
        head_seq: int,
    ) -> None:
        # Accounts that came from the cache are still there: the engine changed them in place.
        for work in works:
            accounts = work.slice.accounts
            pks = work.account_pks
            chains = work.chains
            for account_id in work.loaded:
                cache[(work.ledger_id, account_id)] = (
                    pks[account_id],
                    accounts[account_id],
                    chains[account_id],
                )
            for account in work.slice.new_accounts:
                cache[(work.ledger_id, account.id)] = (
                    pks[account.id],
                    accounts[account.id],
                    chains[account.id],
                )
        if len(cache) > ACCOUNT_CACHE_SIZE_MAX:
            cache = {}
        self._cache = cache
        self._cache_seq = head_seq

    def _run(
        self,
        cursor: Any,
        requests: Sequence[WriteRequest],
        cache: _Cache,
    ) -> tuple[list[Outcome], list[_LedgerWork], int]:
        now_ns = time.time_ns()
        start_seq = -1
        if self._dialect is Dialect.sqlite:
            cursor.execute("SELECT seq FROM ledger_journal_head WHERE id = 1")
            start_seq = int(cursor.fetchone()[0])
            if start_seq != self._cache_seq:
                cache.clear()  # Another process committed: what we remember may be stale.
        works: dict[int, _LedgerWork] = {}
        for request in requests:
            if request.ledger_id not in works:
                works[request.ledger_id] = _LedgerWork(request.ledger_id, LedgerSlice(now_ns))
        due = self._due_holds(cursor, now_ns, works)
        self._load(cursor, requests, works, due, cache)
        for work in works.values():
            expire_due_holds(work.slice)
        outcomes = [_apply(works[request.ledger_id].slice, request) for request in requests]
        head_seq = self._write(cursor, now_ns, list(works.values()))
        return outcomes, list(works.values()), start_seq if head_seq is None else head_seq

    # -- reads ------------------------------------------------------------------------------

    def _due_holds(
        self, cursor: Any, now_ns: int, works: dict[int, _LedgerWork]
    ) -> dict[int, list[Row]]:
        """Pending transfers whose timeout passed, grouped by ledger (bounded per commit)."""
        cursor.execute(
            self._sql(
                "SELECT transfer_ts FROM ledger_holds WHERE state = 0 "
                "AND expires_at_ns IS NOT NULL AND expires_at_ns <= ? "
                "ORDER BY expires_at_ns LIMIT ?"
            ),
            (now_ns, EXPIRIES_PER_COMMIT_MAX),
        )
        timestamps = [row[0] for row in cursor.fetchall()]
        grouped: dict[int, list[Row]] = {}
        if timestamps:
            for row in self._ops.transfers_by_ts(cursor, timestamps):
                grouped.setdefault(row[1], []).append(row)
                if row[1] not in works:
                    works[row[1]] = _LedgerWork(row[1], LedgerSlice(now_ns))
        return grouped

    def _load(  # noqa: C901 - gathers ids from every request kind before locking
        self,
        cursor: Any,
        requests: Sequence[WriteRequest],
        works: dict[int, _LedgerWork],
        due: dict[int, list[Row]],
        cache: _Cache,
    ) -> None:
        account_ids: dict[int, set[str]] = {ledger_id: set() for ledger_id in works}
        transfer_ids: dict[int, set[str]] = {ledger_id: set() for ledger_id in works}
        pending_ids: dict[int, set[str]] = {ledger_id: set() for ledger_id in works}
        for request in requests:
            ledger_id = request.ledger_id
            _collect_ids(request, account_ids[ledger_id], transfer_ids[ledger_id])
            if isinstance(request, CreateTransfers):
                pending_ids[ledger_id].update(
                    event.pending_id
                    for event in request.events
                    if event.pending_id is not None and storable(event.pending_id)
                )
        for ledger_id, rows in due.items():
            for row in rows:
                transfer_ids[ledger_id].add(row[2])
                account_ids[ledger_id].update((row[3], row[4]))
        # Accounts of named pending transfers: immutable, so a read before the locks is safe.
        for ledger_id, ids in pending_ids.items():
            if ids:
                for row in self._ops.transfers_by_id(cursor, ledger_id, sorted(ids)):
                    if row[10] & TransferFlags.pending:
                        account_ids[ledger_id].update((row[3], row[4]))
        for ledger_id in sorted(works):
            self._lock_accounts(cursor, works[ledger_id], account_ids[ledger_id], cache)
        for ledger_id in sorted(works):
            self._load_transfers(cursor, works[ledger_id], transfer_ids[ledger_id])
            resolvable = pending_ids[ledger_id].union(row[2] for row in due.get(ledger_id, ()))
            _check_accounts_locked(works[ledger_id].slice, resolvable)

    def _lock_accounts(
        self,
        cursor: Any,
        work: _LedgerWork,
        ids: set[str],
        cache: _Cache,
    ) -> None:
        missing = []
        for account_id in ids:
            cached = cache.get((work.ledger_id, account_id))
            if cached is None:
                missing.append(account_id)
            else:
                work.account_pks[account_id] = cached[0]
                work.slice.accounts[account_id] = cached[1]
                work.chains[account_id] = cached[2]
        if not missing:
            return
        missing.sort()
        for row in self._ops.lock_accounts(cursor, work.ledger_id, missing):
            work.account_pks[row[2]] = row[0]
            work.loaded.append(row[2])
            work.slice.accounts[row[2]] = LiveAccount(
                id=row[2],
                currency=row[3],
                code=row[4],
                flags=row[5],
                limit_minor=row[6],
                limit_initial_minor=row[7],
                metadata=decode_metadata(row[8]),
                debits_pending=row[9],
                debits_posted=row[10],
                credits_pending=row[11],
                credits_posted=row[12],
            )
            work.chains[row[2]] = Chain(row[13], row[14])

    def _load_transfers(self, cursor: Any, work: _LedgerWork, ids: set[str]) -> None:
        if not ids:
            return
        ordered = sorted(ids)
        for row in self._ops.transfers_by_id(cursor, work.ledger_id, ordered):
            work.transfer_ts[row[2]] = row[0]
            work.slice.transfers[row[2]] = StoredTransfer(
                id=row[2],
                debit_account_id=row[3],
                credit_account_id=row[4],
                amount_minor=row[5],
                pending_id=row[6],
                timeout_s=row[7],
                expires_at_ns=row[8],
                code=row[9],
                flags=row[10],
                metadata=decode_metadata(row[11]),
            )
            if row[12] is not None:
                work.slice.holds[row[2]] = HoldState(row[12])
        for failed_id, result in self._ops.failed_by_id(cursor, work.ledger_id, ordered):
            work.slice.failed[failed_id] = CreateTransferResult(result)

    # -- writes -----------------------------------------------------------------------------

    def _write(self, cursor: Any, now_ns: int, works: list[_LedgerWork]) -> int | None:
        """Write the commit's rows and journal entry; returns the new entry's seq, if any.

        Timestamps follow the order in which the engine applied things, per ledger: new
        accounts, then transfers and limit changes interleaved as they happened, then failures.
        """
        counts = [0, 0, 0, 0]
        for w in works:
            counts[0] += len(w.slice.new_accounts)
            counts[1] += len(w.slice.limit_changes)
            counts[2] += len(w.slice.new_transfers)
            counts[3] += len(w.slice.new_failed)
        if sum(counts) == 0:
            return None
        head_seq, head_ts, head_mac = self._ops.lock_head(cursor)
        seq = int(head_seq) + 1
        ts = max(now_ns, int(head_ts) + 1)
        records: list[tuple[int, str]] = []
        for work in works:
            accounts_ts = ts
            ts += len(work.slice.new_accounts)
            transfer_ts, change_ts, ts = _interleave(work.slice, ts)
            for account in work.slice.new_accounts:
                work.chains[account.id] = Chain(None, 0)
            links, marks = link(work.slice.new_transfers, transfer_ts, work.chains)
            # New accounts are written with the balances and history head they end with.
            self._write_accounts(cursor, work, seq, accounts_ts, records)
            self._write_limit_changes(cursor, work, seq, change_ts, records)
            self._write_transfers(cursor, work, seq, transfer_ts, links, records)
            self._write_marks(cursor, work, marks)
            ts = self._write_failed(cursor, work, seq, ts, records)
            self._write_balances(cursor, work)
        assert len(records) == sum(counts)
        records.sort()
        last_ts = ts - 1
        digest = digest_records(text for _, text in records)
        mac = entry_mac(
            self._key,
            previous_mac=head_mac,
            seq=seq,
            timestamp_ns=last_ts,
            counts=(counts[0], counts[1], counts[2], counts[3]),
            digest=digest,
        )
        cursor.execute(
            self._sql(
                "INSERT INTO ledger_journal (seq, ts, accounts_count, limit_changes_count, "
                "transfers_count, failed_count, digest, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            ),
            (seq, last_ts, *counts, digest, mac),
        )
        cursor.execute(
            self._sql("UPDATE ledger_journal_head SET seq = ?, ts = ?, mac = ? WHERE id = 1"),
            (seq, last_ts, mac),
        )
        assert cursor.rowcount == 1
        return seq

    def _sql(self, statement: str) -> str:
        """Statements are written with ``?`` placeholders; psycopg wants ``%s``."""
        return statement if self._dialect is Dialect.sqlite else statement.replace("?", "%s")

    def _write_failed(
        self, cursor: Any, work: _LedgerWork, seq: int, ts: int, records: list[tuple[int, str]]
    ) -> int:
        if not work.slice.new_failed:
            return ts
        rows = [
            (ts + offset, work.ledger_id, failed_id, result.value, seq)
            for offset, (failed_id, result) in enumerate(work.slice.new_failed)
        ]
        cursor.executemany(
            self._sql(
                "INSERT INTO ledger_failed_transfers (ts, ledger_id, id, result, journal_seq) "
                "VALUES (?, ?, ?, ?, ?)"
            ),
            rows,
        )
        records.extend((row[0], failed_record(row)) for row in rows)
        return ts + len(rows)

    def _write_accounts(
        self, cursor: Any, work: _LedgerWork, seq: int, ts: int, records: list[tuple[int, str]]
    ) -> None:
        new_accounts = work.slice.new_accounts
        if not new_accounts:
            return
        rows: list[Row] = []
        for offset, account in enumerate(new_accounts):
            live = work.slice.accounts[account.id]
            chain = work.chains[account.id]
            rows.append(
                (
                    work.ledger_id,
                    account.id,
                    account.currency,
                    account.code,
                    int(account.flags),
                    account.limit_initial_minor,
                    encode_metadata(account.metadata),
                    ts + offset,
                    seq,
                    live.limit_minor,
                    live.debits_pending,
                    live.debits_posted,
                    live.credits_pending,
                    live.credits_posted,
                    chain.last_ts,
                    chain.count,
                )
            )
        cursor.executemany(self._sql(_INSERT_ACCOUNT), rows)
        ids = [account.id for account in new_accounts]
        for row in self._ops.lock_accounts(cursor, work.ledger_id, ids):
            work.account_pks[row[2]] = row[0]
        records.extend(
            (row[7], account_record((work.account_pks[row[1]], *row[:9]))) for row in rows
        )

    def _write_limit_changes(
        self,
        cursor: Any,
        work: _LedgerWork,
        seq: int,
        timestamps: list[int],
        records: list[tuple[int, str]],
    ) -> None:
        changes = work.slice.limit_changes
        if not changes:
            return
        rows = [
            (
                change_ts,
                work.account_pks[change.account_id],
                change.limit_minor,
                change.previous_limit_minor,
                seq,
            )
            for change_ts, change in zip(timestamps, changes, strict=True)
        ]
        cursor.executemany(
            self._sql(
                "INSERT INTO ledger_limit_changes (ts, account_pk, limit_minor, "
                "previous_limit_minor, journal_seq) VALUES (?, ?, ?, ?, ?)"
            ),
            rows,
        )
        records.extend((row[0], limit_change_record(row)) for row in rows)

    def _write_transfers(  # noqa: PLR0913 - the commit's context, then this ledger's parts
        self,
        cursor: Any,
        work: _LedgerWork,
        seq: int,
        timestamps: list[int],
        links: list[tuple[int | None, int | None]],
        records: list[tuple[int, str]],
    ) -> None:
        transfers = work.slice.new_transfers
        if not transfers:
            return
        pks = work.account_pks
        ledger_id = work.ledger_id
        rows: list[Row] = []
        new_ts: dict[str, int] = {}
        for offset, transfer in enumerate(transfers):
            assert transfer.ordinal == offset
            transfer_ts = timestamps[offset]
            row = transfer_row(
                transfer,
                ts=transfer_ts,
                ledger_id=ledger_id,
                debit_pk=pks[transfer.debit_account_id],
                credit_pk=pks[transfer.credit_account_id],
                seq=seq,
                links=links[offset],
            )
            rows.append(row)
            new_ts[transfer.id] = transfer_ts
        self._ops.insert_transfers(cursor, rows)
        records.extend((row[0], transfer_record(row)) for row in rows)
        self._write_holds(cursor, work, new_ts)

    def _write_marks(self, cursor: Any, work: _LedgerWork, marks: list[tuple[str, int]]) -> None:
        if marks:
            pks = work.account_pks
            cursor.executemany(
                self._sql("INSERT INTO ledger_history_marks (account_pk, ts) VALUES (?, ?)"),
                [(pks[account_id], ts) for account_id, ts in marks],
            )

    def _write_holds(self, cursor: Any, work: _LedgerWork, new_ts: dict[str, int]) -> None:
        inserts: list[Row] = []
        updates: list[Row] = []
        for pending_id, state in work.slice.new_holds.items():
            if pending_id in new_ts:
                expires = work.slice.transfers[pending_id].expires_at_ns
                inserts.append((new_ts[pending_id], int(state), expires))
            else:
                updates.append((int(state), work.transfer_ts[pending_id]))
        if inserts:
            cursor.executemany(
                self._sql(
                    "INSERT INTO ledger_holds (transfer_ts, state, expires_at_ns) VALUES (?, ?, ?)"
                ),
                inserts,
            )
        if updates:
            cursor.executemany(
                self._sql("UPDATE ledger_holds SET state = ? WHERE transfer_ts = ?"), updates
            )

    def _write_balances(self, cursor: Any, work: _LedgerWork) -> None:
        new_ids = {account.id for account in work.slice.new_accounts}
        rows: list[Row] = []
        for account_id in work.slice.touched:
            if account_id in new_ids:
                continue  # Inserted with its balances at the end of this commit.
            live = work.slice.accounts[account_id]
            chain = work.chains[account_id]
            rows.append(
                (
                    live.debits_pending,
                    live.debits_posted,
                    live.credits_pending,
                    live.credits_posted,
                    live.limit_minor,
                    chain.last_ts,
                    chain.count,
                    work.account_pks[account_id],
                )
            )
        if rows:
            self._ops.update_balances(cursor, rows)


def transfer_row(  # noqa: PLR0913 - the stored columns that are not the transfer's own
    transfer: Transfer,
    *,
    ts: int,
    ledger_id: int,
    debit_pk: int,
    credit_pk: int,
    seq: int,
    links: tuple[int | None, int | None],
) -> Row:
    """A transfer as a ``ledger_transfers`` row, in ``INSERT_TRANSFER_COLUMNS`` order: the
    journaled ``TRANSFER_COLUMNS``, then its links in the accounts' histories."""
    dr = transfer.debit_balances
    cr = transfer.credit_balances
    return (
        ts,
        ledger_id,
        transfer.id,
        debit_pk,
        credit_pk,
        transfer.amount_minor,
        transfer.currency,
        transfer.pending_id,
        transfer.timeout_s,
        transfer.expires_at_ns,
        transfer.code,
        int(transfer.flags),
        encode_metadata(transfer.metadata),
        seq,
        dr.debits_pending,
        dr.debits_posted,
        dr.credits_pending,
        dr.credits_posted,
        cr.debits_pending,
        cr.debits_posted,
        cr.credits_pending,
        cr.credits_posted,
        links[0],
        links[1],
    )


class StaleReadError(Exception):
    """A hold committed by another process between the first read and the locks: retry."""


def _check_accounts_locked(ledger: LedgerSlice, pending_ids: set[str]) -> None:
    for pending_id in pending_ids:
        hold = ledger.transfers.get(pending_id)
        if hold is None or not hold.flags & TransferFlags.pending:
            continue
        if hold.debit_account_id not in ledger.accounts:
            raise StaleReadError(pending_id)
        if hold.credit_account_id not in ledger.accounts:
            raise StaleReadError(pending_id)


def _interleave(ledger: LedgerSlice, ts: int) -> tuple[list[int], list[int], int]:
    """Timestamps of the transfers and of the limit changes, in the order they were applied."""
    transfer_ts: list[int] = []
    change_ts: list[int] = []
    changes = ledger.limit_changes
    index = 0
    for position in range(len(ledger.new_transfers) + 1):
        while index < len(changes) and changes[index].transfers_before == position:
            change_ts.append(ts)
            ts += 1
            index += 1
        if position < len(ledger.new_transfers):
            transfer_ts.append(ts)
            ts += 1
    assert index == len(changes)
    return transfer_ts, change_ts, ts


def _collect_ids(request: WriteRequest, account_ids: set[str], transfer_ids: set[str]) -> None:
    """Ids a request may read. Ids no row can have (a NUL, refused by PostgreSQL's text type) are
    left out: the engine answers them with ``*_invalid`` without a look-up."""
    _collect_all_ids(request, account_ids, transfer_ids)
    for ids in (account_ids, transfer_ids):
        unstorable = [value for value in ids if not storable(value)]
        ids.difference_update(unstorable)


def _collect_all_ids(request: WriteRequest, account_ids: set[str], transfer_ids: set[str]) -> None:
    if isinstance(request, CreateAccounts):
        account_ids.update(event.id for event in request.events)
    elif isinstance(request, SetLimit):
        account_ids.add(request.account_id)
    else:
        for event in request.events:
            transfer_ids.add(event.id)
            if event.pending_id is not None:
                transfer_ids.add(event.pending_id)
            if event.debit_account_id is not None:
                account_ids.add(event.debit_account_id)
            if event.credit_account_id is not None:
                account_ids.add(event.credit_account_id)


def _apply(ledger: LedgerSlice, request: WriteRequest) -> Outcome:
    if isinstance(request, CreateAccounts):
        return create_accounts(ledger, request.events)
    if isinstance(request, CreateTransfers):
        return create_transfers(ledger, request.events)
    result: SetLimitResult = apply_limit_change(ledger, request.account_id, request.limit_minor)
    return result


def _is_retryable(error: Exception) -> bool:
    """A concurrent writer won a race (same new id, or a serialisation conflict): try again."""
    if isinstance(error, StaleReadError):
        return True
    sqlstate = getattr(getattr(error, "orig", error), "sqlstate", None)
    return sqlstate in {"23505", "40001", "40P01"}
