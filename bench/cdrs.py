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
3. Loop stall: the longest time the event loop is not free while one batch
   of 300 rows (half a second of set-ups and ends at 300 calls/s) is
   written, `WRITE_CHUNK` rows a statement as the daemon does, next to the
   baseline in the same run: the whole batch in one statement. Median and
   worst of 10 batches each, alternated.

Run: python bench/cdrs.py [calls] [batch]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.calls.cdr import cdr_row
from gateway.calls.control import CallControl
from gateway.calls.registry import CallRecord, CallSettings, CallState, Cause, Disposition
from gateway.calls.routing import CallRequest, Routed, RouteDecision, Target
from gateway.config.models import LoggingConfig, StoreConfig
from gateway.logs import configure_logging
from gateway.store.cdrs import WRITE_CHUNK, CdrStore, CdrWriter
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


class _Router:
    """Every call to one trunk target: the CDR path's cost, not the dial plan's."""

    def route(self, request: CallRequest) -> RouteDecision:
        return Routed((Target(f"sip:{request.dialed}@10.0.0.1:5060", trunk="bench"),))


ROUTER = _Router()


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

    async def apply(self, rows: Iterable[dict[str, Any]]) -> None:
        for _row in rows:  # the writer maps records as they are taken
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


def _records(calls: int, first: int = 0) -> list[tuple[CallRecord, CallRecord]]:
    """(at setup, at the end) for each call, as the writer would see them."""
    pairs = []
    for call in range(first, first + calls):
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


async def _max_gap(write: Awaitable[None]) -> float:
    """Seconds of the longest loop turn another task waited for while `write` ran."""
    done = False
    longest = 0.0

    async def ticker() -> None:
        nonlocal longest
        while not done:
            started = time.perf_counter()
            await asyncio.sleep(0)
            longest = max(longest, time.perf_counter() - started)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await write
    done = True
    await task
    return longest


async def loop_stall(rows: int, rounds: int, run_id: int) -> dict[int, list[float]]:
    """Longest loop stall per batch of `rows`, chunked as shipped and in one statement."""
    stalls: dict[int, list[float]] = {WRITE_CHUNK: [], rows: []}
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(StoreConfig(), Path(tmp))
        writers = {
            chunk: CdrWriter(
                CdrStore(store, chunk), "bench", run_id, write_delay=0, max_pending=rows
            )
            for chunk in stalls
        }
        try:
            call = 0
            for _ in range(rounds):
                for chunk, writer in writers.items():
                    for offered, _ended in _records(rows, first=call):
                        writer.record(offered)
                    call += rows
                    stalls[chunk].append(await _max_gap(writer.flush()))
        finally:
            await store.close()
    return stalls


async def main() -> None:
    configure_logging(LoggingConfig())  # the daemon's default level: no per-call debug lines
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
    stalls = await loop_stall(300, 10, 3)
    print("longest event-loop stall while a batch of 300 rows is written, median / worst of 10:")
    for chunk, label in ((300, "baseline, one statement"), (WRITE_CHUNK, "chunked")):
        ms = sorted(1000 * s for s in stalls[chunk])
        print(f"  {label:24} {chunk:3} rows   {ms[len(ms) // 2]:6.2f} / {ms[-1]:6.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
