"""An account's history (chains of transfers with every 64th one marked) against brute force.

A ledger is built in commits of many sizes so that busy accounts have hundreds of transfers
(several marks each), one account has exactly one mark, and one has none. Then every page of
every listing, a seeded random campaign of ranges and cursors, and balances at many moments are
compared with answers computed from all the stored transfer rows. A history walk is bounded
(HISTORY_MARK_EVERY links past its range, plus the page): a look-up that started its walk from
the wrong place would come back short on these long histories, not merely slow.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from farthing._errors import IntegrityError
from farthing.db.schema import ledger_accounts, ledger_history_marks, ledger_transfers
from farthing.ledger import (
    AccountEvent,
    Balances,
    CreateAccountResult,
    CreateTransferResult,
    TransferEvent,
    TransferFlags,
)
from farthing.ledger_service import CreateAccounts, CreateTransfers, LedgerService
from farthing.ledger_service._history import HISTORY_MARK_EVERY

BUSY = ("hot", "a1", "a2", "a3")
RANGE_QUERIES = 300
TS_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class _Stored:
    ts: int
    debit: str
    credit: str
    debit_balances: Balances
    credit_balances: Balances


def _build(service: LedgerService, ledger_id: int, rng: random.Random) -> None:
    accounts = (*BUSY, "exact", "partner", "idle")
    events = tuple(AccountEvent(id=name, currency="USD") for name in accounts)
    (results,) = service.commit([CreateAccounts(ledger_id=ledger_id, events=events)])
    assert results == [CreateAccountResult.ok] * len(events)
    number = 0
    for size in (1, 7, 1, 130, 3, 300, 64, 1, 250, 2, 90):
        transfers = []
        for _ in range(size):
            number += 1
            debit, credit = rng.sample(BUSY, 2) if rng.random() > 0.3 else ("hot", "a1")
            flags = TransferFlags.pending if number % 17 == 0 else TransferFlags.none
            transfers.append(
                TransferEvent(
                    id=f"t{number}",
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount_minor=rng.randrange(1, 1000),
                    flags=flags,
                )
            )
            if number % 34 == 0:  # Post every other hold: a third kind of row in the chains.
                transfers.append(
                    TransferEvent(
                        id=f"post{number}",
                        pending_id=f"t{number}",
                        flags=TransferFlags.post_pending,
                    )
                )
        (results,) = service.commit([CreateTransfers(ledger_id=ledger_id, events=tuple(transfers))])
        assert results == [CreateTransferResult.ok] * len(transfers)
    exact = tuple(
        TransferEvent(
            id=f"x{index}", debit_account_id="exact", credit_account_id="partner", amount_minor=1
        )
        for index in range(HISTORY_MARK_EVERY)
    )
    (results,) = service.commit([CreateTransfers(ledger_id=ledger_id, events=exact)])
    assert results == [CreateTransferResult.ok] * len(exact)


def _stored(engine: sa.Engine) -> list[_Stored]:
    t = ledger_transfers
    debit, credit = ledger_accounts.alias("debit"), ledger_accounts.alias("credit")
    columns = [t.c.ts, debit.c.id, credit.c.id]
    for prefix in ("dr_", "cr_"):
        columns += [
            t.c[prefix + name]
            for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
        ]
    statement = (
        sa.select(*columns)
        .select_from(
            t.join(debit, debit.c.pk == t.c.debit_pk).join(credit, credit.c.pk == t.c.credit_pk)
        )
        .order_by(t.c.ts)
    )
    with engine.connect() as connection:
        rows = connection.execute(statement).all()
    return [
        _Stored(row[0], row[1], row[2], Balances(*row[3:7]), Balances(*row[7:11])) for row in rows
    ]


@dataclass(frozen=True, slots=True)
class _Built:
    service: LedgerService
    ledger_id: int
    stored: list[_Stored]

    def timestamps(self, account: str) -> list[int]:
        return [row.ts for row in self.stored if account in {row.debit, row.credit}]

    def balance_at(self, account: str, at_ns: int) -> Balances:
        found = Balances()
        for row in self.stored:
            if row.ts > at_ns:
                break
            if row.debit == account:
                found = row.debit_balances
            elif row.credit == account:
                found = row.credit_balances
        return found


@pytest.fixture
def built(service: LedgerService, ledger_id: int) -> Iterator[_Built]:
    _build(service, ledger_id, random.Random(20261122))
    yield _Built(service, ledger_id, _stored(service.engine))
    service.verify()


def _page(built: _Built, account: str, **query: Any) -> tuple[list[int], int | None]:
    page = built.service.list_account_transfers(built.ledger_id, account, **query)
    assert page is not None
    return [transfer.timestamp_ns for transfer in page.transfers], page.next_cursor


def test_the_ledger_has_long_histories(built: _Built) -> None:
    for account in BUSY:
        assert len(built.timestamps(account)) > 4 * HISTORY_MARK_EVERY, account
    assert len(built.timestamps("exact")) == HISTORY_MARK_EVERY
    assert built.timestamps("idle") == []
    with built.service.engine.connect() as connection:
        marks = connection.execute(sa.select(sa.func.count()).select_from(ledger_history_marks))
        expected = sum(
            len(built.timestamps(account)) // HISTORY_MARK_EVERY
            for account in (*BUSY, "exact", "partner", "idle")
        )
        assert marks.scalar_one() == expected


@pytest.mark.parametrize("limit", [1, 5, HISTORY_MARK_EVERY - 1, HISTORY_MARK_EVERY, 65, 200])
@pytest.mark.parametrize("newest_first", [False, True])
def test_paging_visits_every_transfer_once_in_order(
    built: _Built, limit: int, newest_first: bool
) -> None:
    for account in (*BUSY, "exact", "idle"):
        expected = built.timestamps(account)
        if newest_first:
            expected.reverse()
        seen: list[int] = []
        cursor: int | None = None
        while True:
            page, cursor = _page(
                built, account, after=cursor, limit=limit, newest_first=newest_first
            )
            assert len(page) <= limit
            seen += page
            if cursor is None:
                break
            assert cursor == page[-1]
        assert seen == expected, account


def _moment(rng: random.Random, timestamps: list[int]) -> int:
    choice = rng.random()
    if choice < 0.1 or not timestamps:
        return rng.choice([0, 1, TS_MAX])
    return rng.choice(timestamps) + rng.choice([-1, 0, 1])


def test_ranges_and_cursors_match_brute_force(built: _Built) -> None:
    rng = random.Random(7)
    for _ in range(RANGE_QUERIES):
        account = rng.choice((*BUSY, "exact", "idle"))
        everything = built.timestamps(account)
        since = _moment(rng, everything) if rng.random() < 0.6 else None
        until = _moment(rng, everything) if rng.random() < 0.6 else None
        after = _moment(rng, everything) if rng.random() < 0.4 else None
        limit = rng.randrange(1, 201)
        newest_first = rng.random() < 0.5
        wanted = [
            ts
            for ts in everything
            if (since is None or ts >= since)
            and (until is None or ts < until)
            and (after is None or (ts < after if newest_first else ts > after))
        ]
        if newest_first:
            wanted.reverse()
        query = {
            "since_ns": since,
            "until_ns": until,
            "after": after,
            "limit": limit,
            "newest_first": newest_first,
        }
        page, cursor = _page(built, account, **query)
        assert page == wanted[:limit], (account, query)
        assert cursor == (wanted[limit - 1] if len(wanted) > limit else None), (account, query)


def test_balances_at_past_moments_match_brute_force(built: _Built) -> None:
    rng = random.Random(11)
    for account in (*BUSY, "exact", "partner", "idle"):
        timestamps = built.timestamps(account)
        moments = {0, 1, TS_MAX}
        for ts in (
            rng.sample(timestamps, min(len(timestamps), 40)) + timestamps[:2] + timestamps[-2:]
        ):
            moments.update((ts - 1, ts, ts + 1))
        for at_ns in sorted(moments):
            found = built.service.balance_at(built.ledger_id, account, at_ns)
            assert found == built.balance_at(account, at_ns), (account, at_ns)


def test_an_edited_mark_fails_verify(built: _Built) -> None:
    """Marks are derived: verify rebuilds them, so a lost or an extra one is reported."""
    m = ledger_history_marks
    with built.service.engine.begin() as connection:
        first = connection.execute(sa.select(m).order_by(m.c.ts).limit(1)).one()
        connection.execute(sa.delete(m).where(m.c.ts == first.ts))
    with pytest.raises(
        IntegrityError, match=rf"^history mark of account pk {first.account_pk} at {first.ts} "
    ):
        built.service.verify()
    with built.service.engine.begin() as connection:
        connection.execute(sa.insert(m).values(account_pk=first.account_pk, ts=first.ts))
        connection.execute(sa.insert(m).values(account_pk=first.account_pk, ts=first.ts + 1))
    with pytest.raises(IntegrityError, match=r"^history mark of account pk "):
        built.service.verify()
    with built.service.engine.begin() as connection:
        connection.execute(sa.delete(m).where(m.c.ts == first.ts + 1))
