"""Tables. Migrations in `migrations/versions` create them; keep both in step."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

metadata = MetaData()

node_runs = Table(
    "node_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node", String(128), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    # NULL after a crash: the next start sees which run ended uncleanly.
    Column("stopped_at", DateTime(timezone=True), nullable=True),
)
