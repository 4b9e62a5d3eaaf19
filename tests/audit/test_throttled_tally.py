"""The tally of throttled requests: the first after a quiet interval is written at once, the
rest once per interval per origin, for a bounded number of origins."""

from __future__ import annotations

from farthing.audit._middleware import (
    OTHER_ORIGINS,
    THROTTLED_ORIGINS_MAX,
    THROTTLED_TALLY_INTERVAL_S,
    _Tally,
)

START_S = 10_000.0


def _counts(tally: _Tally, now_s: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in tally.take_due(now_s):
        assert record.actor_kind == "anonymous"
        assert record.status == 429
        assert record.outcome == "failure"
        words = record.action.split(" ")
        assert words[0] == "throttled"
        assert " ".join(words[2:]) == "requests without a valid key"
        assert record.origin not in counts
        counts[record.origin] = int(words[1])
    return counts


def test_first_at_once_then_once_per_interval() -> None:
    tally = _Tally(THROTTLED_TALLY_INTERVAL_S)
    assert _counts(tally, START_S) == {}
    tally.add("203.0.113.7")
    assert _counts(tally, START_S) == {"203.0.113.7": 1}
    for _ in range(500):
        tally.add("203.0.113.7")
    tally.add("198.51.100.1")
    assert _counts(tally, START_S + THROTTLED_TALLY_INTERVAL_S - 1) == {}
    due = START_S + THROTTLED_TALLY_INTERVAL_S
    assert _counts(tally, due) == {"203.0.113.7": 500, "198.51.100.1": 1}
    assert _counts(tally, due + 10 * THROTTLED_TALLY_INTERVAL_S) == {}


def test_origins_are_bounded() -> None:
    tally = _Tally(THROTTLED_TALLY_INTERVAL_S)
    extra = 37
    for n in range(THROTTLED_ORIGINS_MAX + extra):
        tally.add(f"origin-{n}")
        tally.add(f"origin-{n}")
    counts = _counts(tally, START_S)
    assert len(counts) == THROTTLED_ORIGINS_MAX + 1
    assert counts[OTHER_ORIGINS] == 2 * extra
    assert sum(counts.values()) == 2 * (THROTTLED_ORIGINS_MAX + extra)
