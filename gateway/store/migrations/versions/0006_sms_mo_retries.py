"""sms_mo_deliveries: when a pending delivery is due again and why the last attempt failed

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sms_mo_deliveries") as batch:
        batch.add_column(sa.Column("next_attempt_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sms_mo_deliveries") as batch:
        batch.drop_column("last_error")
        batch.drop_column("next_attempt_at")
