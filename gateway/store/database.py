"""Open the database, apply migrations, and record node runs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.config.models import StoreConfig
from gateway.store.schema import node_runs

_MIGRATIONS = Path(__file__).with_name("migrations")


class StoreError(Exception):
    """The database cannot be opened or migrated."""


def store_url(config: StoreConfig, data_dir: Path) -> URL:
    """The configured URL, or SQLite in the data directory; password added from its secret."""
    if config.url is None:
        return make_url(f"sqlite+aiosqlite:///{(data_dir / 'callgate.db').resolve()}")
    url = make_url(config.url)
    if config.password is not None:
        url = url.set(password=config.password.reveal().get_secret_value())
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable across
    # process crashes (not power loss mid-checkpoint), the usual WAL trade-off.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _upgrade(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


class Store:
    """The node's database handle."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.run_id: int | None = None

    @classmethod
    async def open(cls, config: StoreConfig, data_dir: Path) -> Store:
        """Connect and migrate to the newest schema."""
        url = store_url(config, data_dir)
        kwargs: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            kwargs["pool_size"] = config.pool_size
        engine = create_async_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            shown = url.render_as_string(hide_password=True)
            raise StoreError(f"cannot open store {shown}: {exc}") from exc
        return cls(engine)

    async def ping(self) -> bool:
        """True when a trivial query succeeds (readiness)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def begin_run(self, node: str, now: dt.datetime) -> list[int]:
        """Record this start; return the ids of earlier runs that never stopped cleanly."""
        async with self.engine.begin() as conn:
            crashed = list(
                (
                    await conn.execute(
                        select(node_runs.c.id).where(
                            node_runs.c.node == node, node_runs.c.stopped_at.is_(None)
                        )
                    )
                ).scalars()
            )
            result = await conn.execute(node_runs.insert().values(node=node, started_at=now))
            self.run_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return crashed

    async def mark_alive(self, now: float) -> None:
        """Record that this run was alive at `now` (epoch seconds): see `node_runs.last_seen_at`."""
        if self.run_id is None:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(node_runs).where(node_runs.c.id == self.run_id).values(last_seen_at=now)
            )

    async def end_run(self, now: dt.datetime) -> None:
        if self.run_id is None:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(node_runs).where(node_runs.c.id == self.run_id).values(stopped_at=now)
            )

    async def close(self) -> None:
        await self.engine.dispose()
