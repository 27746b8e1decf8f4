"""delivery raw body

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 12:30:00.000000
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Ingest stores the verified body as received and the job that handles the delivery
    # decodes it (bot/ingest/deliveries.py); deliveries stored before keep their payload.
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.add_column(sa.Column("body", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("content_type", AutoString(length=100), nullable=True))
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=True)


def downgrade() -> None:
    # The older code reads ``payload`` only: a delivery stored as a body gets it decoded
    # (an empty object when the body was refused as no JSON object).
    delivery = sa.table("delivery", sa.column("id", sa.String()), sa.column("payload", sa.JSON()))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT id, body FROM delivery WHERE payload IS NULL")).all()
    for delivery_id, body in rows:
        try:
            payload = json.loads(bytes(body or b""))
        except ValueError:
            payload = {}
        conn.execute(
            delivery.update()
            .where(delivery.c.id == delivery_id)
            .values(payload=payload if isinstance(payload, dict) else {})
        )
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column("content_type")
        batch_op.drop_column("body")
