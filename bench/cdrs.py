"""CDR cost: on the call path, and in the store.

1. Event loop: CallControl handling offer/ring/answer/end for N calls, with
   the CDR writer as `on_change` (it queues) and its batches mapped to rows
   every B calls (a store that writes nothing), next to a baseline measured
   in the same run: the same events with no CDR sink.
2. Store: N calls written as the daemon writes them (an in-progress row at
   setup, the finished row at the end) through the write-behind writer,
   flushed in batches of B calls, on SQLite (WAL) in a temporary directory,
   next to a baseline in the same run: one transaction per change
   (`write_delay = 0` with a store that cannot keep up batching).

Run: python bench/cdrs.py [calls] [batch]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.calls.cdr import cdr_row
from gateway.calls.control import CallControl
from gateway.calls.registry import CallRecord, CallSettings, CallState, Cause, Disposition
from gateway.calls.routing import PrefixRoute, StaticRouter, StaticRoutes
from gateway.config.models import StoreConfig
from gateway.store.cdrs import CdrStore, CdrWriter
from gateway.store.database import Store
from media.events import (
    CallAnswered,
    CallCommand,
    CalleeRinging,
    CallEnded,
    CallEvent,
    CallOffered,
    Party,
)

ROUTER = StaticRouter(StaticRoutes((PrefixRoute("1", "10.0.0.1", 5060),)))


class _Engine:
    def __init__(self) -> None:
        self.handler: Callable[[Sequence[CallEvent]], None] | None = None

    def attach_calls(self, handler: Callable[[Sequence[CallEvent]], None]) -> None:
        self.handler = handler

    def submit(self, command: CallCommand) -> None:
        pass


def _events(call: int) -> list[list[CallEvent]]:
    at = 1_700_000_000.0 + call
    return [
        [CallOffered(call, at, "sip:1555@engine", "sip:alice@example.com", f"cid-{call}")],
        [CalleeRinging(call, at + 0.1, 180)],
        [CallAnswered(call, at + 1.0)],
        [CallEnded(call, at + 30.0, Party.CALLER, 200, "", "PCMU", "PCMU")],
    ]


class _NullStore(CdrStore):
    """Takes rows and writes nothing: the event loop's share of the CDR work alone."""

    def __init__(self) -> None:
        pass

    async def apply(self, rows: Sequence[dict[str, Any]]) -> None:
        pass


async def call_path(calls: int, writer: CdrWriter | None, batch: int) -> float:
    """Seconds per call of call control, with the CDR writer flushed every `batch` calls."""
    engine = _Engine()
    sink = writer.record if writer is not None else None
    control = CallControl(engine, ROUTER, CallSettings(records_kept=0), on_change=sink)
    handler = engine.handler
    assert handler is not None
    events = [_events(call) for call in range(calls)]
    started = time.perf_counter()
    for call, batches in enumerate(events):
        for one in batches:
            handler(one)
        if writer is not None and call % batch == batch - 1:
            await writer.flush()  # mapping records to rows runs on the loop too
    elapsed = time.perf_counter() - started
    control.close()
    return elapsed / calls


def _records(calls: int) -> list[tuple[CallRecord, CallRecord]]:
    """(at setup, at the end) for each call, as the writer would see them."""
    pairs = []
    for call in range(calls):
        at = 1_700_000_000.0 + call
        offered = CallRecord(call, f"cid-{call}", "sip:alice@example.com", "1555", at)
        ended = CallRecord(call, f"cid-{call}", "sip:alice@example.com", "1555", at)
        ended.answered_at, ended.ended_at = at + 1.0, at + 30.0
        ended.state, ended.disposition, ended.cause = (
            CallState.ENDED,
            Disposition.ANSWERED,
            Cause.CALLER_HANGUP,
        )
        pairs.append((offered, ended))
    return pairs


async def store_rate(calls: int, batch: int, run_id: int) -> tuple[float, float]:
    """Calls per second written batched, and one transaction per change (same store)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(StoreConfig(), Path(tmp))
        cdr_store = CdrStore(store)
        try:
            writer = CdrWriter(cdr_store, "bench", run_id, write_delay=0, max_pending=10 * calls)
            pairs = _records(calls)
            started = time.perf_counter()
            for first in range(0, calls, batch):
                chunk = pairs[first : first + batch]
                for offered, _ in chunk:
                    writer.record(offered)
                await writer.flush()  # the in-progress rows of this interval
                for _, ended in chunk:
                    writer.record(ended)
                await writer.flush()  # their ends
            batched = calls / (time.perf_counter() - started)

            started = time.perf_counter()
            for offered, ended in pairs:
                await cdr_store.apply([cdr_row(offered, "bench", run_id + 1)])
                await cdr_store.apply([cdr_row(ended, "bench", run_id + 1)])
            single = calls / (time.perf_counter() - started)
        finally:
            await store.close()
    return batched, single


async def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    writer = CdrWriter(_NullStore(), "bench", 1, write_delay=0, max_pending=10 * calls)
    await call_path(1000, None, batch)  # warm-up
    # Alternated, best of 5 each: the machine may be shared, noise only adds time.
    base = with_cdr = float("inf")
    for _ in range(5):
        base = min(base, await call_path(calls, None, batch))
        with_cdr = min(with_cdr, await call_path(calls, writer, batch))
    print(f"event loop, {calls} calls (offer, ring, answer, end), best of 5:")
    print(f"  baseline, no CDR sink      {base * 1e6:8.2f} us/call")
    print(
        f"  with CDR writer (+mapping) {with_cdr * 1e6:8.2f} us/call "
        f"(+{(with_cdr - base) * 1e6:.2f} us, x{with_cdr / base:.2f})"
    )
    store_calls = min(calls, 5_000)
    batched, single = await store_rate(store_calls, batch, 1)
    print(f"store (SQLite WAL), {store_calls} calls, setup row + final row each:")
    print(f"  baseline, a transaction per change   {single:10.0f} calls/s")
    ratio = batched / single
    print(f"  write-behind, {batch} calls per batch  {batched:10.0f} calls/s (x{ratio:.1f})")


if __name__ == "__main__":
    asyncio.run(main())
