"""Task and iteration persistence: rows of :mod:`bot.store.tables` to and from the values
of :mod:`bot.core.tasks`.

Every write is keyed so a retried job repeats nothing: a task is unique per repository and
issue, an iteration per task and trigger key (the delivery or review that caused it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from bot.jobs.queue import write_transaction
from bot.settings import DevelopmentModel
from bot.store.tables import Iteration, Task, utcnow

__all__ = ["Iteration", "Task"]
from bot.core.tasks import (
    MODELS,
    Check,
    Feedback,
    IterationRecord,
    PlanStep,
    Requirement,
    State,
    TaskRecord,
    Usage,
)


class TaskNotFound(LookupError):
    pass


@contextmanager
def _writing(engine: Engine) -> Iterator[Session]:
    """A session in a transaction that takes SQLite's write lock up front (``BEGIN
    IMMEDIATE``): a deferred transaction that reads and then writes fails at once with
    "database is locked" when another connection wrote meanwhile, whatever the busy
    timeout (https://www.sqlite.org/lang_transaction.html)."""
    with write_transaction(engine) as conn, Session(bind=conn) as session:
        yield session
        session.flush()


def _model(value: str) -> DevelopmentModel:
    for name in MODELS:
        if name == value:
            return name
    return "conversational"


def _iteration(row: Iteration) -> IterationRecord:
    outcome: Any = row.outcome
    return IterationRecord(
        number=row.number,
        trigger=row.trigger,
        feedback=tuple(Feedback.from_json(f) for f in row.feedback),
        commits=tuple(str(c) for c in row.commits),
        checks=tuple(Check.from_json(c) for c in row.checks),
        red=Check.from_json(row.red) if row.red else None,
        green=Check.from_json(row.green) if row.green else None,
        usage=Usage(row.input_tokens, row.output_tokens, row.cost),
        duration=row.duration,
        outcome=outcome,
        summary=row.summary,
        error=row.error,
    )


def _record(row: Task, iterations: list[Iteration]) -> TaskRecord:
    assert row.id is not None
    return TaskRecord(
        id=row.id,
        repo=row.repository,
        number=row.number,
        model=_model(row.model),
        state=State(row.state),
        branch=row.branch,
        base=row.base,
        requester=row.requester,
        title=row.title,
        instruction=row.instruction,
        pr_number=row.pr_number,
        owns_pr=row.owns_pr,
        requirements=tuple(
            Requirement(str(r["text"]), str(r.get("source", "issue")), bool(r.get("done")))
            for r in row.requirements
        ),
        plan=tuple(PlanStep(str(p["text"]), bool(p.get("done"))) for p in row.plan),
        usage=Usage(row.input_tokens, row.output_tokens, row.cost),
        iterations=tuple(_iteration(i) for i in sorted(iterations, key=lambda i: i.number)),
        stop_requested=row.stop_requested,
    )


def load(engine: Engine, task_id: int) -> TaskRecord:
    with Session(engine) as session:
        row = session.get(Task, task_id)
        if row is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        its = list(session.exec(select(Iteration).where(Iteration.task_id == task_id)))
        return _record(row, its)


def find(engine: Engine, repo: str, number: int) -> TaskRecord | None:
    """The task of issue ``number``, or of the PR ``number`` (opened or borrowed by it)."""
    with Session(engine) as session:
        row = session.exec(
            select(Task)
            .where(
                Task.repository == repo,
                or_(col(Task.number) == number, col(Task.pr_number) == number),
            )
            .order_by(col(Task.id))
        ).first()
        if row is None or row.id is None:
            return None
        its = list(session.exec(select(Iteration).where(Iteration.task_id == row.id)))
        return _record(row, its)


@dataclass(frozen=True)
class NewTask:
    repo: str
    number: int
    model: DevelopmentModel
    branch: str
    base: str
    requester: str
    title: str
    instruction: str
    requirements: tuple[Requirement, ...]
    pr_number: int | None = None
    owns_pr: bool = True


def find_or_create(engine: Engine, new: NewTask) -> tuple[TaskRecord, bool]:
    """The task for ``(repo, number)``, created if missing; the flag says it was created."""
    existing = find(engine, new.repo, new.number)
    if existing is not None:
        return existing, False
    row = Task(
        repository=new.repo,
        number=new.number,
        pr_number=new.pr_number,
        owns_pr=new.owns_pr,
        model=new.model,
        state=State.QUEUED.value,
        branch=new.branch,
        base=new.base,
        requester=new.requester,
        title=new.title,
        instruction=new.instruction,
        requirements=[_req_json(r) for r in new.requirements],
    )
    try:
        with _writing(engine) as session:
            session.add(row)
            session.flush()
            assert row.id is not None
            new_id = row.id
        return load(engine, new_id), True
    except IntegrityError:
        again = find(engine, new.repo, new.number)
        if again is None:
            raise
        return again, False


def _req_json(r: Requirement) -> dict[str, Any]:
    return {"text": r.text, "source": r.source, "done": r.done}


def update(engine: Engine, task_id: int, **fields: Any) -> None:
    """Set columns of a task. Requirements and plan steps may be given as values."""
    if "requirements" in fields:
        fields["requirements"] = [_req_json(r) for r in fields["requirements"]]
    if "plan" in fields:
        fields["plan"] = [{"text": p.text, "done": p.done} for p in fields["plan"]]
    if "state" in fields and isinstance(fields["state"], State):
        fields["state"] = fields["state"].value
    with _writing(engine) as session:
        row = session.get(Task, task_id)
        if row is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        for key, value in fields.items():
            setattr(row, key, value)
        row.updated_at = utcnow()
        session.add(row)


def stop_requested(engine: Engine, task_id: int) -> bool:
    with Session(engine) as session:
        row = session.get(Task, task_id)
        return bool(row is not None and row.stop_requested)


def add_usage(engine: Engine, task_id: int, usage: Usage) -> None:
    with _writing(engine) as session:
        row = session.get(Task, task_id)
        if row is None:
            raise TaskNotFound(f"task {task_id} does not exist")
        row.input_tokens += usage.input_tokens
        row.output_tokens += usage.output_tokens
        row.cost += usage.cost
        row.updated_at = utcnow()
        session.add(row)


def begin_iteration(
    engine: Engine, task_id: int, key: str, trigger: str, feedback: tuple[Feedback, ...]
) -> tuple[int, bool]:
    """The iteration for ``key`` (number, finished?), created as the next number if new."""
    with _writing(engine) as session:
        row = session.exec(
            select(Iteration).where(Iteration.task_id == task_id, Iteration.key == key)
        ).first()
        if row is not None:
            return row.number, row.outcome != "running"
        last = session.exec(
            select(Iteration.number)
            .where(Iteration.task_id == task_id)
            .order_by(col(Iteration.number).desc())
        ).first()
        number = (last or 0) + 1
        session.add(
            Iteration(
                task_id=task_id,
                number=number,
                key=key,
                trigger=trigger,
                feedback=[f.to_json() for f in feedback],
            )
        )
        return number, False


def update_iteration(engine: Engine, task_id: int, number: int, **fields: Any) -> None:
    for name in ("feedback", "checks"):
        if name in fields:
            fields[name] = [item.to_json() for item in fields[name]]
    for name in ("red", "green"):
        if name in fields and fields[name] is not None:
            fields[name] = fields[name].to_json()
    if "usage" in fields:
        usage: Usage = fields.pop("usage")
        fields.update(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost=usage.cost
        )
    with _writing(engine) as session:
        row = session.exec(
            select(Iteration).where(Iteration.task_id == task_id, Iteration.number == number)
        ).one()
        for key, value in fields.items():
            setattr(row, key, value)
        if fields.get("outcome", "running") != "running":
            row.finished_at = utcnow()
        session.add(row)


def iteration_base(engine: Engine, task_id: int, number: int) -> str | None:
    with Session(engine) as session:
        row = session.exec(
            select(Iteration).where(Iteration.task_id == task_id, Iteration.number == number)
        ).one_or_none()
        return row.base_sha if row is not None else None


def has_iteration(engine: Engine, task_id: int, key: str) -> bool:
    """Whether an iteration was started for ``key`` (a job claimed again after a crash)."""
    with Session(engine) as session:
        return (
            session.exec(
                select(Iteration.id).where(Iteration.task_id == task_id, Iteration.key == key)
            ).first()
            is not None
        )
