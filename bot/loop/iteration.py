"""One iteration of the refinement loop: workspace, setup, context, strategy, conclude."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from bot.core.config import RepoConfig
from bot.core.redact import redact
from bot.core.render import (
    Final,
    plan_marker,
    render_plan,
    render_pr_body,
    render_thread_reply,
)
from bot.core.tasks import (
    Feedback,
    State,
    Step,
    TaskRecord,
    Usage,
    allowed,
    transition,
)
from bot.jobs.queue import RetryableError
from bot.loop.env import Env, repo_config
from bot.loop.errors import Refused
from bot.loop.ports import Checkout
from bot.loop.run import LoopRun
from bot.loop.status import StatusBoard
from bot.loop.strategies import PlanDriven, strategy_for
from bot.loop.strategies.base import AgentUnavailable, Brief, Result, Stopped
from bot.sandbox.bwrap import network_permitted, run_setup
from bot.store import tasks as taskdb

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
            elif taskdb.stop_requested(env.engine, task_id):
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


def run_iteration(
    env: Env,
    task: TaskRecord,
    *,
    trigger: str,
    key: str,
    feedback: tuple[Feedback, ...] = (),
    mode: str = "work",
) -> Outcome:
    """Run one iteration of ``task`` (idempotent per ``key``)."""
    where = task.number  # the task's one status comment lives on its issue (or borrowed PR)
    number, finished = taskdb.begin_iteration(env.engine, task.id, key, trigger, feedback)
    if finished:
        current = taskdb.load(env.engine, task.id)
        env.note(f"iteration {number} for {key} already ran; nothing to repeat")
        done_before = next(it for it in current.iterations if it.number == number)
        return Outcome(current, number, done_before.outcome, done_before.commits)
    step = {"work": Step.WORK, "plan": Step.PLAN, "execute": Step.APPROVE}[mode]
    task = taskdb.load(env.engine, task.id)  # a /vibe stop may have ended it meanwhile
    if task.state.terminal:
        reason = f"the task was {task.state.value} before this iteration started"
        taskdb.update_iteration(env.engine, task.id, number, outcome="stopped", error=reason)
        env.note(f"iteration {number} not run: {reason}")
        return Outcome(taskdb.load(env.engine, task.id), number, "stopped", reason=reason)
    if task.state is not State.WORKING and task.state is not State.PLANNING:
        if not allowed(task.state, step):
            reason = f"a task that is {task.state.value.replace('_', ' ')} cannot {mode} now"
            taskdb.update_iteration(env.engine, task.id, number, outcome="stopped", error=reason)
            raise Refused(reason)
        state = transition(task.state, step)
        taskdb.update(env.engine, task.id, state=state)
        task = replace(task, state=state)
    config = repo_config(env, task.base, where)
    strategy = strategy_for(task.model)
    board = StatusBoard(
        env.forge,
        task,
        number,
        where,
        interval=env.status_interval,
        secrets=env.secrets,
        note=env.note,
    )
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
        base_sha = taskdb.iteration_base(env.engine, task.id, number) or checkout.head()
        taskdb.update_iteration(env.engine, task.id, number, base_sha=base_sha)
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
        run = LoopRun(env, task, config, checkout, board, pack.text, stop, started)
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
                raise Refused(f"the {task.model} model does not make plans")
            result = strategy.plan(run, brief)
        elif mode == "execute":
            if not isinstance(strategy, PlanDriven):
                raise Refused(f"the {task.model} model has no plan to approve")
            result = strategy.execute_plan(run, brief)
        else:
            result = strategy.iterate(run, brief)
        if stop.is_set():
            raise Stopped("stopped")
        return _conclude(
            env, task, number, where, result, run, checkout, board, feedback, started, config
        )
    except Stopped:
        if checkout is not None:
            checkout.discard()
        usage = run.usage if run is not None else Usage()
        if interrupted.is_set():
            # Not /vibe stop: the worker is shutting down or lost its lease. Leave the
            # iteration running so the job, claimed again, resumes it (DESIGN.md section 2).
            taskdb.add_usage(env.engine, task.id, usage)
            env.note(f"iteration {number} interrupted; it resumes when the job runs again")
            raise RetryableError("interrupted: the worker stopped or lost its lease") from None
        reason = "Stopped on request; nothing from this iteration was pushed."
        taskdb.update_iteration(
            env.engine,
            task.id,
            number,
            outcome="stopped",
            usage=usage,
            duration=time.monotonic() - started,
            error=reason,
        )
        taskdb.add_usage(env.engine, task.id, usage)
        current = taskdb.load(env.engine, task.id)
        if allowed(current.state, Step.ABANDON):
            taskdb.update(env.engine, task.id, state=State.ABANDONED)
        board.finish(Final("stopped", time.monotonic() - started, usage, reason=reason))
        env.note(f"iteration {number} stopped; nothing pushed")
        return Outcome(taskdb.load(env.engine, task.id), number, "stopped", reason=reason)
    except (AgentUnavailable, RetryableError) as exc:
        usage = run.usage if run is not None else Usage()
        if checkout is not None:
            checkout.discard()
        what = "the model API" if isinstance(exc, AgentUnavailable) else "GitHub"
        if env.attempt < env.max_attempts:
            taskdb.add_usage(env.engine, task.id, usage)  # spent, even though it is retried
            board.phase(
                "Retrying",
                "running",
                f"{what} is unavailable; attempt {env.attempt} of {env.max_attempts} failed",
            )
            board.flush(force=True)
            raise
        _fail(env, task, number, board, started, usage, f"{what} kept failing: {exc}")
        return Outcome(taskdb.load(env.engine, task.id), number, "failed", reason=str(exc))
    except Refused:
        raise
    except Exception as exc:  # every failure ends with a visible reason
        usage = run.usage if run is not None else Usage()
        if checkout is not None:
            checkout.discard()
        reason = f"{type(exc).__name__}: {exc}"
        log.exception("iteration.failed", task=task.id, iteration=number)
        _fail(env, task, number, board, started, usage, reason)
        return Outcome(taskdb.load(env.engine, task.id), number, "failed", reason=reason)
    finally:
        done.set()
        watcher.join()
        if checkout is not None:
            checkout.close()


def _fail(
    env: Env,
    task: TaskRecord,
    number: int,
    board: StatusBoard,
    started: float,
    usage: Usage,
    reason: str,
) -> None:
    reason = redact(reason, env.secrets)
    duration = time.monotonic() - started
    taskdb.update_iteration(
        env.engine, task.id, number, outcome="failed", usage=usage, duration=duration, error=reason
    )
    taskdb.add_usage(env.engine, task.id, usage)
    current = taskdb.load(env.engine, task.id)
    if allowed(current.state, Step.FAIL):
        taskdb.update(env.engine, task.id, state=State.FAILED)
    board.finish(Final("failed", duration, usage, reason=reason))
    env.note(f"iteration {number} failed: {reason}")


def _conclude(
    env: Env,
    task: TaskRecord,
    number: int,
    where: int,
    result: Result,
    run: LoopRun,
    checkout: Checkout,
    board: StatusBoard,
    feedback: tuple[Feedback, ...],
    started: float,
    config: RepoConfig,
) -> Outcome:
    """Commit, check protected paths, push, open or update the PR, answer threads, record."""
    commits: list[str] = []
    if result.outcome == "planned":
        taskdb.update(env.engine, task.id, plan=result.plan)
        env.forge.upsert_comment(
            where, plan_marker(task.id), render_plan(task.id, result.plan, env.secrets)
        )
        env.note(f"plan posted with {len(result.plan)} steps; waiting for /vibe approve")
    if result.writes and result.outcome != "failed":
        sha = checkout.commit(_commit_message(task, number, result.summary))
        if sha is not None:
            board.phase("Push", "running")
            checkout.publish()
            commits.append(sha)
            board.phase("Push", "done", sha[:7])
            env.note(f"pushed {sha[:7]} to {task.branch}")
    duration = time.monotonic() - started
    final_outcome = result.outcome
    self_fb = tuple(result.feedback)
    taskdb.update_iteration(
        env.engine,
        task.id,
        number,
        outcome=final_outcome,
        commits=commits,
        checks=list(result.checks),
        red=result.red,
        green=result.green,
        usage=run.usage,
        duration=duration,
        summary=redact(result.summary, env.secrets),
        error=result.reason,
        feedback=(*feedback, *self_fb),
    )
    taskdb.add_usage(env.engine, task.id, run.usage)
    current = taskdb.load(env.engine, task.id)
    pr = _publish_pr(env, current, result.summary, config)
    if pr is not None and commits:
        _answer_threads(env, pr, feedback, commits[-1], config)
    if final_outcome == "planned":
        next_state = transition(current.state, Step.PLAN_READY)
    elif final_outcome == "failed":
        next_state = transition(current.state, Step.FAIL)
    else:
        next_state = transition(current.state, Step.DONE)
    if current.stop_requested and allowed(next_state, Step.ABANDON):
        next_state = State.ABANDONED  # /vibe stop came as the iteration was finishing
    taskdb.update(env.engine, task.id, state=next_state)
    board.finish(
        Final(
            result.outcome,
            duration,
            run.usage,
            tuple(result.checks),
            reason=result.reason,
        )
    )
    env.note(f"iteration {number} {final_outcome} in {duration:.1f} s")
    return Outcome(
        taskdb.load(env.engine, task.id), number, final_outcome, tuple(commits), pr, result.reason
    )


def _publish_pr(env: Env, task: TaskRecord, summary: str, config: RepoConfig) -> int | None:
    """Find-or-create the PR once the branch has commits; keep its body current."""
    has_commits = any(it.commits for it in task.iterations)
    latest = next((it.summary for it in reversed(task.iterations) if it.summary), summary)
    body = render_pr_body(task, latest, env.secrets)
    if env.prs is None:
        return None
    if not task.owns_pr:
        return task.pr_number  # a person's PR: its body stays theirs; the status comment reports
    if task.pr_number is not None:
        env.prs.update_pr_body(task.pr_number, body)
        return task.pr_number
    if not has_commits:
        return None
    strategy = strategy_for(task.model)
    pr = env.prs.find_or_create_pr(task.branch, task.base, task.title, body, strategy.draft(config))
    taskdb.update(env.engine, task.id, pr_number=pr)
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
) -> None:
    if env.prs is None:
        return
    for item in feedback:
        if item.kind != "human" or item.comment_id is None or item.path is None:
            continue
        env.prs.reply_in_thread(
            pr, item.comment_id, render_thread_reply(commit[:7], "", env.secrets)
        )
        if config.resolve_threads:
            env.prs.resolve_thread(pr, item.comment_id)
        env.note(f"replied in thread {item.comment_id} ({item.path}:{item.line})")
