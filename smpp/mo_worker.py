"""The MO delivery worker: takes due `sms_mo_deliveries` rows per channel from the
store, hands each to its channel's adapter and writes the outcome back.

At-least-once: a row is marked only after its attempt; a crash (or stop) between
the send and the mark leaves it pending, so it is sent again after the restart.
Receivers de-duplicate by the message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from gateway.logs import get_logger
from gateway.store.database import Store
from gateway.store.write_behind import WriteBehind
from smpp.config import SmsConfig
from smpp.mo_delivery import (
    DeliveryOutcome,
    DeliveryUpdate,
    MoChannel,
    MoMessage,
    Refused,
    RetrySchedule,
    TryAgain,
)
from smpp.routing import MoDirectory, NumberNormaliser
from smpp.schema import sms_mo, sms_mo_deliveries

_log = get_logger("smpp.mo_worker")

ResultHook = Callable[[str, str], None]
"""Called with (channel, result) after each attempt: `delivered`, `retry` or `failed`."""


class MoDeliveryWorker:
    """One loop per channel with bounded concurrency, overall and per account."""

    def __init__(
        self,
        store: Store,
        config: SmsConfig,
        channels: Mapping[str, MoChannel],
        *,
        on_result: ResultHook | None = None,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._config = config.mo_delivery
        self._directory = MoDirectory(config, NumberNormaliser(config.default_region))
        self._schedule = RetrySchedule(config.mo_delivery)
        self._channels = dict(channels)
        self._on_result = on_result
        self._clock = clock
        self._rng = rng
        self._loops: list[asyncio.Task[None]] = []
        self._attempts: set[asyncio.Task[None]] = set()
        # Outcomes go to the store in group commits; until its commit a row is
        # still pending there, so it stays out of the queries (`_unmarked`).
        self._marks: WriteBehind[tuple[str, str], _Mark] = WriteBehind(
            "sms_mo_deliveries", self._write_marks, batch_delay=0.0
        )
        self._unmarked: set[tuple[str, str]] = set()

    def start(self) -> None:
        self._marks.start()
        for channel, adapter in self._channels.items():
            self._loops.append(asyncio.create_task(self._run(channel, adapter)))
        _log.info("sms_mo_delivery_started", channels=sorted(self._channels))

    async def stop(self) -> None:
        """Cancel loops and attempts in progress (those stay pending for the next
        start), then write the outcomes of finished attempts."""
        tasks = [*self._loops, *self._attempts]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
        try:
            await self._marks.close()
        except SQLAlchemyError as exc:
            # Left pending: sent again after the restart (at-least-once).
            _log.error("sms_mo_delivery_mark_failed", pending=self._marks.pending(), error=str(exc))

    async def _run(self, channel: str, adapter: MoChannel) -> None:
        busy: dict[str, str] = {}  # mo_id -> account
        # Rows of the last query not yet started: taken before the store is asked
        # again, so a query serves a whole batch, not one finished attempt.
        backlog: deque[tuple[MoMessage, int]] = deque()
        done = asyncio.Event()
        limit, share = self._config.concurrency, self._config.per_account_concurrency
        while True:
            done.clear()
            per_account = Counter(busy.values())
            if not backlog and len(busy) < limit:
                full = {account for account, n in per_account.items() if n >= share}
                try:
                    exclude = set(busy) | {i for c, i in self._unmarked if c == channel}
                    backlog.extend(await self._due(channel, exclude, full))
                except (SQLAlchemyError, OSError) as exc:
                    _log.error("sms_mo_delivery_store_error", channel=channel, error=str(exc))
            while backlog and len(busy) < limit:
                message, attempts = backlog.popleft()
                if per_account[message.account] >= share:
                    continue  # a slow destination keeps to its share; a later query finds it
                per_account[message.account] += 1
                busy[message.id] = message.account
                task = asyncio.create_task(self._attempt(channel, adapter, message, attempts))
                self._attempts.add(task)

                def finished(t: asyncio.Task[None], mo_id: str = message.id) -> None:
                    self._attempts.discard(t)
                    busy.pop(mo_id, None)
                    done.set()

                task.add_done_callback(finished)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow the
            # cancellation of stop() when `done` is set at the same moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.poll_interval):
                    await done.wait()

    async def _due(
        self, channel: str, busy: set[str], full_accounts: set[str]
    ) -> list[tuple[MoMessage, int]]:
        """Due rows, oldest first, without those in progress or of accounts using all
        their slots (their backlog must not fill the batch and hide other accounts)."""
        d, m = sms_mo_deliveries.c, sms_mo.c
        query = (
            select(
                m.id, m.account, m.source, m.destination, m.text, m.received_at, m.smsc, d.attempts
            )
            .join(sms_mo, m.id == d.mo_id)
            .where(
                and_(
                    d.channel == channel,
                    d.state == "pending",
                    or_(d.next_attempt_at.is_(None), d.next_attempt_at <= self._clock()),
                    d.mo_id.not_in(busy),
                    m.account.not_in(full_accounts),
                )
            )
            .order_by(func.coalesce(d.next_attempt_at, d.updated_at))
            .limit(self._config.batch)
        )
        async with self._store.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            (
                MoMessage(
                    r.id, r.account or "", r.source, r.destination, r.text, r.received_at, r.smsc
                ),
                int(r.attempts),
            )
            for r in rows
        ]

    async def _attempt(
        self, channel: str, adapter: MoChannel, message: MoMessage, attempts: int
    ) -> None:
        outcome = await self._deliver(channel, adapter, message)
        now = self._clock()
        change = self._schedule.after_attempt(
            outcome, attempts, message.received_at, now, self._rng()
        )
        self._unmarked.add((channel, message.id))
        self._marks.put((channel, message.id), _Mark(message, change, now))

    async def _deliver(
        self, channel: str, adapter: MoChannel, message: MoMessage
    ) -> DeliveryOutcome:
        owner = self._directory.owner(message.destination)
        if owner is None or owner.account != message.account or channel not in owner.channels:
            return Refused(f"{message.destination} no longer routes to {message.account}/{channel}")
        try:
            return await adapter.deliver(message, owner.entry)
        except Exception as exc:  # noqa: BLE001 - one message's bug must not stop the channel
            _log.exception("sms_mo_delivery_error", channel=channel, mo_id=message.id)
            return TryAgain(f"internal error: {exc!r}")

    async def _write_marks(self, batch: dict[tuple[str, str], _Mark]) -> None:
        """One transaction for all outcomes that came in meanwhile; then logs and metrics."""
        d = sms_mo_deliveries.c
        statement = (
            update(sms_mo_deliveries)
            .where(
                d.mo_id == bindparam("key_mo_id"),
                d.channel == bindparam("key_channel"),
                d.state == "pending",
            )
            .values(
                state=bindparam("new_state"),
                attempts=bindparam("new_attempts"),
                next_attempt_at=bindparam("new_next_attempt_at"),
                last_error=bindparam("new_last_error"),
                updated_at=bindparam("new_updated_at"),
            )
        )
        rows = [
            {
                "key_mo_id": mo_id,
                "key_channel": channel,
                "new_state": mark.change.state,
                "new_attempts": mark.change.attempts,
                "new_next_attempt_at": mark.change.next_attempt_at,
                "new_last_error": mark.change.last_error,
                "new_updated_at": mark.at,
            }
            for (channel, mo_id), mark in batch.items()
        ]
        async with self._store.engine.begin() as conn:
            await conn.execute(statement, rows)
        for (channel, mo_id), mark in batch.items():
            self._unmarked.discard((channel, mo_id))
            change = mark.change
            _log.info(
                f"sms_mo_delivery_{change.result}",
                channel=channel,
                mo_id=mo_id,
                account=mark.message.account,
                attempts=change.attempts,
                error=change.last_error,
                next_attempt_at=change.next_attempt_at,
            )
            if self._on_result is not None:
                self._on_result(channel, change.result)


@dataclass(frozen=True, slots=True)
class _Mark:
    message: MoMessage
    change: DeliveryUpdate
    at: float
