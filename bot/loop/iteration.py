"""One iteration of the refinement loop: workspace, setup, context, strategy, then the
checkpoints pushed and concluded."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import structlog

from bot.core.attempts import attempt_branch
from bot.core.config import RepoConfig
from bot.core.errors import Declined
from bot.core.redact import hide_paths, redact
from bot.core.render import (
    Final,
    console_link,
    plan_marker,
    render_plan,
    render_pr_body,
    render_thread_reply,
)
from bot.core.tasks import (
    Checkpoint,
    CommitStat,
    Conclusion,
    Feedback,
    IterationRecord,
    State,
    Step,
    TaskRecord,
    Usage,
    WorkResult,
    allowed,
    transition,
)
from bot.github.client import host_paths
from bot.github.retry import GitHubRequestError, GitHubUnavailable
from bot.loop.attempts import Chosen, expire_attempts, planned, run_attempts
from bot.loop.env import Env, repo_config
from bot.loop.errors import AgentUnavailable, Interrupted, StopRequested
from bot.loop.ports import Checkout
from bot.loop.run import LoopRun, Spend
from bot.loop.status import StatusBoard
from bot.loop.strategies import PlanDriven, strategy_for
from bot.loop.strategies.base import Brief, Result
from bot.sandbox.bwrap import SandboxUnavailable, network_permitted, run_setup
from bot.workspace.git import (
    AuthenticationFailed,
    PushRefused,
    PushRejected,
    WorkspaceBusy,
    WorkspaceError,
)

log = structlog.get_logger(__name__)


STOP_POLL_SECONDS = 0.25


def _memory(task: TaskRecord, before: int) -> str:
    """Earlier iterations as the agent's memory (survey: the ``mem`` context part)."""
    lines = []
    for it in task.iterations:
        if it.number >= before:
            continue
        kinds = ", ".join(it.feedback_kinds()) or "none"
        said = "; ".join(f.text.strip()[:200] for f in it.feedback if f.kind == "human")
        lines.append(
            f"Iteration {it.number} ({it.trigger}, {it.outcome}); feedback kinds: {kinds}"
            + (f"; people said: {said}" if said else "")
            + (f"; commits {', '.join(c[:7] for c in it.commits)}" if it.commits else "")
            + (f"; summary: {it.summary.strip()[:400]}" if it.summary else "")
        )
    return "\n".join(lines)


_FILE_SUFFIXES = (".py", ".md", ".toml", ".yml", ".yaml", ".json", ".txt", ".cfg", ".js", ".ts")


def _named_files(text: str) -> list[str]:
    """Paths quoted in the issue (``src/app.py``), for the basic context pack."""
    out = []
    for word in text.replace("`", " ").split():
        word = word.strip(".,:;()[]'\"")
        looks_like_path = "/" in word or word.endswith(_FILE_SUFFIXES)
        if looks_like_path and ".." not in word and not word.startswith(("/", "http")):
            out.append(word[:200])
    return out[:20]


def _commit_message(
    task: TaskRecord,
    number: int,
    summary: str,
    secrets: Sequence[str],
    attempt: int | None = None,
) -> str:
    """The commit's subject: the summary's first line, redacted before it is cut, so a cut
    cannot leave half a token that no pattern matches (the commit redacts again)."""
    clean = redact(summary, secrets).strip()
    first = clean.splitlines()[0][:60] if clean else "work on the task"
    which = f", attempt {attempt}" if attempt is not None else ""
    return f"vibe: {first} (#{task.number}, iteration {number}{which})"


class SetupFailed(Exception):
    """A command of the repository's ``commands.setup`` failed; the message says how."""


def error_reference(task_id: int, number: int) -> str:
    """The reference a failure's reader quotes to the operator: the log line of the
    failure carries it as ``error_ref``."""
    return f"vibe-{task_id}-{number}"


def reader_reason(exc: BaseException, reference: str) -> str:
    """What the issue's readers are told about ``exc``: a plain sentence for a known
    failure, a generic one with ``reference`` for the rest. An exception's own text may
    hold host paths, URLs or a traceback's file names; only messages written for the reader
    are shown, and the full detail goes to the log under ``reference`` (issue 14)."""
    see_logs = f"the operator finds the details in the logs under `{reference}`"
    if isinstance(exc, SetupFailed | PushRefused | SandboxUnavailable):
        # Written for the reader: a command's exit, repository paths, what to fix on the host.
        return str(exc)
    if isinstance(exc, AgentUnavailable):
        return f"the model API kept failing; {see_logs}"
    if isinstance(exc, GitHubUnavailable):
        return f"GitHub kept failing; {see_logs}"
    if isinstance(exc, GitHubRequestError):
        return f"GitHub refused a request (HTTP {exc.status}); {see_logs}"
    if isinstance(exc, AuthenticationFailed):
        return f"GitHub refused the bot's git credentials; {see_logs}"
    if isinstance(exc, PushRejected):
        return f"GitHub rejected the push to the task's branch; {see_logs}"
    if _disk_full(exc):
        return f"the bot's host ran out of disk space; {see_logs}"
    if isinstance(exc, WorkspaceBusy):
        return "another job holds this task's workspace; `/vibe retry` runs it again"
    if isinstance(exc, WorkspaceError):
        return f"the task's git workspace failed; {see_logs}"
    return f"an unexpected error stopped this iteration; {see_logs}"


def _disk_full(exc: BaseException) -> bool:
    """The host's disk is full: ENOSPC or EDQUOT from the file system, or the database's own
    words for it (SQLite "database or disk is full", PostgreSQL's DiskFull "could not
    extend file"), wherever in the chain of causes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(seen)
        if "database or disk is full" in text or "No space left on device" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _watch(
    env: Env,
    task_id: int,
    stop: threading.Event,
    interrupted: threading.Event,
    done: threading.Event,
    board: StatusBoard,
) -> None:
    """Turn ``/vibe stop`` (a flag set by the control lane) and the job's cancel event
    (worker shutdown, lost lease) into ``stop``, telling the two apart, and publish status
    changes that waited for the update interval."""
    while not done.wait(STOP_POLL_SECONDS):
        if not stop.is_set():
            if env.cancel.is_set():
                interrupted.set()
                stop.set()
            elif env.tasks.stop_requested(task_id):
                stop.set()
        if not interrupted.is_set():
            board.flush()


@dataclass(frozen=True)
class Outcome:
    """What one iteration did, for callers and ``vibe demo``."""

    task: TaskRecord
    iteration: int
    outcome: str
    commits: tuple[str, ...] = ()
    pr_number: int | None = None
    reason: str | None = None


def _board(
    env: Env, task: TaskRecord, number: int, where: int, config: RepoConfig | None
) -> StatusBoard:
    """The status board of iteration ``number``: progress written at most once per the
    repository's ``status.min_interval`` (never more often than the operator's interval),
    by the comment id kept with the task."""
    interval = max(env.status_interval, config.status.min_interval if config else 0.0)
    return StatusBoard(
        env.forge,
        task,
        number,
        where,
        interval=interval,
        secrets=env.secrets,
        note=env.note,
        comment_id=task.status_comment_id,
        on_comment=lambda comment_id: env.tasks.record_status_comment(task.id, comment_id),
        link=console_link(env.settings.public_url, task.id),
    )


def _iteration_of(task: TaskRecord, number: int) -> IterationRecord:
    return next(it for it in task.iterations if it.number == number)


FinalOutcome = Literal["succeeded", "failed", "stopped", "limit", "planned"]
_FINAL: tuple[FinalOutcome, ...] = get_args(FinalOutcome)


def _final_outcome(outcome: str) -> FinalOutcome | None:
    """The iteration's outcome as a status comment's last line names it, if it ended."""
    return next((o for o in _FINAL if o == outcome), None)


def run_iteration(
    env: Env,
    task: TaskRecord,
    *,
    trigger: str,
    key: str,
    feedback: tuple[Feedback, ...] = (),
    mode: str = "work",
    attempts: int | None = None,
) -> Outcome:
    """Run one iteration of ``task`` (idempotent per ``key``). ``attempts`` (else the
    repository's ``attempts:``) runs best-of-N attempts of the work (:mod:`bot.loop.attempts`).

    It is written at three checkpoints (:class:`bot.core.tasks.Checkpoint`): begun, pushed
    (the work's result recorded, its commits on the branch) and concluded (the PR found or
    created, the task moved, the outcome and usage counted). A job claimed again after a
    crash or a failure finds the checkpoint reached: from begun the work runs again, from
    pushed only the missing steps are finished (DESIGN.md section 5: one PR, and no status
    comment left saying "working")."""
    where = task.number  # the task's one status comment lives on its issue (or borrowed PR)
    begun = env.tasks.begin_iteration(task.id, key, trigger, feedback)
    number = begun.number
    structlog.contextvars.bind_contextvars(task_id=task.id, iteration_id=begun.id)
    if begun.checkpoint is not Checkpoint.BEGUN:
        return _resume(env, task.id, number, where, key)
    step = {"work": Step.WORK, "plan": Step.PLAN, "execute": Step.APPROVE}[mode]
    task = env.tasks.load(task.id)  # a /vibe stop may have ended it meanwhile
    if task.state.terminal:
        reason = f"the task was {task.state.value} before this iteration started"
        current = env.tasks.conclude(task.id, number, Conclusion("stopped", error=reason))
        env.note(f"iteration {number} not run: {reason}")
        return Outcome(current, number, "stopped", reason=reason)
    if task.state is not State.WORKING and task.state is not State.PLANNING:
        if not allowed(task.state, step):
            reason = f"a task that is {task.state.value.replace('_', ' ')} cannot {mode} now"
            env.tasks.conclude(task.id, number, Conclusion("stopped", error=reason))
            raise Declined(reason)
        state = transition(task.state, step)
        env.tasks.move(task.id, state)
        task = replace(task, state=state)
    config = repo_config(env, task.base, where)
    strategy = strategy_for(task.model)
    board = _board(env, task, number, where, config)
    env.note(f"iteration {number} ({trigger}, {task.model} model) on {task.branch}")
    board.phase("Workspace", "running")
    started = time.monotonic()
    stop = threading.Event()
    interrupted = threading.Event()
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(env, task.id, stop, interrupted, done, board),
        name=f"vibe-stop-{task.id}",
        daemon=True,
    )
    watcher.start()
    checkout: Checkout | None = None
    run: LoopRun | None = None
    chosen: Chosen | None = None
    spend = Spend()  # every run of this iteration, all its attempts
    try:
        checkout = env.workspaces.open(
            task.branch,
            task.base,
            shared=not task.owns_pr,
            requester=task.requester,
        )
        env.tasks.record_base(task.id, number, checkout.head())
        board.phase("Workspace", "done", task.branch)
        wanted = (attempts or config.attempts) if mode == "work" else 1
        count, fewer = planned(env, task, config, wanted)
        if task.owns_pr:
            branches = tuple(attempt_branch(task.branch, k) for k in range(1, count + 1))
            expire_attempts(env, task, branches if count > 1 else ())
        if fewer is not None and count == 1:
            board.phase("Attempts", "skipped", fewer)
        if config.commands.setup:
            board.phase("Setup", "running")
            results = run_setup(
                env.sandbox,
                config.commands.setup,
                workdir=checkout.path,
                network=network_permitted(config, env.settings),
                allow_hosts=tuple(config.network.allow),
                cancel=stop,
            )
            failed = next((r for r in results if not r.ok), None)
            if failed is not None:
                board.phase("Setup", "failed", failed.describe())
                raise SetupFailed(f"repository setup failed: {failed.describe()}")
            board.phase("Setup", "done", f"{len(results)} commands")
        board.phase("Context", "running")
        issue_text = task.instruction + "\n" + "\n".join(f.text for f in feedback)
        pack = env.context.build(
            checkout.path,
            f"{task.title}\n{issue_text}",
            enhanced=strategy.uses_context_pack(),
            named_files=_named_files(issue_text),
            knowledge_ref=task.base,
        )
        board.phase("Context", "done", f"{pack.tokens:,} tokens")
        if pack.manifest is not None:
            env.tasks.record_context(begun.id, pack.manifest)
        run = LoopRun(env, task, config, checkout, board, pack.text, stop, started, begun.id, spend)
        brief = Brief(
            task.title,
            task.instruction,
            task.requirements,
            feedback,
            _memory(task, number),
            task.plan,
        )
        if mode == "plan":
            if not isinstance(strategy, PlanDriven):
                raise Declined(f"the {task.model} model does not make plans")
            result = strategy.plan(run, brief)
        elif mode == "execute":
            if not isinstance(strategy, PlanDriven):
                raise Declined(f"the {task.model} model has no plan to approve")
            result = strategy.execute_plan(run, brief)
        elif count > 1:
            context = pack.text
            chosen = run_attempts(
                env,
                task,
                count=count,
                wanted=wanted,
                note=fewer,
                start=checkout.head(),
                make_run=lambda co, view: LoopRun(
                    env, task, config, co, view, context, stop, started, begun.id, spend
                ),
                strategy=strategy,
                brief=brief,
                board=board,
                message=lambda k, summary: _commit_message(
                    task, number, summary, env.secrets, attempt=k
                ),
            )
            result = chosen.result
        else:
            result = strategy.iterate(run, brief)
        if stop.is_set():
            raise StopRequested("stopped")
        _push(env, task, number, result, run, checkout, board, feedback, started, chosen)
    except StopRequested:
        if checkout is not None:
            checkout.discard()
        usage = spend.usage
        if interrupted.is_set():
            # Not /vibe stop: the worker is shutting down or lost its lease. Leave the
            # iteration begun so the job, claimed again, resumes it (DESIGN.md section 2).
            env.tasks.add_usage(task.id, usage)
            env.note(f"iteration {number} interrupted; it resumes when the job runs again")
            raise Interrupted("interrupted: the worker stopped or lost its lease") from None
        reason = "Stopped on request; nothing from this iteration was pushed."
        duration = time.monotonic() - started
        final = Final("stopped", duration, usage, reason=reason)
        current = _conclude_visibly(
            env,
            board,
            task.id,
            number,
            Conclusion("stopped", Step.ABANDON, usage=usage, duration=duration, error=reason),
            lambda: final,
        )
        board.finish(final)
        env.note(f"iteration {number} stopped; nothing pushed")
        return Outcome(current, number, "stopped", reason=reason)
    except (AgentUnavailable, GitHubUnavailable, SandboxUnavailable) as exc:
        # Infrastructure, not the work: retried with the job, nothing pushed, and on the last
        # attempt the reason names the broken part (a sandbox that cannot start is never
        # reported as failing checks).
        usage = spend.usage
        if checkout is not None:
            checkout.discard()
        what = _unavailable_part(exc)
        if env.attempt < env.max_attempts:
            try:
                _say_retrying(env, board, what)  # seen first, whatever the bookkeeping does
            finally:
                env.tasks.add_usage(task.id, usage)  # spent, even though it is retried
            raise
        duration = time.monotonic() - started
        return _fail(env, task.id, number, board, exc, usage, duration)
    except Declined:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure ends with a visible reason; _fail logs it
        usage = spend.usage
        if checkout is not None:
            checkout.discard()
        duration = time.monotonic() - started
        return _fail(env, task.id, number, board, exc, usage, duration)
    finally:
        done.set()
        watcher.join()
        if checkout is not None:
            checkout.close()
    return _conclude(env, task.id, number, where, board, config)


def _resume(env: Env, task_id: int, number: int, where: int, key: str) -> Outcome:
    """The iteration for ``key`` got past begun in an earlier run of the job: finish a
    pushed one; for a concluded one that did work, write its final status line again (the
    run may have ended before it did) unless a later iteration owns the comment by now."""
    task = env.tasks.load(task_id)
    it = _iteration_of(task, number)
    board = _board(env, task, number, where, None)
    if it.commits:
        board.restore("Push", "done", it.commits[-1][:7])
    if it.checkpoint is Checkpoint.PUSHED:
        env.note(f"iteration {number} for {key} was pushed; finishing it")
        return _conclude(env, task_id, number, where, board, repo_config(env, task.base, where))
    env.note(f"iteration {number} for {key} already ran; nothing to repeat")
    final = _final_outcome(it.outcome)
    worked = it.base_sha is not None  # concluded without work: it never had the comment
    if final is not None and worked and task.iterations[-1].number == number:
        board.finish(Final(final, it.duration, it.usage, it.checks, reason=it.error))
    return Outcome(task, number, it.outcome, it.commits, task.pr_number, it.error)


def _unavailable_part(exc: Exception) -> str:
    if isinstance(exc, AgentUnavailable):
        return "the model API"
    if isinstance(exc, SandboxUnavailable):
        return "the sandbox"
    return "GitHub"


def _say_retrying(env: Env, board: StatusBoard, what: str) -> None:
    board.phase(
        "Retrying",
        "running",
        f"{what} is unavailable; attempt {env.attempt} of {env.max_attempts} failed",
    )
    board.flush(force=True)


def _fail(
    env: Env,
    task_id: int,
    number: int,
    board: StatusBoard,
    exc: BaseException,
    usage: Usage | None = None,
    duration: float | None = None,
) -> Outcome:
    """Conclude the iteration as failed and say why, in words for the issue's readers
    (:func:`reader_reason`); the full error goes to the log under the same reference.
    ``usage`` and ``duration`` left None keep what the pushed checkpoint recorded."""
    reference = error_reference(task_id, number)
    log.error(
        "iteration.failed",
        task=task_id,
        iteration=number,
        error_ref=reference,
        error=redact(f"{type(exc).__name__}: {exc}", env.secrets),
        exc_info=exc,
    )
    reason = hide_paths(
        redact(reader_reason(exc, reference), env.secrets), host_paths(env.settings)
    )
    end = Conclusion("failed", Step.FAIL, usage=usage, duration=duration, error=reason)

    def failed() -> Final:
        shown_usage, shown_duration = _spent(env, task_id, number, usage, duration)
        return Final("failed", shown_duration, shown_usage, reason=reason)

    current = _conclude_visibly(env, board, task_id, number, end, failed)
    it = _iteration_of(current, number)
    board.finish(Final("failed", it.duration, it.usage, reason=reason))
    env.note(f"iteration {number} failed: {reason}")
    return Outcome(current, number, "failed", reason=reason)


def _conclude_visibly(
    env: Env,
    board: StatusBoard,
    task_id: int,
    number: int,
    end: Conclusion,
    final: Callable[[], Final],
) -> TaskRecord:
    """Conclude the iteration; when that write fails (a full disk, the database away), the
    status comment's ``final`` line is posted regardless before the error goes on to the
    job: no comment is left saying "working" (DESIGN.md section 5). The stored state is
    written first otherwise, so what the comment says is what ``/vibe status`` finds."""
    try:
        return env.tasks.conclude(task_id, number, end)
    except Exception:
        log.exception("iteration.conclusion_not_recorded", task=task_id, iteration=number)
        board.finish(final())
        raise


def _spent(
    env: Env, task_id: int, number: int, usage: Usage | None, duration: float | None
) -> tuple[Usage, float]:
    """What the iteration spent, for its final status line: as given, else as the pushed
    checkpoint recorded it (a read, which a full disk still allows)."""
    if usage is not None and duration is not None:
        return usage, duration
    it = _iteration_of(env.tasks.load(task_id), number)
    return (it.usage if usage is None else usage, it.duration if duration is None else duration)


def _push(
    env: Env,
    task: TaskRecord,
    number: int,
    result: Result,
    run: LoopRun,
    checkout: Checkout,
    board: StatusBoard,
    feedback: tuple[Feedback, ...],
    started: float,
    chosen: Chosen | None = None,
) -> None:
    """Commit and push the work (or fast-forward to the chosen attempt's commit), then
    record the pushed checkpoint with its result."""
    commits: list[str] = []
    stats: list[CommitStat] = []
    sha: str | None = None
    if chosen is not None:
        sha = checkout.adopt(chosen.sha) if chosen.sha is not None else None
    elif result.writes and result.outcome != "failed":
        sha = checkout.commit(_commit_message(task, number, result.summary, env.secrets))
    if sha is not None:
        stats.append(checkout.commit_stat(sha))
        board.phase("Push", "running")
        checkout.publish()
        commits.append(sha)
        board.phase("Push", "done", sha[:7])
        env.note(f"pushed {sha[:7]} to {task.branch}")
    env.tasks.record_pushed(
        task.id,
        number,
        WorkResult(
            outcome=result.outcome,
            commits=tuple(commits),
            commit_stats=tuple(stats),
            checks=tuple(result.checks),
            red=result.red,
            green=result.green,
            usage=run.spend.usage,
            duration=time.monotonic() - started,
            summary=redact(result.summary, env.secrets),
            reason=result.reason,
            feedback=(*feedback, *result.feedback),
            plan=tuple(result.plan) if result.outcome == "planned" else None,
            attempts=chosen.attempts if chosen is not None else None,
        ),
    )


def _conclude(
    env: Env, task_id: int, number: int, where: int, board: StatusBoard, config: RepoConfig
) -> Outcome:
    """From the pushed checkpoint to concluded. GitHub failing is retried with the job
    (the next attempt resumes here); on the last attempt, or for a failure retrying cannot
    fix, the iteration concludes as failed and the status comment says why."""
    try:
        return _finish(env, task_id, number, where, board, config)
    except GitHubUnavailable as exc:
        if env.attempt < env.max_attempts:
            _say_retrying(env, board, "GitHub")
            raise
        failure: Exception = exc
    except Exception as exc:  # noqa: BLE001 - every failure ends with a visible reason; _fail logs it
        failure = exc
    return _fail(env, task_id, number, board, failure)


def _finish(
    env: Env, task_id: int, number: int, where: int, board: StatusBoard, config: RepoConfig
) -> Outcome:
    """Post the plan, open or update the PR, answer review threads, then conclude and write
    the final status line. Every GitHub step is idempotent (find-or-create, upsert by
    marker), so a resumed job repeats them safely."""
    task = env.tasks.load(task_id)
    it = _iteration_of(task, number)
    if it.outcome == "planned":
        env.forge.upsert_comment(
            where, plan_marker(task.id), render_plan(task.id, task.plan, env.secrets)
        )
        env.note(f"plan posted with {len(task.plan)} steps; waiting for /vibe approve")
    # The PR body's total counts this iteration, which the task's usage does once concluded.
    pr = _publish_pr(env, replace(task, usage=task.usage + it.usage), it.summary, config)
    if pr is not None and it.commits:
        _answer_threads(env, pr, it.feedback, it.commits[-1], config, board)
    if it.outcome == "planned":
        step = Step.PLAN_READY
    elif it.outcome == "failed":
        step = Step.FAIL
    else:
        step = Step.DONE
    if not task.state.terminal:
        transition(task.state, step)  # a move the state machine refuses fails the iteration
    end = Conclusion(it.outcome, step, stop_wins=True, pr_number=pr)
    current = env.tasks.conclude(task_id, number, end)
    final = _final_outcome(it.outcome) or "failed"
    board.finish(Final(final, it.duration, it.usage, it.checks, reason=it.error))
    env.note(f"iteration {number} {it.outcome} in {it.duration:.1f} s")
    return Outcome(current, number, it.outcome, it.commits, pr, it.error)


def _publish_pr(env: Env, task: TaskRecord, summary: str, config: RepoConfig) -> int | None:
    """Find-or-create the PR once the branch has commits; keep its body current. The
    conclusion records its number."""
    has_commits = any(it.commits for it in task.iterations)
    latest = next((it.summary for it in reversed(task.iterations) if it.summary), summary)
    body = render_pr_body(task, latest, env.secrets, console_link(env.settings.public_url, task.id))
    if env.prs is None:
        return None
    if not task.owns_pr:
        return task.pr_number  # a person's PR: its body stays theirs; the status comment reports
    if task.pr_number is None and (not has_commits or task.state.terminal):
        return None  # nothing to propose, or abandoned meanwhile (the issue was closed)
    pushed_now = bool(task.iterations and task.iterations[-1].commits)
    if task.pr_number is not None and not pushed_now:
        env.prs.update_pr_body(task.pr_number, body)  # nothing new to propose
        return task.pr_number
    strategy = strategy_for(task.model)
    # Find-or-create finds only an open PR: after the task's PR was closed without merging,
    # a new /vibe opens a new PR for the branch instead of pushing to the closed one.
    pr = env.prs.find_or_create_pr(task.branch, task.base, task.title, body, strategy.draft(config))
    if pr == task.pr_number:
        env.prs.update_pr_body(pr, body)
        return pr
    for reviewer in dict.fromkeys([task.requester, *config.reviewers]):
        env.prs.request_review(pr, reviewer)
    env.note(
        f"opened PR #{pr} ({'draft' if strategy.draft(config) else 'ready'}) for {task.branch}"
    )
    return pr


def _answer_threads(
    env: Env,
    pr: int,
    feedback: Sequence[Feedback],
    commit: str,
    config: RepoConfig,
    board: StatusBoard,
) -> None:
    if env.prs is None:
        return
    missed: list[str] = []
    for item in feedback:
        if item.kind != "human" or item.comment_id is None or item.path is None:
            continue
        # The commits are pushed: a thread that cannot be answered or resolved (a missing
        # permission, a deleted comment) is a warning in the status, not a failed iteration.
        try:
            env.prs.reply_in_thread(
                pr, item.comment_id, render_thread_reply(commit[:7], "", env.secrets)
            )
            if config.resolve_threads:
                env.prs.resolve_thread(pr, item.comment_id)
        except GitHubRequestError as exc:
            log.warning("iteration.thread_not_answered", pr=pr, comment=item.comment_id)
            missed.append(f"{item.path}:{item.line}: {exc}")
            continue
        env.note(f"replied in thread {item.comment_id} ({item.path}:{item.line})")
    if missed:
        board.phase("Review threads", "failed", "not answered: " + "; ".join(missed))
