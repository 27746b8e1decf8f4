"""console action

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 12:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Who did what from the console (bot/loop/console.py): retry, stop, requeue.
    op.create_table(
        "consoleaction",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", AutoString(length=200), nullable=False),
        sa.Column("remote", AutoString(length=100), nullable=True),
        sa.Column("action", AutoString(length=20), nullable=False),
        sa.Column("target", AutoString(length=10), nullable=False),
        sa.Column("target_id", sa.BigInteger(), nullable=False),
        sa.Column("outcome", AutoString(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consoleaction") as batch_op:
        batch_op.create_index("ix_consoleaction_target", ["target", "target_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("consoleaction") as batch_op:
        batch_op.drop_index("ix_consoleaction_target")
    op.drop_table("consoleaction")
