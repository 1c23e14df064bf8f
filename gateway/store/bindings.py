"""Registrar bindings in the store, so a restart keeps registrations."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import Insert, and_, bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.sip.registrar import Binding
from gateway.store.database import Store
from gateway.store.schema import sip_bindings
from gateway.store.write_behind import WriteBehind


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


def _upsert_for(dialect: str) -> Insert:
    """INSERT ... ON CONFLICT (aor, binding_key) DO UPDATE in the store's dialect."""
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(sip_bindings)
    keys = {column.name for column in sip_bindings.primary_key.columns}
    return statement.on_conflict_do_update(
        index_elements=sorted(keys),
        set_={
            c.name: statement.excluded[c.name] for c in sip_bindings.columns if c.name not in keys
        },
    )


BATCH_DELAY = 0.25
"""Seconds changes may wait to be written together (see `WriteBehind`)."""


class BindingStore:
    """Writes registrar changes and reads them back at start."""

    def __init__(self, store: Store) -> None:
        self._engine = store.engine
        self._upsert = _upsert_for(store.engine.dialect.name)

    async def apply(self, updated: Iterable[Binding], removed: Iterable[Binding]) -> None:
        """Upsert `updated`, delete `removed`, in one transaction (one entry per binding).

        At most two statements whatever the batch size, each run as one
        executemany: delete the removed keys, upsert the live ones (`ON CONFLICT
        (aor, binding_key) DO UPDATE`, which SQLite and PostgreSQL both have; one
        statement per refresh instead of a delete and an insert halves the cost).
        """
        changed = list(updated)
        gone = list(removed)
        async with self._engine.begin() as conn:
            if gone:
                keys = [{"k_aor": b.aor, "k_key": binding_key(b)} for b in gone]
                await conn.execute(_DELETE_BY_KEY, keys)
            if changed:
                await conn.execute(self._upsert, [_row(b) for b in changed])

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
    """Write-behind for registrar changes (see `WriteBehind`): one entry per binding."""

    def __init__(self, store: BindingStore, batch_delay: float = BATCH_DELAY) -> None:
        self._store = store
        self._writer: WriteBehind[tuple[str, str], tuple[Binding, bool]] = WriteBehind(
            "bindings", self._apply, batch_delay=batch_delay
        )

    def start(self) -> None:
        self._writer.start()

    def record(self, updated: Iterable[Binding], removed: Iterable[Binding]) -> None:
        put = self._writer.put
        for binding in removed:
            put((binding.aor, binding_key(binding)), (binding, False))
        for binding in updated:
            put((binding.aor, binding_key(binding)), (binding, True))

    async def _apply(self, batch: dict[tuple[str, str], tuple[Binding, bool]]) -> None:
        await self._store.apply(
            [b for b, live in batch.values() if live],
            [b for b, live in batch.values() if not live],
        )

    async def flush(self) -> None:
        await self._writer.flush()

    async def close(self) -> None:
        await self._writer.close()
