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
    # Epoch seconds of the run's latest heartbeat: where a crashed run's open CDRs end.
    Column("last_seen_at", Float, nullable=True),
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

# One row per call (gateway.calls.cdr): inserted `in_progress` when the call is
# offered, finished when it ends; a crashed run's rows are closed at the next start.
cdrs = Table(
    "cdrs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=False),
    Column("call", Integer, primary_key=True, autoincrement=False),
    Column("node", String(128), nullable=False),
    Column("sip_call_id", String(256), nullable=False),
    Column("state", String(16), nullable=False),
    Column("account", String(64), nullable=False),
    Column("inbound_trunk", String(64), nullable=False),
    Column("trunk", String(64), nullable=False),
    Column("caller", String(512), nullable=False),
    Column("dialed", String(64), nullable=False),
    Column("caller_e164", String(32), nullable=False),
    Column("callee_e164", String(32), nullable=False),
    Column("target", String(512), nullable=False),
    Column("setup_at", Float, nullable=False),
    Column("ringing_at", Float, nullable=True),
    Column("answered_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("duration", Float, nullable=True),
    Column("billable_seconds", Integer, nullable=True),
    Column("disposition", String(16), nullable=True),
    Column("cause", String(32), nullable=True),
    Column("caller_status", Integer, nullable=False),
    Column("callee_status", Integer, nullable=True),
    Column("q850_cause", Integer, nullable=True),
    Column("ended_by", String(16), nullable=True),
    Column("caller_codec", String(32), nullable=False),
    Column("callee_codec", String(32), nullable=False),
    Column("recording", String(256), nullable=False),
    Column("transfer_dialed", String(64), nullable=False, server_default=""),
    Column("transfer_target", String(512), nullable=False, server_default=""),
    Column("transfer_trunk", String(64), nullable=False, server_default=""),
    Column("transfer_status", Integer, nullable=True),
    Column("transferred_at", Float, nullable=True),
    Column("transfer_billable_seconds", Integer, nullable=True),
    Index("ix_cdrs_setup_at", "setup_at"),
    Index("ix_cdrs_account_setup_at", "account", "setup_at"),
)
