"""Audit records of failed requests without a valid key, within a budget.

Anyone can send requests without a key (or with a wrong one), without end, and each would cost a
durable record. So such a record is written while its origin, and every origin together, are
within a budget (``Budget``: in the server, ``farthing.http``'s per-address buckets); past it
the request is tallied per origin and status instead, and the server writes each tally as one
record every ``TALLY_INTERVAL_S`` and when it stops. A tally record has the time of the first
request it counts, the count and the time of the last in its action, and their status.
Requests with a valid key are always recorded one by one: their key is accountable and limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from farthing.audit._record import AuditRecord
from farthing.audit._store import APPEND_BATCH_SIZE_MAX
from farthing.audit._writer import AuditWriter

__all__ = [
    "OTHER_ORIGINS",
    "TALLY_INTERVAL_S",
    "TALLY_ORIGINS_MAX",
    "AnonymousRecords",
    "Budget",
    "write_tallies",
]

TALLY_INTERVAL_S = 60.0
# Origins tallied apart per interval; the others are tallied together under OTHER_ORIGINS.
TALLY_ORIGINS_MAX = 100
OTHER_ORIGINS = "(other origins)"
# HTTP statuses are three digits: at most this many tallies per origin.
_STATUSES_MAX = 500
_log = logging.getLogger("farthing.audit")


class Budget(Protocol):
    def allow(self, address: str) -> bool:
        """Take one from the address's budget; False when it is spent."""
        ...


@dataclass(slots=True)
class _Count:
    count: int
    first_ns: int
    last_ns: int


class AnonymousRecords:
    """Decides which failed anonymous requests are recorded one by one; tallies the rest."""

    def __init__(self, budget: Budget, *, group: Callable[[str], str] = str) -> None:
        """``group``: the origin as its budget counts it (in the server, an IPv6 address's /64),
        so that one host cannot fill the tally's origins with addresses of its own."""
        self._budget = budget
        self._group = group
        self._tally: dict[tuple[str, int], _Count] = {}
        self._origins: set[str] = set()

    def admit(self, record: AuditRecord) -> bool:
        """True: write the record. False: it was tallied (a failure past the budget)."""
        if record.actor_kind != "anonymous" or record.outcome != "failure":
            return True
        if self._budget.allow(record.origin):
            return True
        origin = self._group(record.origin)
        if origin not in self._origins:
            if len(self._origins) >= TALLY_ORIGINS_MAX:
                origin = OTHER_ORIGINS
            else:
                self._origins.add(origin)
        counted = self._tally.get((origin, record.status))
        if counted is None:
            self._tally[(origin, record.status)] = _Count(
                1, record.occurred_at_ns, record.occurred_at_ns
            )
        else:
            counted.count += 1
            counted.last_ns = max(counted.last_ns, record.occurred_at_ns)
        assert len(self._tally) <= (TALLY_ORIGINS_MAX + 1) * _STATUSES_MAX
        return False

    def take(self) -> list[AuditRecord]:
        """The tally's records, oldest first; the tally starts over. Call it where ``admit``
        runs (the event loop): the two are not locked against each other."""
        tally, self._tally, self._origins = self._tally, {}, set()
        records = [
            AuditRecord(
                occurred_at_ns=counted.first_ns,
                actor_kind="anonymous",
                actor="-",
                action=f"tally of {counted.count} requests without a valid key, "
                f"the last at {counted.last_ns}",
                origin=origin,
                outcome="failure",
                status=status,
            )
            for (origin, status), counted in tally.items()
        ]
        return sorted(records, key=lambda record: record.occurred_at_ns)


async def write_tallies(
    anonymous: AnonymousRecords, writer: AuditWriter, stopping: asyncio.Event
) -> None:
    """Write the tally every TALLY_INTERVAL_S, and once more when ``stopping`` is set. Taken on
    the event loop, where the audit middleware adds to it; written in a thread."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), TALLY_INTERVAL_S)
        records = anonymous.take()
        if records:
            await asyncio.to_thread(_write, records, writer)


def _write(records: list[AuditRecord], writer: AuditWriter) -> None:
    """If the trail refuses the tally, say so and go on: the requests it counts failed and
    changed nothing."""
    for start in range(0, len(records), APPEND_BATCH_SIZE_MAX):
        batch = records[start : start + APPEND_BATCH_SIZE_MAX]
        try:
            writer.write_now(batch)
        except Exception:  # noqa: BLE001 - logged; see above
            _log.exception("audit tally of %d records not written", len(batch))
