"""Retention: webhook deliveries, finished jobs and agent steps older than a cutoff are
deleted (the periodic ``prune`` job, wired in ``bot/bootstrap.py``).

What stays, however old:

- queued and running jobs, and their runs;
- a delivery that any job still names: a live job reads it when it runs, and a finished one
  holds it by its foreign key until that job is pruned too;
- tasks and iterations: they are the task's history, its resume point and the memory of
  later iterations (``bot/loop/iteration.py``);
- the agent steps of an iteration that has not concluded: a job claimed again resumes it
  from its begun or pushed checkpoint, and its steps are the record of that run.

A job is old by when it finished, a delivery by when it arrived, an agent step by when it
started. Rows go in batches of :data:`BATCH`, one transaction each, so a large backlog
never holds SQLite's write lock or PostgreSQL's row locks for long; on PostgreSQL a batch
locks its rows first (``FOR UPDATE SKIP LOCKED``), so a row another transaction is changing
is left for the next run, and the rows deleted are the rows checked. The queue
(``bot/jobs/queue.py``) writes every job row while it can still run; once done or dead a row
is only history, and retention is the store's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Table, delete, or_, select
from sqlalchemy.engine import Connection, Engine

from bot.core.tasks import Checkpoint
from bot.store.engine import write_transaction
from bot.store.tables import AgentStep, Delivery, Iteration, Job, JobRun

log = structlog.get_logger(__name__)

BATCH = 1000
FINISHED = ("done", "dead")

_DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
_JOB: Table = Job.__table__  # type: ignore[attr-defined]
_JOB_RUN: Table = JobRun.__table__  # type: ignore[attr-defined]
_STEP: Table = AgentStep.__table__  # type: ignore[attr-defined]
_ITERATION: Table = Iteration.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Pruned:
    """How many rows of each kind one run deleted."""

    deliveries: int = 0
    jobs: int = 0
    job_runs: int = 0
    agent_steps: int = 0

    @property
    def total(self) -> int:
        return self.deliveries + self.jobs + self.job_runs + self.agent_steps


def _old_agent_steps(older_than: datetime) -> ColumnElement[bool]:
    """Steps started before ``older_than`` outside any iteration or of a concluded one."""
    concluded = select(_ITERATION.c.id).where(_ITERATION.c.checkpoint == Checkpoint.CONCLUDED.value)
    return (_STEP.c.started_at < older_than) & or_(
        _STEP.c.iteration_id.is_(None), _STEP.c.iteration_id.in_(concluded)
    )


def _old_finished_jobs(older_than: datetime) -> ColumnElement[bool]:
    return _JOB.c.status.in_(FINISHED) & (_JOB.c.finished_at < older_than)


def _old_deliveries(older_than: datetime) -> ColumnElement[bool]:
    """Deliveries received before ``older_than`` that no job names (``NOT IN``: one pass
    over the job table a batch, not one probe of it per delivery)."""
    named = select(_JOB.c.delivery_id).where(_JOB.c.delivery_id.is_not(None))
    return (_DELIVERY.c.received_at < older_than) & _DELIVERY.c.id.not_in(named)


def _batch_ids(
    conn: Connection, table: Table, condition: ColumnElement[bool], size: int
) -> list[Any]:
    query = select(table.c.id).where(condition).limit(size)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=table, skip_locked=True)
    return list(conn.execute(query).scalars())


def _in_batches(
    engine: Engine,
    table: Table,
    condition: ColumnElement[bool],
    *,
    size: int,
    stop: threading.Event,
    pause: float,
    before: Callable[[Connection, list[Any]], None] | None = None,
) -> int:
    """Delete the rows of ``table`` matching ``condition``, ``size`` a transaction; ``before``
    deletes what references a batch first. Stops early when ``stop`` is set."""
    deleted = 0
    while not stop.is_set():
        with write_transaction(engine) as conn:
            ids = _batch_ids(conn, table, condition, size)
            if ids:
                if before is not None:
                    before(conn, ids)
                conn.execute(delete(table).where(table.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < size:
            break
        # Between batches other writers take the lock (a thread mutex is not fair).
        stop.wait(pause)
    return deleted


def prune(
    engine: Engine,
    older_than: datetime,
    *,
    batch: int = BATCH,
    pause: float = 0.01,
    cancel: threading.Event | None = None,
) -> Pruned:
    """Delete the agent steps, finished jobs (with their runs) and deliveries older than
    ``older_than``, in that order (a job goes before the delivery it names). ``cancel``
    (the job's shutdown) stops between batches; the next run goes on from there."""
    stop = cancel or threading.Event()
    started = time.monotonic()
    runs = 0

    def delete_runs(conn: Connection, job_ids: list[Any]) -> None:
        nonlocal runs
        result = conn.execute(delete(_JOB_RUN).where(_JOB_RUN.c.job_id.in_(job_ids)))
        runs += result.rowcount

    def batches(
        table: Table,
        condition: ColumnElement[bool],
        before: Callable[[Connection, list[Any]], None] | None = None,
    ) -> int:
        return _in_batches(
            engine, table, condition, size=batch, stop=stop, pause=pause, before=before
        )

    steps = batches(_STEP, _old_agent_steps(older_than))
    jobs = batches(_JOB, _old_finished_jobs(older_than), delete_runs)
    deliveries = batches(_DELIVERY, _old_deliveries(older_than))
    pruned = Pruned(deliveries=deliveries, jobs=jobs, job_runs=runs, agent_steps=steps)
    log.info(
        "store.pruned",
        older_than=older_than.isoformat(),
        deliveries=pruned.deliveries,
        jobs=pruned.jobs,
        job_runs=pruned.job_runs,
        agent_steps=pruned.agent_steps,
        seconds=round(time.monotonic() - started, 3),
        complete=not stop.is_set(),
    )
    return pruned
