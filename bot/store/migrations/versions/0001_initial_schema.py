"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 19:45:04.256815
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery",
        sa.Column("id", AutoString(length=100), nullable=False),
        sa.Column("event", AutoString(length=100), nullable=False),
        sa.Column("action", AutoString(length=100), nullable=True),
        sa.Column("repository", AutoString(length=300), nullable=True),
        sa.Column("installation_id", sa.Integer(), nullable=True),
        sa.Column("outcome", AutoString(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("redeliveries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "runnertask",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", AutoString(length=200), nullable=True),
        sa.Column("repository", AutoString(length=300), nullable=False),
        sa.Column("number", sa.Integer(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", AutoString(length=20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("credential_hash", AutoString(length=64), nullable=True),
        sa.Column("credential_expires", UTCDateTime(), nullable=True),
        sa.Column("token_hash", AutoString(length=64), nullable=True),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("run_url", AutoString(length=500), nullable=True),
        sa.Column("progress", sa.Text(), nullable=True),
        sa.Column("outcome", AutoString(length=40), nullable=True),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("dispatched_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("last_seen_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("runnertask", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runnertask_status"), ["status"], unique=False)

    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository", AutoString(length=300), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=True),
        sa.Column("owns_pr", sa.Boolean(), nullable=False),
        sa.Column("model", AutoString(length=30), nullable=False),
        sa.Column("state", AutoString(length=30), nullable=False),
        sa.Column("branch", AutoString(length=300), nullable=False),
        sa.Column("base", AutoString(length=300), nullable=False),
        sa.Column("requester", AutoString(length=100), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("instruction", sa.Text(), nullable=False),
        sa.Column("requirements", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repository", "number", name="uq_task_repo_number"),
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_pr_number"), ["pr_number"], unique=False)

    op.create_table(
        "iteration",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("key", AutoString(length=200), nullable=False),
        sa.Column("trigger", AutoString(length=40), nullable=False),
        sa.Column("feedback", sa.JSON(), nullable=False),
        sa.Column("base_sha", AutoString(length=64), nullable=True),
        sa.Column("commits", sa.JSON(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("red", sa.JSON(), nullable=True),
        sa.Column("green", sa.JSON(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("outcome", AutoString(length=20), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["task.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("task_id", "key", name="uq_iteration_key"),
        sa.UniqueConstraint("task_id", "number", name="uq_iteration_number"),
    )
    with op.batch_alter_table("iteration", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_iteration_task_id"), ["task_id"], unique=False)

    op.create_table(
        "job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", AutoString(length=60), nullable=False),
        sa.Column("status", AutoString(length=20), nullable=False),
        sa.Column("delivery_id", AutoString(length=100), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("serial_key", AutoString(length=400), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", AutoString(length=200), nullable=True),
        sa.Column("lease_expires", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["delivery.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_kind"), ["kind"], unique=False)
        batch_op.create_index("ix_job_serial_key_status", ["serial_key", "status"], unique=False)
        batch_op.create_index("ix_job_status_run_after", ["status", "run_after"], unique=False)

    op.create_table(
        "agentstep",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_key", AutoString(length=200), nullable=False),
        sa.Column("iteration_id", sa.Integer(), nullable=True),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("model_duration", sa.Float(), nullable=False),
        sa.Column("model", AutoString(length=100), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("stop_reason", AutoString(length=40), nullable=True),
        sa.Column("tool_calls", sa.JSON(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("feedback", AutoString(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["iteration_id"],
            ["iteration.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agentstep", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agentstep_iteration_id"), ["iteration_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_agentstep_run_key"), ["run_key"], unique=False)

    op.create_table(
        "jobrun",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker", AutoString(length=200), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", AutoString(length=20), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("jobrun", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobrun_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobrun", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobrun_job_id"))

    op.drop_table("jobrun")
    with op.batch_alter_table("agentstep", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agentstep_run_key"))
        batch_op.drop_index(batch_op.f("ix_agentstep_iteration_id"))

    op.drop_table("agentstep")
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_status_run_after")
        batch_op.drop_index("ix_job_serial_key_status")
        batch_op.drop_index(batch_op.f("ix_job_kind"))

    op.drop_table("job")
    with op.batch_alter_table("iteration", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_iteration_task_id"))

    op.drop_table("iteration")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_pr_number"))

    op.drop_table("task")
    with op.batch_alter_table("runnertask", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runnertask_status"))

    op.drop_table("runnertask")
    op.drop_table("delivery")
