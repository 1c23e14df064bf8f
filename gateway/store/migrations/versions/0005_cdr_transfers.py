"""cdrs: blind transfer of a call by its caller (target, outcome, callee-target time)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any], str], ...] = (
    ("transfer_dialed", sa.String(64), ""),
    ("transfer_target", sa.String(512), ""),
    ("transfer_trunk", sa.String(64), ""),
)
_NULLABLE: tuple[tuple[str, type[sa.types.TypeEngine[Any]]], ...] = (
    ("transfer_status", sa.Integer),
    ("transferred_at", sa.Float),
    ("transfer_billable_seconds", sa.Integer),
)


def upgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        for name, kind, default in _COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=False, server_default=default))
        for name, number_type in _NULLABLE:
            batch.add_column(sa.Column(name, number_type, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("cdrs") as batch:
        for name, _kind in reversed(_NULLABLE):
            batch.drop_column(name)
        for name, _kind, _default in reversed(_COLUMNS):
            batch.drop_column(name)
