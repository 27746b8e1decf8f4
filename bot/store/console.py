"""Read queries of the task console (``bot/entrypoints/console/``): tasks filtered, sorted
and paged; one task with its iterations and the agent's steps; jobs and the queue.

Everything here reads; nothing writes. Values come back as plain frozen dataclasses with
the stored text as it is: the console redacts and escapes at the edge.

Paging is keyset paging (a cursor holds the last row's sort value and id), so a page costs
the same at row 10 and at row 10,000 and rows added meanwhile do not shift a page. The
default order, newest first, walks the primary key backwards: no extra index needed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast

from sqlalchemy import and_, func, or_
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import QueryableAttribute, defer
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from bot.core.attempts import AttemptSet
from bot.core.tasks import MODELS, State
from bot.store.tables import AgentStep, ConsoleAction, Delivery, Iteration, Job, Task

Sort = Literal["newest", "oldest", "updated", "cost"]
SORTS: tuple[Sort, ...] = ("newest", "oldest", "updated", "cost")
JOB_STATES = ("queued", "running", "done", "dead")
PAGE_DEFAULT = 50
PAGE_MAX = 200
MAX_QUERY_CHARS = 2_000
MAX_CURSOR_CHARS = 200
# GitHub's owner and repository names: letters, digits, '-', '_' and '.', at most 100
# characters each (owner names are at most 39).
_REPOSITORY = re.compile(r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}")
_TASK_KEYS = frozenset({"repository", "state", "model", "since", "until", "sort", "limit", "after"})
_JOB_KEYS = frozenset({"state", "kind", "limit", "after"})


class QueryError(ValueError):
    """A query parameter the console cannot use; the message says which and why."""


@dataclass(frozen=True)
class TaskQuery:
    repository: str | None = None
    state: str | None = None
    model: str | None = None
    since: date | None = None
    until: date | None = None  # inclusive: tasks created on that day count
    sort: Sort = "newest"
    limit: int = PAGE_DEFAULT
    after: tuple[Any, int] | None = None  # the cursor: (sort value, task id)
    # Only these repositories (a signed-in person's readable ones); None: all.
    repositories: frozenset[str] | None = None

    def params(self, **changes: Any) -> dict[str, str]:
        """The query as URL parameters (without the cursor unless given)."""
        values: dict[str, Any] = {
            "repository": self.repository,
            "state": self.state,
            "model": self.model,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "sort": None if self.sort == "newest" else self.sort,
            "limit": None if self.limit == PAGE_DEFAULT else str(self.limit),
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class JobQuery:
    state: str | None = None
    kind: str | None = None
    limit: int = PAGE_DEFAULT
    after: int | None = None  # a job id: the page starts below it


def _single(params: Mapping[str, Sequence[str]], allowed: frozenset[str]) -> dict[str, str]:
    size = sum(len(k) + len(v) + 2 for k, values in params.items() for v in values)
    if size > MAX_QUERY_CHARS:
        raise QueryError(f"the query is too long ({size} characters, at most {MAX_QUERY_CHARS})")
    out: dict[str, str] = {}
    for key, values in params.items():
        if key not in allowed:
            raise QueryError(f"unknown parameter {key!r}; known: {', '.join(sorted(allowed))}")
        if len(values) != 1:
            raise QueryError(f"parameter {key!r} given {len(values)} times; give it once")
        if values[0] != "":
            out[key] = values[0]
    return out


def _choice(key: str, value: str | None, choices: Sequence[str]) -> str | None:
    if value is not None and value not in choices:
        raise QueryError(f"{key} must be one of {', '.join(choices)}; got {value[:40]!r}")
    return value


def _limit(value: str | None) -> int:
    if value is None:
        return PAGE_DEFAULT
    if not value.isdigit() or not 1 <= int(value) <= PAGE_MAX:
        raise QueryError(f"limit must be a whole number from 1 to {PAGE_MAX}; got {value[:40]!r}")
    return int(value)


def _day(key: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else _bad_day(key, value)
    except ValueError:
        return _bad_day(key, value)


def _bad_day(key: str, value: str) -> date:
    raise QueryError(f"{key} must be a date as YYYY-MM-DD; got {value[:40]!r}")


def encode_cursor(value: Any, row_id: int) -> str:
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor(value: str | None, sort: Sort) -> tuple[Any, int] | None:
    if value is None:
        return None
    bad = QueryError("after is not a cursor this console gave out; start from the first page")
    if len(value) > MAX_CURSOR_CHARS:
        raise bad
    try:
        decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        raise bad from None
    if not (isinstance(decoded, list) and len(decoded) == 2 and type(decoded[1]) is int):
        raise bad
    key, row_id = decoded
    if sort in ("newest", "oldest"):
        ok = key is None
    elif sort == "updated":
        ok = isinstance(key, str) and _instant(key) is not None
    else:
        ok = type(key) in (int, float)
    if not ok:
        raise bad
    return key, row_id


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_task_query(params: Mapping[str, Sequence[str]]) -> TaskQuery:
    """The tasks list's URL parameters as a :class:`TaskQuery`, or :class:`QueryError`."""
    got = _single(params, _TASK_KEYS)
    repository = got.get("repository")
    if repository is not None and _REPOSITORY.fullmatch(repository) is None:
        raise QueryError(f"repository must be owner/name; got {repository[:60]!r}")
    sort = _choice("sort", got.get("sort"), SORTS) or "newest"
    since, until = _day("since", got.get("since")), _day("until", got.get("until"))
    if since and until and since > until:
        raise QueryError(f"since ({since}) is after until ({until})")
    return TaskQuery(
        repository=repository,
        state=_choice("state", got.get("state"), [s.value for s in State]),
        model=_choice("model", got.get("model"), MODELS),
        since=since,
        until=until,
        sort=sort,  # type: ignore[arg-type]  # checked against SORTS above
        limit=_limit(got.get("limit")),
        after=_cursor(got.get("after"), sort),  # type: ignore[arg-type]
    )


def parse_job_query(params: Mapping[str, Sequence[str]]) -> JobQuery:
    got = _single(params, _JOB_KEYS)
    kind = got.get("kind")
    if kind is not None and (len(kind) > 60 or not kind.replace("_", "").isalnum()):
        raise QueryError(f"kind must be a job kind such as 'event'; got {kind[:40]!r}")
    after = got.get("after")
    if after is not None and not (after.isdigit() and len(after) < 19):
        raise QueryError(f"after must be a job id; got {after[:40]!r}")
    return JobQuery(
        state=_choice("state", got.get("state"), JOB_STATES),
        kind=kind,
        limit=_limit(got.get("limit")),
        after=int(after) if after is not None else None,
    )


@dataclass(frozen=True)
class Tokens:
    input: int = 0
    cache_write: int = 0
    cache_read: int = 0
    output: int = 0

    @property
    def total(self) -> int:
        return self.input + self.cache_write + self.cache_read + self.output

    @property
    def counted(self) -> int:
        """Input and output, as a task's and an iteration's own figures count them
        (:class:`bot.core.tasks.Usage`)."""
        return self.input + self.output


@dataclass(frozen=True)
class StepTotals:
    """What an iteration's recorded steps add up to (the live figures of a running one)."""

    steps: int = 0
    cost: float = 0.0
    tokens: Tokens = field(default_factory=Tokens)


@dataclass(frozen=True)
class TaskRow:
    id: int
    repository: str
    number: int
    pr_number: int | None
    title: str
    model: str
    state: str
    requester: str
    created_at: datetime
    updated_at: datetime
    cost: float  # concluded iterations plus the recorded steps of running ones
    tokens: int
    iterations: int
    running: bool
    last_outcome: str | None


@dataclass(frozen=True)
class TaskPage:
    rows: list[TaskRow]
    total: int  # tasks matching the filters
    next_cursor: str | None


@dataclass(frozen=True)
class IterationView:
    id: int
    number: int
    trigger: str
    feedback: list[dict[str, Any]]
    feedback_kinds: list[str]
    commits: list[Any]
    checks: list[dict[str, Any]]
    red: dict[str, Any] | None  # the test model's new test, failing before the change
    green: dict[str, Any] | None  # and passing after it
    outcome: str
    summary: str
    error: str | None
    cost: float
    tokens: Tokens
    steps: int
    duration: float
    started_at: datetime
    finished_at: datetime | None
    context: dict[str, Any] | None = None  # the context manifest, as recorded
    attempts: AttemptSet | None = None  # best-of-N: every attempt and the choice


@dataclass(frozen=True)
class TaskDetail:
    task: Task
    iterations: list[IterationView]


@dataclass(frozen=True)
class StepView:
    id: int
    iteration_id: int | None
    index: int
    started_at: datetime
    duration: float
    model: str
    text: str
    stop_reason: str | None
    tool_calls: list[dict[str, Any]]
    tokens: Tokens
    cost: float
    feedback: str | None
    error: str | None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(c.get("is_error") for c in self.tool_calls)


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    status: str
    event: str | None
    action: str | None
    repository: str | None
    number: int | None
    attempts: int
    max_attempts: int
    lease_owner: str | None
    created_at: datetime
    run_after: datetime
    last_error: str | None


@dataclass(frozen=True)
class DeliveryRow:
    id: str
    event: str
    action: str | None
    repository: str | None
    outcome: str
    detail: str | None
    received_at: datetime


@dataclass(frozen=True)
class JobsView:
    rows: list[JobRow]
    next_after: int | None
    depth: dict[str, int]  # jobs by state; "ready" counts queued jobs due now
    workers: dict[str, int]  # a lease holder -> the job it holds
    refused: list[DeliveryRow]  # deliveries not turned into work, newest first


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _task_filters(query: TaskQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.repository:
        where.append(col(Task.repository) == query.repository)
    if query.repositories is not None:
        where.append(col(Task.repository).in_(sorted(query.repositories)))
    if query.state:
        where.append(col(Task.state) == query.state)
    if query.model:
        where.append(col(Task.model) == query.model)
    if query.since:
        where.append(col(Task.created_at) >= datetime.combine(query.since, time(), UTC))
    if query.until:
        end = datetime.combine(query.until + timedelta(days=1), time(), UTC)
        where.append(col(Task.created_at) < end)
    return where


def _sort_column(sort: Sort) -> Any:
    return {"updated": col(Task.updated_at), "cost": col(Task.cost)}.get(sort)


def _sort_value(task: Task, sort: Sort) -> Any:
    if sort == "updated":
        return aware(task.updated_at).isoformat()
    if sort == "cost":
        return task.cost
    return None


def _totals(session: Session, iteration_ids: Sequence[int]) -> dict[int, StepTotals]:
    if not iteration_ids:
        return {}
    rows = session.execute(
        sa_select(
            col(AgentStep.iteration_id),
            func.count(),
            func.sum(AgentStep.cost),
            func.sum(AgentStep.input_tokens),
            func.sum(AgentStep.cache_write_tokens),
            func.sum(AgentStep.cache_read_tokens),
            func.sum(AgentStep.output_tokens),
        )
        .where(col(AgentStep.iteration_id).in_(iteration_ids))
        .group_by(col(AgentStep.iteration_id))
    ).all()
    return {
        int(it): StepTotals(
            int(n), float(c or 0), Tokens(int(i or 0), int(w or 0), int(r or 0), int(o or 0))
        )
        for it, n, c, i, w, r, o in rows
        if it is not None
    }


# SQLModel types its columns as plain values; they are instrumented attributes at runtime.
_NOT_LISTED = (Task.instruction, Task.requirements, Task.plan)


def list_tasks(engine: Engine, query: TaskQuery) -> TaskPage:
    """One page of tasks matching ``query``, in its order, with per-task iteration figures."""
    where = _task_filters(query)
    key = _sort_column(query.sort)
    descending = query.sort != "oldest"
    ident = col(Task.id)
    # The list shows no instruction, requirements or plan: not loading them cuts the query
    # to less than half (6.7 ms to 2.7 ms for a page of 10,000 tasks on SQLite).
    statement = (
        select(Task)
        .options(*(defer(cast(QueryableAttribute[Any], c)) for c in _NOT_LISTED))
        .where(*where)
    )
    if query.after is not None:
        value, last = query.after
        if key is None:
            statement = statement.where(ident < last if descending else ident > last)
        else:
            bound = _instant(value) if query.sort == "updated" else value
            statement = statement.where(or_(key < bound, and_(key == bound, ident < last)))
    order = [key.desc()] if key is not None else []
    order.append(ident.desc() if descending else ident.asc())
    statement = statement.order_by(*order).limit(query.limit + 1)
    with Session(engine) as session:
        tasks = list(session.exec(statement).all())
        total = session.exec(select(func.count()).select_from(Task).where(*where)).one()
        more = len(tasks) > query.limit
        tasks = tasks[: query.limit]
        ids = [t.id for t in tasks if t.id is not None]
        iterations = session.exec(
            select(col(Iteration.id), col(Iteration.task_id), col(Iteration.outcome))
            .where(col(Iteration.task_id).in_(ids))
            .order_by(col(Iteration.number))
        ).all()
        running = [int(i) for i, _, outcome in iterations if i is not None and outcome == "running"]
        live = _totals(session, running)
    per_task: dict[int, list[str]] = {}
    live_cost: dict[int, float] = {}
    live_tokens: dict[int, int] = {}
    for it_id, task_id, outcome in iterations:
        per_task.setdefault(task_id, []).append(outcome)
        if it_id in live:
            live_cost[task_id] = live_cost.get(task_id, 0.0) + live[it_id].cost
            live_tokens[task_id] = live_tokens.get(task_id, 0) + live[it_id].tokens.counted
    rows = []
    for t in tasks:
        assert t.id is not None
        its = per_task.get(t.id, [])
        rows.append(
            TaskRow(
                id=t.id,
                repository=t.repository,
                number=t.number,
                pr_number=t.pr_number,
                title=t.title,
                model=t.model,
                state=t.state,
                requester=t.requester,
                created_at=aware(t.created_at),
                updated_at=aware(t.updated_at),
                cost=t.cost + live_cost.get(t.id, 0.0),
                tokens=t.input_tokens + t.output_tokens + live_tokens.get(t.id, 0),
                iterations=len(its),
                running="running" in its,
                last_outcome=its[-1] if its else None,
            )
        )
    cursor = None
    if more and tasks:
        last_task = tasks[-1]
        assert last_task.id is not None
        cursor = encode_cursor(_sort_value(last_task, query.sort), last_task.id)
    return TaskPage(rows, int(total), cursor)


def _iteration_view(row: Iteration, totals: StepTotals) -> IterationView:
    assert row.id is not None
    # As bot.core.tasks.IterationRecord.feedback_kinds: the feedback's, then failed checks'.
    kinds: list[str] = []
    failed = [c for c in row.checks if isinstance(c, dict) and not c.get("passed")]
    for item in [*row.feedback, *failed]:
        kind = str(item.get("kind")) if isinstance(item, dict) else None
        if kind and kind not in kinds:
            kinds.append(kind)
    running = row.outcome == "running"
    return IterationView(
        id=row.id,
        number=row.number,
        trigger=row.trigger,
        feedback=[f for f in row.feedback if isinstance(f, dict)],
        feedback_kinds=kinds,
        commits=list(row.commits),
        checks=[c for c in row.checks if isinstance(c, dict)],
        red=row.red,
        green=row.green,
        outcome=row.outcome,
        summary=row.summary,
        error=row.error,
        # A concluded iteration's own figures are the record; a running one's are its steps.
        cost=totals.cost if running else row.cost,
        tokens=totals.tokens,
        steps=totals.steps,
        duration=row.duration,
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at) if row.finished_at else None,
        context=row.context if isinstance(row.context, dict) else None,
        attempts=AttemptSet.from_json(row.attempts),
    )


def task_repositories(engine: Engine) -> list[str]:
    """Every repository that has a task."""
    with Session(engine) as session:
        return sorted(session.exec(select(Task.repository).distinct()).all())


def task_repository(engine: Engine, task_id: int) -> str | None:
    """The repository of a task, None when there is no such task."""
    with Session(engine) as session:
        return session.exec(select(Task.repository).where(col(Task.id) == task_id)).first()


def task_detail(engine: Engine, task_id: int) -> TaskDetail | None:
    with Session(engine) as session:
        task = session.get(Task, task_id)
        if task is None:
            return None
        rows = session.exec(
            select(Iteration).where(Iteration.task_id == task_id).order_by(col(Iteration.number))
        ).all()
        totals = _totals(session, [r.id for r in rows if r.id is not None])
        session.expunge(task)
    views = [_iteration_view(r, totals.get(r.id or -1, StepTotals())) for r in rows]
    return TaskDetail(task, views)


def _step_view(row: AgentStep) -> StepView:
    assert row.id is not None
    return StepView(
        id=row.id,
        iteration_id=row.iteration_id,
        index=row.index,
        started_at=aware(row.started_at),
        duration=row.duration,
        model=row.model,
        text=row.text,
        stop_reason=row.stop_reason,
        tool_calls=[c for c in row.tool_calls if isinstance(c, dict)],
        tokens=Tokens(
            row.input_tokens, row.cache_write_tokens, row.cache_read_tokens, row.output_tokens
        ),
        cost=row.cost,
        feedback=row.feedback,
        error=row.error,
    )


def iteration_steps(
    engine: Engine, iteration_ids: Sequence[int], after_id: int = 0, limit: int = 500
) -> list[StepView]:
    """The recorded steps of these iterations (after step row ``after_id``), in order."""
    if not iteration_ids:
        return []
    with Session(engine) as session:
        rows = session.exec(
            select(AgentStep)
            .where(col(AgentStep.iteration_id).in_(iteration_ids), col(AgentStep.id) > after_id)
            .order_by(col(AgentStep.id))
            .limit(limit)
        ).all()
    return [_step_view(r) for r in rows]


def iteration(engine: Engine, task_id: int, number: int) -> IterationView | None:
    """One iteration of a task, with its step totals (what a live update refreshes)."""
    with Session(engine) as session:
        row = session.exec(
            select(Iteration).where(Iteration.task_id == task_id, Iteration.number == number)
        ).first()
        if row is None or row.id is None:
            return None
        totals = _totals(session, [row.id]).get(row.id, StepTotals())
    return _iteration_view(row, totals)


def _job_row(job: Job, delivery: Delivery | None) -> JobRow:
    assert job.id is not None
    payload = job.payload if isinstance(job.payload, dict) else {}
    number = payload.get("number")
    repository = payload.get("repository")
    return JobRow(
        id=job.id,
        kind=job.kind,
        status=job.status,
        event=delivery.event if delivery else _text(payload.get("event")),
        action=delivery.action if delivery else _text(payload.get("action")),
        repository=delivery.repository if delivery and delivery.repository else _text(repository),
        number=number if type(number) is int else None,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        lease_owner=job.lease_owner,
        created_at=aware(job.created_at),
        run_after=aware(job.run_after),
        last_error=job.last_error,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def list_jobs(engine: Engine, query: JobQuery, now: datetime | None = None) -> JobsView:
    """A page of jobs (newest first), the queue's depth, lease holders and refused
    deliveries."""
    now = now or datetime.now(UTC)
    where: list[ColumnElement[bool]] = []
    if query.state:
        where.append(col(Job.status) == query.state)
    if query.kind:
        where.append(col(Job.kind) == query.kind)
    if query.after is not None:
        where.append(col(Job.id) < query.after)
    with Session(engine) as session:
        found = session.exec(
            select(Job, Delivery)
            .join(Delivery, col(Job.delivery_id) == col(Delivery.id), isouter=True)
            .where(*where)
            .order_by(col(Job.id).desc())
            .limit(query.limit + 1)
        ).all()
        depth = {
            str(status): int(n)
            for status, n in session.exec(
                select(col(Job.status), func.count()).group_by(col(Job.status))
            ).all()
        }
        depth["ready"] = int(
            session.exec(
                select(func.count())
                .select_from(Job)
                .where(col(Job.status) == "queued", col(Job.run_after) <= now)
            ).one()
        )
        leases = session.exec(
            select(col(Job.lease_owner), col(Job.id)).where(
                col(Job.status) == "running",
                col(Job.lease_owner).is_not(None),
                col(Job.lease_expires) > now,
            )
        ).all()
        refused = session.exec(
            select(Delivery)
            .where(col(Delivery.outcome) != "queued")
            .order_by(col(Delivery.received_at).desc())
            .limit(20)
        ).all()
    more = len(found) > query.limit
    rows = [_job_row(job, delivery) for job, delivery in found[: query.limit]]
    return JobsView(
        rows=rows,
        next_after=rows[-1].id if more and rows else None,
        depth=depth,
        workers={str(owner): job_id for owner, job_id in leases if job_id is not None},
        refused=[
            DeliveryRow(
                d.id, d.event, d.action, d.repository, d.outcome, d.detail, aware(d.received_at)
            )
            for d in refused
        ],
    )


def console_actions(
    engine: Engine, target: str, target_id: int, limit: int = 20
) -> list[ConsoleAction]:
    """The latest actions taken from the console on one task or job, newest first."""
    with Session(engine) as session:
        return list(
            session.exec(
                select(ConsoleAction)
                .where(
                    col(ConsoleAction.target) == target, col(ConsoleAction.target_id) == target_id
                )
                .order_by(col(ConsoleAction.id).desc())
                .limit(limit)
            ).all()
        )
