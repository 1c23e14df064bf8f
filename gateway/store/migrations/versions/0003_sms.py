"""sms: durable MT queue, segments, receipts, MO messages, daily counters

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("data_coding", sa.Integer, nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("concat_method", sa.String(8), nullable=False),
        sa.Column("concat_ref", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=True),
        sa.Column("scheduled_at", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("smsc", sa.String(64), nullable=True),
        sa.Column("command_status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("submitted_at", sa.Float, nullable=True),
        sa.Column("done_at", sa.Float, nullable=True),
        sa.UniqueConstraint("account", "idempotency_key", name="uq_sms_messages_idempotency"),
    )
    op.create_index("ix_sms_messages_state", "sms_messages", ["state"])
    op.create_index("ix_sms_messages_account_state", "sms_messages", ["account", "state"])

    op.create_table(
        "sms_segments",
        sa.Column("message_id", sa.String(32), sa.ForeignKey("sms_messages.id"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("submit_status", sa.String(16), nullable=False),
        sa.Column("smsc", sa.String(64), nullable=True),
        sa.Column("smsc_message_id", sa.String(65), nullable=True),
        sa.Column("id_dec", sa.String(80), nullable=True),
        sa.Column("id_hex", sa.String(100), nullable=True),
        sa.Column("command_status", sa.Integer, nullable=True),
        sa.Column("submitted_at", sa.Float, nullable=True),
        sa.Column("dlr_state", sa.String(16), nullable=True),
        sa.Column("dlr_error", sa.String(16), nullable=True),
        sa.Column("dlr_at", sa.Float, nullable=True),
    )
    op.create_index("ix_sms_segments_smsc_id", "sms_segments", ["smsc", "smsc_message_id"])
    op.create_index("ix_sms_segments_smsc_id_dec", "sms_segments", ["smsc", "id_dec"])
    op.create_index("ix_sms_segments_smsc_id_hex", "sms_segments", ["smsc", "id_hex"])

    op.create_table(
        "sms_dlr_events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("receipted_id", sa.String(65), nullable=True),
        sa.Column("stat", sa.String(16), nullable=True),
        sa.Column("err", sa.String(16), nullable=True),
        sa.Column("message_state", sa.Integer, nullable=True),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("message_id", sa.String(32), nullable=True),
        sa.Column("seq", sa.Integer, nullable=True),
    )
    op.create_index("ix_sms_dlr_events_unmatched", "sms_dlr_events", ["message_id", "received_at"])

    op.create_table(
        "sms_mo",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("smsc", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("account", sa.String(64), nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("data_coding", sa.Integer, nullable=False),
        sa.Column("esm_class", sa.Integer, nullable=False),
        sa.Column("short_message_hex", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sms_mo_account", "sms_mo", ["account", "received_at"])

    op.create_table(
        "sms_mo_deliveries",
        sa.Column("mo_id", sa.String(32), sa.ForeignKey("sms_mo.id"), primary_key=True),
        sa.Column("channel", sa.String(16), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_sms_mo_deliveries_pending", "sms_mo_deliveries", ["channel", "state"])

    op.create_table(
        "sms_daily_counters",
        sa.Column("account", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("messages", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sms_daily_counters")
    op.drop_index("ix_sms_mo_deliveries_pending", "sms_mo_deliveries")
    op.drop_table("sms_mo_deliveries")
    op.drop_index("ix_sms_mo_account", "sms_mo")
    op.drop_table("sms_mo")
    op.drop_index("ix_sms_dlr_events_unmatched", "sms_dlr_events")
    op.drop_table("sms_dlr_events")
    for name in (
        "ix_sms_segments_smsc_id_hex",
        "ix_sms_segments_smsc_id_dec",
        "ix_sms_segments_smsc_id",
    ):
        op.drop_index(name, "sms_segments")
    op.drop_table("sms_segments")
    op.drop_index("ix_sms_messages_account_state", "sms_messages")
    op.drop_index("ix_sms_messages_state", "sms_messages")
    op.drop_table("sms_messages")
