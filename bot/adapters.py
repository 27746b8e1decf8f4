"""The loop's ports (:mod:`bot.ports`) over the real modules: agent and context engine.

Thin wiring only (STYLE.md item 6); the behaviour lives in :mod:`bot.agent` and
:mod:`bot.context`.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import structlog
from sqlalchemy.engine import Engine

from bot.agent.loop import (
    AgentLimits,
    AgentTask,
    Errored,
    Finished,
    LimitReached,
    Refused,
    Stopped,
    run_agent,
    worktree_review,
)
from bot.agent.record import SqlStepRecorder, StepRecord
from bot.agent.tools import ToolSet
from bot.context.files import SnapshotError, open_snapshot
from bot.context.index import RepoIndex, build_index
from bot.context.pack import assemble_context
from bot.context.sanitize import frame_untrusted
from bot.context.terms import estimate_tokens
from bot.core import events as ev
from bot.core.config import CONFIG_PATH, RepoConfig
from bot.core.markers import Marker
from bot.dispatch import Repository
from bot.github import GitHub, RepoClient
from bot.loop import Env
from bot.loop import Refused as LoopRefused
from bot.models.base import AgentOutcome
from bot.ports import AgentRequest, ContextPack, IssueText, PullInfo, ReviewNote
from bot.queue import JobContext
from bot.sandbox import Sandbox, make_sandbox
from bot.settings import Settings
from bot.tasks import Usage
from bot.workspace import (
    GitCredentials,
    Identity,
    UndoRefused,
    Workspace,
    WorkspaceCache,
    WorkspaceError,
)

log = structlog.get_logger(__name__)

INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md", ".github/copilot-instructions.md", "CONTRIBUTING.md")
MAX_FILE_CHARS = 24_000


@dataclass
class _StepCounter:
    """Records each agent step (when an engine is given) and reports progress."""

    inner: SqlStepRecorder | None
    on_step: Callable[[int], None]

    def record(self, step: StepRecord) -> None:
        if self.inner is not None:
            self.inner.record(step)
        self.on_step(step.index)


class ClaudeAgent:
    """:class:`bot.ports.Agent` over :func:`bot.agent.loop.run_agent`."""

    def __init__(
        self, settings: Settings, sandbox: Sandbox, engine: Engine | None, run_key: str
    ) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.engine = engine
        self.run_key = run_key
        self.runs = 0

    def run(
        self,
        request: AgentRequest,
        *,
        cancel: threading.Event,
        on_step: Callable[[int], None],
    ) -> AgentOutcome:
        self.runs += 1
        secrets = self.settings.secret_values
        if request.read_only:
            tools = ToolSet.read_only(request.workdir, self.sandbox, secrets=secrets, cancel=cancel)
        else:
            tools = ToolSet.full(
                request.workdir,
                self.sandbox,
                protected_paths=request.config.protected_paths,
                allowed_paths=request.config.paths.allowed,
                secrets=secrets,
                network=request.network,
                allow_hosts=tuple(request.config.network.allow),
                cancel=cancel,
            )
        limits = AgentLimits.from_settings(
            self.settings,
            request.config.limits,
            task_dollars_spent=request.task_dollars_spent,
            task_seconds_spent=request.task_seconds_spent,
        )
        if request.iteration_dollars_spent:
            # one iteration may run the agent more than once (fix rounds, plan steps)
            per_iteration = min(
                self.settings.limits.dollars_per_iteration,
                request.config.limits.dollars_per_iteration or float("inf"),
            )
            left = max(0.0, per_iteration - request.iteration_dollars_spent)
            limits = replace(limits, dollars=min(limits.dollars, left))
        recorder = _StepCounter(
            SqlStepRecorder(
                self.engine, f"{self.run_key}/{self.runs}", iteration_id=request.iteration_id
            )
            if self.engine is not None
            else None,
            on_step,
        )
        base = _head(request.workdir)
        outcome = run_agent(
            self.settings,
            tools=tools,
            task=AgentTask(instruction=request.instruction, context=request.context),
            limits=limits,
            recorder=recorder,
            cancel=cancel,
            review=worktree_review(tools, base) if not request.read_only and base else None,
        )
        usage = Usage(
            outcome.usage.input_tokens
            + outcome.usage.cache_read_tokens
            + outcome.usage.cache_write_tokens,
            outcome.usage.output_tokens,
            outcome.cost,
        )
        exit_ = outcome.exit
        if isinstance(exit_, Finished):
            return AgentOutcome(
                "finished",
                exit_.summary,
                usage,
                self_review=outcome.self_review,
                steps=outcome.steps,
            )
        if isinstance(exit_, LimitReached):
            return AgentOutcome(
                "limit",
                "",
                usage,
                reason=f"{exit_.which} limit: {exit_.detail}",
                steps=outcome.steps,
            )
        if isinstance(exit_, Refused):
            return AgentOutcome("refused", "", usage, reason=exit_.reason, steps=outcome.steps)
        if isinstance(exit_, Stopped):
            return AgentOutcome("cancelled", "", usage, reason=exit_.reason, steps=outcome.steps)
        assert isinstance(exit_, Errored)
        return AgentOutcome(
            "error",
            "",
            usage,
            reason=exit_.reason,
            retryable=exit_.retryable,
            steps=outcome.steps,
        )


def _head(workdir: Path) -> str:
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(workdir), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


class ProjectContext:
    """:class:`bot.ports.ContextBuilder` over the context engine (:mod:`bot.context`).

    Every model gets the knowledge part and the repository map; the context-enhanced model
    also gets the ranked files (``assemble_context(files=True)``), all under the token
    budget. Should the tree not be indexable, the pack falls back to the instruction files
    and the files the issue names."""

    def __init__(self, budget_tokens: int, cache_dir: Path | None = None) -> None:
        self.budget = budget_tokens
        self.cache_dir = cache_dir

    def build(
        self,
        workdir: Path,
        query: str,
        *,
        enhanced: bool,
        named_files: Sequence[str],
        knowledge_ref: str | None = None,
    ) -> ContextPack:
        try:
            index = build_index(open_snapshot(workdir), self.cache_dir)
        except SnapshotError as exc:
            log.warning("context.index_failed", error=str(exc))
            return self._basic(workdir, named_files)
        knowledge = self._knowledge(workdir, knowledge_ref) if knowledge_ref else None
        pack = assemble_context(index, query, self.budget, files=enhanced, knowledge=knowledge)
        return ContextPack(
            pack.render(), pack.total_tokens, tuple(f"{p.kind}:{p.source}" for p in pack.parts)
        )

    def _knowledge(self, workdir: Path, ref: str) -> RepoIndex | None:
        """The index of the base branch (``origin/<ref>`` in a task's worktree, ``<ref>``
        in a local checkout), where instruction files are read from."""
        for rev in (f"origin/{ref}", ref):
            try:
                return build_index(open_snapshot(workdir, commit=rev), self.cache_dir)
            except SnapshotError:
                continue
        log.warning("context.base_unreadable", ref=ref)
        return None

    def _basic(self, workdir: Path, named_files: Sequence[str]) -> ContextPack:
        parts: list[str] = []
        sources: list[str] = []
        used = 0
        root = workdir.resolve()
        for rel in (*INSTRUCTION_FILES, *named_files):
            path = (workdir / rel).resolve()
            if rel in sources or not path.is_relative_to(root) or not path.is_file():
                continue
            block = frame_untrusted(path.read_text(errors="replace")[:MAX_FILE_CHARS], rel)
            tokens = estimate_tokens(block)
            if used + tokens > self.budget:
                continue
            parts.append(block)
            sources.append(rel)
            used += tokens
        return ContextPack("\n\n".join(parts), used, tuple(sources))


BOT_IDENTITY = Identity("vibe-bot", "vibe-bot@users.noreply.github.com")


def person(login: str) -> Identity | None:
    """The ``Co-authored-by`` identity of a GitHub login (its noreply address)."""
    try:
        return Identity(login, f"{login}@users.noreply.github.com")
    except WorkspaceError:
        return None


class _Checkout:
    """:class:`bot.ports.Checkout` over a :class:`bot.workspace.Workspace`."""

    def __init__(
        self,
        ws: Workspace,
        credentials: GitCredentials | None,
        config: Callable[[], RepoConfig],
        co_author: Identity | None,
    ) -> None:
        self.ws = ws
        self.path = ws.path
        self.credentials = credentials
        self.config = config
        self.co_authors = [co_author] if co_author is not None else []

    def head(self) -> str:
        return self.ws.head()

    def commit(self, message: str) -> str | None:
        return self.ws.commit(message, author=BOT_IDENTITY, co_authors=self.co_authors)

    def discard(self) -> None:
        self.ws.discard()

    def publish(self) -> None:
        self.ws.push(self.credentials, self.config())

    def revert_since(self, sha: str, message: str) -> str | None:
        try:
            return self.ws.undo(
                sha, author=BOT_IDENTITY, co_authors=self.co_authors, message=message
            )
        except UndoRefused as exc:  # e.g. a person's commit in the range: say so, do nothing
            raise LoopRefused(str(exc)) from exc

    def close(self) -> None:
        self.ws.close()


class GitWorkspaces:
    """:class:`bot.ports.Workspaces` over the mirror cache, for one repository.

    ``url`` is the clone URL (https for GitHub, ``file://`` for a local checkout);
    ``credentials`` is called at each open so an installation token is fresh."""

    def __init__(
        self,
        cache: WorkspaceCache,
        repo: str,
        url: str,
        credentials: Callable[[], GitCredentials | None],
        config: Callable[[str], RepoConfig],
    ) -> None:
        self.cache = cache
        self.repo = repo
        self.url = url
        self.credentials = credentials
        self.config = config

    def open(self, branch: str, base: str, *, shared: bool, requester: str) -> _Checkout:
        creds = self.credentials()
        ws = self.cache.prepare(
            self.repo,
            self.url,
            branch=branch,
            default_branch=base,
            credentials=creds,
            shared_branch=shared,
        )
        return _Checkout(ws, creds, lambda: self.config(base), person(requester))


class GitHubRepository:
    """:class:`bot.dispatch.Repository` over :class:`bot.github.RepoClient`."""

    def __init__(self, client: RepoClient) -> None:
        self.client = client
        self.repo = client.repo
        # One job asks for these several times (policy, loop, workspace); once is enough.
        self._default_branch: str | None = None
        self._files: dict[tuple[str, str], str | None] = {}

    def default_branch(self) -> str:
        if self._default_branch is None:
            self._default_branch = self.client.default_branch()
        return self._default_branch

    def read_file(self, path: str, ref: str) -> str | None:
        """A file at ``ref``; the config falls back to the owner's ``.github`` repository."""
        if (path, ref) not in self._files:
            self._files[(path, ref)] = (
                self.client.read_config(ref).text
                if path == CONFIG_PATH
                else self.client.read_file(path, ref)
            )
        return self._files[(path, ref)]

    def issue_text(self, number: int) -> IssueText:
        return self.client.issue_text(number)

    def pull(self, number: int) -> PullInfo | None:
        return self.client.pull(number)

    def react(self, number: int, comment_id: int | None, content: str) -> None:
        self.client.react(number, comment_id, content)

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int:
        return self.client.upsert_comment(number, mark, body)

    def find_or_create_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> int:
        return self.client.find_or_create_pr(head, base, title, body, draft)

    def update_pr_body(self, number: int, body: str) -> None:
        self.client.update_pr_body(number, body)

    def request_review(self, number: int, login: str) -> None:
        self.client.request_review(number, login)

    def reply_in_thread(self, pr: int, comment_id: int, body: str) -> int:
        return self.client.reply_in_thread(pr, comment_id, body)

    def resolve_thread(self, pr: int, comment_id: int) -> None:
        self.client.resolve_thread(pr, comment_id)

    def review_notes(self, pr: int, review_id: int) -> list[ReviewNote]:
        return [
            ReviewNote(c.id, c.path, c.line, c.body, c.author)
            for c in self.client.review_comments(pr, review_id)
            if c.in_reply_to_id is None
        ]

    def permission(self, login: str) -> str:
        return str(self.client.permission(login))

    def pull_request(self, number: int) -> ev.PullRequest | None:
        found = self.client.get_pull(number)
        if found is None:
            return None
        return ev.PullRequest(
            number=found.number,
            title=found.title,
            body=found.body,
            author=ev.Actor(found.author, None, False) if found.author else None,
            state=found.state,
            merged=found.merged,
            draft=found.draft,
            head_ref=found.head_ref,
            head_sha=found.head_sha,
            head_repo=self.repo if found.same_repo else None,
            base_ref=found.base_ref,
            labels=(),
            html_url=found.html_url,
        )

    def git_credentials(self) -> GitCredentials:
        creds = self.client.git_credentials()
        return GitCredentials(creds.token, creds.username)

    def clone_url(self) -> str:
        return self.client.git_credentials().clone_url


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
