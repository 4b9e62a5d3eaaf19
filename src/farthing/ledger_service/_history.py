"""An account's history: a chain of its transfers, every ``HISTORY_MARK_EVERY``-th one indexed.

Each transfer row links to the previous transfer of its debit account (``dr_previous_ts``) and
of its credit account (``cr_previous_ts``); the account row holds the newest one and a count.
When an account's count reaches a multiple of ``HISTORY_MARK_EVERY``, that transfer is written
to ``ledger_history_marks``. A look-up finds the first mark past the moment it wants, by index,
and walks back from there: at most ``HISTORY_MARK_EVERY`` links before it reaches the moment.

Why not an index on (account, ts): a batch of 8189 transfers writes 16,378 entries into two such
indexes at scattered places, which took as long as the rest of SQLite's work for the batch. Marks
cost one entry per ``HISTORY_MARK_EVERY`` links. The chain and the marks are derived data:
``farthing verify`` rebuilds them from the journal and compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from farthing.ledger import Transfer

__all__ = ["HISTORY_MARK_EVERY", "Chain", "history", "link"]

HISTORY_MARK_EVERY = 64


@dataclass(slots=True)
class Chain:
    """The head of one account's history: its newest transfer and how many it has had."""

    last_ts: int | None
    count: int


def link(
    transfers: Sequence[Transfer], timestamps: Sequence[int], chains: dict[str, Chain]
) -> tuple[list[tuple[int | None, int | None]], list[tuple[str, int]]]:
    """Each transfer's links to its accounts' previous transfers (debit side, credit side), and
    the marks (account id, ts) these transfers make. Advances ``chains`` past the transfers."""
    assert len(transfers) == len(timestamps)
    links: list[tuple[int | None, int | None]] = []
    marks: list[tuple[str, int]] = []
    for transfer, ts in zip(transfers, timestamps, strict=True):
        debit = chains[transfer.debit_account_id]
        credit = chains[transfer.credit_account_id]
        assert debit is not credit  # The engine refuses a transfer from an account to itself.
        links.append((debit.last_ts, credit.last_ts))
        if _advance(debit, ts):
            marks.append((transfer.debit_account_id, ts))
        if _advance(credit, ts):
            marks.append((transfer.credit_account_id, ts))
    return links, marks


def _advance(chain: Chain, ts: int) -> bool:
    """Append the transfer at ``ts`` to the chain; True if it is to be marked."""
    assert chain.last_ts is None or chain.last_ts < ts
    chain.last_ts = ts
    chain.count += 1
    return chain.count % HISTORY_MARK_EVERY == 0


# Walks an account's chain back from :start while the links are newer than :low, for at most
# :steps_max links (every caller's bound is derived from HISTORY_MARK_EVERY and the page size).
_WALK = """
WITH RECURSIVE walk(ts, steps) AS (
    SELECT CAST(:start AS BIGINT), 0
    UNION ALL
    SELECT CASE WHEN t.debit_pk = :pk THEN t.dr_previous_ts ELSE t.cr_previous_ts END,
           walk.steps + 1
    FROM walk JOIN ledger_transfers t ON t.ts = walk.ts
    WHERE walk.ts > :low AND walk.steps < :steps_max
)
SELECT ts FROM walk WHERE ts > :low AND ts <= :top ORDER BY ts {order} LIMIT :count
"""
_WALK_NEWEST = sa.text(_WALK.format(order="DESC"))
_WALK_OLDEST = sa.text(_WALK.format(order="ASC"))
_MARKS_AFTER = sa.text(
    "SELECT ts FROM ledger_history_marks WHERE account_pk = :pk AND ts > :after "
    "ORDER BY ts LIMIT :count"
)


def history(  # noqa: PLR0913 - one range query, its bounds spelled out
    connection: sa.Connection,
    *,
    account_pk: int,
    last_ts: int | None,
    low: int,
    top: int,
    count: int,
    newest_first: bool,
) -> list[int]:
    """Timestamps of the account's transfers with ``low < ts <= top``: the newest ``count``,
    newest first, or the oldest ``count``, oldest first."""
    assert count > 0
    if last_ts is None or low >= top:
        return []
    if newest_first:
        # The first mark past top, or the head: at most HISTORY_MARK_EVERY links lie past top.
        (start,) = _marks_after(connection, account_pk, top, 1) or (last_ts,)
        steps_max = HISTORY_MARK_EVERY + count
        statement = _WALK_NEWEST
    else:
        # The oldest `count` in range lie before the k-th mark past low (or before the first
        # mark past top, or the head): at most k * HISTORY_MARK_EVERY links from there to low.
        k = -(-count // HISTORY_MARK_EVERY) + 1
        marks = _marks_after(connection, account_pk, low, k)
        past_top = [mark for mark in marks if mark > top]
        start = past_top[0] if past_top else marks[-1] if len(marks) == k else last_ts
        steps_max = HISTORY_MARK_EVERY * (k + 1)
        statement = _WALK_OLDEST
    parameters = {
        "start": start,
        "pk": account_pk,
        "low": low,
        "top": top,
        "steps_max": steps_max,
        "count": count,
    }
    return [int(row[0]) for row in connection.execute(statement, parameters)]


def _marks_after(connection: sa.Connection, account_pk: int, after: int, count: int) -> list[int]:
    rows = connection.execute(_MARKS_AFTER, {"pk": account_pk, "after": after, "count": count})
    return [int(row[0]) for row in rows]
