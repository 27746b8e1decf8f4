"""The composition root: which concrete thing stands behind each port.

Which handler runs which job kind (both ``vibe serve`` and ``vibe worker`` use this map),
the job boundary (:func:`job_verdict`: every layer's error as retry-at, dead or done), the
worker that runs them, and the loop's environment per job.

``prune`` deletes what is older than the retention (:mod:`bot.store.prune`); like the
catch-up it queues its next run first, one waiting at a time.

``probe`` is an operator's liveness check of the pipeline (``vibe jobs probe``): it waits the
requested seconds, watching its cancel event, and succeeds.

``event`` jobs need GitHub: without credentials (or with a private key that does not parse)
no worker claims them, so they wait, stored, until a worker that has credentials starts (a
202 means the work will happen; ``GET /`` and the start-up message say what is missing).

:class:`GitHubSetup` asks GitHub what the credentials are worth (``GET /app`` or
``GET /user``): each gap is one line of the missing list, and the answer names the bot
(``<slug>[bot]``, the token's user) and, by default, whom it works for (the App's owner).
Each ``event`` job runs with settings completed by it (:func:`identified`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

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
from bot.github.access import AppCheck, needs
from bot.github.auth import AppTokens, AuthKind
from bot.github.hook_deliveries import AppHookDeliveries
from bot.github.repository import GitHubRepository
from bot.github.retry import GitHubRequestError, GitHubUnavailable
from bot.ingest import catch_up
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
    schedule_single,
)
from bot.loop.ci import CI_JOB
from bot.loop.console import CONSOLE_JOB
from bot.loop.env import Env
from bot.loop.errors import AgentUnavailable
from bot.loop.handlers import (
    IN_PROCESS,
    EventJob,
    Repository,
    ci_handler,
    console_handler,
    event_handler,
)
from bot.loop.ports import CiChecks, Executor, Forge, PullRequests, Reviews, TaskStore
from bot.observability import job_finished
from bot.sandbox.bwrap import Sandbox, make_sandbox
from bot.settings import Settings
from bot.store import prune
from bot.store.ci import SqlCiRounds
from bot.store.tables import utcnow
from bot.store.tasks import SqlTaskStore
from bot.workspace.checkout import Credentials, GitWorkspaces
from bot.workspace.git import WorkspaceCache

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


class GitHubSetup:
    """The process's GitHub adapter and the check of its credentials, shared by the jobs,
    ``GET /`` and ``/readyz`` (the adapter reuses GitHub's answer for a minute)."""

    def __init__(self, settings: Settings, *, actions: bool = False) -> None:
        self.settings = settings
        self._actions = actions  # the credentials are the Actions GITHUB_TOKEN
        self._hub: GitHub | None = None
        self._lock = threading.Lock()

    def hub(self) -> GitHub:
        """The adapter; ValueError or OSError when the credentials cannot be read."""
        with self._lock:
            if self._hub is None:
                self._hub = GitHub.from_settings(self.settings, actions=self._actions)
            return self._hub

    def credentials_problem(self) -> str | None:
        """Why configured credentials cannot even be loaded (an unreadable or garbage
        private key), without asking GitHub."""
        try:
            self.hub()
        except (ValueError, OSError) as exc:
            return f"GitHub credentials: {exc}"
        return None

    def check(self) -> AppCheck | None:
        """GitHub's word on the credentials; ``None`` when none are configured."""
        if not self.settings.has_github_credentials:
            return None
        problem = self.credentials_problem()
        if problem is not None:
            kind: AuthKind = "app" if self.settings.github_app_id is not None else "token"
            return AppCheck(kind, None, None, (problem,))
        return self.hub().app_check(needs(self.settings.executor))

    def missing(self) -> list[str]:
        """The settings' missing list plus each gap GitHub reports."""
        check = self.check()
        return self.settings.missing() + (list(check.findings) if check else [])

    def identified(self) -> Settings:
        """The settings an ``event`` job runs with (:func:`identified`)."""
        check = self.check()
        if check is None:
            return self.settings
        return identified(self.settings, check)


def identified(settings: Settings, check: AppCheck) -> Settings:
    """``settings`` with the bot's login as GitHub says (``VIBE_BOT_LOGIN`` still wins) and,
    unless an allow-list is set, the App's owner (the token's user) as the one allowed
    owner. A default login would silently disable self-detection, mentions and plan edits,
    so without GitHub's answer the job waits (GitHubUnavailable: retried later)."""
    if check.login is None:
        raise GitHubUnavailable("GitHub did not say who the bot is: " + "; ".join(check.findings))
    update: dict[str, object] = {}
    if settings.bot_login is None:
        update["bot_login"] = check.login
    if not (settings.allowed_owners or settings.allowed_repositories) and check.owner:
        update["allowed_owners"] = [check.owner]
    return settings.model_copy(update=update)


def event_job(
    settings: Callable[[], Settings], engine: Engine, run: Callable[[EventJob], None]
) -> Handler:
    """The ``event`` job: the delivery it was queued for, handed to the loop's ``run`` with
    the ``settings()`` of this moment (the bot's identity as GitHub says)."""

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
                settings=settings(),
                engine=engine,
            )
        )

    return handler


def loop_job(
    kind: str,
    use_case: Callable[[EventJob], None],
    settings: Callable[[], Settings],
    engine: Engine,
) -> Handler:
    """A job the bot queued for itself (``ci``: :mod:`bot.loop.ci`, the bot's PR head
    decided from its CI; ``console``: :mod:`bot.loop.console`, a retry asked for in the
    console), run by ``use_case`` as an event without a delivery."""

    def handler(ctx: JobContext) -> None:
        use_case(
            EventJob(
                event_name=kind,
                event_payload=ctx.payload,
                delivery_id=None,
                job_id=ctx.job_id,
                attempt=ctx.attempt,
                cancel=ctx.cancel,
                settings=settings(),
                engine=engine,
            )
        )

    return handler


def build_handlers(
    settings: Settings, engine: Engine, setup: GitHubSetup | None = None
) -> dict[str, Handler]:
    setup = setup or GitHubSetup(settings)
    handlers: dict[str, Handler] = {"probe": probe, PRUNE_KIND: prune_job(settings, engine)}
    if settings.has_github_credentials and setup.credentials_problem() is None:
        wiring = ServiceWiring(settings, setup)
        handlers["event"] = event_job(setup.identified, engine, event_handler(wiring))
        handlers[CI_JOB] = loop_job(CI_JOB, ci_handler(wiring), setup.identified, engine)
        handlers[CONSOLE_JOB] = loop_job(
            CONSOLE_JOB, console_handler(wiring), setup.identified, engine
        )
        tokens = setup.hub().tokens
        if isinstance(tokens, AppTokens):  # only an App has a delivery log to read
            handlers[catch_up.KIND] = catch_up_job(engine, setup.hub(), tokens)
    return handlers


def catch_up_job(engine: Engine, hub: GitHub, tokens: AppTokens) -> Handler:
    """The ``catch_up`` job (:mod:`bot.ingest.catch_up`): queue the next run, then ask
    GitHub to redeliver what we missed."""
    log_of_deliveries = AppHookDeliveries(tokens)

    def handler(ctx: JobContext) -> None:
        catch_up.schedule(engine)
        catch_up.catch_up(engine, log_of_deliveries, hub.clock.now())

    return handler


PRUNE_KIND = "prune"
PRUNE_LANE = "store:prune"


def prune_job(settings: Settings, engine: Engine) -> Handler:
    """The ``prune`` job: queue the next run, then delete what is older than the retention
    (``VIBE_RETENTION_DAYS``), never less than the catch-up's window: a delivery pruned
    while GitHub's log still shows it would be asked for again and run twice."""
    keep = max(timedelta(days=settings.retention_days), timedelta(seconds=catch_up.WINDOW_SECONDS))

    def handler(ctx: JobContext) -> None:
        schedule_prune(engine, settings.prune_interval_seconds)
        prune.prune(engine, utcnow() - keep, cancel=ctx.cancel)

    return handler


def schedule_prune(engine: Engine, delay: float) -> bool:
    """Queue the next ``prune`` in ``delay`` seconds unless one is already waiting; True if
    this call queued it. On PostgreSQL an advisory lock makes the check and the insert one
    step (SQLite's ``BEGIN IMMEDIATE`` does), so processes starting together queue one."""
    return schedule_single(engine, PRUNE_KIND, PRUNE_LANE, delay)


def build_queue(settings: Settings, engine: Engine) -> Queue:
    return Queue(engine, lease_seconds=settings.lease_seconds, secrets=settings.secret_values)


def build_worker(
    settings: Settings,
    queue: Queue,
    *,
    handlers: Mapping[str, Handler] | None = None,
    concurrency: int | None = None,
    setup: GitHubSetup | None = None,
) -> Worker:
    """The worker pool of ``vibe serve`` and ``vibe worker``: the handler map (unless a
    test replaces it) behind the job boundary. A pool that runs the catch-up of missed
    deliveries queues its first run now (a no-op when one is waiting): what GitHub could
    not deliver while no worker ran is asked for at start. Pruning is not urgent: its
    first run is queued an interval on (a no-op when one is waiting). Every job's run time
    is counted in the process's metrics (``vibe_job_duration_seconds``), in ``vibe serve``
    and ``vibe worker`` alike."""
    handlers = build_handlers(settings, queue.engine, setup) if handlers is None else handlers
    if catch_up.KIND in handlers:
        catch_up.schedule(queue.engine, delay=0.0)
    if PRUNE_KIND in handlers:
        schedule_prune(queue.engine, settings.prune_interval_seconds)
    return Worker(
        queue,
        handlers,
        judge=job_verdict,
        concurrency=concurrency or settings.workers,
        heartbeat_seconds=settings.heartbeat_seconds,
        on_finished=job_finished,
    )


class ServiceWiring:
    """Builds the loop's environment per job for the webhook service (``event`` jobs)."""

    def __init__(self, settings: Settings, setup: GitHubSetup | None = None) -> None:
        self.settings = settings
        self.setup = setup or GitHubSetup(settings)
        self.sandbox = make_sandbox(settings)
        self.cache = WorkspaceCache.from_settings(settings, self.sandbox)

    @property
    def hub(self) -> GitHub:
        return self.setup.hub()

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
            ci=repository if isinstance(repository, GitHubRepository) else None,
            reviews=repository if isinstance(repository, GitHubRepository) else None,
        )


def loop_env(
    settings: Settings,
    engine: Engine,
    *,
    forge: Forge,
    prs: PullRequests | None,
    clone_url: str,
    credentials: Credentials,
    run_key: str,
    sandbox: Sandbox | None = None,
    cache: WorkspaceCache | None = None,
    cancel: threading.Event | None = None,
    attempt: int = 1,
    status_interval: float | None = None,
    timeline: Callable[[str], None] | None = None,
    ci: CiChecks | None = None,
    reviews: Reviews | None = None,
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
        ci=ci,
        ci_rounds=SqlCiRounds(engine),
        reviews=reviews,
    )
