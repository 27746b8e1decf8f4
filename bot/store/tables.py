"""The SQLModel tables: deliveries, jobs, tasks, iterations, agent steps, runner tasks.

One schema serves the embedded SQLite default and PostgreSQL (``bot/store/engine.py`` makes
the engine; ``bot/jobs/queue.py`` has the claim protocol on each).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Delivery(SQLModel, table=True):
    """One webhook delivery, keyed by GitHub's ``X-GitHub-Delivery`` GUID."""

    id: str = Field(primary_key=True, max_length=100)
    event: str = Field(max_length=100)
    action: str | None = Field(default=None, max_length=100)
    repository: str | None = Field(default=None, max_length=300)
    installation_id: int | None = None
    outcome: str = Field(max_length=40)
    detail: str | None = Field(default=None, sa_column=Column(Text))
    # Stored as received since revision 0006: ``body`` (the verified bytes) and the media
    # type that says how to read them; the job that handles the delivery decodes them
    # (bot/ingest/deliveries.py). ``payload`` holds deliveries stored before.
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    content_type: str | None = Field(default=None, max_length=100)
    received_at: datetime = Field(default_factory=utcnow)
    redeliveries: int = 0


class Job(SQLModel, table=True):
    """A unit of work claimed by a worker under a lease."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=60, index=True)
    status: str = Field(default="queued", max_length=20)
    delivery_id: str | None = Field(
        default=None, foreign_key="delivery.id", max_length=100, index=True
    )
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    serial_key: str | None = Field(default=None, max_length=400)
    attempts: int = 0
    max_attempts: int = 5
    run_after: datetime = Field(default_factory=utcnow)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires: datetime | None = None
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None

    __table_args__ = (
        Index("ix_job_status_run_after", "status", "run_after"),
        Index("ix_job_serial_key_status", "serial_key", "status"),
    )


class JobRun(SQLModel, table=True):
    """One attempt at a job: who ran it, when, and how it ended (None while running)."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    attempt: int
    worker: str = Field(max_length=200)
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=20)
    error: str | None = Field(default=None, sa_column=Column(Text))


class AgentStep(SQLModel, table=True):
    """One model call of an agent run and the tool calls it made (``bot/agent/record.py``).

    ``run_key`` groups a run's steps; ``iteration_id`` is the loop's iteration, if any.
    Texts and tool results are stored truncated; ``feedback`` is "self" for the step that
    answered the agent's self-review."""

    id: int | None = Field(default=None, primary_key=True)
    run_key: str = Field(max_length=200, index=True)
    iteration_id: int | None = Field(default=None, foreign_key="iteration.id", index=True)
    index: int
    started_at: datetime = Field(default_factory=utcnow)
    duration: float = 0.0
    model_duration: float = 0.0
    model: str = Field(max_length=100)
    request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    stop_reason: str | None = Field(default=None, max_length=40)
    tool_calls: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost: float = 0.0
    feedback: str | None = Field(default=None, max_length=20)
    error: str | None = Field(default=None, sa_column=Column(Text))


class Task(SQLModel, table=True):
    """One issue (or borrowed PR) the bot works on; see ``bot/core/tasks.py`` for the states."""

    id: int | None = Field(default=None, primary_key=True)
    # The name follows a renamed or transferred repository; the id is what stays (None on
    # rows written before the id was kept).
    repository: str = Field(max_length=300)
    repository_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    number: int
    pr_number: int | None = Field(default=None, index=True)
    owns_pr: bool = True
    model: str = Field(max_length=30)
    state: str = Field(max_length=30)
    branch: str = Field(max_length=300)
    base: str = Field(max_length=300)
    requester: str = Field(max_length=100)
    title: str = Field(sa_column=Column(Text, nullable=False))
    instruction: str = Field(sa_column=Column(Text, nullable=False))
    requirements: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    plan: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    stop_requested: bool = False
    # The task's status comment on GitHub (comment ids are 64-bit), edited by id.
    status_comment_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (
        UniqueConstraint("repository", "number", name="uq_task_repo_number"),
        Index("ix_task_repository_id_number", "repository_id", "number", unique=True),
    )


class Iteration(SQLModel, table=True):
    """One pass of the refinement loop with the feedback that drove it (by kind)."""

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    number: int
    key: str = Field(max_length=200)
    trigger: str = Field(max_length=40)
    feedback: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    base_sha: str | None = Field(default=None, max_length=64)
    commits: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    checks: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    red: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    green: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    duration: float = 0.0
    outcome: str = Field(default="running", max_length=20)
    # begun, pushed, concluded (bot.core.tasks.Checkpoint): where a resumed job picks up.
    checkpoint: str = Field(default="begun", max_length=20)
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text))
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    # The context manifest (bot.context.pack.ContextPack.manifest): parts, files, left out.
    context: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # Best-of-N attempts, the one chosen and why (bot.core.attempts.AttemptSet.to_json).
    attempts: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))

    __table_args__ = (
        UniqueConstraint("task_id", "number", name="uq_iteration_number"),
        UniqueConstraint("task_id", "key", name="uq_iteration_key"),
    )


class RunnerTask(SQLModel, table=True):
    """A task handed to a GitHub Actions runner (:mod:`bot.executors.actions.executor`).
    Secrets are stored only as SHA-256 hashes: the one-time claim credential and the
    runner's token."""

    id: int | None = Field(default=None, primary_key=True)
    key: str | None = Field(default=None, max_length=200, unique=True)  # the delivery
    repository: str = Field(max_length=300)
    number: int | None = None
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="dispatched", max_length=20, index=True)
    attempt: int = 0
    max_attempts: int = 3
    credential_hash: str | None = Field(default=None, max_length=64)
    credential_expires: datetime | None = None
    token_hash: str | None = Field(default=None, max_length=64)
    # GitHub run ids outgrow 32 bits.
    run_id: int | None = Field(default=None, sa_column=Column(BigInteger))
    run_url: str | None = Field(default=None, max_length=500)
    progress: str | None = Field(default=None, sa_column=Column(Text))
    outcome: str | None = Field(default=None, max_length=40)
    pr_number: int | None = None
    cost: float = 0.0
    summary: str | None = Field(default=None, sa_column=Column(Text))
    dispatched_at: datetime | None = None
    claimed_at: datetime | None = None
    last_seen_at: datetime | None = None
    finished_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class CiRound(SQLModel, table=True):
    """The decision on one head commit of a task's PR from the repository's CI
    (:mod:`bot.loop.ci`): written once per head, so the several events of one suite and
    their redeliveries decide once. ``outcome`` "rerun" waits for re-run jobs and is
    replaced by the final decision."""

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    head_sha: str = Field(max_length=64)
    outcome: str = Field(max_length=20)
    signature: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    failing: list[Any] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    manual: bool = False
    note: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)

    __table_args__ = (UniqueConstraint("task_id", "head_sha", name="uq_ciround_head"),)


class ConsoleAction(SQLModel, table=True):
    """Who did what from the console (:mod:`bot.loop.console`): the actor (how they were
    let in), their address, the action on a task or a job, and how it ended."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=200)
    remote: str | None = Field(default=None, max_length=100)
    action: str = Field(max_length=20)
    target: str = Field(max_length=10)
    target_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    outcome: str = Field(max_length=20)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))

    __table_args__ = (Index("ix_consoleaction_target", "target", "target_id"),)
