"""task repository id

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: tasks written before this revision learn their repository's id from the
    # next event that finds them by name (bot/store/tasks.py).
    with op.batch_alter_table("task") as batch_op:
        batch_op.add_column(sa.Column("repository_id", sa.BigInteger(), nullable=True))
        batch_op.create_index(
            "ix_task_repository_id_number", ["repository_id", "number"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("task") as batch_op:
        batch_op.drop_index("ix_task_repository_id_number")
        batch_op.drop_column("repository_id")
