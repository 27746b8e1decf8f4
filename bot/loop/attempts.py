"""Best-of-N attempts of one iteration (issue 18; the values and the ranking are
:mod:`bot.core.attempts`).

Each attempt is the development model's ordinary iteration (``strategy.iterate``) in a
worktree and sandbox of its own, on the branch :func:`bot.core.attempts.attempt_branch`
started at the task branch's head, so attempts share no files and no branch. They run on a
bounded thread pool (at most the operator's ``workers`` at once) and share the iteration's
stop event and spend (:class:`bot.loop.run.Spend`). Each one that changed something is
committed on its own branch; the ranking chooses one, the others are pushed to their
branches, and :func:`bot.loop.iteration.run_iteration` fast-forwards the task branch to the
chosen commit and pushes it as any iteration's work.

Attempt branches live until the next iteration of the task begins or the task ends
(:func:`expire_attempts`): then the branches go and ``/vibe pick`` says they expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import structlog

from bot.core.attempts import (
    Attempt,
    AttemptChecks,
    AttemptSet,
    affordable,
    attempt_branch,
    choose,
    is_test_path,
    rank_key,
)
from bot.core.config import RepoConfig
from bot.core.redact import redact
from bot.core.render import Phase, PhaseState, checks_line
from bot.core.tasks import Check, CommitStat, TaskRecord, Usage
from bot.github.retry import GitHubUnavailable
from bot.loop.env import Env
from bot.loop.errors import AgentUnavailable, StopRequested
from bot.loop.ports import Checkout
from bot.loop.run import LoopRun
from bot.loop.status import StatusBoard
from bot.loop.strategies.base import Brief, Result, Strategy
from bot.sandbox.bwrap import SandboxUnavailable
from bot.workspace.git import PushRefused, WorkspaceError

log = structlog.get_logger(__name__)

# Failures that are the infrastructure's, not an attempt's: the iteration is retried with
# its job, as a single attempt's would be.
_INFRASTRUCTURE = (StopRequested, AgentUnavailable, GitHubUnavailable, SandboxUnavailable)


class AttemptBoard:
    """One attempt's view of the status board: its phases fold into one line,
    ``Attempt k``, whose detail says where the attempt is."""

    def __init__(self, board: StatusBoard, number: int) -> None:
        self.board = board
        self.label = f"Attempt {number}"
        self.number = board.number
        self.phases: dict[str, Phase] = {}

    def phase(self, name: str, state: PhaseState, detail: str = "") -> None:
        self.phases[name] = Phase(name, state, detail)
        said = f"{name} {state}" + (f": {detail}" if detail else "")
        self.board.phase(self.label, "running", said)


@dataclass(frozen=True)
class Chosen:
    """What the attempts came to: the chosen attempt's result and commit (None: no attempt
    changed anything; the best-ranked one's result stands for the iteration) and every
    attempt with the choice and its reasons."""

    result: Result
    sha: str | None
    attempts: AttemptSet


@dataclass
class _Ran:
    number: int
    checkout: Checkout | None = None
    result: Result | None = None
    usage: Usage = field(default_factory=Usage)
    duration: float = 0.0
    sha: str | None = None
    stat: CommitStat | None = None
    tests_changed: int = 0
    error: str | None = None


def _limits(env: Env, config: RepoConfig) -> tuple[float, float]:
    """The per-iteration and per-task dollar limits as the agent applies them."""
    lim = env.settings.limits
    per_iteration = min(lim.dollars_per_iteration, config.limits.dollars_per_iteration or 1e18)
    per_task = min(lim.dollars_per_task, config.limits.dollars_per_task or 1e18)
    return per_iteration, per_task


def planned(env: Env, task: TaskRecord, config: RepoConfig, wanted: int) -> tuple[int, str | None]:
    """How many attempts run for this task now, and why fewer than ``wanted`` when fewer."""
    if wanted > 1 and not task.owns_pr:
        return 1, "one attempt runs: attempts need a branch of the bot's own, not a person's PR"
    per_iteration, per_task = _limits(env, config)
    return affordable(
        wanted, per_iteration=per_iteration, per_task=per_task, task_spent=task.usage.cost
    )


def _checks(checks: tuple[Check, ...]) -> AttemptChecks:
    if not checks:
        return "none"
    return "passed" if all(c.passed for c in checks) else "failed"


def _value(ran: _Ran) -> Attempt:
    """What attempt ``ran`` came to, before its branch is pushed."""
    result = ran.result
    checks = result.checks if result is not None else ()
    stat = ran.stat
    fixes = sum(
        1 for f in (result.feedback if result else ()) if f.kind in ("compiler", "execution")
    )
    outcome = result.outcome if result is not None else "failed"
    return Attempt(
        number=ran.number,
        outcome=outcome,
        checks=_checks(checks),
        checks_line=checks_line(checks) if result is not None else "not run",
        tests_changed=ran.tests_changed,
        fixes=fixes,
        files=stat.files if stat else 0,
        insertions=stat.insertions if stat else 0,
        deletions=stat.deletions if stat else 0,
        cost=ran.usage.cost,
        tokens=ran.usage.tokens,
        duration=ran.duration,
        sha=ran.sha,
        summary=(result.summary if result else "")[:500],
        note=ran.error or (result.reason if result else None),
    )


def run_attempts(
    env: Env,
    task: TaskRecord,
    *,
    count: int,
    wanted: int,
    note: str | None,
    start: str,
    make_run: Callable[[Checkout, AttemptBoard], LoopRun],
    strategy: Strategy,
    brief: Brief,
    board: StatusBoard,
    message: Callable[[int, str], str],
) -> Chosen:
    """Run ``count`` attempts from commit ``start`` and choose one (see the module
    docstring). ``make_run`` builds an attempt's :class:`LoopRun` over its checkout and
    board; ``message`` is the commit message of attempt k with its summary."""
    workers = max(1, min(count, env.settings.workers))
    fewer = f"; {note}" if note else ""
    board.phase("Attempts", "running", f"{count} attempts, {workers} at a time{fewer}")
    for k in range(1, count + 1):
        board.phase(f"Attempt {k}", "pending")
    runs = [_Ran(k) for k in range(1, count + 1)]
    failures: list[BaseException] = []
    lock = threading.Lock()

    def one(ran: _Ran) -> None:
        began = time.monotonic()
        label = f"Attempt {ran.number}"
        spent: LoopRun | None = None
        try:
            ran.checkout = env.workspaces.open(
                attempt_branch(task.branch, ran.number),
                task.base,
                shared=False,
                requester=task.requester,
                start=start,
            )
            spent = make_run(ran.checkout, AttemptBoard(board, ran.number))
            ran.result = strategy.iterate(spent, replace(brief, attempt=(ran.number, count)))
            if ran.result.writes and ran.result.outcome != "failed":
                ran.sha = ran.checkout.commit(message(ran.number, ran.result.summary))
            if ran.sha is not None:
                ran.stat = ran.checkout.commit_stat(ran.sha)
                paths = ran.checkout.changed_paths(start)
                ran.tests_changed = sum(1 for p in paths if is_test_path(p))
        except _INFRASTRUCTURE as exc:
            with lock:
                failures.append(exc)
            board.phase(label, "failed", "stopped" if isinstance(exc, StopRequested) else "")
            return
        except Exception as exc:  # noqa: BLE001 - one attempt failing leaves the others; logged
            log.error("attempt.failed", attempt=ran.number, error=redact(str(exc), env.secrets))
            ran.error = "an unexpected error stopped this attempt"
        finally:
            ran.duration = time.monotonic() - began
            if spent is not None:
                ran.usage = spent.usage
        ok = ran.result is not None and ran.error is None and ran.sha is not None
        passed = ok and ran.result is not None and _checks(ran.result.checks) != "failed"
        board.phase(label, "done" if passed else "failed", _line(ran))

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix=f"vibe-attempt-{task.id}") as pool:
            futures: list[Future[None]] = [pool.submit(one, ran) for ran in runs]
            for future in futures:
                future.result()
        if failures:
            stop = next((f for f in failures if isinstance(f, StopRequested)), None)
            raise stop or failures[0]
        return _choose(env, task, runs, wanted, note, board)
    finally:
        for ran in runs:
            if ran.checkout is not None:
                ran.checkout.close()


def _line(ran: _Ran) -> str:
    if ran.result is None:
        return ran.error or "failed"
    checks = checks_line(ran.result.checks)
    if ran.stat is None:
        return f"no change; checks: {checks}"
    return f"+{ran.stat.insertions}/-{ran.stat.deletions}; checks: {checks}; ${ran.usage.cost:.4f}"


def _choose(
    env: Env,
    task: TaskRecord,
    runs: list[_Ran],
    wanted: int,
    note: str | None,
    board: StatusBoard,
) -> Chosen:
    """Rank the attempts, push the ones not chosen to their branches, and say which won."""
    values = [_value(ran) for ran in runs]
    chosen, reasons = choose(values)
    kept: list[Attempt] = []
    for ran, value in zip(runs, values, strict=True):
        branch: str | None = None
        why: str | None = None
        if ran.sha is not None and ran.number != chosen and ran.checkout is not None:
            try:
                ran.checkout.publish()
                branch = attempt_branch(task.branch, ran.number)
            except (PushRefused, WorkspaceError) as exc:
                log.warning("attempt.not_kept", attempt=ran.number, error=str(exc))
                why = "its push was refused" if isinstance(exc, PushRefused) else "its push failed"
        kept.append(replace(value, branch=branch, note=why or value.note))
    best = min(values, key=rank_key).number
    winner = runs[(chosen or best) - 1]
    result = winner.result or Result("failed", "", reason=winner.error)
    fewer = f"; {note}" if note else ""
    board.phase("Attempts", "done", (reasons[0] if reasons else "none ran") + fewer)
    attempts = AttemptSet(
        attempts=tuple(kept),
        chosen=chosen,
        reasons=reasons,
        wanted=wanted,
        note=note,
        head=winner.sha if chosen is not None else None,
        first=chosen,
    )
    return Chosen(result, winner.sha if chosen is not None else None, attempts)


def expire_attempts(env: Env, task: TaskRecord, extra: tuple[str, ...] = ()) -> None:
    """Delete the kept attempt branches of the task's earlier iterations (and ``extra``
    names: this iteration's own, left by an earlier run of its job), and record them as
    expired. A branch that cannot be deleted now is logged; its iteration stays expired."""
    stale = [
        (it.number, it.attempts)
        for it in task.iterations
        if it.attempts is not None and not it.attempts.expired
    ]
    names = [b for _, attempts in stale for b in attempts.kept_branches()] + list(extra)
    if names:
        try:
            dropped = env.workspaces.drop_branches(names, task.base)
        except WorkspaceError as exc:
            log.warning("attempts.not_deleted", task=task.id, error=str(exc))
        else:
            if dropped:
                env.note(f"deleted attempt branches {', '.join(dropped)}")
    for number, attempts in stale:
        env.tasks.record_attempts(task.id, number, replace(attempts, expired=True))
