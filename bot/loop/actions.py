"""The refinement loop (survey Eq. 4): start a task, iterate on feedback, accept or abandon.

Only this module knows the order of steps (DESIGN.md section 3). It talks to the outside
through :mod:`bot.loop.ports` and keeps its state in the task tables (:mod:`bot.store.tasks`), so a
job that is claimed again after a crash finds the same task, the same iteration (keyed by
the trigger), the same branch, PR and status comment, and finishes the work instead of
repeating it (DESIGN.md section 2).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.core.config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.core.redact import redact
from bot.core.render import (
    Final,
    Phase,
    PhaseState,
    config_marker,
    plan_marker,
    render_config_problems,
    render_failure,
    render_plan,
    render_pr_body,
    render_refusal,
    render_reply,
    render_status,
    render_status_reply,
    render_thread_reply,
    reply_marker,
    status_marker,
)
from bot.core.tasks import (
    Check,
    Feedback,
    FeedbackKind,
    PlanStep,
    Requirement,
    State,
    Step,
    TaskRecord,
    Usage,
    allowed,
    branch_name,
    transition,
)
from bot.jobs.queue import RetryableError
from bot.loop.ports import Agent as AgentPort
from bot.loop.ports import AgentRequest, Checkout, ContextBuilder, Forge, PullRequests, Workspaces
from bot.loop.strategies import PlanDriven, strategy_for
from bot.loop.strategies.base import AgentOutcome, AgentUnavailable, Brief, Result, Stopped
from bot.sandbox.bwrap import Sandbox, SandboxLimits, network_permitted, run_setup
from bot.settings import DevelopmentModel, Settings
from bot.store import tasks as taskdb
from bot.store.tables import Iteration

log = structlog.get_logger(__name__)

CHECK_LIMITS = SandboxLimits(wall_seconds=600.0)
MAX_CHECK_OUTPUT = 4000
STOP_POLL_SECONDS = 0.25


class Refused(Exception):
    """The loop will not do what was asked; the message is the reply to post."""


@dataclass
class Env:
    """Everything one job of the loop works with."""

    settings: Settings
    engine: Engine
    forge: Forge
    prs: PullRequests | None
    workspaces: Workspaces
    agent: AgentPort
    sandbox: Sandbox
    context: ContextBuilder
    cancel: threading.Event = field(default_factory=threading.Event)
    status_interval: float = 3.0
    attempt: int = 1
    max_attempts: int = 1
    timeline: Callable[[str], None] | None = None
    configs: dict[str, RepoConfig] = field(default_factory=dict)

    @property
    def secrets(self) -> list[str]:
        return self.settings.secret_values

    def note(self, text: str) -> None:
        if self.timeline is not None:
            self.timeline(text)


# --------------------------------------------------------------------------- config


def repo_config(env: Env, ref: str, number: int) -> RepoConfig:
    """``.github/vibe.yml`` at ``ref``; problems get one comment naming the line."""
    if ref in env.configs:
        return env.configs[ref]
    text = env.forge.read_file(CONFIG_PATH, ref)
    config, problems = parse_repo_config(text)
    if problems:
        env.forge.upsert_comment(
            number,
            config_marker(ref),
            render_config_problems(problems, CONFIG_PATH, ref, env.secrets),
        )
        env.note(f"config: {CONFIG_PATH} invalid ({problems[0]}); using defaults")
    env.configs[ref] = config
    return config


# --------------------------------------------------------------------------- status


class StatusBoard:
    """The task's one status comment, updated at most every ``interval`` seconds."""

    def __init__(
        self,
        forge: Forge,
        task: TaskRecord,
        iteration: int,
        number: int,
        *,
        interval: float,
        secrets: Sequence[str] = (),
        note: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.forge = forge
        self.interval = interval
        self.secrets = list(secrets)
        self.note = note
        self.task = task
        self.iteration = iteration
        self.number = number
        self.phases: dict[str, Phase] = {}
        self.last = 0.0
        self.dirty = False
        self.finished = False
        self.lock = threading.Lock()

    def phase(self, name: str, state: PhaseState, detail: str = "") -> None:
        with self.lock:
            self.phases[name] = Phase(name, state, detail)
            self.dirty = True
        self.note(f"  {state:8} {name}{f' ({detail})' if detail else ''}")
        self.flush()

    def flush(self, force: bool = False) -> None:
        """Publish pending changes if the interval has passed (or ``force``). Rendering and
        sending happen under one lock, so an older body never lands after a newer one."""
        with self.lock:
            now = time.monotonic()
            if self.finished or not self.dirty:
                return
            if not force and now - self.last < self.interval:
                return
            body = render_status(
                self.task.id,
                self.iteration,
                self.task.model,
                list(self.phases.values()),
                secrets=self.secrets,
            )
            self.last, self.dirty = now, False
            self.forge.upsert_comment(self.number, status_marker(self.task.id), body)

    def finish(self, final: Final) -> None:
        with self.lock:
            self.finished = True
            for name, phase in list(self.phases.items()):
                if phase.state in ("running", "pending"):
                    self.phases[name] = replace(
                        phase, state="failed" if final.outcome != "succeeded" else "done"
                    )
            body = render_status(
                self.task.id,
                self.iteration,
                self.task.model,
                list(self.phases.values()),
                final,
                self.secrets,
            )
            self.forge.upsert_comment(self.number, status_marker(self.task.id), body)


# --------------------------------------------------------------------------- the run


def _iteration_id(engine: Engine, task_id: int, number: int) -> int | None:
    """The ``Iteration`` row's id, which the agent's recorded steps point to."""
    with Session(engine) as session:
        return session.exec(
            select(Iteration.id).where(Iteration.task_id == task_id, Iteration.number == number)
        ).first()


class LoopRun:
    """The primitives a development model uses in one iteration
    (:class:`bot.loop.strategies.base.Run`)."""

    def __init__(
        self,
        env: Env,
        task: TaskRecord,
        config: RepoConfig,
        checkout: Checkout,
        board: StatusBoard,
        context: str,
        stop: threading.Event,
        started: float,
    ) -> None:
        self.started = started
        self.env = env
        self.task = task
        self.config = config
        self.checkout = checkout
        self.board = board
        self.context = context
        self.stop = stop
        self.usage = Usage()
        self.plan: list[PlanStep] = list(task.plan)
        self.network = network_permitted(config, env.settings)

    def phase(self, name: str, state: str, detail: str = "") -> None:
        phase_state: PhaseState = state if state in _PHASE_STATES else "running"  # type: ignore[assignment]
        self.board.phase(name, phase_state, detail)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped")

    def agent(self, instruction: str, *, read_only: bool = False) -> AgentOutcome:
        self._check_stop()
        earlier = sum(it.duration for it in self.task.iterations if it.outcome != "running")
        request = AgentRequest(
            workdir=self.checkout.path,
            instruction=instruction,
            context=self.context,
            read_only=read_only,
            config=self.config,
            network=self.network,
            task_dollars_spent=self.task.usage.cost + self.usage.cost,
            task_seconds_spent=earlier + time.monotonic() - self.started,
            iteration_dollars_spent=self.usage.cost,
            iteration_id=_iteration_id(self.env.engine, self.task.id, self.board.iteration),
        )
        name = next(
            (n for n, p in reversed(self.board.phases.items()) if p.state == "running"),
            "Agent working",
        )

        def on_step(step: int) -> None:
            self.board.phase(name, "running", f"step {step}")

        outcome = self.env.agent.run(request, cancel=self.stop, on_step=on_step)
        self.usage = self.usage + outcome.usage
        self._check_stop()
        if outcome.exit == "cancelled":
            raise Stopped("stopped")
        if outcome.exit == "error" and outcome.retryable:
            raise AgentUnavailable(outcome.reason or "the model API is unavailable")
        return outcome

    def _run_check(self, name: str, command: str, kind: FeedbackKind) -> Check:
        self._check_stop()
        result = self.env.sandbox.run(
            command,
            workdir=self.checkout.path,
            limits=CHECK_LIMITS,
            network=self.network,
            allow_hosts=tuple(self.config.network.allow),
            cancel=self.stop,
        )
        self._check_stop()
        output = redact((result.stdout + result.stderr)[-MAX_CHECK_OUTPUT:], self.env.secrets)
        return Check(name, command, kind, result.exit_code, result.duration, output, result.limit)

    def checks(self) -> list[Check]:
        out = [self._run_check("lint", c, "compiler") for c in self.config.commands.lint]
        out += [self._run_check("tests", c, "execution") for c in self.config.commands.test]
        return out

    def test_run(self) -> Check | None:
        commands = self.config.commands.test
        if not commands:
            return None
        return self._run_check("tests", " && ".join(commands), "execution")

    def tick(self, index: int) -> None:
        if 0 <= index < len(self.plan):
            self.plan[index] = replace(self.plan[index], done=True)
            taskdb.update(self.env.engine, self.task.id, plan=tuple(self.plan))
            self.env.forge.upsert_comment(
                self.board.number,
                plan_marker(self.task.id),
                render_plan(self.task.id, self.plan, self.env.secrets),
            )


_PHASE_STATES = frozenset({"pending", "running", "done", "failed", "skipped"})
# --------------------------------------------------------------------------- helpers


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


def _limits_view(settings: Settings, config: RepoConfig) -> dict[str, float | int]:
    lim = config.limits
    return {
        "steps_per_iteration": lim.steps_per_iteration or settings.limits.steps_per_iteration,
        "dollars_per_iteration": lim.dollars_per_iteration or settings.limits.dollars_per_iteration,
        "dollars_per_task": lim.dollars_per_task or settings.limits.dollars_per_task,
        "minutes_per_iteration": lim.minutes_per_iteration or settings.limits.minutes_per_iteration,
        "minutes_per_task": lim.minutes_per_task or settings.limits.minutes_per_task,
    }


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


# --------------------------------------------------------------------------- iteration


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


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class StartRequest:
    number: int
    requester: str
    key: str
    model: DevelopmentModel | None = None
    instruction: str = ""
    comment_id: int | None = None
    on_pr: bool = False


def start(env: Env, req: StartRequest) -> Outcome:
    """A writer asked for work on an issue (label or ``/vibe``) or on an existing PR."""
    env.forge.react(req.number, req.comment_id, "eyes")
    existing = taskdb.find(env.engine, env.forge.repo, req.number)
    if existing is not None and existing.state is not State.QUEUED:
        if existing.state.busy:  # this job was claimed again after a crash: resume
            return run_iteration(
                env, existing, trigger="start", key=req.key, mode=_mode_for(existing)
            )
        if not existing.state.terminal:  # a live task: the request is feedback for it
            text = req.instruction or "Continue with the task."
            fb = (Feedback("human", text, author=req.requester),)
            return iterate(env, existing, fb, trigger="comment", key=req.key)
        taskdb.update(env.engine, existing.id, state=State.QUEUED, stop_requested=False)
        existing = taskdb.load(env.engine, existing.id)
    if existing is None:
        existing = _create(env, req)
    task = existing
    if req.instruction and req.instruction not in (r.text for r in task.requirements):
        task = task.with_requirement(req.instruction, "require")
        taskdb.update(env.engine, task.id, requirements=task.requirements)
    model = req.model or task.model
    if model != task.model:
        taskdb.update(env.engine, task.id, model=model)
        task = replace(task, model=model)
    return run_iteration(env, task, trigger="start", key=req.key, mode=_mode_for(task))


def _mode_for(task: TaskRecord) -> str:
    """Plan while a plan-driven task has no approved plan; otherwise work."""
    if task.state in (State.AWAITING_APPROVAL, State.PLANNING):
        return "plan"
    if isinstance(strategy_for(task.model), PlanDriven) and not task.plan:
        return "plan"
    return "work"


def _create(env: Env, req: StartRequest) -> TaskRecord:
    if req.on_pr:
        pull = env.forge.pull(req.number)
        if pull is None:
            raise Refused(f"pull request #{req.number} was not found")
        if not pull.same_repo:
            raise Refused(
                "I only work on branches of this repository; this pull request comes from a fork"
            )
        config = repo_config(env, pull.base_ref, req.number)
        model = req.model or config.model or env.settings.default_model
        new = taskdb.NewTask(
            repo=env.forge.repo,
            number=req.number,
            model=model,
            branch=pull.head_ref,
            base=pull.base_ref,
            requester=req.requester,
            title=pull.title,
            instruction=req.instruction or pull.title,
            requirements=(Requirement(req.instruction or pull.title, "issue"),),
            pr_number=req.number,
            owns_pr=False,
        )
    else:
        base = env.forge.default_branch()
        issue = env.forge.issue_text(req.number)
        config = repo_config(env, base, req.number)
        model = req.model or config.model or env.settings.default_model
        instruction = issue.body.strip() or issue.title
        if issue.comments:
            instruction += "\n\nDiscussion by writers:\n" + "\n---\n".join(issue.comments)
        new = taskdb.NewTask(
            repo=env.forge.repo,
            number=req.number,
            model=model,
            branch=branch_name(req.number, issue.title),
            base=base,
            requester=req.requester,
            title=issue.title,
            instruction=instruction,
            requirements=(Requirement(issue.title, "issue"),),
        )
    task, _ = taskdb.find_or_create(env.engine, new)
    return task


def iterate(
    env: Env, task: TaskRecord, feedback: tuple[Feedback, ...], *, trigger: str, key: str
) -> Outcome:
    """A review, review comments or ``/vibe <text>`` on the PR: iteration k+1."""
    return run_iteration(
        env, task, trigger=trigger, key=key, feedback=feedback, mode=_mode_for(task)
    )


def require(env: Env, task: TaskRecord, text: str, *, author: str, key: str) -> Outcome:
    """``/vibe require <text>``: the requirement joins the list, then iteration k+1."""
    updated = task.with_requirement(text.strip(), "require")
    if updated is not task:
        taskdb.update(env.engine, task.id, requirements=updated.requirements)
    fb = (Feedback("human", f"New requirement: {text.strip()}", author=author),)
    return run_iteration(
        env, updated, trigger="require", key=key, feedback=fb, mode=_mode_for(updated)
    )


def approve(env: Env, task: TaskRecord, *, key: str, where: int) -> Outcome | None:
    """``/vibe approve`` of a plan: execute its steps."""
    if task.state is not State.AWAITING_APPROVAL:
        reply(env, where, key, "There is no plan waiting for approval on this task.")
        return None
    return run_iteration(env, task, trigger="approve", key=key, mode="execute")


def stop(env: Env, task: TaskRecord, *, key: str, where: int, author: str) -> None:
    """``/vibe stop``: a running iteration stops within seconds; the task is abandoned."""
    taskdb.update(env.engine, task.id, stop_requested=True)
    if task.state.busy:
        reply(env, where, key, f"Stopping, as @{author} asked. Nothing half-done will be pushed.")
        return
    if allowed(task.state, Step.ABANDON):
        taskdb.update(env.engine, task.id, state=State.ABANDONED)
    reply(env, where, key, f"Stopped, as @{author} asked: the task is abandoned.")


def retry(env: Env, task: TaskRecord, *, key: str) -> Outcome:
    """``/vibe retry``: run the last iteration's feedback again as a new iteration."""
    last = task.iterations[-1] if task.iterations else None
    feedback = tuple(f for f in last.feedback if f.kind == "human") if last else ()
    if task.state.terminal:
        taskdb.update(env.engine, task.id, state=State.QUEUED, stop_requested=False)
        task = taskdb.load(env.engine, task.id)
    return run_iteration(
        env, task, trigger="retry", key=key, feedback=feedback, mode=_mode_for(task)
    )


def undo(env: Env, task: TaskRecord, *, key: str, where: int) -> str | None:
    """``/vibe undo``: revert the last iteration's commits as one new commit and push."""
    last = next((it for it in reversed(task.iterations) if it.commits), None)
    if last is None:
        reply(env, where, key, "There is nothing to undo: no iteration pushed commits yet.")
        return None
    base = taskdb.iteration_base(env.engine, task.id, last.number)
    if base is None:
        reply(env, where, key, f"I cannot undo iteration {last.number}: its start is unknown.")
        return None
    checkout = env.workspaces.open(
        task.branch,
        task.base,
        shared=not task.owns_pr,
        requester=task.requester,
    )
    try:
        sha = checkout.revert_since(base, f"vibe: undo iteration {last.number} (#{task.number})")
        if sha is not None:
            checkout.publish()
    finally:
        checkout.close()
    if sha is None:
        reply(env, where, key, f"Iteration {last.number} left nothing to revert.")
        return None
    taskdb.update_iteration(env.engine, task.id, last.number, outcome="reverted")
    reply(env, where, key, f"Reverted iteration {last.number} in {sha[:7]}.")
    env.note(f"undo: reverted iteration {last.number} in {sha[:7]}")
    current = taskdb.load(env.engine, task.id)
    if current.pr_number is not None and env.prs is not None and current.owns_pr:
        env.prs.update_pr_body(
            current.pr_number, render_pr_body(current, last.summary, env.secrets)
        )
    return sha


def status(env: Env, task: TaskRecord, *, key: str, where: int) -> None:
    config = repo_config(env, task.base, where)
    env.forge.upsert_comment(
        where,
        reply_marker(key),
        render_status_reply(task, _limits_view(env.settings, config), key, env.secrets),
    )


def accept(env: Env, task: TaskRecord, reason: str) -> None:
    if allowed(task.state, Step.ACCEPT):
        taskdb.update(env.engine, task.id, state=State.ACCEPTED)
        env.note(f"task accepted ({reason})")


def abandon(env: Env, task: TaskRecord, reason: str) -> None:
    if allowed(task.state, Step.ABANDON):
        taskdb.update(env.engine, task.id, state=State.ABANDONED, stop_requested=task.state.busy)
        env.note(f"task abandoned ({reason})")


def reply(env: Env, where: int, key: str, text: str) -> None:
    """A one-time reply, keyed by what it answers, so a retried job does not post twice."""
    env.forge.upsert_comment(where, reply_marker(key), render_reply(text, key, env.secrets))


def refuse(env: Env, where: int, key: str, reason: str) -> None:
    """A refusal, answered once (keyed by the delivery that asked)."""
    env.forge.upsert_comment(where, reply_marker(key), render_refusal(reason, key, env.secrets))


def fail_visibly(env: Env, where: int, key: str, reason: str) -> None:
    env.forge.upsert_comment(where, reply_marker(key), render_failure(reason, key, env.secrets))
