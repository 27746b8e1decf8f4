"""Task and iteration persistence: rows of :mod:`bot.store.tables` to and from the values
of :mod:`bot.core.tasks`.

:class:`SqlTaskStore` is the loop's task store (:class:`bot.loop.ports.TaskStore`): each
write is one transaction, a unit of work that loads the rows it changes, changes them and
commits together. An iteration is written at three checkpoints (:class:`Checkpoint`):
begun, pushed, concluded. Every write is keyed so a retried job repeats nothing: a task is
unique per repository and issue, an iteration per task and trigger key (the delivery or
review that caused it). A task is found by GitHub's repository id when the caller knows it,
so it follows a renamed or transferred repository (:func:`find`).

:func:`find` and :func:`load` serve readers outside the loop (the Actions executor, the
demo, tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from bot.core.attempts import AttemptSet
from bot.core.tasks import (
    MODELS,
    Begun,
    Check,
    Checkpoint,
    CommitStat,
    Conclusion,
    DevelopmentModel,
    Feedback,
    IterationRecord,
    NewTask,
    PlanStep,
    Requirement,
    State,
    Step,
    TaskRecord,
    Usage,
    WorkResult,
    allowed,
    commit_sha,
    transition,
)
from bot.store.engine import write_session
from bot.store.tables import Iteration, Task, utcnow


class TaskNotFound(LookupError):
    pass


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
        commits=tuple(commit_sha(c) for c in row.commits),
        commit_stats=tuple(s for s in map(CommitStat.from_json, row.commits) if s is not None),
        checks=tuple(Check.from_json(c) for c in row.checks),
        red=Check.from_json(row.red) if row.red else None,
        green=Check.from_json(row.green) if row.green else None,
        usage=Usage(row.input_tokens, row.output_tokens, row.cost),
        duration=row.duration,
        outcome=outcome,
        summary=row.summary,
        error=row.error,
        key=row.key,
        checkpoint=Checkpoint(row.checkpoint),
        started_at=row.started_at,
        base_sha=row.base_sha,
        context=row.context if isinstance(row.context, dict) else None,
        attempts=AttemptSet.from_json(row.attempts),
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
        status_comment_id=row.status_comment_id,
    )


def _loaded(session: Session, row: Task | None) -> TaskRecord | None:
    if row is None or row.id is None:
        return None
    its = list(session.exec(select(Iteration).where(Iteration.task_id == row.id)))
    return _record(row, its)


def load(engine: Engine, task_id: int) -> TaskRecord:
    with Session(engine) as session:
        found = _loaded(session, session.get(Task, task_id))
    if found is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    return found


def find(engine: Engine, repo: str, number: int, repo_id: int | None = None) -> TaskRecord | None:
    """The task of issue ``number``, or of the PR ``number`` (opened or borrowed by it).

    With ``repo_id`` (GitHub's repository id, which a rename or a transfer keeps) the task
    is found by the id, or by the name if it was stored without one; a task found under
    another name takes ``repo`` as its name (and the id), so the workspace, the pushes and
    the GitHub calls that follow use the repository's name of today.
    """
    with Session(engine) as session:
        row = _row_of(session, repo, number, repo_id)
        if repo_id is None or row is None or (row.repository, row.repository_id) == (repo, repo_id):
            return _loaded(session, row)
        task_id = row.id
    assert task_id is not None
    with write_session(engine) as session:
        moved = _task_row(session, task_id)
        moved.repository, moved.repository_id = repo, repo_id
        moved.updated_at = utcnow()
    return load(engine, task_id)


def _row_of(session: Session, repo: str, number: int, repo_id: int | None = None) -> Task | None:
    """The one lookup of a task by issue or pull request number: by repository id first,
    then by name among the rows that have no id (another id under the same name is another
    repository that took a freed name)."""
    of_number = or_(col(Task.number) == number, col(Task.pr_number) == number)
    first = select(Task).order_by(col(Task.id)).limit(1)
    if repo_id is None:
        return session.exec(first.where(Task.repository == repo, of_number)).first()
    by_id = session.exec(first.where(Task.repository_id == repo_id, of_number)).first()
    if by_id is not None:
        return by_id
    return session.exec(
        first.where(Task.repository == repo, col(Task.repository_id).is_(None), of_number)
    ).first()


def _req_json(r: Requirement) -> dict[str, Any]:
    return {"text": r.text, "source": r.source, "done": r.done}


def _plan_json(plan: tuple[PlanStep, ...]) -> list[dict[str, Any]]:
    return [{"text": p.text, "done": p.done} for p in plan]


def _task_row(session: Session, task_id: int) -> Task:
    row = session.get(Task, task_id)
    if row is None:
        raise TaskNotFound(f"task {task_id} does not exist")
    return row


def _iteration_row(session: Session, task_id: int, number: int) -> Iteration:
    return session.exec(
        select(Iteration).where(Iteration.task_id == task_id, Iteration.number == number)
    ).one()


def _moved(state: State, end: Conclusion, stop_requested: bool) -> State:
    if end.step is not None and allowed(state, end.step):
        state = transition(state, end.step)
    if end.stop_wins and stop_requested and allowed(state, Step.ABANDON):
        state = State.ABANDONED  # /vibe stop came as the iteration was finishing
    return state


class SqlTaskStore:
    """The loop's task store over a SQLAlchemy engine (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- reads ------------------------------------------------------------------------

    def find(self, repo: str, number: int, repo_id: int | None = None) -> TaskRecord | None:
        return find(self.engine, repo, number, repo_id)

    def load(self, task_id: int) -> TaskRecord:
        return load(self.engine, task_id)

    def find_by_branch(
        self, repo: str, branch: str, repo_id: int | None = None
    ) -> TaskRecord | None:
        """The task that opens its own PR from ``branch`` (its branch is a pure function of
        its issue: :func:`bot.core.branches.task_branch`), by repository id first."""
        with Session(self.engine) as session:
            first = (
                select(Task).where(Task.branch == branch, col(Task.owns_pr)).order_by(col(Task.id))
            )
            row = None
            if repo_id is not None:
                row = session.exec(first.where(Task.repository_id == repo_id)).first()
            if row is None:
                row = session.exec(first.where(Task.repository == repo)).first()
            return _loaded(session, row)

    def record_pr(self, task_id: int, pr_number: int) -> TaskRecord:
        """The task's PR, found from its head branch before the conclusion recorded it."""
        self._change(task_id, pr_number=pr_number)
        return self.load(task_id)

    def record_status_comment(self, task_id: int, comment_id: int) -> None:
        self._change(task_id, status_comment_id=comment_id)

    def record_context(self, iteration_id: int, manifest: dict[str, Any]) -> None:
        with write_session(self.engine) as session:
            row = session.get(Iteration, iteration_id)
            if row is not None:
                row.context = manifest
                session.add(row)

    def stop_requested(self, task_id: int) -> bool:
        with Session(self.engine) as session:
            row = session.get(Task, task_id)
            return bool(row is not None and row.stop_requested)

    # --- the task ---------------------------------------------------------------------

    def find_or_create(self, new: NewTask) -> tuple[TaskRecord, bool]:
        """The task for ``(repo, number)``, created if missing; the flag says it was
        created."""
        existing = self.find(new.repo, new.number, new.repo_id)
        if existing is not None:
            return existing, False
        row = Task(
            repository=new.repo,
            repository_id=new.repo_id,
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
            with write_session(self.engine) as session:
                session.add(row)
                session.flush()
                assert row.id is not None
                new_id = row.id
            return self.load(new_id), True
        except IntegrityError:
            again = self.find(new.repo, new.number, new.repo_id)
            if again is None:
                raise
            return again, False

    def _change(self, task_id: int, **fields: Any) -> None:
        with write_session(self.engine) as session:
            row = _task_row(session, task_id)
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            session.add(row)

    def reopen(self, task_id: int) -> TaskRecord:
        """An ended task asked for again: queued, with no stop pending."""
        self._change(task_id, state=State.QUEUED.value, stop_requested=False)
        return self.load(task_id)

    def set_requirements(self, task_id: int, requirements: tuple[Requirement, ...]) -> None:
        self._change(task_id, requirements=[_req_json(r) for r in requirements])

    def set_model(self, task_id: int, model: DevelopmentModel) -> None:
        self._change(task_id, model=model)

    def set_plan(self, task_id: int, plan: tuple[PlanStep, ...]) -> None:
        self._change(task_id, plan=_plan_json(plan))

    def move(self, task_id: int, state: State) -> None:
        self._change(task_id, state=state.value)

    def request_stop(self, task_id: int) -> None:
        self._change(task_id, stop_requested=True)

    def abandon(self, task_id: int, *, stop_running: bool) -> None:
        """The task ends as abandoned; ``stop_running`` also stops an iteration that runs."""
        self._change(task_id, state=State.ABANDONED.value, stop_requested=stop_running)

    def add_usage(self, task_id: int, usage: Usage) -> None:
        """Spend of an attempt that is retried from the start (its iteration is not
        concluded by it)."""
        with write_session(self.engine) as session:
            row = _task_row(session, task_id)
            row.input_tokens += usage.input_tokens
            row.output_tokens += usage.output_tokens
            row.cost += usage.cost
            row.updated_at = utcnow()
            session.add(row)

    # --- iterations: the checkpoints --------------------------------------------------

    def begin_iteration(
        self, task_id: int, key: str, trigger: str, feedback: tuple[Feedback, ...]
    ) -> Begun:
        """Checkpoint begun: the iteration for ``key``, created as the next number if new;
        found again, it says which checkpoint it reached."""
        with write_session(self.engine) as session:
            row = session.exec(
                select(Iteration).where(Iteration.task_id == task_id, Iteration.key == key)
            ).first()
            if row is None:
                last = session.exec(
                    select(Iteration.number)
                    .where(Iteration.task_id == task_id)
                    .order_by(col(Iteration.number).desc())
                ).first()
                row = Iteration(
                    task_id=task_id,
                    number=(last or 0) + 1,
                    key=key,
                    trigger=trigger,
                    feedback=[f.to_json() for f in feedback],
                    checkpoint=Checkpoint.BEGUN.value,
                )
                session.add(row)
                session.flush()
            assert row.id is not None
            return Begun(row.id, row.number, Checkpoint(row.checkpoint))

    def record_base(self, task_id: int, number: int, head: str) -> str:
        """The branch head the iteration's work starts from: the first one recorded, so a
        resumed iteration keeps its start (``/vibe undo`` reverts to it)."""
        with write_session(self.engine) as session:
            row = _iteration_row(session, task_id, number)
            if row.base_sha is None:
                row.base_sha = head
                session.add(row)
            return row.base_sha

    def record_pushed(self, task_id: int, number: int, result: WorkResult) -> None:
        """Checkpoint pushed: the work's result (its commits already on the branch), and a
        plan it made. The task's usage counts it when the iteration concludes."""
        with write_session(self.engine) as session:
            row = _iteration_row(session, task_id, number)
            row.outcome = result.outcome
            stats = {s.sha: s.to_json() for s in result.commit_stats}
            row.commits = [stats.get(sha, sha) for sha in result.commits]
            row.checks = [c.to_json() for c in result.checks]
            row.red = result.red.to_json() if result.red is not None else None
            row.green = result.green.to_json() if result.green is not None else None
            row.input_tokens = result.usage.input_tokens
            row.output_tokens = result.usage.output_tokens
            row.cost = result.usage.cost
            row.duration = result.duration
            row.summary = result.summary
            row.error = result.reason
            row.feedback = [f.to_json() for f in result.feedback]
            row.attempts = result.attempts.to_json() if result.attempts is not None else None
            row.checkpoint = Checkpoint.PUSHED.value
            session.add(row)
            if result.plan is not None:
                task = _task_row(session, task_id)
                task.plan = _plan_json(result.plan)
                task.updated_at = utcnow()
                session.add(task)

    def conclude(self, task_id: int, number: int, end: Conclusion) -> TaskRecord:
        """Checkpoint concluded, in one transaction: the iteration's outcome, the task's
        move, its usage counted on the task, and the PR number if one was opened."""
        with write_session(self.engine) as session:
            row = _iteration_row(session, task_id, number)
            task = _task_row(session, task_id)
            if end.usage is not None:
                row.input_tokens = end.usage.input_tokens
                row.output_tokens = end.usage.output_tokens
                row.cost = end.usage.cost
            if end.duration is not None:
                row.duration = end.duration
            if end.error is not None:
                row.error = end.error
            row.outcome = end.outcome
            row.checkpoint = Checkpoint.CONCLUDED.value
            row.finished_at = utcnow()
            task.input_tokens += row.input_tokens
            task.output_tokens += row.output_tokens
            task.cost += row.cost
            task.state = _moved(State(task.state), end, task.stop_requested).value
            if end.pr_number is not None:
                task.pr_number = end.pr_number
            task.updated_at = utcnow()
            session.add(row)
            session.add(task)
            session.flush()
            found = _loaded(session, task)
        assert found is not None
        return found

    def record_attempts(self, task_id: int, number: int, attempts: AttemptSet) -> None:
        """The iteration's attempts after a ``/vibe pick`` or once their branches expired."""
        with write_session(self.engine) as session:
            row = _iteration_row(session, task_id, number)
            row.attempts = attempts.to_json()
            session.add(row)

    def mark_reverted(self, task_id: int, number: int) -> None:
        """``/vibe undo`` reverted the iteration's commits."""
        with write_session(self.engine) as session:
            row = _iteration_row(session, task_id, number)
            row.outcome = "reverted"
            session.add(row)


# --------------------------------------------------------------------- task records
# The Actions runner works on a database of its own; these records travel with the claim and
# come back with the result (bot/executors/actions/executor.py).

MAX_ITERATIONS_SENT = 500


class RecordsError(ValueError):
    """Task records that do not fit the task they were sent for."""


def export_records(engine: Engine, repo: str, number: int) -> dict[str, Any] | None:
    """The task of issue or PR ``number`` with its iterations, as JSON, or None.

    The runner works on a database of its own; these records travel with the claim and
    come back with the result, so the service and the runner see one task history."""
    with Session(engine) as session:
        row = _row_of(session, repo, number)
        if row is None:
            return None
        its = session.exec(select(Iteration).where(Iteration.task_id == row.id)).all()
        return {
            "task": row.model_dump(mode="json", exclude={"id"}),
            "iterations": [i.model_dump(mode="json", exclude={"id", "task_id"}) for i in its],
        }


def import_records(
    engine: Engine, repo: str, records: Mapping[str, Any], *, number: int | None = None
) -> int:
    """Create or update the task (and its iterations) from :func:`export_records` output;
    returns the local task id. Records for another repository, or (with ``number``) for
    another issue, are refused."""
    raw_task, raw_its = records.get("task"), records.get("iterations")
    if not isinstance(raw_task, dict) or not isinstance(raw_its, list):
        raise RecordsError("records need a task object and an iterations list")
    if len(raw_its) > MAX_ITERATIONS_SENT:
        raise RecordsError(f"more than {MAX_ITERATIONS_SENT} iterations")
    try:
        incoming = Task.model_validate({k: v for k, v in raw_task.items() if k != "id"})
        iterations = [
            Iteration.model_validate({**i, "task_id": 0})
            for i in raw_its
            if isinstance(i, dict) and "id" not in i
        ]
    except ValidationError as exc:
        raise RecordsError(f"records do not validate: {exc.error_count()} problems") from None
    if len(iterations) != len(raw_its):
        raise RecordsError("iterations must be objects without ids")
    if incoming.repository.casefold() != repo.casefold():
        raise RecordsError(f"records are for {incoming.repository}, not {repo}")
    if number is not None and incoming.number != number:
        raise RecordsError(f"records are for #{incoming.number}, not #{number}")
    fields = incoming.model_dump(exclude={"id"})
    with write_session(engine) as session:
        row = session.exec(
            select(Task).where(Task.repository == repo, Task.number == incoming.number)
        ).first()
        if row is None:
            row = Task(**fields)
        else:
            for name, value in fields.items():
                setattr(row, name, value)
        session.add(row)
        session.flush()
        assert row.id is not None
        task_id = row.id
        existing = {
            i.number: i
            for i in session.exec(select(Iteration).where(Iteration.task_id == task_id)).all()
        }
        for it in iterations:
            values = it.model_dump(exclude={"id", "task_id"})
            target = existing.get(it.number) or Iteration(task_id=task_id, **values)
            for name, value in values.items():
                setattr(target, name, value)
            session.add(target)
    return task_id
