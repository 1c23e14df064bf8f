"""Registrar bindings in the store, so a restart keeps registrations."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

from sqlalchemy import and_, delete, select
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


class BindingStore:
    """Writes registrar changes and reads them back at start."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine

    async def apply(self, updated: Iterable[Binding], removed: Iterable[Binding]) -> None:
        """Upsert `updated`, delete `removed`, in one transaction (one entry per binding)."""
        changed = list(updated)
        gone = list(removed)
        if not changed and not gone:
            return
        async with self._engine.begin() as conn:
            for binding in [*changed, *gone]:
                await conn.execute(
                    delete(sip_bindings).where(
                        and_(
                            sip_bindings.c.aor == binding.aor,
                            sip_bindings.c.binding_key == binding_key(binding),
                        )
                    )
                )
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

    Changes are coalesced per binding and written by one task; `flush()` on
    shutdown writes what is left, so a clean restart keeps every binding.
    """

    def __init__(self, store: BindingStore) -> None:
        self._store = store
        self._pending: dict[tuple[str, str], tuple[Binding, bool]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def record(self, updated: Iterable[Binding], removed: Iterable[Binding]) -> None:
        for binding in removed:
            self._pending[(binding.aor, binding_key(binding))] = (binding, False)
        for binding in updated:
            self._pending[(binding.aor, binding_key(binding))] = (binding, True)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
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
        except SQLAlchemyError:
            # Keep newer changes made meanwhile; put the failed batch back under them.
            self._pending = {**batch, **self._pending}
            raise

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.flush()
