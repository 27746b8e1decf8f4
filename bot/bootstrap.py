"""The composition root: which concrete thing stands behind each port.

Which handler runs which job kind (both ``vibe serve`` and ``vibe worker`` use this map),
the job boundary (:func:`job_verdict`: every layer's error as retry-at, dead or done), the
worker that runs them, and the loop's environment per job.

``probe`` is an operator's liveness check of the pipeline (``vibe jobs probe``): it waits the
requested seconds, watching its cancel event, and succeeds.

``event`` jobs need GitHub: without credentials no worker claims them, so they wait, stored,
until a worker that has credentials starts (a 202 means the work will happen; ``GET /`` and
the start-up message say what is missing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from sqlalchemy.engine import Engine

from bot.agent.adapter import ClaudeAgent
from bot.context.adapter import ProjectContext
from bot.core import events as ev
from bot.core.config import RepoConfig
from bot.core.errors import Declined
from bot.executors.actions.executor import (
    ActionsExecutor,
    OnActions,
    run_of,
    service_executor,
    uses_actions,
)
from bot.github import GitHub
from bot.github.repository import GitHubRepository
from bot.github.retry import GitHubRequestError, GitHubUnavailable
from bot.ingest.deliveries import UnknownDelivery, stored_delivery
from bot.jobs.queue import (
    Dead,
    Handler,
    JobContext,
    Queue,
    Retry,
    Verdict,
    Worker,
    describe,
)
from bot.loop.env import Env
from bot.loop.errors import AgentUnavailable
from bot.loop.handlers import IN_PROCESS, EventJob, Repository, event_handler
from bot.loop.ports import Executor, Forge, PullRequests, TaskStore
from bot.sandbox.bwrap import Sandbox, make_sandbox
from bot.settings import Settings
from bot.store.tasks import SqlTaskStore
from bot.workspace.checkout import GitWorkspaces
from bot.workspace.git import GitCredentials, WorkspaceCache

MAX_PROBE_SECONDS = 600.0


def probe(ctx: JobContext) -> None:
    seconds = ctx.payload.get("seconds", 0)
    wait = min(float(seconds), MAX_PROBE_SECONDS) if isinstance(seconds, int | float) else 0.0
    ctx.cancel.wait(wait)


def _epoch(at: float | None) -> datetime | None:
    return None if at is None else datetime.fromtimestamp(at, UTC)


def job_verdict(exc: Exception) -> Verdict:
    """The job boundary (STYLE.md item 16): what a handler's exception means for its job.

    DESIGN.md section 5: GitHub's and the model API's rate limits are honoured (the job
    comes back when they said, not before); a request that cannot succeed (422, 403, 404)
    is not retried. Any other failure (the loop interrupted by a shutdown included) may
    pass: it is retried with backoff until the job's attempts are spent.
    """
    reason = describe(exc)
    match exc:
        case GitHubUnavailable(retry_at=at) | AgentUnavailable(retry_at=at):
            return Retry(reason, at=_epoch(at))
        case GitHubRequestError() | UnknownDelivery():
            return Dead(reason)
        case Declined():
            # A refusal the loop did not get to post: asking again gets the same answer.
            return Dead(reason)
    return Retry(reason)


def event_job(settings: Settings, engine: Engine, run: Callable[[EventJob], None]) -> Handler:
    """The ``event`` job: the delivery it was queued for, handed to the loop's ``run``."""

    def handler(ctx: JobContext) -> None:
        delivery = stored_delivery(engine, ctx.delivery_id)
        run(
            EventJob(
                event_name=delivery.event_name,
                event_payload=delivery.payload,
                delivery_id=delivery.id,
                job_id=ctx.job_id,
                attempt=ctx.attempt,
                cancel=ctx.cancel,
                settings=settings,
                engine=engine,
            )
        )

    return handler


def build_handlers(settings: Settings, engine: Engine) -> dict[str, Handler]:
    handlers: dict[str, Handler] = {"probe": probe}
    if settings.has_github_credentials:
        handlers["event"] = event_job(settings, engine, event_handler(ServiceWiring(settings)))
    return handlers


def build_queue(settings: Settings, engine: Engine) -> Queue:
    return Queue(engine, lease_seconds=settings.lease_seconds, secrets=settings.secret_values)


def build_worker(
    settings: Settings,
    queue: Queue,
    *,
    handlers: Mapping[str, Handler] | None = None,
    concurrency: int | None = None,
    on_finished: Callable[[str, str, float], None] | None = None,
) -> Worker:
    """The worker pool of ``vibe serve`` and ``vibe worker``: the handler map (unless a
    test replaces it) behind the job boundary."""
    return Worker(
        queue,
        build_handlers(settings, queue.engine) if handlers is None else handlers,
        judge=job_verdict,
        concurrency=concurrency or settings.workers,
        heartbeat_seconds=settings.heartbeat_seconds,
        on_finished=on_finished,
    )


class ServiceWiring:
    """Builds the loop's environment per job for the webhook service (``event`` jobs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._hub: GitHub | None = None
        self.sandbox = make_sandbox(settings)
        self.cache = WorkspaceCache.from_settings(settings, self.sandbox)

    @property
    def hub(self) -> GitHub:
        if self._hub is None:
            self._hub = GitHub.from_settings(self.settings)
        return self._hub

    def repository(self, repo: ev.Repo, installation_id: int | None) -> GitHubRepository:
        del installation_id  # the App's token source finds the installation per repository
        return GitHubRepository(self.hub.repo(repo.full_name))

    def judge(self, exc: Exception) -> Verdict:
        return job_verdict(exc)

    def tasks(self, job: EventJob) -> TaskStore:
        return SqlTaskStore(job.engine)

    def actions(self, job: EventJob) -> ActionsExecutor:
        return service_executor(self.settings, job.engine, self.hub)

    def executor(self, job: EventJob, config: RepoConfig) -> Executor:
        """Runs the agent here, or on the repository's Actions runners (``executor:
        actions``; the repository's config wins over the operator's default)."""
        if uses_actions(self.settings, config):
            return OnActions(self.actions(job), job.cancel)
        return IN_PROCESS

    def follow_run(self, job: EventJob, run: ev.WorkflowRun) -> str:
        """A ``workflow_run`` webhook: the Actions executor applies it to its task."""
        task_id = self.actions(job).observe_run(run_of(run))
        return "ignored: a run of no task" if task_id is None else f"workflow_run: task {task_id}"

    def env(self, ctx: EventJob, repository: Repository) -> Env:
        return loop_env(
            self.settings,
            ctx.engine,
            forge=repository,
            prs=repository,
            clone_url=repository.clone_url(),
            credentials=repository.git_credentials,
            run_key=f"job-{ctx.job_id}-{ctx.attempt}",
            sandbox=self.sandbox,
            cache=self.cache,
            cancel=ctx.cancel,
            attempt=ctx.attempt,
        )


def loop_env(
    settings: Settings,
    engine: Engine,
    *,
    forge: Forge,
    prs: PullRequests | None,
    clone_url: str,
    credentials: Callable[[], GitCredentials | None],
    run_key: str,
    sandbox: Sandbox | None = None,
    cache: WorkspaceCache | None = None,
    cancel: threading.Event | None = None,
    attempt: int = 1,
    status_interval: float | None = None,
    timeline: Callable[[str], None] | None = None,
) -> Env:
    """The loop's environment, the one place that says which adapter stands behind each of
    its ports. The service's jobs (:meth:`ServiceWiring.env`), ``vibe action`` and ``vibe
    run`` (a terminal forge, a ``file://`` clone URL, no pull requests) all build here."""
    sandbox = sandbox or make_sandbox(settings)
    cache = cache or WorkspaceCache.from_settings(settings, sandbox)
    configs: dict[str, RepoConfig] = {}
    return Env(
        settings=settings,
        tasks=SqlTaskStore(engine),
        forge=forge,
        prs=prs,
        workspaces=GitWorkspaces(
            cache, forge.repo, clone_url, credentials, lambda ref: configs.get(ref, RepoConfig())
        ),
        agent=ClaudeAgent(settings, sandbox, engine, run_key),
        sandbox=sandbox,
        context=ProjectContext(settings.context_budget_tokens, settings.data_dir / "context-index"),
        cancel=cancel or threading.Event(),
        status_interval=(
            settings.status_update_seconds if status_interval is None else status_interval
        ),
        attempt=attempt,
        max_attempts=settings.max_attempts,
        timeline=timeline,
        configs=configs,
    )
