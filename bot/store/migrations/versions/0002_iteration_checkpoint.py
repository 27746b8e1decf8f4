"""iteration checkpoint

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("iteration") as batch_op:
        batch_op.add_column(
            sa.Column("checkpoint", AutoString(length=20), nullable=False, server_default="begun")
        )
    # An iteration that recorded its outcome before this column existed had finished.
    op.execute("UPDATE iteration SET checkpoint = 'concluded' WHERE outcome <> 'running'")


def downgrade() -> None:
    with op.batch_alter_table("iteration") as batch_op:
        batch_op.drop_column("checkpoint")
