"""The ``actions`` executor: tasks run on the target repository's own GitHub Actions runners.

Instead of running the agent in a local sandbox, the ``event`` job hands a decision that
runs the agent to :class:`OnActions` (the loop's Executor port, chosen by
:mod:`bot.bootstrap`), which calls :meth:`ActionsExecutor.submit`. That stores a
:class:`~bot.store.tables.RunnerTask` and dispatches ``vibe-runner.yml`` in the repository
(``workflow_dispatch`` with the task id and a one-time credential). On the runner,
``vibe action`` claims the task through :func:`make_runner_router`'s API with that credential,
gets the event to handle and a runner token, reports progress and finally its result.

The credential is a bearer secret sent through GitHub, so it is treated as exposed the
moment it is sent: only its SHA-256 is stored, it is compared in constant time, it is spent
by the first successful claim, and it expires if nobody claims it in time. The runner token
handed out by the claim is likewise stored as a hash and dies with the task.

Following the run: ``workflow_run`` webhooks (:meth:`ActionsExecutor.observe_run`) and, as a
fallback for missed deliveries, polling (:meth:`ActionsExecutor.follow`). The ``event`` job
that dispatched the task waits for it (:meth:`ActionsExecutor.wait`), so the issue's lane
stays busy as for a local run and the next event of the issue waits its turn; a job taken
over after a crash finds its task by the delivery key and follows it instead of
dispatching again. A run that vanishes
(deleted, never started, or completed without reporting a result) is dispatched again with a
fresh credential up to ``max_attempts`` times, then reported on the issue as failed, like a
local failure. One comment on the issue, found again by its hidden marker, shows where the
task stands. Every GitHub call goes through the adapter (:class:`bot.github.actions.RepoActions`
and :class:`bot.github.RepoClient`), with its pacing, backoff and redaction.

Workflow dispatch API: https://docs.github.com/en/rest/actions/workflows#create-a-workflow-dispatch-event
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Protocol, TypeVar

import structlog
from fastapi import APIRouter, Header, HTTPException, Request
from fastapi import Path as FastPath
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update
from starlette.concurrency import run_in_threadpool

from bot.core.config import RepoConfig
from bot.core.events import WorkflowRun, parse_event
from bot.core.markers import Marker, marker
from bot.core.redact import redact
from bot.github import GitHub
from bot.github.actions import DispatchError, RepoActions, RunInfo
from bot.loop.ports import Work
from bot.settings import Settings
from bot.store.engine import write_session, write_transaction
from bot.store.tables import RunnerTask, utcnow
from bot.store.tasks import RecordsError, export_records, import_records

log = structlog.get_logger(__name__)

RUNNER_WORKFLOW = "vibe-runner.yml"
TOKEN_PREFIX = "vibetask_"  # noqa: S105 - a prefix that makes leaked secrets findable
MAX_MESSAGE_CHARS = 2000
MAX_SUMMARY_CHARS = 20_000

_T = TypeVar("_T")
FINAL: frozenset[str] = frozenset({"succeeded", "failed"})


# ----------------------------------------------------------------------------- GitHub side


class ActionsApi(Protocol):
    """The GitHub Actions calls the executor makes for one repository."""

    def default_branch(self) -> str: ...

    def dispatch(self, workflow: str, ref: str, inputs: Mapping[str, str]) -> RunInfo | None:
        """Dispatch ``workflow``; the run if GitHub reports it. Raises DispatchError."""
        ...

    def run(self, run_id: int) -> RunInfo | None:
        """The run, or None if it does not exist (any more)."""
        ...

    def runs(self, workflow: str, since: datetime) -> list[RunInfo]:
        """Runs of ``workflow`` created since ``since`` (UTC, naive)."""
        ...


class Reporter(Protocol):
    """Posts or updates the executor's one comment on the task's issue or PR."""

    def __call__(self, repo: str, number: int, mark: Marker, body: str) -> None: ...


def run_title(task_id: int) -> str:
    """The ``run-name`` vibe-runner.yml gives its runs, so a run is found by its task."""
    return f"vibe task {task_id}"


# ------------------------------------------------------------------------------- secrets


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _matches(secret: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(_digest(secret), stored)


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


# ------------------------------------------------------------------------------ executor


class RunnerRejected(Exception):
    """A runner's request was rejected. The message is for the service's log only; the
    runner always gets the same answer, so a guess learns nothing about why."""


@dataclass(frozen=True)
class Claim:
    task_id: int
    repo: str
    token: str
    spec: dict[str, Any]
    records: dict[str, Any] | None


@dataclass(frozen=True)
class RunnerResult:
    outcome: str
    pr_number: int | None = None
    cost: float = 0.0
    summary: str = ""
    records: dict[str, Any] | None = None


class ActionsExecutor:
    """Dispatch, claim, progress, result and follow-up for tasks that run on Actions."""

    def __init__(
        self,
        engine: Engine,
        api_for: Callable[[str], ActionsApi],
        *,
        reporter: Reporter | None = None,
        workflow: str = RUNNER_WORKFLOW,
        max_attempts: int = 3,
        claim_ttl: timedelta = timedelta(minutes=30),
        run_deadline: timedelta = timedelta(hours=3),
        poll_interval: timedelta = timedelta(seconds=60),
        check_interval: timedelta = timedelta(seconds=1),
        secrets_: tuple[str, ...] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.api_for = api_for
        self.reporter = reporter
        self.workflow = workflow
        self.max_attempts = max_attempts
        self.claim_ttl = claim_ttl
        self.run_deadline = run_deadline
        self.poll_interval = poll_interval
        self.check_interval = check_interval
        self.secrets = secrets_
        self.clock = clock

    # ----------------------------------------------------------------------- dispatch

    def submit(
        self,
        repo: str,
        spec: Mapping[str, Any],
        *,
        number: int | None = None,
        key: str | None = None,
    ) -> int:
        """Record a task for ``repo`` and dispatch its first run; returns the task id.

        ``spec`` is what the runner gets when it claims (the event to handle). ``key`` (the
        delivery) makes this idempotent: a task with that key is returned, not dispatched
        again. A dispatch that fails for good marks the task failed and reports it; a
        transient failure is dispatched again by :meth:`follow`.
        """
        now = self.clock()
        with write_session(self.engine) as session:
            if key is not None:
                found = session.exec(select(RunnerTask).where(RunnerTask.key == key)).first()
                if found is not None and found.id is not None:
                    return found.id
            task = RunnerTask(
                key=key,
                repository=repo,
                number=number,
                spec=dict(spec),
                status="dispatched",
                attempt=0,
                max_attempts=self.max_attempts,
                created_at=now,
                updated_at=now,
            )
            session.add(task)
            session.flush()
            assert task.id is not None
            task_id = task.id
        self._dispatch(task_id, reason=None)
        return task_id

    def _dispatch(self, task_id: int, *, reason: str | None) -> None:
        """(Re)dispatch with a fresh credential, or give up after ``max_attempts``."""
        credential = new_secret()
        now = self.clock()
        with write_session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            if task is None or task.status in FINAL:
                return
            repo, attempt, maximum = task.repository, task.attempt + 1, task.max_attempts
            if task.attempt >= task.max_attempts:
                why = reason or "no run reported a result"
                gave_up: str | None = self._fail(task, f"gave up after {task.attempt} runs: {why}")
            else:
                gave_up = None
                task.attempt = attempt
                task.status = "dispatched"
                task.credential_hash = _digest(credential)
                task.credential_expires = now + self.claim_ttl
                task.token_hash = None
                task.run_id = None
                task.run_url = None
                task.claimed_at = None
                task.dispatched_at = now
                task.updated_at = now
                task.progress = reason
            session.add(task)
        if gave_up is not None:
            self._failed(task_id, gave_up)
            return
        failure: DispatchError | None = None
        run: RunInfo | None = None
        try:
            api = self.api_for(repo)
            ref = api.default_branch()
            run = api.dispatch(
                self.workflow, ref, {"task_id": str(task_id), "credential": credential}
            )
        except DispatchError as exc:
            failure = exc
        except Exception as exc:  # noqa: BLE001 - a network fault is a transient failure
            failure = DispatchError(f"{type(exc).__name__}: {exc}", permanent=False)
        if failure is not None:
            why = redact(str(failure), [*self.secrets, credential])[:500]
            log.warning("actions.dispatch_failed", task=task_id, error=why)
            failed = None
            with write_session(self.engine) as session:
                task = session.get(RunnerTask, task_id)
                if task is None:
                    return
                if failure.permanent:
                    failed = self._fail(task, f"cannot dispatch: {why}")
                elif task.status == "dispatched":
                    # Spend this attempt's credential; follow() dispatches again.
                    task.credential_hash = None
                    task.progress = f"dispatch failed: {why}"
                    session.add(task)
            if failed is not None:
                self._failed(task_id, failed)
            return
        if run is not None:
            self._attach_run(task_id, run)
        log.info("actions.dispatched", task=task_id, repo=repo, attempt=attempt)
        note = f" ({reason})" if reason else ""
        self._report(
            task_id,
            f"Running on GitHub Actions, attempt {attempt} of {maximum}{note}."
            + (f" [Workflow run]({run.html_url})" if run and run.html_url else ""),
        )

    def _attach_run(self, task_id: int, run: RunInfo) -> None:
        with write_session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            if task is not None and task.run_id is None:
                task.run_id = run.id
                task.run_url = run.html_url
                session.add(task)

    # ---------------------------------------------------------------------- runner API

    def claim(self, task_id: int, credential: str, run_id: int | None) -> Claim:
        """Spend the credential: the first valid claim wins, every other one is refused."""
        now = self.clock()
        with Session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            if task is None:
                raise RunnerRejected("no such task")
            valid = _matches(credential, task.credential_hash)
            if not valid:
                raise RunnerRejected("wrong or spent credential")
            if task.status != "dispatched":
                raise RunnerRejected(f"task is {task.status}")
            if task.credential_expires is None or task.credential_expires <= now:
                raise RunnerRejected("credential expired")
            attempt, repo, spec = task.attempt, task.repository, dict(task.spec)
            number = task.number
        token = new_secret()
        with write_transaction(self.engine) as conn:
            # Single use even under concurrent claims: only one UPDATE matches.
            result = conn.execute(
                update(RunnerTask)
                .where(
                    col(RunnerTask.id) == task_id,
                    col(RunnerTask.status) == "dispatched",
                    col(RunnerTask.attempt) == attempt,
                    col(RunnerTask.credential_hash) == _digest(credential),
                )
                .values(
                    status="claimed",
                    credential_hash=None,
                    credential_expires=None,
                    token_hash=_digest(token),
                    claimed_at=now,
                    last_seen_at=now,
                    updated_at=now,
                    # The run GitHub reported at dispatch wins over what a runner says.
                    run_id=func.coalesce(RunnerTask.run_id, run_id),
                    progress="claimed by the runner",
                )
            )
            if result.rowcount != 1:
                raise RunnerRejected("credential already spent")
        log.info("actions.claimed", task=task_id, run=run_id, attempt=attempt)
        records = export_records(self.engine, repo, number) if number is not None else None
        return Claim(task_id=task_id, repo=repo, token=token, spec=spec, records=records)

    def _authorised(self, session: Session, task_id: int, token: str) -> RunnerTask:
        task = session.get(RunnerTask, task_id)
        if task is None or not _matches(token, task.token_hash):
            raise RunnerRejected("wrong runner token")
        if task.status != "claimed":
            raise RunnerRejected(f"task is {task.status}")
        return task

    def progress(self, task_id: int, token: str, message: str) -> None:
        message = redact(message, self.secrets)[:MAX_MESSAGE_CHARS]
        with write_session(self.engine) as session:
            task = self._authorised(session, task_id, token)
            task.progress = message
            task.last_seen_at = self.clock()
            task.updated_at = task.last_seen_at
            session.add(task)

    def finish(self, task_id: int, token: str, result: RunnerResult) -> None:
        """The runner's last word. ``outcome == "failed"`` means the bot failed there and
        said so on the issue itself, so it ends the task without another run."""
        now = self.clock()
        with Session(self.engine) as session:
            own = self._authorised(session, task_id, token)
            repo, number = own.repository, own.number
        if result.records is not None and number is not None:
            # Only the task this runner was given: the service's task of that issue or PR
            # if it has one, else a new task on that number.
            known = export_records(self.engine, repo, number)
            expected = int(known["task"]["number"]) if known is not None else number
            import_records(self.engine, repo, result.records, number=expected)
        with write_session(self.engine) as session:
            task = self._authorised(session, task_id, token)
            task.status = "failed" if result.outcome == "failed" else "succeeded"
            task.outcome = result.outcome[:40]
            task.pr_number = result.pr_number
            task.cost = max(result.cost, 0.0)
            task.summary = redact(result.summary, self.secrets)[:MAX_SUMMARY_CHARS]
            task.token_hash = None
            task.last_seen_at = now
            task.finished_at = now
            task.updated_at = now
            session.add(task)
        pr = f", pull request #{result.pr_number}" if result.pr_number else ""
        self._report(
            task_id, f"Finished on GitHub Actions: {result.outcome}{pr}, ${result.cost:.2f}."
        )

    # -------------------------------------------------------------------- following

    def observe_run(self, run: RunInfo) -> int | None:
        """Apply a ``workflow_run`` webhook; returns the task it belonged to, if any.

        The run must come from the task's own repository: any repository the App is
        installed in can name a run "vibe task 5", and such a run must not settle (or be
        attached to) another repository's task 5."""
        task_id = _task_of(run)
        if task_id is None or run.repository is None:
            return None
        with Session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            if task is None or task.repository.casefold() != run.repository.casefold():
                return None
            if task.status in FINAL:
                return task_id
            if task.run_id is not None and task.run_id != run.id:
                return task_id  # an older attempt's run
        self._attach_run(task_id, run)
        if run.completed:
            self._settle(task_id, run)
        return task_id

    def follow(self, task_id: int) -> bool:
        """Poll GitHub for the task's run; True while the task still needs following."""
        with Session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            if task is None or task.status in FINAL:
                return False
            repo, run_id, status = task.repository, task.run_id, task.status
            dispatched_at, expires = task.dispatched_at, task.credential_expires
            has_credential = task.credential_hash is not None
        now = self.clock()
        if status == "dispatched" and not has_credential:
            self._dispatch(task_id, reason="the previous dispatch failed")
            return self._still_open(task_id)
        api = self.api_for(repo)
        run: RunInfo | None = None
        if run_id is not None:
            run = api.run(run_id)
            if run is None:
                self._dispatch(task_id, reason="its workflow run vanished")
                return self._still_open(task_id)
        elif dispatched_at is not None:
            title = run_title(task_id)
            since = dispatched_at - timedelta(minutes=2)
            found = [r for r in api.runs(self.workflow, since) if r.title == title]
            if found:
                run = max(found, key=lambda r: r.id)
                self._attach_run(task_id, run)
        if run is not None and run.completed:
            self._settle(task_id, run)
        elif status == "dispatched" and expires is not None and expires <= now:
            self._dispatch(task_id, reason="no runner claimed it in time")
        elif dispatched_at is not None and now - dispatched_at > self.run_deadline:
            self._dispatch(task_id, reason="its run took longer than the deadline")
        return self._still_open(task_id)

    def _settle(self, task_id: int, run: RunInfo) -> None:
        """A run completed: if its task never reported a result, the run failed it."""
        with Session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            if task is None or task.status in FINAL or task.run_id != run.id:
                return
        reason = f"its workflow run ended {run.conclusion or 'without a conclusion'}"
        self._dispatch(task_id, reason=reason + " before reporting a result")

    def _still_open(self, task_id: int) -> bool:
        with Session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            return task is not None and task.status not in FINAL

    def _fail(self, task: RunnerTask, why: str) -> str:
        """Mark ``task`` failed (its session writes it); returns the reason for
        :meth:`_failed` to report once that session has ended."""
        now = self.clock()
        task.status = "failed"
        task.outcome = "failed"
        task.summary = redact(why, self.secrets)[:MAX_SUMMARY_CHARS]
        task.credential_hash = None
        task.token_hash = None
        task.finished_at = now
        task.updated_at = now
        return why

    def _failed(self, task_id: int, why: str) -> None:
        log.warning("actions.failed", task=task_id, reason=why)
        self._report(task_id, f"The task failed on GitHub Actions: {why}.")

    def _report(self, task_id: int, text: str) -> None:
        if self.reporter is None:
            return
        with Session(self.engine) as session:
            task = session.get(RunnerTask, task_id)
            if task is None or task.number is None:
                return
            repo, number = task.repository, task.number
        body = redact(text, self.secrets)
        try:
            self.reporter(repo, number, marker("status", runner=task_id), body)
        except Exception as exc:  # noqa: BLE001 - a failed comment must not lose the task
            log.warning("actions.report_failed", task=task_id, error=str(exc))

    # ------------------------------------------------------------------- waiting

    def wait(self, task_id: int, cancel: threading.Event) -> RunnerTask | None:
        """Follow the task until it ends or ``cancel`` is set; the task as it stands.

        GitHub is polled every ``poll_interval`` (the fallback for missed webhooks); the
        task's row is read every ``check_interval``, so a result or a ``workflow_run``
        webhook handled by any worker (of this process or another) ends the wait at once."""
        poll = self.poll_interval.total_seconds()
        check = min(self.check_interval.total_seconds(), poll)
        next_poll = time.monotonic()
        while not cancel.is_set():
            now = time.monotonic()
            if now >= next_poll:
                if not self.follow(task_id):
                    break
                next_poll = now + poll
            elif not self._still_open(task_id):
                break
            cancel.wait(min(check, max(next_poll - time.monotonic(), 0.0)))
        return self.get(task_id)

    def get(self, task_id: int) -> RunnerTask | None:
        with Session(self.engine) as session:
            return session.get(RunnerTask, task_id)


def _task_of(run: RunInfo) -> int | None:
    prefix = run_title(0)[:-1]
    if not run.title.startswith(prefix):
        return None
    rest = run.title[len(prefix) :]
    return int(rest) if rest.isdigit() and len(rest) < 19 else None


def run_of(event: WorkflowRun) -> RunInfo:
    """The run a parsed ``workflow_run`` webhook reports."""
    return RunInfo(
        id=event.run_id,
        status=event.status,
        conclusion=event.conclusion,
        title=event.title,
        html_url=event.html_url,
        repository=event.repo.full_name,
    )


def run_from_payload(payload: Mapping[str, Any]) -> RunInfo | None:
    """The run in a ``workflow_run`` webhook payload, or None if it is malformed."""
    event = parse_event("workflow_run", payload)
    return run_of(event) if isinstance(event, WorkflowRun) else None


# ---------------------------------------------------------------------------- HTTP API


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClaimBody(_Body):
    run_id: int | None = Field(default=None, ge=1)


class ProgressBody(_Body):
    message: str = Field(max_length=MAX_MESSAGE_CHARS)


class ResultBody(_Body):
    outcome: str = Field(min_length=1, max_length=40, pattern=r"^[a-z_]+$")
    pr_number: int | None = Field(default=None, ge=1)
    cost: float = Field(default=0.0, ge=0, le=1_000_000)
    summary: str = Field(default="", max_length=MAX_SUMMARY_CHARS)
    records: dict[str, Any] | None = None


MAX_REQUEST_BYTES = 64 * 1024
MAX_RESULT_BYTES = 8 * 1024 * 1024  # the result carries the task's records back
REFUSED = "credential refused"


def _bearer(authorization: str | None) -> str:
    if authorization is None or not authorization.startswith("Bearer "):
        raise HTTPException(401, "missing bearer credential")
    value = authorization[len("Bearer ") :].strip()
    if not value or len(value) > 200:
        raise HTTPException(401, "missing bearer credential")
    return value


_M = TypeVar("_M", bound=BaseModel)


async def _body(request: Request, model: type[_M], cap: int = MAX_REQUEST_BYTES) -> _M:
    """The request body as ``model``: capped while streaming, then validated."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise HTTPException(413, f"body larger than {cap} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > cap:
            raise HTTPException(413, f"body larger than {cap} bytes")
    try:
        return model.model_validate_json(bytes(raw) or b"{}")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise HTTPException(422, problems[:1000]) from None


def make_runner_router(executor: ActionsExecutor) -> APIRouter:
    """``POST /api/runner/tasks/{id}/claim|progress|result`` for ``vibe action`` on a runner.

    Every refusal (unknown task, wrong, spent or expired credential or token) is the same
    403, so a caller learns nothing about which it was; the service log says.
    """
    router = APIRouter(prefix="/api/runner", tags=["runner"])

    async def call(task_id: int, what: str, fn: Callable[[], _T]) -> _T:
        try:
            return await run_in_threadpool(fn)
        except RunnerRejected as exc:
            log.warning("actions.refused", task=task_id, call=what, reason=str(exc))
            raise HTTPException(403, REFUSED) from None

    @router.post("/tasks/{task_id}/claim")
    async def claim(
        request: Request,
        task_id: Annotated[int, FastPath(ge=1, le=2**62)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        credential = _bearer(authorization)
        body = await _body(request, ClaimBody)
        granted = await call(
            task_id, "claim", lambda: executor.claim(task_id, credential, body.run_id)
        )
        return {
            "task_id": granted.task_id,
            "repository": granted.repo,
            "token": granted.token,
            "spec": granted.spec,
            "records": granted.records,
        }

    @router.post("/tasks/{task_id}/progress")
    async def progress(
        request: Request,
        task_id: Annotated[int, FastPath(ge=1, le=2**62)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, str]:
        token = _bearer(authorization)
        body = await _body(request, ProgressBody)
        await call(task_id, "progress", lambda: executor.progress(task_id, token, body.message))
        return {"status": "ok"}

    @router.post("/tasks/{task_id}/result")
    async def result(
        request: Request,
        task_id: Annotated[int, FastPath(ge=1, le=2**62)],
        authorization: Annotated[str | None, Header()] = None,
    ) -> dict[str, str]:
        token = _bearer(authorization)
        body = await _body(request, ResultBody, MAX_RESULT_BYTES)
        outcome = RunnerResult(body.outcome, body.pr_number, body.cost, body.summary, body.records)
        try:
            await call(task_id, "result", lambda: executor.finish(task_id, token, outcome))
        except RecordsError as exc:
            raise HTTPException(422, f"records: {exc}") from None
        return {"status": "ok"}

    return router


# ------------------------------------------------------------------------ service wiring


def service_executor(
    settings: Settings, engine: Engine, hub: GitHub | None = None
) -> ActionsExecutor:
    """The executor of the webhook service: GitHub through the configured credentials (the
    App needs ``actions: write``), every call through the adapter, one status comment per
    task."""
    made: list[GitHub] = [hub] if hub is not None else []

    def github() -> GitHub:
        if not made:
            made.append(GitHub.from_settings(settings))
        return made[0]

    def report(repo: str, number: int, mark: Marker, body: str) -> None:
        github().repo(repo).upsert_comment(number, mark, body)

    return ActionsExecutor(
        engine,
        lambda repo: RepoActions(github().repo(repo)),
        reporter=report,
        max_attempts=settings.max_attempts,
        poll_interval=timedelta(seconds=settings.actions_poll_seconds),
        secrets_=tuple(settings.secret_values),
    )


def uses_actions(settings: Settings, config: RepoConfig) -> bool:
    """The repository's ``executor`` wins over the operator's default."""
    return (config.executor or settings.executor) == "actions"


class OnActions:
    """:class:`bot.loop.ports.Executor` on the repository's Actions runners.

    The event goes to a runner, where ``vibe action`` handles it as this job would, and the
    job waits for it, so the issue's lane stays busy as for a local run and the next event
    of the issue waits its turn. A job taken over after a crash finds its task by the
    work's key and follows it instead of dispatching again."""

    def __init__(self, executor: ActionsExecutor, cancel: threading.Event) -> None:
        self.executor = executor
        self.cancel = cancel

    def run(self, work: Work, here: Callable[[], str]) -> str:
        spec = {"event_name": work.event_name, "payload": work.payload}
        task_id = self.executor.submit(work.repo, spec, number=work.number, key=work.key)
        final = self.executor.wait(task_id, self.cancel)
        status = final.status if final is not None else "gone"
        log.info("actions.waited", task=task_id, status=status)
        return f"on actions: task {task_id} {status}"
