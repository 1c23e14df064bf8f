"""Write-behind to the store: the signalling path hands over changes and never waits.

Shared by the registrar bindings and the CDRs. Changes are coalesced per key
(the newest wins) and written by one task: after the first change it waits
`batch_delay` seconds so that the changes of that interval go out in one
transaction instead of one per event. A failed write keeps its batch and is
retried after `retry_delay`; `close()` writes what is left, so a clean stop
loses nothing and a crash loses at most the last `batch_delay` seconds (plus a
write in flight).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from gateway.logs import get_logger

_log = get_logger("store.write_behind")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

BatchApply = Callable[[dict[K, V]], Awaitable[None]]
"""Writes one batch in one transaction; raises `SQLAlchemyError` to have it retried."""


class WriteBehind(Generic[K, V]):
    """Coalescing, batched, bounded writer of `key -> value` changes."""

    def __init__(
        self,
        name: str,
        apply: BatchApply[K, V],
        *,
        batch_delay: float,
        max_pending: int | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        self.name = name
        self._apply = apply
        self._batch_delay = batch_delay
        self._max_pending = max_pending
        self._retry_delay = retry_delay
        self._pending: dict[K, V] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        """Changes refused because `max_pending` keys were waiting (store down too long)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def pending(self) -> int:
        return len(self._pending)

    def put(self, key: K, value: V) -> bool:
        """Queue a change; False (and counted in `dropped`) when the bound is reached.

        A key already waiting is always replaced: that costs no memory.
        """
        pending = self._pending
        limit = self._max_pending
        if limit is not None and key not in pending and len(pending) >= limit:
            self.dropped += 1
            return False
        pending[key] = value
        if not self._wake.is_set():
            self._wake.set()
        return True

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._batch_delay > 0:
                await asyncio.sleep(self._batch_delay)  # let this interval's changes gather
            self._wake.clear()
            try:
                await self.flush()
            except SQLAlchemyError as exc:
                _log.error("store_write_failed", writer=self.name, error=str(exc), retry=True)
                await asyncio.sleep(self._retry_delay)  # back off, then retry what is pending
                self._wake.set()

    async def flush(self) -> None:
        """Write everything pending now, in one batch."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self._apply(batch)
        except (SQLAlchemyError, asyncio.CancelledError):
            # Failed or cut short by close(): keep newer changes made meanwhile
            # and put the unwritten batch back under them.
            self._pending = {**batch, **self._pending}
            raise

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task  # a write cut short puts its batch back (see flush)
            self._task = None
        await self.flush()
