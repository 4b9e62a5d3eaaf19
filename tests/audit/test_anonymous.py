"""Failed requests without a valid key are recorded one by one within a budget, and tallied past
it: per origin and status, for a bounded number of origins, with the first and last times."""

from __future__ import annotations

import re

from farthing.audit import AnonymousRecords, AuditRecord
from farthing.audit._anonymous import OTHER_ORIGINS, TALLY_ORIGINS_MAX

START_NS = 1_700_000_000_000_000_000
_TALLY = re.compile(r"tally of (\d+) requests without a valid key, the last at (\d+)")


class _Budget:
    """Each origin may have `each` records alone."""

    def __init__(self, each: int) -> None:
        self.each = each
        self.spent: dict[str, int] = {}

    def allow(self, address: str) -> bool:
        self.spent[address] = self.spent.get(address, 0) + 1
        return self.spent[address] <= self.each


def _record(origin: str, at_ns: int, *, status: int = 401, key: bool = False) -> AuditRecord:
    return AuditRecord(
        occurred_at_ns=at_ns,
        actor_kind="api_key" if key else "anonymous",
        actor="key_a" if key else "-",
        action="GET /v1/customers",
        origin=origin,
        outcome="success" if status < 400 else "failure",
        status=status,
    )


def _tallies(records: list[AuditRecord]) -> dict[tuple[str, int], tuple[int, int, int]]:
    found = {}
    for record in records:
        match = _TALLY.fullmatch(record.action)
        assert match is not None, record.action
        assert (record.actor_kind, record.actor, record.outcome) == ("anonymous", "-", "failure")
        found[(record.origin, record.status)] = (
            int(match[1]),
            record.occurred_at_ns,
            int(match[2]),
        )
    return found


def test_within_the_budget_alone_past_it_tallied() -> None:
    anonymous = AnonymousRecords(_Budget(2))
    admitted = [anonymous.admit(_record("203.0.113.7", START_NS + n)) for n in range(7)]
    assert admitted == [True, True, False, False, False, False, False]
    assert anonymous.admit(_record("203.0.113.7", START_NS + 9, status=404)) is False
    assert anonymous.admit(_record("198.51.100.1", START_NS + 8)) is True
    assert _tallies(anonymous.take()) == {
        ("203.0.113.7", 401): (5, START_NS + 2, START_NS + 6),
        ("203.0.113.7", 404): (1, START_NS + 9, START_NS + 9),
    }
    assert anonymous.take() == []  # Taken once.


def test_keys_and_successes_are_always_recorded() -> None:
    budget = _Budget(0)
    anonymous = AnonymousRecords(budget)
    assert anonymous.admit(_record("203.0.113.7", START_NS, key=True))
    assert anonymous.admit(_record("203.0.113.7", START_NS, status=200))  # e.g. the 3DS page
    assert budget.spent == {}
    assert anonymous.take() == []


def test_origins_are_bounded() -> None:
    anonymous = AnonymousRecords(_Budget(0))
    extra = 37
    for n in range(TALLY_ORIGINS_MAX + extra):
        for status in (401, 429):
            assert not anonymous.admit(_record(f"origin-{n}", START_NS + n, status=status))
    tallies = _tallies(anonymous.take())
    assert len(tallies) == 2 * (TALLY_ORIGINS_MAX + 1)
    assert tallies[(OTHER_ORIGINS, 401)][0] == extra
    assert sum(count for count, _, _ in tallies.values()) == 2 * (TALLY_ORIGINS_MAX + extra)


def test_origins_are_tallied_as_their_budget_groups_them() -> None:
    """One host's many IPv6 addresses are one origin: they cannot fill the tally's origins."""
    anonymous = AnonymousRecords(_Budget(0), group=lambda address: address.rsplit(":", 1)[0])
    for n in range(2 * TALLY_ORIGINS_MAX):
        assert not anonymous.admit(_record(f"2001:db8::{n}", START_NS + n))
    assert anonymous.admit(_record("2001:db8::1", START_NS, key=True))
    tallies = _tallies(anonymous.take())
    assert tallies == {
        ("2001:db8:", 401): (2 * TALLY_ORIGINS_MAX, START_NS, START_NS + 2 * TALLY_ORIGINS_MAX - 1)
    }
