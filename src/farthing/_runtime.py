"""Process-wide tuning shared by the long-running commands (serve, bench, verify)."""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

# CPython collects generation 0 after 700 net container allocations by default. A full batch
# of 8189 transfers allocates about 25,000 tuples, so the collector ran ~35 times per batch and
# its older generations walked the whole heap: 26 ms of a 170 ms SQLite batch (measured with
# `farthing bench ledger`, 2026-11-21). The ledger makes few reference cycles, so collecting
# less often costs little memory.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_gc() -> None:
    """Collect cyclic garbage less often (see ``GC_THRESHOLDS``)."""
    gc.set_threshold(*GC_THRESHOLDS)
    # Only generation 0 is compared: later CPythons may not keep the older generations' values.
    assert gc.get_threshold()[0] == GC_THRESHOLDS[0]
