"""iteration context manifest

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # What the context builder assembled for the iteration (bot.context.pack.ContextPack
    # .manifest); nullable: iterations before it, and packs without one, have none.
    with op.batch_alter_table("iteration") as batch_op:
        batch_op.add_column(sa.Column("context", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("iteration") as batch_op:
        batch_op.drop_column("context")
