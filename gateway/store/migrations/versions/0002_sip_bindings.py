"""sip bindings: registrar contacts survive a restart

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sip_bindings",
        sa.Column("aor", sa.String(512), primary_key=True),
        sa.Column("binding_key", sa.String(1024), primary_key=True),
        sa.Column("contact_uri", sa.String(1024), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("q", sa.Float, nullable=False),
        sa.Column("call_id", sa.String(256), nullable=False),
        sa.Column("cseq", sa.Integer, nullable=False),
        sa.Column("received", sa.String(128), nullable=True),
        sa.Column("instance_id", sa.String(256), nullable=True),
        sa.Column("reg_id", sa.Integer, nullable=True),
        sa.Column("user_agent", sa.String(256), nullable=True),
        sa.Column("path", sa.Text, nullable=True),
    )
    op.create_index("ix_sip_bindings_expires_at", "sip_bindings", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_sip_bindings_expires_at", "sip_bindings")
    op.drop_table("sip_bindings")
