"""job delivery id index

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Deleting a delivery checks its foreign key from job.delivery_id; without an index each
    # deleted delivery scans the job table (bot/store/prune.py), and so does requeue_dead.
    with op.batch_alter_table("job") as batch_op:
        batch_op.create_index("ix_job_delivery_id", ["delivery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job") as batch_op:
        batch_op.drop_index("ix_job_delivery_id")
