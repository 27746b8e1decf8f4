"""The console's actions: retry a failed iteration, stop a task, requeue a dead job.

Each is the use case the bot already has, reached from the console, and each leaves a row
in ``consoleaction`` saying who asked (how the console let them in, and from where), what,
and how it ended, refused ones too:

- stop: :func:`bot.loop.actions.halt`, as ``/vibe stop`` (a running iteration stops
  within seconds; a task at rest is abandoned);
- retry: a ``console`` job in the task's lane that runs :func:`bot.loop.actions.retry`
  (:func:`bot.loop.handlers.handle_console`), so it waits for the task's other work and a
  worker with the repository's wiring runs it, like ``/vibe retry``;
- requeue: :func:`bot.jobs.queue.requeue_dead_job` (fresh attempts).

The access check and CSRF protection are the console's (``bot/entrypoints/console``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.core.tasks import TaskRecord
from bot.jobs.queue import enqueue, requeue_dead_job
from bot.loop.actions import halt
from bot.loop.ci import task_lane
from bot.store.engine import write_transaction
from bot.store.tables import ConsoleAction, Job, Task, utcnow
from bot.store.tasks import SqlTaskStore

CONSOLE_JOB = "console"
RETRYABLE = frozenset({"failed", "stopped", "limit"})
Action = Literal["retry", "stop", "requeue"]


@dataclass(frozen=True)
class Who:
    """Who asked: how the console let them in ("dashboard token", "loopback") and from
    which address."""

    actor: str
    remote: str | None


@dataclass(frozen=True)
class Done:
    """How an action ended: ``ok`` False when it was refused, with the reason."""

    ok: bool
    message: str


def _record(engine: Engine, who: Who, action: Action, target_id: int, done: Done) -> Done:
    row = {
        "at": utcnow(),
        "actor": who.actor[:200],
        "remote": None if who.remote is None else who.remote[:100],
        "action": action,
        "target": "job" if action == "requeue" else "task",
        "target_id": target_id,
        "outcome": "done" if done.ok else "refused",
        "detail": done.message,
    }
    with write_transaction(engine) as conn:
        conn.execute(ConsoleAction.__table__.insert(), row)  # type: ignore[attr-defined]
    return done


def _task(engine: Engine, task_id: int) -> tuple[TaskRecord, int | None] | None:
    """The task and GitHub's id of its repository (its lane is named by it)."""
    with Session(engine) as session:
        row = session.get(Task, task_id)
        if row is None:
            return None
        repo_id = row.repository_id
    return SqlTaskStore(engine).load(task_id), repo_id


def stop(engine: Engine, task_id: int, who: Who) -> Done:
    found = _task(engine, task_id)
    if found is None:
        return _record(engine, who, "stop", task_id, Done(False, f"there is no task {task_id}"))
    task = found[0]
    if task.state.terminal:
        done = Done(False, f"task {task_id} has already ended ({task.state.value})")
        return _record(engine, who, "stop", task_id, done)
    halt(SqlTaskStore(engine), task)
    if task.state.busy:
        done = Done(True, f"task {task_id}: the running iteration was asked to stop")
    else:
        done = Done(True, f"task {task_id} is stopped (abandoned)")
    return _record(engine, who, "stop", task_id, done)


def retry(engine: Engine, task_id: int, who: Who) -> Done:
    """Queue a retry of the task's last iteration when it failed, stopped or hit a limit
    and nothing else of the task is running or waiting."""
    found = _task(engine, task_id)
    if found is None:
        return _record(engine, who, "retry", task_id, Done(False, f"there is no task {task_id}"))
    task, repo_id = found
    last = task.iterations[-1] if task.iterations else None
    refusal = None
    if last is None:
        refusal = f"task {task_id} has no iteration to retry"
    elif task.state.busy or last.outcome == "running":
        refusal = f"task {task_id} is running; stop it first"
    elif last.outcome not in RETRYABLE:
        refusal = (
            f"iteration {last.number} of task {task_id} ended {last.outcome}; only a failed,"
            " stopped or limited one is retried"
        )
    if refusal is not None:
        return _record(engine, who, "retry", task_id, Done(False, refusal))
    lane = task_lane(task.repo, repo_id, task.number)
    with write_transaction(engine) as conn:
        waiting = conn.execute(
            select(Job.id).where(
                col(Job.kind) == CONSOLE_JOB,
                col(Job.serial_key) == lane,
                col(Job.status).in_(("queued", "running")),
            )
        ).first()
        if waiting is None:
            payload = {
                "action": "retry",
                "task_id": task_id,
                "repository": task.repo,
                "number": task.number,
                "repo_id": repo_id,
                "by": who.actor,
            }
            job_id = enqueue(conn, CONSOLE_JOB, payload, serial_key=lane, max_attempts=1)
    if waiting is not None:
        done = Done(False, f"a retry of task {task_id} is already queued (job {waiting[0]})")
    else:
        assert last is not None
        done = Done(True, f"task {task_id}: iteration {last.number} is retried (job {job_id})")
    return _record(engine, who, "retry", task_id, done)


def requeue(engine: Engine, job_id: int, who: Who) -> Done:
    with write_transaction(engine) as conn:
        again = requeue_dead_job(conn, job_id)
    if again:
        done = Done(True, f"job {job_id} is queued again with fresh attempts")
    else:
        done = Done(False, f"job {job_id} is not dead; only a dead job is requeued")
    return _record(engine, who, "requeue", job_id, done)
