"""Process tuning of the long-running commands."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from farthing._runtime import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_collects_young_objects_less_often_than_cpython_does() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's default.
    tune_gc()
    assert gc.get_threshold()[0] == GC_THRESHOLDS[0]
    # A full batch allocates about three tuples per transfer; the young generation must hold
    # at least one whole batch's worth before the collector walks it.
    assert GC_THRESHOLDS[0] >= 3 * 8189
