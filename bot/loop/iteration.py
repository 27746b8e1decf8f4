"""One iteration of the refinement loop: workspace, setup, context, strategy, then the
checkpoints pushed and concluded."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, get_args

import structlog

from bot.core.config import RepoConfig
from bot.core.errors import Declined
from bot.core.redact import redact
from bot.core.render import (
    Final,
    plan_marker,
    render_plan,
    render_pr_body,
    render_thread_reply,
)
from bot.core.tasks import (
    Checkpoint,
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
from bot.github.retry import GitHubRequestError, GitHubUnavailable
from bot.loop.env import Env, repo_config
from bot.loop.errors import AgentUnavailable, Interrupted, StopRequested
from bot.loop.ports import Checkout
from bot.loop.run import LoopRun
from bot.loop.status import StatusBoard
from bot.loop.strategies import PlanDriven, strategy_for
from bot.loop.strategies.base import Brief, Result
from bot.sandbox.bwrap import network_permitted, run_setup

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


def _commit_message(task: TaskRecord, number: int, summary: str) -> str:
    first = summary.strip().splitlines()[0][:60] if summary.strip() else "work on the task"
    return f"vibe: {first} (#{task.number}, iteration {number})"


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


def _board(env: Env, task: TaskRecord, number: int, where: int) -> StatusBoard:
    return StatusBoard(
        env.forge,
        task,
        number,
        where,
        interval=env.status_interval,
        secrets=env.secrets,
        note=env.note,
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
) -> Outcome:
    """Run one iteration of ``task`` (idempotent per ``key``).

    It is written at three checkpoints (:class:`bot.core.tasks.Checkpoint`): begun, pushed
    (the work's result recorded, its commits on the branch) and concluded (the PR found or
    created, the task moved, the outcome and usage counted). A job claimed again after a
    crash or a failure finds the checkpoint reached: from begun the work runs again, from
    pushed only the missing steps are finished (DESIGN.md section 5: one PR, and no status
    comment left saying "working")."""
    where = task.number  # the task's one status comment lives on its issue (or borrowed PR)
    begun = env.tasks.begin_iteration(task.id, key, trigger, feedback)
    number = begun.number
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
    board = _board(env, task, number, where)
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
    try:
        checkout = env.workspaces.open(
            task.branch,
            task.base,
            shared=not task.owns_pr,
            requester=task.requester,
        )
        env.tasks.record_base(task.id, number, checkout.head())
        board.phase("Workspace", "done", task.branch)
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
                raise RuntimeError(f"repository setup failed: {failed.describe()}")
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
        run = LoopRun(env, task, config, checkout, board, pack.text, stop, started, begun.id)
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
        else:
            result = strategy.iterate(run, brief)
        if stop.is_set():
            raise StopRequested("stopped")
        _push(env, task, number, result, run, checkout, board, feedback, started)
    except StopRequested:
        if checkout is not None:
            checkout.discard()
        usage = run.usage if run is not None else Usage()
        if interrupted.is_set():
            # Not /vibe stop: the worker is shutting down or lost its lease. Leave the
            # iteration begun so the job, claimed again, resumes it (DESIGN.md section 2).
            env.tasks.add_usage(task.id, usage)
            env.note(f"iteration {number} interrupted; it resumes when the job runs again")
            raise Interrupted("interrupted: the worker stopped or lost its lease") from None
        reason = "Stopped on request; nothing from this iteration was pushed."
        duration = time.monotonic() - started
        current = env.tasks.conclude(
            task.id,
            number,
            Conclusion("stopped", Step.ABANDON, usage=usage, duration=duration, error=reason),
        )
        board.finish(Final("stopped", duration, usage, reason=reason))
        env.note(f"iteration {number} stopped; nothing pushed")
        return Outcome(current, number, "stopped", reason=reason)
    except (AgentUnavailable, GitHubUnavailable) as exc:
        usage = run.usage if run is not None else Usage()
        if checkout is not None:
            checkout.discard()
        what = "the model API" if isinstance(exc, AgentUnavailable) else "GitHub"
        if env.attempt < env.max_attempts:
            env.tasks.add_usage(task.id, usage)  # spent, even though it is retried
            _say_retrying(env, board, what)
            raise
        duration = time.monotonic() - started
        return _fail(env, task.id, number, board, f"{what} kept failing: {exc}", usage, duration)
    except Declined:
        raise
    except Exception as exc:  # every failure ends with a visible reason
        usage = run.usage if run is not None else Usage()
        if checkout is not None:
            checkout.discard()
        log.exception("iteration.failed", task=task.id, iteration=number)
        duration = time.monotonic() - started
        return _fail(env, task.id, number, board, f"{type(exc).__name__}: {exc}", usage, duration)
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
    board = _board(env, task, number, where)
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
    reason: str,
    usage: Usage | None = None,
    duration: float | None = None,
) -> Outcome:
    """Conclude the iteration as failed and say why. ``usage`` and ``duration`` left None
    keep what the pushed checkpoint recorded."""
    reason = redact(reason, env.secrets)
    end = Conclusion("failed", Step.FAIL, usage=usage, duration=duration, error=reason)
    current = env.tasks.conclude(task_id, number, end)
    it = _iteration_of(current, number)
    board.finish(Final("failed", it.duration, it.usage, reason=reason))
    env.note(f"iteration {number} failed: {reason}")
    return Outcome(current, number, "failed", reason=reason)


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
) -> None:
    """Commit and push the work, then record the pushed checkpoint with its result."""
    commits: list[str] = []
    if result.writes and result.outcome != "failed":
        sha = checkout.commit(_commit_message(task, number, result.summary))
        if sha is not None:
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
            checks=tuple(result.checks),
            red=result.red,
            green=result.green,
            usage=run.usage,
            duration=time.monotonic() - started,
            summary=redact(result.summary, env.secrets),
            reason=result.reason,
            feedback=(*feedback, *result.feedback),
            plan=tuple(result.plan) if result.outcome == "planned" else None,
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
        reason = f"GitHub kept failing: {exc}"
    except Exception as exc:  # every failure ends with a visible reason
        log.exception("iteration.conclude_failed", task=task_id, iteration=number)
        reason = f"{type(exc).__name__}: {exc}"
    return _fail(env, task_id, number, board, reason)


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
    body = render_pr_body(task, latest, env.secrets)
    if env.prs is None:
        return None
    if not task.owns_pr:
        return task.pr_number  # a person's PR: its body stays theirs; the status comment reports
    if task.pr_number is None and not has_commits:
        return None
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
