"""The cyclic garbage collector, settled once start-up is done.

The daemon holds tens of thousands of long-lived objects (config, routing
tables, queues, registrations). With CPython's default thresholds (700, 10,
10) every few hundred allocations trigger a collection that traverses young
objects, and a gen-2 collection every few seconds traverses all of them: at
thousands of SMS per second that was ~40 of ~320 us of CPU per message
(docs/BENCHMARKS.md, SMPP round 3). Freezing what start-up built moves
it out of every collection's reach; a higher gen-0 threshold makes collections
rarer, each one still bounded (reference counting frees nearly everything;
the collector only finds cycles).
"""

from __future__ import annotations

import gc


def settle_collector(thresholds: tuple[int, int, int]) -> int:
    """Collect once, freeze the survivors (start-up objects), then collect at
    `thresholds` (gc.set_threshold's gen-0 allocations, gen-1 and gen-2 counts).
    Returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return gc.get_freeze_count()
