"""sms_segments: a matched receipt's text in its segment's row; no id_dec/id_hex

Until 0006 every receipt was also a row of sms_dlr_events; from 0007 only the
receipts that match no segment when they arrive are (to be matched later), and
a matched receipt's text is stored with its stat, error and time in the
segment's row (`dlr_raw`): one row write less per message. Existing
sms_dlr_events rows are kept as they are.

`id_dec`/`id_hex` (the SMSC id read as a decimal and as a hex number) and their
indexes go: receipts are matched in memory (`smpp.queue.ReceiptIndex`, rebuilt
from `smsc_message_id` at start), nothing read them, and each accepted segment
paid for two more index updates. A downgrade brings them back empty.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_sms_segments_smsc_id_hex", "sms_segments")
    op.drop_index("ix_sms_segments_smsc_id_dec", "sms_segments")
    with op.batch_alter_table("sms_segments") as batch:
        batch.drop_column("id_hex")
        batch.drop_column("id_dec")
        batch.add_column(sa.Column("dlr_raw", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sms_segments") as batch:
        batch.drop_column("dlr_raw")
        batch.add_column(sa.Column("id_dec", sa.String(80), nullable=True))
        batch.add_column(sa.Column("id_hex", sa.String(100), nullable=True))
    op.create_index("ix_sms_segments_smsc_id_dec", "sms_segments", ["smsc", "id_dec"])
    op.create_index("ix_sms_segments_smsc_id_hex", "sms_segments", ["smsc", "id_hex"])
