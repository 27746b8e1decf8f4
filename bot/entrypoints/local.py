"""``vibe run``: the same refinement loop on a local checkout, without GitHub.

The task works on a ``vibe/issue-<n>-<slug>`` branch of the local repository (through the
same mirror, worktree, sandbox and agent as the service; "push" updates the local branch),
and between iterations the person types feedback in the terminal:

- a line of text: local refinement, the next iteration (``human`` feedback);
- ``require <text>``: requirement expansion, then the next iteration;
- ``approve``: approve a plan (plan-driven model);
- ``undo``: revert the last iteration; ``retry``: run it again;
- ``accept`` or an empty line / end of input: finish, the task is accepted;
- ``stop``: finish, the task is abandoned.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from bot.agent.adapter import ClaudeAgent
from bot.context.adapter import ProjectContext
from bot.core.config import RepoConfig
from bot.core.markers import Marker, strip_markers
from bot.core.tasks import Feedback, TaskRecord
from bot.loop import actions as loop
from bot.loop.env import Env
from bot.loop.errors import Refused
from bot.loop.iteration import Outcome
from bot.loop.ports import IssueText, PullInfo
from bot.sandbox.bwrap import make_sandbox
from bot.settings import DevelopmentModel, Settings
from bot.store import tasks as taskdb
from bot.store.engine import init_db, make_engine
from bot.store.tables import Task
from bot.workspace.checkout import GitWorkspaces
from bot.workspace.git import WorkspaceCache

MAX_INSTRUCTION_CHARS = 65_536

PROMPT = (
    "Feedback for the next iteration (text, 'require <text>', 'approve', 'undo', 'retry', "
    "'stop'; an empty line or 'accept' finishes):"
)


class LocalError(Exception):
    """The local checkout cannot be used; the message says why."""


def _git(path: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["git", "-C", str(path), *args],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        timeout=60,
    )
    return proc.returncode, proc.stdout


class TerminalForge:
    """:class:`bot.loop.ports.Forge` for a local checkout: files from git, comments to the
    terminal."""

    def __init__(self, repo: str, path: Path, title: str, body: str, echo: Callable[[str], None]):
        self.repo = repo
        self.path = path
        self.title = title
        self.body = body
        self.echo = echo
        self.comments: dict[str, str] = {}

    def default_branch(self) -> str:
        code, out = _git(self.path, "symbolic-ref", "--quiet", "--short", "HEAD")
        if code != 0 or not out.strip():
            raise LocalError(f"{self.path} has no branch checked out (detached HEAD)")
        return out.strip()

    def read_file(self, path: str, ref: str) -> str | None:
        code, out = _git(self.path, "show", f"{ref}:{path}")
        return out if code == 0 else None

    def issue_text(self, number: int) -> IssueText:
        return IssueText(self.title, self.body)

    def pull(self, number: int) -> PullInfo | None:
        return None

    def react(self, number: int, comment_id: int | None, content: str) -> None:
        return None

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int:
        key = mark.render()
        if self.comments.get(key) == body:
            return len(self.comments)
        self.comments[key] = body
        text = strip_markers(body)
        if mark.kind == "status":
            last = text.splitlines()[-1] if text else ""
            if not last.startswith("_Working"):
                self.echo(last)
        else:
            self.echo(text)
        return len(self.comments)


@dataclass
class LocalRun:
    task: TaskRecord
    outcomes: list[Outcome]


def _repo_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", path.name).strip("-.")[:90] or "repo"
    return f"local/{name}"


def _next_number(settings: Settings, repo: str) -> int:
    engine = make_engine(settings.effective_database_url)
    try:
        with Session(engine) as session:
            top = session.exec(
                select(func.max(col(Task.number))).where(Task.repository == repo)
            ).one()
        return int(top or 0) + 1
    finally:
        engine.dispose()


def _act(
    env: Env, task: TaskRecord, word: str, text: str, key: str, number: int, requester: str
) -> Outcome | None:
    """One line of terminal feedback, as the matching ``/vibe`` command would act."""
    if word == "approve":
        return loop.approve(env, task, key=key, where=number)
    if word == "require" and len(text.split(maxsplit=1)) == 2:
        return loop.require(env, task, text.split(maxsplit=1)[1], author=requester, key=key)
    if word == "undo":
        loop.undo(env, task, key=key, where=number)
        return None
    if word == "retry":
        return loop.retry(env, task, key=key)
    fb = (Feedback("human", text, author=requester),)
    return loop.iterate(env, task, fb, trigger="terminal", key=key)


def local_env(
    settings: Settings, engine: Engine, path: Path, instruction: str, echo: Callable[[str], None]
) -> Env:
    """The loop's environment for a local checkout (the same parts as the service's)."""
    repo = _repo_name(path)
    title = instruction.strip().splitlines()[0][:120]
    forge = TerminalForge(repo, path, title, instruction.strip(), echo)
    sandbox = make_sandbox(settings)
    cache = WorkspaceCache.from_settings(settings, sandbox)
    configs: dict[str, RepoConfig] = {}
    return Env(
        settings=settings,
        engine=engine,
        forge=forge,
        prs=None,
        workspaces=GitWorkspaces(
            cache, repo, path.as_uri(), lambda: None, lambda ref: configs.get(ref, RepoConfig())
        ),
        agent=ClaudeAgent(settings, sandbox, engine, f"local:{uuid.uuid4().hex[:12]}"),
        sandbox=sandbox,
        context=ProjectContext(settings.context_budget_tokens, settings.data_dir / "context-index"),
        status_interval=0.0,
        timeline=echo,
        configs=configs,
    )


def run_local(
    settings: Settings,
    repo_path: Path,
    instruction: str,
    *,
    model: DevelopmentModel | None,
    read: Callable[[], str | None],
    echo: Callable[[str], None],
    requester: str = "local-user",
) -> LocalRun:
    """Run a task on ``repo_path`` until the person accepts or stops it."""
    path = repo_path.resolve()
    if not (path / ".git").exists():
        raise LocalError(f"{path} is not a git checkout")
    if not instruction.strip():
        raise LocalError("the instruction is empty")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise LocalError(
            f"the instruction is {len(instruction):,} characters; the limit is "
            f"{MAX_INSTRUCTION_CHARS:,} (GitHub's own limit for an issue body)"
        )
    code, _ = _git(path, "rev-parse", "--verify", "--quiet", "HEAD")
    if code != 0:
        raise LocalError(f"{path} has no commits yet")
    missing = [m for m in settings.missing() if not m.startswith("GitHub")]
    if missing:
        raise LocalError("cannot run yet; configure:\n  - " + "\n  - ".join(missing))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    env = local_env(settings, engine, path, instruction, echo)
    repo = env.forge.repo
    number = _next_number(settings, repo)
    outcomes = [
        loop.start(
            env,
            loop.StartRequest(
                number=number, requester=requester, key=f"local:{number}:start", model=model
            ),
        )
    ]
    try:
        for turn in itertools.count(2):
            task = taskdb.load(engine, outcomes[-1].task.id)
            if task.state.terminal:
                break
            echo(PROMPT)
            line = read()
            text = (line or "").strip()
            key = f"local:{number}:{turn}"
            word = text.split(maxsplit=1)[0].lower() if text else ""
            if not text or word == "accept":
                loop.accept(env, task, "accepted in the terminal")
                break
            if word == "stop":
                loop.abandon(env, task, "stopped in the terminal")
                break
            try:
                result = _act(env, task, word, text, key, number, requester)
            except Refused as exc:
                echo(f"refused: {exc}")
                continue
            if result is not None:
                outcomes.append(result)
        final = taskdb.load(engine, outcomes[-1].task.id)
        echo(
            f"task {final.state.value}: {len(final.iterations)} iterations on branch "
            f"{final.branch}, {final.usage.tokens:,} tokens, ${final.usage.cost:.4f}"
        )
        return LocalRun(final, outcomes)
    finally:
        engine.dispose()


__all__ = ["LocalError", "LocalRun", "TerminalForge", "run_local"]
