"""ci round

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One decision per head commit of a task's PR from the repository's CI (bot/loop/ci.py).
    op.create_table(
        "ciround",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("head_sha", AutoString(length=64), nullable=False),
        sa.Column("outcome", AutoString(length=20), nullable=False),
        sa.Column("signature", sa.JSON(), nullable=False),
        sa.Column("failing", sa.JSON(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["task.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "head_sha", name="uq_ciround_head"),
    )
    with op.batch_alter_table("ciround") as batch_op:
        batch_op.create_index(batch_op.f("ix_ciround_task_id"), ["task_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ciround") as batch_op:
        batch_op.drop_index(batch_op.f("ix_ciround_task_id"))
    op.drop_table("ciround")
