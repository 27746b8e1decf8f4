"""iteration attempts (best-of-N)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Best-of-N attempts of the iteration, the one chosen and why
    # (bot.core.attempts.AttemptSet); nullable: an iteration of one attempt has none.
    with op.batch_alter_table("iteration") as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("iteration") as batch_op:
        batch_op.drop_column("attempts")
