"""CDRs in the store on SQLite and on a real PostgreSQL: writer, crash closure, filters."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, select
from sqlalchemy.exc import OperationalError

from gateway.calls.registry import CallRecord, CallState, Cause, Disposition
from gateway.config.models import StoreConfig
from gateway.store.cdrs import WRITE_CHUNK, CdrQuery, CdrStore, CdrWriter
from gateway.store.database import Store
from gateway.store.schema import cdrs
from gateway.store.write_behind import WriteBehind
from media.events import Party


def _record(call: int, setup_at: float = 1000.0, **fields: Any) -> CallRecord:
    record = CallRecord(call, f"cid-{call}", "sip:alice@example.com", "1555", setup_at)
    for name, value in fields.items():
        setattr(record, name, value)
    return record


def _end(
    record: CallRecord, at: float, disposition: Disposition, answered_at: float | None = None
) -> CallRecord:
    record.answered_at = answered_at
    record.ended_at = at
    record.state = CallState.ENDED
    record.disposition = disposition
    record.cause = Cause.CALLER_HANGUP
    record.ended_by = Party.CALLER
    record.caller_status = 200 if answered_at is not None else 486
    return record


async def _rows(store: Store) -> dict[tuple[int, int], dict[str, Any]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(cdrs))).mappings().all()
    return {(row["run_id"], row["call"]): dict(row) for row in rows}


async def _fresh(config: StoreConfig, tmp_path: Path) -> Store:
    store = await Store.open(config, tmp_path)
    async with store.engine.begin() as conn:
        await conn.execute(delete(cdrs))  # PostgreSQL is shared by the module's tests
    return store


async def test_writer_inserts_in_progress_then_finishes_one_row(
    store_config: StoreConfig, tmp_path: Path
) -> None:
    store = await _fresh(store_config, tmp_path)
    try:
        writer = CdrWriter(CdrStore(store), "node-a", 5, write_delay=0, max_pending=100)
        record = _record(1, account="alice", caller="x" * 2000)  # longer than its column
        writer.record(record)
        await writer.flush()
        (row,) = (await _rows(store)).values()
        assert (row["state"], row["node"], row["account"]) == ("in_progress", "node-a", "alice")
        assert row["ended_at"] is None and row["billable_seconds"] is None
        assert row["caller"] == "x" * 512
        record.ringing_at = 1001.0
        _end(record, 1020.5, Disposition.ANSWERED, answered_at=1002.0)
        writer.record(record)
        await writer.close()
        (row,) = (await _rows(store)).values()
        assert (row["state"], row["disposition"], row["cause"]) == (
            "finished",
            "answered",
            "caller_hangup",
        )
        assert (row["setup_at"], row["ringing_at"], row["answered_at"], row["ended_at"]) == (
            1000.0,
            1001.0,
            1002.0,
            1020.5,
        )
        assert (row["duration"], row["billable_seconds"]) == (20.5, 19)
    finally:
        await store.close()


async def test_a_batch_larger_than_a_chunk_goes_out_in_chunks_in_one_transaction(
    store_config: StoreConfig, tmp_path: Path
) -> None:
    """The parameters of each statement are built on the event loop: a batch is
    written WRITE_CHUNK rows a statement, so the loop is free between chunks."""
    store = await _fresh(store_config, tmp_path)
    statements: list[str] = []
    commits: list[bool] = []

    def on_execute(*args: Any) -> None:
        statements.append(str(args[2]).split()[0])

    def on_commit(_conn: Any) -> None:
        commits.append(True)

    sync_engine = store.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", on_execute)
    event.listen(sync_engine, "commit", on_commit)
    try:
        writer = CdrWriter(CdrStore(store), "n", 1, write_delay=0, max_pending=1000)
        calls = 2 * WRITE_CHUNK + 5
        records = [_record(call) for call in range(calls)]
        for record in records:
            writer.record(record)
        await writer.flush()
        assert statements == ["DELETE", "INSERT"] * 3
        assert len(commits) == 1
        rows = await _rows(store)
        assert sorted(rows) == [(1, call) for call in range(calls)]
        assert {row["state"] for row in rows.values()} == {"in_progress"}
        for record in records[::2]:
            writer.record(_end(record, 1010.0, Disposition.BUSY))
        await writer.flush()
        rows = await _rows(store)
        assert len(rows) == calls
        assert [rows[(1, call)]["state"] for call in range(4)] == [
            "finished",
            "in_progress",
            "finished",
            "in_progress",
        ]
    finally:
        event.remove(sync_engine, "before_cursor_execute", on_execute)
        event.remove(sync_engine, "commit", on_commit)
        await store.close()


async def test_restart_closes_only_the_crashed_runs_open_rows(
    store_config: StoreConfig, tmp_path: Path
) -> None:
    store = await _fresh(store_config, tmp_path)
    try:
        cdr_store = CdrStore(store)
        crashed = CdrWriter(cdr_store, "n", 1, write_delay=0, max_pending=100)
        talking = _record(1, ringing_at=1001.0, answered_at=1002.0)
        crashed.record(talking)
        crashed.record(_record(2, setup_at=1010.0))  # ringing nowhere yet
        crashed.record(_end(_record(3, setup_at=1020.0), 1025.0, Disposition.BUSY))
        await crashed.flush()
        healthy = CdrWriter(cdr_store, "n", 2, write_delay=0, max_pending=100)
        healthy.record(_record(1, setup_at=2000.0))
        await healthy.flush()

        assert await cdr_store.close_abandoned([1]) == 2
        rows = await _rows(store)
        for call in (1, 2):
            row = rows[(1, call)]
            assert (row["state"], row["disposition"], row["cause"], row["ended_at"]) == (
                "finished",
                "failed",
                "node_restart",
                1025.0,  # the crashed run's last sign of life
            ), row
        assert rows[(1, 1)]["billable_seconds"] == 23
        assert rows[(1, 2)]["billable_seconds"] == 0
        assert rows[(1, 3)]["disposition"] == "busy"  # finished before the crash: kept
        assert rows[(2, 1)]["state"] == "in_progress"  # another run: untouched
        assert await cdr_store.close_abandoned([1]) == 0  # idempotent
        assert await cdr_store.close_abandoned([]) == 0
    finally:
        await store.close()


async def test_a_crashed_run_ends_its_calls_at_its_last_heartbeat(
    store_config: StoreConfig, tmp_path: Path
) -> None:
    store = await _fresh(store_config, tmp_path)
    try:
        await store.begin_run("node-h", dt.datetime.now(dt.UTC))
        assert store.run_id is not None
        cdr_store = CdrStore(store)
        writer = CdrWriter(cdr_store, "node-h", store.run_id, write_delay=0, max_pending=100)
        writer.record(_record(1, ringing_at=1001.0, answered_at=1002.0))
        await writer.flush()
        await store.mark_alive(1060.4)  # talked for a minute, then the node died
        restart = Store(store.engine)
        crashed = await restart.begin_run("node-h", dt.datetime.now(dt.UTC))
        assert store.run_id in crashed
        assert await cdr_store.close_abandoned(crashed) == 1
        row = (await _rows(store))[(store.run_id, 1)]
        assert (row["ended_at"], row["billable_seconds"], row["cause"]) == (
            1060.4,
            59,
            "node_restart",
        )
        await restart.end_run(dt.datetime.now(dt.UTC))
    finally:
        await store.close()


async def test_query_filters(store_config: StoreConfig, tmp_path: Path) -> None:
    store = await _fresh(store_config, tmp_path)
    try:
        cdr_store = CdrStore(store)
        writer = CdrWriter(cdr_store, "n", 1, write_delay=0, max_pending=100)
        writer.record(
            _end(
                _record(1, 100.0, account="alice", caller_e164="+4930111"),
                160.0,
                Disposition.ANSWERED,
                answered_at=101.0,
            )
        )
        writer.record(_end(_record(2, 200.0, account="bob"), 201.0, Disposition.BUSY))
        writer.record(_record(3, 300.0, account="alice", dialed="999", callee_e164="+1999"))
        await writer.flush()

        async def calls(query: CdrQuery) -> list[int]:
            found = [row["call"] async for row in cdr_store.rows(query)]
            assert await cdr_store.count(query) == len(found)
            return found

        assert await calls(CdrQuery()) == [1, 2, 3]  # oldest setup first
        assert await calls(CdrQuery(account="alice")) == [1, 3]
        assert await calls(CdrQuery(since=200.0)) == [2, 3]
        assert await calls(CdrQuery(until=200.0)) == [1]
        assert await calls(CdrQuery(since=150.0, until=250.0)) == [2]
        assert await calls(CdrQuery(disposition="busy")) == [2]
        assert await calls(CdrQuery(number="+4930111")) == [1]
        assert await calls(CdrQuery(number="+1999")) == [3]
        assert await calls(CdrQuery(number="999")) == [3]
        assert await calls(CdrQuery(number="1555")) == [1, 2]
        assert await calls(CdrQuery(limit=2)) == [1, 2]
        assert await calls(CdrQuery(account="carol")) == []
    finally:
        await store.close()


async def test_write_behind_is_bounded_and_retries_a_failed_batch() -> None:
    written: list[dict[int, str]] = []
    fail = [True]

    async def apply(batch: dict[int, str]) -> None:
        if fail.pop():
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        written.append(dict(batch))

    writer: WriteBehind[int, str] = WriteBehind("t", apply, batch_delay=0, max_pending=2)
    assert writer.put(1, "a") and writer.put(2, "b")
    assert not writer.put(3, "c")  # bound reached: refused, counted
    assert writer.put(1, "a2")  # a waiting key is replaced: no growth
    assert writer.dropped == 1
    with pytest.raises(OperationalError):
        await writer.flush()
    assert writer.pending() == 2  # the failed batch is back
    fail.append(False)
    assert writer.put(2, "b2")  # newer than the failed batch: wins
    await writer.flush()
    assert written == [{1: "a2", 2: "b2"}]
    assert writer.pending() == 0


async def test_writer_task_writes_within_the_delay() -> None:
    written: list[dict[int, str]] = []
    done = asyncio.Event()

    async def apply(batch: dict[int, str]) -> None:
        written.append(dict(batch))
        done.set()

    writer: WriteBehind[int, str] = WriteBehind("t", apply, batch_delay=0)
    writer.start()
    writer.put(1, "a")
    writer.put(1, "b")
    await asyncio.wait_for(done.wait(), 30)
    await writer.close()
    assert written == [{1: "b"}]
