"""The store on SQLite (WAL) and on a real PostgreSQL: migrations, node runs, bindings."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from sqlalchemy import text

from gateway.config.models import StoreConfig
from gateway.sip.registrar import Binding
from gateway.store.bindings import BindingStore, BindingWriter
from gateway.store.database import Store


def _binding(
    contact: str,
    expires_at: float,
    instance_id: str | None = None,
    path: tuple[str, ...] | None = None,
) -> Binding:
    return Binding(
        aor="sip:alice@example.test",
        contact_uri=contact,
        expires_at=expires_at,
        q=1.0,
        call_id="c1",
        cseq=1,
        received="udp:192.0.2.1:5060",
        instance_id=instance_id,
        reg_id=1 if instance_id else None,
        path=path,
    )


async def test_migrations_and_node_runs(store_config: StoreConfig, tmp_path: Path) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    store = await Store.open(store_config, tmp_path)
    try:
        assert await store.ping()
        await store.begin_run("node-a", now)
        # That run never ends (a crash); the next start names it, and only it.
        second = Store(store.engine)
        crashed = await second.begin_run("node-a", now)
        assert store.run_id in crashed
        await second.end_run(now)
        third = Store(store.engine)
        assert second.run_id not in await third.begin_run("node-a", now)
        await third.end_run(now)
        async with store.engine.connect() as conn:
            version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert version is not None
    finally:
        await store.close()
    # Opening again is a no-op migration.
    again = await Store.open(store_config, tmp_path)
    await again.close()


async def test_bindings_round_trip(store_config: StoreConfig, tmp_path: Path) -> None:
    store = await Store.open(store_config, tmp_path)
    try:
        bindings = BindingStore(store)
        async with store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM sip_bindings"))
        kept = _binding("sip:alice@192.0.2.1", 2000.0, path=("<sip:p1;lr>",))
        gone = _binding("sip:alice@192.0.2.2", 2000.0)
        stale = _binding("sip:alice@192.0.2.3", 500.0, instance_id="<urn:uuid:1>")
        writer = BindingWriter(bindings)
        writer.record([kept, gone, stale], [])
        writer.record([], [gone])  # coalesced: the removal wins
        await writer.flush()
        loaded = await bindings.load(now=1000.0)
        assert loaded == [kept]  # `gone` removed, `stale` expired and purged
    finally:
        await store.close()


def test_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    import asyncio

    async def mode() -> str:
        store = await Store.open(StoreConfig(), tmp_path)
        try:
            async with store.engine.connect() as conn:
                return str((await conn.execute(text("PRAGMA journal_mode"))).scalar())
        finally:
            await store.close()

    assert asyncio.run(mode()) == "wal"


async def test_a_refreshed_binding_replaces_its_row(
    store_config: StoreConfig, tmp_path: Path
) -> None:
    store = await Store.open(store_config, tmp_path)
    try:
        bindings = BindingStore(store)
        async with store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM sip_bindings"))
        first = _binding("sip:alice@192.0.2.1", 2000.0)
        await bindings.apply([first], [])
        refreshed = replace(first, expires_at=3000.0, cseq=2, user_agent="phone/2")
        other = _binding("sip:alice@192.0.2.9", 2500.0, instance_id="<urn:uuid:2>")
        await bindings.apply([refreshed, other], [])
        loaded = await bindings.load(now=1000.0)
        assert sorted(loaded, key=lambda b: b.contact_uri) == [refreshed, other]
    finally:
        await store.close()
