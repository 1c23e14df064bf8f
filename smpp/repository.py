"""The SMS queue's store adapter: batched writes (group commit) and the reads.

`SmsWriter` collects inserts and row updates from the service and commits them
in one transaction per batch with executemany, so thousands of messages per
second cost a few commits, not thousands. Callers that must not go on before
their row is durable (an accepted message, a receipt or MO before its
deliver_sm is acknowledged) get a future that resolves after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import and_, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.logs import get_logger
from gateway.store.database import Store
from smpp.queue import FINAL_STATES, PENDING_STATES, Changes, MessageState, SegmentKey
from smpp.schema import (
    sms_daily_counters,
    sms_dlr_events,
    sms_messages,
    sms_mo,
    sms_mo_deliveries,
    sms_segments,
)

WRITE_RETRY_DELAY: Final = 1.0
"""Seconds before a failed batch of row updates is tried again."""

_log = get_logger("smpp.repository")
Row = dict[str, Any]


# ---------------------------------------------------------------------- read models


@dataclass(frozen=True, slots=True)
class SegmentStatusView:
    seq: int
    submit_status: str
    smsc: str | None
    smsc_message_id: str | None
    dlr_state: str | None
    dlr_error: str | None


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """A message as the account sees it."""

    id: str
    account: str
    state: str
    source: str
    destination: str
    segments: tuple[SegmentStatusView, ...]
    attempts: int
    error: str | None
    command_status: int | None
    created_at: float
    submitted_at: float | None
    done_at: float | None
    scheduled_at: float | None
    expires_at: float
    smsc: str | None


@dataclass(frozen=True, slots=True)
class SmsStats:
    sent: int
    """Messages the SMSC accepted (every segment)."""
    delivered: int
    failed: int
    """undeliverable, expired, rejected (filter or SMSC) or failed."""
    pending: int
    """Not final: queued, being submitted, or submitted and waiting for a receipt."""
    success_rate: float | None
    """delivered / (delivered + failed); None before anything is final."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message that was not final when the service last ran."""

    row: Row
    segments: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class StoredOrphan:
    event_id: str
    smsc: str
    receipted_id: str | None
    stat: str | None
    err: str | None
    message_state: int | None
    raw: str
    received_at: float


# ---------------------------------------------------------------------- writes


@dataclass(slots=True)
class WriteBatch:
    messages: list[Row] = field(default_factory=list)
    segments: list[Row] = field(default_factory=list)
    message_updates: dict[str, Row] = field(default_factory=dict)
    segment_updates: dict[SegmentKey, Row] = field(default_factory=dict)
    dlr_events: list[Row] = field(default_factory=list)
    dlr_matches: dict[str, SegmentKey] = field(default_factory=dict)
    mo: list[Row] = field(default_factory=list)
    mo_deliveries: list[Row] = field(default_factory=list)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.messages
            or self.message_updates
            or self.segment_updates
            or self.dlr_events
            or self.dlr_matches
            or self.mo
            or self.counters
        )

    def row_count(self) -> int:
        return (
            len(self.messages)
            + len(self.segments)
            + len(self.message_updates)
            + len(self.segment_updates)
            + len(self.dlr_events)
            + len(self.dlr_matches)
            + len(self.mo)
            + len(self.mo_deliveries)
            + len(self.counters)
        )


def _grouped(updates: Mapping[Any, Row]) -> dict[tuple[str, ...], list[tuple[Any, Row]]]:
    groups: dict[tuple[str, ...], list[tuple[Any, Row]]] = {}
    for key, values in updates.items():
        groups.setdefault(tuple(sorted(values)), []).append((key, values))
    return groups


def _same_columns(rows: list[Row]) -> dict[tuple[str, ...], list[Row]]:
    """Inserts grouped by their columns in the order the row was built (rows from
    one builder share it; no sorting per row)."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return groups


# SQLAlchemy reserves a column's own name for the SET clause's implicit
# parameter: the explicit ones are "v_" + column, and the rows keep plain column
# names (`_row_tuple` maps the parameter order back to them).
VALUE_PREFIX: Final = "v_"


def _message_update(columns: tuple[str, ...]) -> Any:
    return (
        update(sms_messages)
        .where(sms_messages.c.id == bindparam("k_id"))
        .values({c: bindparam(VALUE_PREFIX + c) for c in columns})
    )


def _segment_update(columns: tuple[str, ...]) -> Any:
    return (
        update(sms_segments)
        .where(
            and_(
                sms_segments.c.message_id == bindparam("k_mid"),
                sms_segments.c.seq == bindparam("k_seq"),
            )
        )
        .values({c: bindparam(VALUE_PREFIX + c) for c in columns})
    )


def _receipt_match_update() -> Any:
    return (
        update(sms_dlr_events)
        .where(sms_dlr_events.c.id == bindparam("k_id"))
        .values(
            message_id=bindparam(VALUE_PREFIX + "message_id"), seq=bindparam(VALUE_PREFIX + "seq")
        )
    )


def _row_tuple(parameters: Sequence[str]) -> Callable[[Row], tuple[Any, ...]]:
    """A row's values in the statement's parameter order (itemgetter returns a bare
    value for one name)."""
    names = [p.removeprefix(VALUE_PREFIX) for p in parameters]
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    return operator.itemgetter(*names)


class SmsRepository:
    """SQL for the SMS tables; every method is one transaction."""

    def __init__(self, store: Store) -> None:
        self._engine: AsyncEngine = store.engine
        self._dialect = self._engine.dialect.name
        self._compiled: dict[tuple[object, ...], tuple[Any, Callable[[Row], Any] | None]] = {}

    async def apply(self, batch: WriteBatch) -> None:
        async with self._engine.begin() as conn:
            await self._apply(conn, batch)

    async def _apply(self, conn: AsyncConnection, batch: WriteBatch) -> None:
        # Inserts first: an update of a row inserted by the same batch (none today:
        # the queue takes a message only once its insert is committed) finds it.
        for table, rows in (
            (sms_messages, batch.messages),
            (sms_segments, batch.segments),
            (sms_dlr_events, batch.dlr_events),
            (sms_mo, batch.mo),
            (sms_mo_deliveries, batch.mo_deliveries),
        ):
            for columns, group in _same_columns(rows).items():
                await self._many(conn, ("insert", table.name, columns), table.insert, group)
        for columns, items in _grouped(batch.message_updates).items():
            await self._many(
                conn,
                ("update", "sms_messages", columns),
                functools.partial(_message_update, columns),
                [{**values, "k_id": key} for key, values in items],
            )
        for columns, items in _grouped(batch.segment_updates).items():
            await self._many(
                conn,
                ("update", "sms_segments", columns),
                functools.partial(_segment_update, columns),
                [{**values, "k_mid": key[0], "k_seq": key[1]} for key, values in items],
            )
        if batch.dlr_matches:
            await self._many(
                conn,
                ("update", "sms_dlr_events", ("message_id", "seq")),
                _receipt_match_update,
                [
                    {"k_id": event, "message_id": key[0], "seq": key[1]}
                    for event, key in batch.dlr_matches.items()
                ],
            )
        if batch.counters:
            await conn.execute(
                self._counter_upsert(),
                [
                    {"account": account, "day": day, "messages": delta}
                    for (account, day), delta in batch.counters.items()
                ],
            )

    async def _many(
        self,
        conn: AsyncConnection,
        key: tuple[object, ...],
        build: Callable[[], Any],
        rows: list[Row],
    ) -> None:
        """executemany with SQL compiled once per statement shape and plain tuples:
        SQLAlchemy's per-row parameter processing would cost more than SQLite's work."""
        compiled = self._compiled.get(key)
        if compiled is None:
            statement = build()
            names = sorted(rows[0])
            result = statement.compile(dialect=self._engine.dialect, column_keys=names)
            order = result.positiontup
            # A named paramstyle (no positions): let SQLAlchemy bind.
            compiled = (statement, None) if order is None else (result.string, _row_tuple(order))
            self._compiled[key] = compiled
        target, as_tuple = compiled
        if as_tuple is None:
            await conn.execute(target, rows)
        else:
            await conn.exec_driver_sql(target, list(map(as_tuple, rows)))

    def _counter_upsert(self) -> Any:
        table = sms_daily_counters
        if self._dialect == "postgresql":
            pg = postgresql.insert(table)
            return pg.on_conflict_do_update(
                index_elements=[table.c.account, table.c.day],
                set_={"messages": table.c.messages + pg.excluded.messages},
            )
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=[table.c.account, table.c.day],
            set_={"messages": table.c.messages + lite.excluded.messages},
        )

    # -------------------------------------------------------------- reads

    async def find_idempotent(self, account: str, key: str) -> tuple[str, int] | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(sms_messages.c.id, sms_messages.c.segments).where(
                        sms_messages.c.account == account,
                        sms_messages.c.idempotency_key == key,
                    )
                )
            ).first()
        return None if row is None else (str(row[0]), int(row[1]))

    async def load_open(self) -> list[StoredMessage]:
        states = [state.value for state in PENDING_STATES]
        async with self._engine.connect() as conn:
            messages = (
                (
                    await conn.execute(
                        select(sms_messages)
                        .where(sms_messages.c.state.in_(states))
                        .order_by(sms_messages.c.created_at)
                    )
                )
                .mappings()
                .all()
            )
            segments = (
                (
                    await conn.execute(
                        select(sms_segments)
                        .join(sms_messages, sms_messages.c.id == sms_segments.c.message_id)
                        .where(sms_messages.c.state.in_(states))
                    )
                )
                .mappings()
                .all()
            )
        by_message: dict[str, list[Row]] = {}
        for segment in segments:
            by_message.setdefault(segment["message_id"], []).append(dict(segment))
        return [StoredMessage(dict(row), tuple(by_message.get(row["id"], ()))) for row in messages]

    async def load_orphans(self, since: float) -> list[StoredOrphan]:
        table = sms_dlr_events
        async with self._engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(table)
                        .where(table.c.message_id.is_(None), table.c.received_at >= since)
                        .order_by(table.c.received_at)
                    )
                )
                .mappings()
                .all()
            )
        return [
            StoredOrphan(
                row["id"],
                row["smsc"],
                row["receipted_id"],
                row["stat"],
                row["err"],
                row["message_state"],
                row["raw"],
                row["received_at"],
            )
            for row in rows
        ]

    async def daily_counts(self, day: str) -> dict[str, int]:
        table = sms_daily_counters
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(table.c.account, table.c.messages).where(table.c.day == day)
                )
            ).all()
        return {str(account): int(count) for account, count in rows}

    async def message_status(self, account: str, message_id: str) -> MessageStatus | None:
        async with self._engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(sms_messages).where(
                            sms_messages.c.id == message_id, sms_messages.c.account == account
                        )
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            segments = (
                (
                    await conn.execute(
                        select(sms_segments)
                        .where(sms_segments.c.message_id == message_id)
                        .order_by(sms_segments.c.seq)
                    )
                )
                .mappings()
                .all()
            )
        return MessageStatus(
            id=row["id"],
            account=row["account"],
            state=row["state"],
            source=row["source"],
            destination=row["destination"],
            segments=tuple(
                SegmentStatusView(
                    s["seq"],
                    s["submit_status"],
                    s["smsc"],
                    s["smsc_message_id"],
                    s["dlr_state"],
                    s["dlr_error"],
                )
                for s in segments
            ),
            attempts=row["attempts"],
            error=row["error"],
            command_status=row["command_status"],
            created_at=row["created_at"],
            submitted_at=row["submitted_at"],
            done_at=row["done_at"],
            scheduled_at=row["scheduled_at"],
            expires_at=row["expires_at"],
            smsc=row["smsc"],
        )

    async def stats(self, account: str) -> SmsStats:
        table = sms_messages
        async with self._engine.connect() as conn:
            by_state: dict[str, int] = {
                str(state): int(count)
                for state, count in (
                    await conn.execute(
                        select(table.c.state, func.count())
                        .where(table.c.account == account)
                        .group_by(table.c.state)
                    )
                ).all()
            }
            sent = (
                await conn.execute(
                    select(func.count()).where(
                        table.c.account == account, table.c.submitted_at.is_not(None)
                    )
                )
            ).scalar_one()
        delivered = int(by_state.get(MessageState.DELIVERED.value, 0))
        failed = sum(
            int(by_state.get(state.value, 0))
            for state in FINAL_STATES
            if state is not MessageState.DELIVERED
        )
        pending = sum(int(by_state.get(state.value, 0)) for state in PENDING_STATES)
        final = delivered + failed
        return SmsStats(
            sent=int(sent),
            delivered=delivered,
            failed=failed,
            pending=pending,
            success_rate=delivered / final if final else None,
        )

    async def insert_one(
        self, message: Row, segments: Sequence[Row], counter: tuple[str, str] | None
    ) -> bool:
        """Insert one message on its own; False if its idempotency key exists."""
        batch = WriteBatch(messages=[message], segments=list(segments))
        if counter is not None:
            batch.counters[counter] = 1
        try:
            await self.apply(batch)
        except IntegrityError:
            return False
        return True


# ---------------------------------------------------------------------- group commit


@dataclass(slots=True)
class _PendingInsert:
    message: Row
    segments: list[Row]
    counter: tuple[str, str] | None
    done: asyncio.Future[bool]
    """True once stored; False if the idempotency key was taken meanwhile."""


class SmsWriter:
    """Write-behind with group commit; one task, one transaction per batch."""

    def __init__(
        self,
        repository: SmsRepository,
        max_batch: int,
        take_changes: Callable[[], Changes] = Changes,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._repository = repository
        self._clock = clock
        """Only for `busy_seconds`."""
        self._take_changes = take_changes
        """The queue's row changes, taken when a batch is built (not per event)."""
        self._max_batch = max_batch
        self._inserts: list[_PendingInsert] = []
        self._next = WriteBatch()
        self._durable: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        """Transactions committed."""
        self.rows = 0
        """Rows inserted or updated by them."""
        self.busy_seconds = 0.0
        """Wall time inside transactions, waits for the database thread and the GIL
        included: near the run's length, the writer is what bounds the rate."""
        self.failures = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="sms-writer")

    def insert_message(
        self, message: Row, segments: list[Row], counter: tuple[str, str] | None
    ) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inserts.append(_PendingInsert(message, segments, counter, done))
        self._poke()
        return done

    def changes_ready(self) -> None:
        """The queue has row changes: write them with the next batch (no one waits)."""
        self._poke()

    def _take_queue_changes(self) -> None:
        """Merge the queue's changes into the next batch; newer values win."""
        changes = self._take_changes()
        batch = self._next
        if not batch.message_updates:
            batch.message_updates = changes.messages
        else:
            for message_id, values in changes.messages.items():
                batch.message_updates.setdefault(message_id, {}).update(values)
        if not batch.segment_updates:
            batch.segment_updates = changes.segments
        else:
            for key, values in changes.segments.items():
                batch.segment_updates.setdefault(key, {}).update(values)
        batch.dlr_matches.update(changes.receipts)

    def update_message(self, message_id: str, **values: object) -> None:
        self._next.message_updates.setdefault(message_id, {}).update(values)
        self._poke()

    def update_segment(self, key: SegmentKey, **values: object) -> None:
        self._next.segment_updates.setdefault(key, {}).update(values)
        self._poke()

    def durable(
        self,
        *,
        dlr_event: Row | None = None,
        mo: Row | None = None,
        mo_deliveries: Sequence[Row] = (),
    ) -> asyncio.Future[None]:
        """Queue a receipt or MO row (or none: wait for the queue's changes made so
        far); the future resolves once they are committed. Every caller until the
        writer takes the next batch gets the same future (one per commit, not per
        row: the deliver_sm answers of a commit go out together anyway)."""
        if dlr_event is not None:
            self._next.dlr_events.append(dlr_event)
        if mo is not None:
            self._next.mo.append(mo)
            self._next.mo_deliveries.extend(mo_deliveries)
        if not self._durable:
            self._durable.append(asyncio.get_running_loop().create_future())
        self._poke()
        return self._durable[0]

    async def flush(self) -> None:
        """Return once everything queued before this call is committed (or failed)."""
        if self._task is None:
            raise RuntimeError("writer not started")
        self._poke()
        await asyncio.sleep(0)  # let the writer take what is queued
        while self._pending() or not self._idle.is_set():
            await self._idle.wait()
            if self._pending():
                self._poke()
                await asyncio.sleep(0)

    def _pending(self) -> bool:
        self._take_queue_changes()
        return bool(self._inserts or self._next or self._durable)

    def _poke(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def close(self) -> None:
        if self._task is None:
            return
        with contextlib.suppress(SQLAlchemyError):
            await self.flush()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending():
                await self._write_once()
            if not self._wake.is_set():
                self._idle.set()

    async def _write_once(self) -> None:
        inserts = self._inserts[: self._max_batch]
        del self._inserts[: self._max_batch]
        self._take_queue_changes()
        batch, self._next = self._next, WriteBatch()
        durable, self._durable = self._durable, []
        for item in inserts:
            batch.messages.append(item.message)
            batch.segments.extend(item.segments)
            if item.counter is not None:
                batch.counters[item.counter] = batch.counters.get(item.counter, 0) + 1
        try:
            await self._apply(batch)
        except IntegrityError:
            # An idempotency key taken meanwhile: store the inserts one by one.
            self.failures += 1
            batch.messages.clear()
            batch.segments.clear()
            batch.counters.clear()
            await self._retry_alone(inserts, batch, durable)
            return
        except (SQLAlchemyError, OSError) as exc:
            self.failures += 1
            _log.error("sms_store_write_failed", error=str(exc), inserts=len(inserts))
            self._fail(inserts, durable, exc)
            self._requeue_updates(batch)
            await asyncio.sleep(WRITE_RETRY_DELAY)
            return
        self.batches += 1
        self.rows += batch.row_count()
        for item in inserts:
            if not item.done.done():
                item.done.set_result(True)
        for future in durable:
            if not future.done():
                future.set_result(None)

    async def _apply(self, batch: WriteBatch) -> None:
        started = self._clock()
        try:
            await self._repository.apply(batch)
        finally:
            self.busy_seconds += self._clock() - started

    async def _retry_alone(
        self, inserts: list[_PendingInsert], rest: WriteBatch, durable: list[asyncio.Future[None]]
    ) -> None:
        try:
            await self._repository.apply(rest)
        except (SQLAlchemyError, OSError) as exc:
            self._fail([], durable, exc)
            self._requeue_updates(rest)
        else:
            for future in durable:
                if not future.done():
                    future.set_result(None)
        for item in inserts:
            try:
                stored = await self._repository.insert_one(
                    item.message, item.segments, item.counter
                )
            except (SQLAlchemyError, OSError) as exc:
                if not item.done.done():
                    item.done.set_exception(exc)
                continue
            if not item.done.done():
                item.done.set_result(stored)

    def _fail(
        self, inserts: list[_PendingInsert], durable: list[asyncio.Future[None]], exc: BaseException
    ) -> None:
        for item in inserts:
            if not item.done.done():
                item.done.set_exception(exc)
        for future in durable:
            if not future.done():
                future.set_exception(exc)

    def _requeue_updates(self, failed: WriteBatch) -> None:
        """Row updates are retried (newer ones made meanwhile win); receipts and MO
        rows are not: their deliver_sm gets a temporary error and comes again."""
        newer = self._next
        merged = WriteBatch()
        for key, values in failed.message_updates.items():
            merged.message_updates[key] = {**values, **newer.message_updates.pop(key, {})}
        merged.message_updates.update(newer.message_updates)
        for seg_key, values in failed.segment_updates.items():
            merged.segment_updates[seg_key] = {**values, **newer.segment_updates.pop(seg_key, {})}
        merged.segment_updates.update(newer.segment_updates)
        merged.dlr_matches = {**failed.dlr_matches, **newer.dlr_matches}
        merged.dlr_events = newer.dlr_events
        merged.mo = newer.mo
        merged.mo_deliveries = newer.mo_deliveries
        for counter, delta in newer.counters.items():
            merged.counters[counter] = merged.counters.get(counter, 0) + delta
        self._next = merged
        self._wake.set()
