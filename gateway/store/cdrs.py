"""CDRs in the store: the write-behind writer, closing a crashed run's rows, queries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from sqlalchemy import Select, String, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from gateway.calls.cdr import (
    CDR_FIELDS,
    TIME_FIELDS,
    CdrState,
    cdr_row,
    closed_after_crash,
    last_seen,
    last_seen_of,
)
from gateway.calls.registry import CallRecord
from gateway.logs import get_logger
from gateway.store.database import Store
from gateway.store.schema import cdrs, node_runs
from gateway.store.write_behind import WriteBehind

_log = get_logger("store.cdrs")

_LENGTHS = {
    column.name: column.type.length
    for column in cdrs.columns
    if isinstance(column.type, String) and column.type.length is not None
}

# Rows per statement of a batch. The statement's parameters are built on the
# event loop (~8 us a row); at 300 calls/s an unchunked half-second batch held
# the loop for 2-5 ms, and every call whose signalling arrived meanwhile waited.
WRITE_CHUNK = 32

_DELETE_BY_KEY = delete(cdrs).where(
    and_(cdrs.c.run_id == bindparam("k_run"), cdrs.c.call == bindparam("k_call"))
)
_UPDATE_BY_KEY = update(cdrs).where(
    and_(cdrs.c.run_id == bindparam("k_run"), cdrs.c.call == bindparam("k_call"))
)


def fit(row: dict[str, Any]) -> dict[str, Any]:
    """Cut strings to their column's length: one odd From header must not stall the writer
    (PostgreSQL rejects the whole batch, and its retry would fail forever)."""
    for name, length in _LENGTHS.items():
        value = row.get(name)
        if isinstance(value, str) and len(value) > length:
            row[name] = value[:length]
    return row


@dataclass(frozen=True, slots=True)
class CdrQuery:
    """Filters of `callgate cdr list/export`; None means "any"."""

    account: str | None = None
    since: float | None = None
    """Calls set up at or after this time (epoch seconds)."""
    until: float | None = None
    """Calls set up before this time (epoch seconds)."""
    disposition: str | None = None
    number: str | None = None
    """Caller or callee: matches the E.164 numbers and the dialled digits exactly."""
    limit: int | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.account is not None:
            clauses.append(cdrs.c.account == self.account)
        if self.since is not None:
            clauses.append(cdrs.c.setup_at >= self.since)
        if self.until is not None:
            clauses.append(cdrs.c.setup_at < self.until)
        if self.disposition is not None:
            clauses.append(cdrs.c.disposition == self.disposition)
        if self.number is not None:
            n = self.number
            clauses.append(
                or_(cdrs.c.caller_e164 == n, cdrs.c.callee_e164 == n, cdrs.c.dialed == n)
            )
        return clauses


class CdrStore:
    """Reads and writes the `cdrs` table."""

    def __init__(self, store: Store, chunk: int = WRITE_CHUNK) -> None:
        self._engine = store.engine
        self._chunk = chunk
        """Rows per statement when writing (`apply`)."""

    async def apply(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write each row as it now stands, in one transaction.

        Delete by key, then insert: idempotent (a retried batch whose commit
        did land writes the same rows again) and portable across SQLite and
        PostgreSQL, where a dialect upsert would not be. `rows` is consumed
        `chunk` (WRITE_CHUNK) at a time, each chunk just before its statements,
        so a generator spreads its own mapping work over the loop too.
        """
        size = self._chunk
        pending = iter(rows)
        chunk = list(islice(pending, size))
        if not chunk:
            return
        async with self._engine.begin() as conn:
            while chunk:
                keys = [{"k_run": row["run_id"], "k_call": row["call"]} for row in chunk]
                await conn.execute(_DELETE_BY_KEY, keys)
                await conn.execute(cdrs.insert(), [fit(dict(row)) for row in chunk])
                chunk = list(islice(pending, size))

    async def close_abandoned(self, run_ids: Iterable[int]) -> int:
        """Finish the `in_progress` rows of runs that crashed (see `closed_after_crash`).

        A run's last sign of life is its latest heartbeat or the latest time in
        its CDRs, whichever is later.
        """
        runs = list(run_ids)
        if not runs:
            return 0
        times = [cdrs.c[name] for name in sorted(TIME_FIELDS)]
        async with self._engine.begin() as conn:
            open_rows = (
                (
                    await conn.execute(
                        select(cdrs.c.run_id, cdrs.c.call, *times).where(
                            cdrs.c.run_id.in_(runs), cdrs.c.state == str(CdrState.IN_PROGRESS)
                        )
                    )
                )
                .mappings()
                .all()
            )
            if not open_rows:
                return 0
            crashed_runs = {row["run_id"] for row in open_rows}
            latest = (
                await conn.execute(
                    select(cdrs.c.run_id, *(func.max(c).label(c.name) for c in times))
                    .where(cdrs.c.run_id.in_(crashed_runs))
                    .group_by(cdrs.c.run_id)
                )
            ).mappings()
            heartbeats = await conn.execute(
                select(node_runs.c.id, node_runs.c.last_seen_at).where(
                    node_runs.c.id.in_(crashed_runs)
                )
            )
            seen = {row["run_id"]: last_seen([dict(row)]) for row in latest}
            for run_id, heartbeat in heartbeats:
                seen[run_id] = last_seen_of(seen.get(run_id), heartbeat)
            changes = [
                {
                    "k_run": row["run_id"],
                    "k_call": row["call"],
                    **closed_after_crash(dict(row), seen.get(row["run_id"]) or row["setup_at"]),
                }
                for row in open_rows
            ]
            await conn.execute(_UPDATE_BY_KEY, changes)
        return len(changes)

    def _select(self, query: CdrQuery) -> Select[Any]:
        return (
            select(*(cdrs.c[name] for name in CDR_FIELDS))
            .where(*query.where())
            .order_by(cdrs.c.setup_at, cdrs.c.run_id, cdrs.c.call)
            .limit(query.limit)
        )

    async def count(self, query: CdrQuery) -> int:
        statement = select(func.count()).select_from(self._select(query).subquery())
        async with self._engine.connect() as conn:
            return int((await conn.execute(statement)).scalar_one())

    async def rows(self, query: CdrQuery) -> AsyncIterator[dict[str, Any]]:
        """Matching rows, oldest setup first, streamed (an export may be large)."""
        async with self._engine.connect() as conn:
            result = await conn.stream(self._select(query))
            async for row in result.mappings():
                yield dict(row)


class CdrWriter:
    """Write-behind of CDR rows: calls never wait for the store.

    A call's changes are coalesced (its row is mapped from the record as it
    stands when the batch is written); a call offered and ended within one
    `write_delay` is written once, finished.
    """

    def __init__(
        self,
        store: CdrStore,
        node: str,
        run_id: int,
        *,
        write_delay: float,
        max_pending: int,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._node = node
        self._run_id = run_id
        self._on_drop = on_drop
        self._writer: WriteBehind[int, CallRecord] = WriteBehind(
            "cdrs", self._apply, batch_delay=write_delay, max_pending=max_pending
        )

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def start(self) -> None:
        self._writer.start()

    def pending(self) -> int:
        return self._writer.pending()

    def record(self, record: CallRecord) -> None:
        if not self._writer.put(record.call, record):
            _log.error("cdr_dropped", call=record.call, sip_call_id=record.sip_call_id)
            if self._on_drop is not None:
                self._on_drop()

    async def _apply(self, batch: dict[int, CallRecord]) -> None:
        # Mapped chunk by chunk between the writes: a record that changed
        # meanwhile is written as it is then, and is queued again anyway.
        node, run_id = self._node, self._run_id
        await self._store.apply(cdr_row(record, node, run_id) for record in batch.values())

    async def flush(self) -> None:
        await self._writer.flush()

    async def close(self) -> None:
        await self._writer.close()
