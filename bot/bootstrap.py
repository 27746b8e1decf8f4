"""The composition root: which concrete thing stands behind each port.

Which handler runs which job kind (both ``vibe serve`` and ``vibe worker`` use this map),
and the loop's environment per job.

``probe`` is an operator's liveness check of the pipeline (``vibe jobs probe``): it waits the
requested seconds, watching its cancel event, and succeeds.

``event`` jobs need GitHub: without credentials no worker claims them, so they wait, stored,
until a worker that has credentials starts (a 202 means the work will happen; ``GET /`` and
the start-up message say what is missing).
"""

from __future__ import annotations

from bot.agent.adapter import ClaudeAgent
from bot.context.adapter import ProjectContext
from bot.core import events as ev
from bot.core.config import RepoConfig
from bot.github import GitHub
from bot.github.repository import GitHubRepository
from bot.jobs.queue import Handler, JobContext
from bot.loop.env import Env
from bot.loop.handlers import Repository
from bot.sandbox.bwrap import make_sandbox
from bot.settings import Settings
from bot.workspace.checkout import GitWorkspaces
from bot.workspace.git import WorkspaceCache

MAX_PROBE_SECONDS = 600.0


def probe(ctx: JobContext) -> None:
    seconds = ctx.payload.get("seconds", 0)
    wait = min(float(seconds), MAX_PROBE_SECONDS) if isinstance(seconds, int | float) else 0.0
    ctx.cancel.wait(wait)


def build_handlers(settings: Settings) -> dict[str, Handler]:
    # Runs the agent locally, or on the repository's Actions runners (executor: actions).
    from bot.executors.actions.executor import event_handler

    handlers: dict[str, Handler] = {"probe": probe}
    if settings.has_github_credentials:
        handlers["event"] = event_handler(settings)
    return handlers


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

    def env(self, ctx: JobContext, repository: Repository) -> Env:
        configs: dict[str, RepoConfig] = {}
        return Env(
            settings=self.settings,
            engine=ctx.engine,
            forge=repository,
            prs=repository,
            workspaces=GitWorkspaces(
                self.cache,
                repository.repo,
                repository.clone_url(),
                repository.git_credentials,
                lambda ref: configs.get(ref, RepoConfig()),
            ),
            agent=ClaudeAgent(
                self.settings, self.sandbox, ctx.engine, f"job-{ctx.job_id}-{ctx.attempt}"
            ),
            sandbox=self.sandbox,
            context=ProjectContext(
                self.settings.context_budget_tokens, self.settings.data_dir / "context-index"
            ),
            cancel=ctx.cancel,
            status_interval=self.settings.status_update_seconds,
            attempt=ctx.attempt,
            max_attempts=self.settings.max_attempts,
            configs=configs,
        )
