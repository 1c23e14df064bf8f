"""Tables. Migrations in `migrations/versions` create them; keep both in step."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

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

sip_bindings = Table(
    "sip_bindings",
    metadata,
    Column("aor", String(512), primary_key=True),
    # "i:<instance>:<reg-id>" for RFC 5626 contacts, else "u:<contact uri>".
    Column("binding_key", String(1024), primary_key=True),
    Column("contact_uri", String(1024), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("q", Float, nullable=False),
    Column("call_id", String(256), nullable=False),
    Column("cseq", Integer, nullable=False),
    Column("received", String(128), nullable=True),
    Column("instance_id", String(256), nullable=True),
    Column("reg_id", Integer, nullable=True),
    Column("user_agent", String(256), nullable=True),
    Column("path", Text, nullable=True),
    Index("ix_sip_bindings_expires_at", "expires_at"),
)
