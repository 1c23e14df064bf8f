"""Registrar bindings in the store, so a restart keeps registrations."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable

from sqlalchemy import and_, bindparam, delete, select
from sqlalchemy.exc import SQLAlchemyError

from gateway.logs import get_logger
from gateway.sip.registrar import Binding
from gateway.store.database import Store
from gateway.store.schema import sip_bindings

_log = get_logger("store.bindings")


def binding_key(binding: Binding) -> str:
    if binding.instance_id is not None:
        return f"i:{binding.instance_id}:{binding.reg_id}"
    return f"u:{binding.contact_uri}"


def _row(binding: Binding) -> dict[str, object]:
    return {
        "aor": binding.aor,
        "binding_key": binding_key(binding),
        "contact_uri": binding.contact_uri,
        "expires_at": binding.expires_at,
        "q": binding.q,
        "call_id": binding.call_id,
        "cseq": binding.cseq,
        "received": binding.received,
        "instance_id": binding.instance_id,
        "reg_id": binding.reg_id,
        "user_agent": binding.user_agent,
        "path": json.dumps(list(binding.path)) if binding.path is not None else None,
    }


_DELETE_BY_KEY = delete(sip_bindings).where(
    and_(
        sip_bindings.c.aor == bindparam("k_aor"),
        sip_bindings.c.binding_key == bindparam("k_key"),
    )
)

BATCH_DELAY = 0.25
"""Seconds changes may wait to be written together (see `BindingWriter`)."""


class BindingStore:
    """Writes registrar changes and reads them back at start."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    async def apply(self, updated: Iterable[Binding], removed: Iterable[Binding]) -> None:
        """Upsert `updated`, delete `removed`, in one transaction (one entry per binding).

        Two statements whatever the batch size, each run as one executemany:
        delete every touched key, then insert the live ones. Portable across
        SQLite and PostgreSQL, where a dialect upsert would not be.
        """
        changed = list(updated)
        gone = list(removed)
        if not changed and not gone:
            return
        keys = [{"k_aor": b.aor, "k_key": binding_key(b)} for b in (*changed, *gone)]
        async with self._engine.begin() as conn:
            await conn.execute(_DELETE_BY_KEY, keys)
            if changed:
                await conn.execute(sip_bindings.insert(), [_row(b) for b in changed])

    async def load(self, now: float) -> list[Binding]:
        """Every binding still valid at `now` (wall clock); expired rows are deleted."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(sip_bindings).where(sip_bindings.c.expires_at <= now))
            rows = (await conn.execute(select(sip_bindings))).mappings().all()
        return [
            Binding(
                aor=row["aor"],
                contact_uri=row["contact_uri"],
                expires_at=row["expires_at"],
                q=row["q"],
                call_id=row["call_id"],
                cseq=row["cseq"],
                received=row["received"],
                instance_id=row["instance_id"],
                reg_id=row["reg_id"],
                user_agent=row["user_agent"],
                path=tuple(json.loads(row["path"])) if row["path"] else None,
            )
            for row in rows
        ]


class BindingWriter:
    """Write-behind for registrar changes: the SIP path never waits for the disk.

    Changes are coalesced per binding and written by one task: after the first
    change it waits `batch_delay` seconds so that the changes of that interval
    go out in one transaction (two executemany statements) instead of one per
    REGISTER. `flush()` on shutdown writes what is left, so a clean restart
    keeps every binding; a crash loses at most the last `batch_delay` seconds.
    """

    def __init__(self, store: BindingStore, batch_delay: float = BATCH_DELAY) -> None:
        self._store = store
        self._batch_delay = batch_delay
        self._pending: dict[tuple[str, str], tuple[Binding, bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def record(self, updated: Iterable[Binding], removed: Iterable[Binding]) -> None:
        pending = self._pending
        for binding in removed:
            pending[(binding.aor, binding_key(binding))] = (binding, False)
        for binding in updated:
            pending[(binding.aor, binding_key(binding))] = (binding, True)
        if pending and not self._wake.is_set():
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self._batch_delay > 0:
                await asyncio.sleep(self._batch_delay)  # let this interval's changes gather
            self._wake.clear()
            try:
                await self.flush()
            except SQLAlchemyError as exc:
                _log.error("bindings_write_failed", error=str(exc), retry=True)
                await asyncio.sleep(1.0)  # back off, then retry what is still pending
                self._wake.set()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self._store.apply(
                [b for b, live in batch.values() if live],
                [b for b, live in batch.values() if not live],
            )
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
        await self.flush()
