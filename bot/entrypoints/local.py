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

A line is read by the ``/vibe`` grammar (:mod:`bot.core.commands`) and carried out by the
same decision table as the webhook job (:mod:`bot.loop.handlers`); ``status`` and ``help``
answer in the terminal.
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

from bot.bootstrap import loop_env
from bot.core import policy as pol
from bot.core.commands import Verb, parse_commands
from bot.core.config import CONFIG_PATH, parse_repo_config
from bot.core.errors import Declined
from bot.core.events import MAX_BODY_CHARS
from bot.core.forge import IssueText, PullInfo
from bot.core.markers import Marker, strip_markers
from bot.core.tasks import DevelopmentModel, TaskRecord
from bot.loop.env import Env
from bot.loop.handlers import Context, carry_out
from bot.settings import Settings
from bot.store.engine import init_db, make_engine
from bot.store.tables import Task

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
    answers: list[str]  # what each step did, as the decision table's handlers say it


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


Builder = Callable[[str, int, str, str, str], pol.Action]

# What each verb of the grammar decides in the terminal: (repo, number, requester, the
# command's text, the whole line) -> decision. There the person ends the task, so ``stop``
# abandons it at once.
_TERMINAL: dict[Verb, Builder] = {
    Verb.STOP: lambda r, n, q, t, line: pol.Abandon(r, n, q, "stopped in the terminal"),
    Verb.APPROVE: lambda r, n, q, t, line: pol.ApprovePlan(r, n, q),
    Verb.REQUIRE: lambda r, n, q, t, line: pol.AddRequirement(r, n, q, t),
    Verb.RETRY: lambda r, n, q, t, line: pol.Retry(r, n, q),
    Verb.UNDO: lambda r, n, q, t, line: pol.Undo(r, n, q),
    Verb.STATUS: lambda r, n, q, t, line: pol.Status(r, n, q),
    Verb.HELP: lambda r, n, q, t, line: pol.Help(r, n, q),
    Verb.UNKNOWN: lambda r, n, q, t, line: pol.Help(r, n, q, t),
    Verb.RUN: lambda r, n, q, t, line: pol.Iterate(r, n, q, line),
    Verb.PLAN: lambda r, n, q, t, line: pol.Iterate(r, n, q, line),
    Verb.TEST: lambda r, n, q, t, line: pol.Iterate(r, n, q, line),
}


def terminal_decision(line: str, repo: str, number: int, requester: str) -> pol.Action:
    """One line typed in the terminal as the decision its ``/vibe`` command makes, read by
    the same grammar (:mod:`bot.core.commands`); any other text is feedback. ``accept``
    or an empty line accepts the task (a word of the terminal only)."""
    text = line.strip()
    if not text or text.split(maxsplit=1)[0].lower() == "accept":
        return pol.Accept(repo, number, requester, "accepted in the terminal")
    commands = parse_commands(f"/vibe {text}")
    verb, said = (commands[0].verb, commands[0].text) if commands else (Verb.RUN, text)
    return _TERMINAL[verb](repo, number, requester, said, text)


def local_env(
    settings: Settings, engine: Engine, path: Path, instruction: str, echo: Callable[[str], None]
) -> Env:
    """The loop's environment for a local checkout: the service's parts (built by
    :func:`bot.bootstrap.loop_env`) with the terminal as the forge and no pull requests."""
    repo = _repo_name(path)
    title = instruction.strip().splitlines()[0][:120]
    return loop_env(
        settings,
        engine,
        forge=TerminalForge(repo, path, title, instruction.strip(), echo),
        prs=None,
        clone_url=path.as_uri(),
        credentials=lambda fresh: None,
        run_key=f"local:{uuid.uuid4().hex[:12]}",
        status_interval=0.0,
        timeline=echo,
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
    if len(instruction) > MAX_BODY_CHARS:
        raise LocalError(
            f"the instruction is {len(instruction):,} characters; the limit is "
            f"{MAX_BODY_CHARS:,} (GitHub's own limit for an issue body)"
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
    config, _ = parse_repo_config(env.forge.read_file(CONFIG_PATH, env.forge.default_branch()))
    chosen = model or config.model or settings.default_model
    start = pol.StartTask(repo, number, requester, chosen, "")
    try:
        answers = [carry_out(start, Context(env, number, f"local:{number}:start"))]
        found = env.tasks.find(repo, number)
        if found is None:
            raise LocalError(f"the task of {repo}#{number} was not created")
        task_id = found.id
        for turn in itertools.count(2):
            task = env.tasks.load(task_id)
            if task.state.terminal:
                break
            echo(PROMPT)
            decision = terminal_decision(read() or "", repo, number, requester)
            context = Context(env, number, f"local:{number}:{turn}", task, trigger="terminal")
            try:
                answers.append(carry_out(decision, context))
            except Declined as exc:
                echo(f"refused: {exc}")
                continue
            if isinstance(decision, pol.Accept | pol.Abandon):
                break
        final = env.tasks.load(task_id)
        echo(
            f"task {final.state.value}: {len(final.iterations)} iterations on branch "
            f"{final.branch}, {final.usage.tokens:,} tokens, ${final.usage.cost:.4f}"
        )
        return LocalRun(final, answers)
    finally:
        engine.dispose()


__all__ = ["LocalError", "LocalRun", "TerminalForge", "run_local"]
