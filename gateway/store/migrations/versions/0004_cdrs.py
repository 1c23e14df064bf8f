"""cdrs: one call detail record per call, in progress from setup; run heartbeats

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("node_runs") as batch:
        batch.add_column(sa.Column("last_seen_at", sa.Float, nullable=True))
    op.create_table(
        "cdrs",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("call", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("sip_call_id", sa.String(256), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("inbound_trunk", sa.String(64), nullable=False),
        sa.Column("trunk", sa.String(64), nullable=False),
        sa.Column("caller", sa.String(512), nullable=False),
        sa.Column("dialed", sa.String(64), nullable=False),
        sa.Column("caller_e164", sa.String(32), nullable=False),
        sa.Column("callee_e164", sa.String(32), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("setup_at", sa.Float, nullable=False),
        sa.Column("ringing_at", sa.Float, nullable=True),
        sa.Column("answered_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("duration", sa.Float, nullable=True),
        sa.Column("billable_seconds", sa.Integer, nullable=True),
        sa.Column("disposition", sa.String(16), nullable=True),
        sa.Column("cause", sa.String(32), nullable=True),
        sa.Column("caller_status", sa.Integer, nullable=False),
        sa.Column("callee_status", sa.Integer, nullable=True),
        sa.Column("q850_cause", sa.Integer, nullable=True),
        sa.Column("ended_by", sa.String(16), nullable=True),
        sa.Column("caller_codec", sa.String(32), nullable=False),
        sa.Column("callee_codec", sa.String(32), nullable=False),
        sa.Column("recording", sa.String(256), nullable=False),
    )
    op.create_index("ix_cdrs_setup_at", "cdrs", ["setup_at"])
    op.create_index("ix_cdrs_account_setup_at", "cdrs", ["account", "setup_at"])


def downgrade() -> None:
    op.drop_index("ix_cdrs_account_setup_at", "cdrs")
    op.drop_index("ix_cdrs_setup_at", "cdrs")
    op.drop_table("cdrs")
    with op.batch_alter_table("node_runs") as batch:
        batch.drop_column("last_seen_at")
