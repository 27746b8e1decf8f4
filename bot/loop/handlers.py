"""Decisions are commands: the ``event`` job and the table that carries out each decision.

A stored webhook delivery becomes a typed event, the event a decision
(:func:`bot.core.policy.decide`, after this module looked up what the policy asks for:
the sender's live permission, the PR), and :data:`HANDLERS` maps each decision type to
the use case of :mod:`bot.loop.actions` that carries it out. The same table serves the
webhook job (:func:`handle`), ``vibe action`` and ``vibe run`` (:func:`carry_out`).

A decision that runs the agent goes through the :class:`~bot.loop.ports.Executor` the
wiring chooses for the repository: this job, or the repository's Actions runners.
A thin wiring function (:func:`event_handler`) stands in front of the testable core
(:func:`handle`, STYLE.md item 6).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy.engine import Engine

from bot.core import events as ev
from bot.core import policy as pol
from bot.core.commands import Verb, help_text, parse_commands
from bot.core.config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.core.errors import Declined
from bot.core.markers import carries
from bot.core.render import plan_marker
from bot.core.tasks import Feedback, State, TaskRecord
from bot.jobs.queue import Dead, Verdict
from bot.loop import actions as loop
from bot.loop.env import Env
from bot.loop.errors import AgentUnavailable
from bot.loop.ports import Executor, Forge, PullRequests, TaskStore, Work
from bot.loop.strategies.plan import parse_plan
from bot.settings import Settings
from bot.workspace.git import GitCredentials

log = structlog.get_logger(__name__)

D = TypeVar("D")
LOOP_BREAKER_WINDOW = timedelta(hours=1)


class Repository(Forge, PullRequests, Protocol):
    """Everything the dispatcher and the loop need of one GitHub repository."""

    def permission(self, login: str) -> str: ...

    def pull_request(self, number: int) -> ev.PullRequest | None: ...

    def clone_url(self) -> str: ...

    def git_credentials(self, fresh: bool = False) -> GitCredentials | None: ...


@dataclass(frozen=True)
class EventJob:
    """One ``event`` job as the loop takes it: the stored delivery it was queued for, the
    attempt and the cancel event of the job, and the process's settings and database."""

    event_name: str
    event_payload: dict[str, Any]
    delivery_id: str | None
    job_id: int
    attempt: int
    cancel: threading.Event
    settings: Settings
    engine: Engine


class Wiring(Protocol):
    """What the ``event`` job needs of the composition root (:mod:`bot.bootstrap`)."""

    def tasks(self, job: EventJob) -> TaskStore: ...

    def repository(self, repo: ev.Repo, installation_id: int | None) -> Repository: ...

    def env(self, job: EventJob, repository: Repository) -> Env: ...

    def executor(self, job: EventJob, config: RepoConfig) -> Executor: ...

    def follow_run(self, job: EventJob, run: ev.WorkflowRun) -> str:
        """A ``workflow_run`` webhook: news of a run an executor elsewhere follows."""
        ...

    def judge(self, exc: Exception) -> Verdict:
        """What the job boundary will make of ``exc``."""
        ...


class InProcess:
    """The :class:`~bot.loop.ports.Executor` that does the work here, in this job."""

    def run(self, work: Work, here: Callable[[], str]) -> str:
        return here()


IN_PROCESS = InProcess()


# ------------------------------------------------------------------------- decision


def _recent_runs(task: TaskRecord | None, now: datetime) -> int:
    """Iterations of the task begun within the loop breaker's window."""
    if task is None:
        return 0
    since = now - LOOP_BREAKER_WINDOW
    return sum(
        1
        for it in task.iterations
        if it.started_at is not None
        and (it.started_at if it.started_at.tzinfo else it.started_at.replace(tzinfo=UTC)) >= since
    )


def _view(task: TaskRecord | None, event: ev.Event, bot: pol.BotIdentity) -> pol.TaskView | None:
    if task is None:
        return None
    return pol.TaskView(
        ended=task.state.terminal,
        awaiting_approval=task.state is State.AWAITING_APPROVAL,
        plan_comment_id=_plan_comment(task, event, bot),
    )


def _plan_comment(task: TaskRecord, event: ev.Event, bot: pol.BotIdentity) -> int | None:
    """The comment id of this task's plan when ``event`` is about it: a comment the bot
    wrote that carries the task's plan marker (the policy treats its edit as approval)."""
    if not isinstance(event, ev.Comment) or event.author is None or not bot.is_self(event.author):
        return None
    return event.comment_id if carries(event.body, plan_marker(task.id)) else None


def quiet_config(repo: Repository, event: ev.Event) -> RepoConfig:
    """The config for the decision and the executor's choice only; problems are announced
    when the loop acts."""
    branch = getattr(getattr(event, "repo", None), "default_branch", None) or repo.default_branch()
    config, _ = parse_repo_config(repo.read_file(CONFIG_PATH, branch))
    return config


def decide(
    bot: pol.BotIdentity,
    event: ev.Event,
    repo: Repository,
    task: TaskRecord | None,
    config: RepoConfig,
) -> pol.Action | pol.Refusal | pol.Ignore:
    """The policy's decision, with the facts it asks for looked up on ``repo``."""
    sender = getattr(event, "sender", None)
    if sender is not None and bot.is_self(sender):
        return pol.Ignore("the bot's own event")
    permission: str | None = None
    pull: ev.PullRequest | None = None
    runs = _recent_runs(task, datetime.now(UTC))
    for _ in range(4):
        decision = pol.decide(
            event,
            permission=permission,
            repo_config=config,
            bot=bot,
            recent_runs=runs,
            task=_view(task, event, bot),
            pull_request=pull,
        )
        if isinstance(decision, pol.NeedsPermission):
            permission = repo.permission(decision.login)
        elif isinstance(decision, pol.NeedsPullRequest):
            pull = repo.pull_request(decision.number)
            if pull is None:
                return pol.Ignore(f"pull request #{decision.number} was not found")
        else:
            return decision
    return pol.Ignore("the policy kept asking for facts")


# ---------------------------------------------------------------------------- table


@dataclass(frozen=True)
class Context:
    """What a handler works with besides its decision."""

    env: Env
    where: int  # the issue or PR the event is about: replies and reactions go there
    key: str  # what asked (a delivery, a terminal line): one reply, one iteration per key
    task: TaskRecord | None = None
    comment: ev.Comment | None = None  # the comment that asked, if one did
    trigger: str = "comment"  # how feedback arrives here: a comment, or vibe run's terminal
    repo_id: int | None = None  # GitHub's repository id: a new task is stored with it

    @property
    def comment_id(self) -> int | None:
        return self.comment.comment_id if self.comment is not None else None


def _react_done(env: Env, number: int, comment_id: int | None, outcome: str) -> None:
    """Rocket on the trigger when the iteration succeeded (or planned), confused if not."""
    ok = outcome in ("succeeded", "planned")
    env.forge.react(number, comment_id, "rocket" if ok else "confused")


def _feedback(env: Env, action: pol.Iterate, pr: int) -> tuple[Feedback, ...]:
    """One review's body and all its inline comments form one iteration's feedback.

    The same feedback whichever of the review and its inline ``/vibe`` comment arrives
    first (GitHub sends both, in no set order): an inline ``/vibe <text>`` counts as its
    text at its line; an inline comment holding another command is left to its own event.
    A reply in a thread is answered in that thread (replies to replies are refused).
    """
    items: list[Feedback] = []
    notes = (
        env.prs.review_notes(pr, action.review_id)
        if action.review_id is not None and env.prs is not None
        else []
    )
    if action.feedback.strip() and all(n.comment_id != action.comment_id for n in notes):
        items.append(Feedback("human", action.feedback, author=action.requester, comment_id=None))
    login = env.settings.bot_login or ""
    for note in notes:
        commands = parse_commands(note.body, login)
        text = note.body
        if commands:
            if commands[0].verb is not Verb.RUN or not commands[0].text:
                continue
            text = commands[0].text
        items.append(
            Feedback(
                "human",
                text,
                author=note.author,
                path=note.path,
                line=note.line,
                comment_id=note.reply_to or note.comment_id,
                start_line=note.start_line,
                side=note.side,
            )
        )
    return tuple(items)


def _refusal(d: pol.Refusal, c: Context) -> str:
    if d.number is not None:
        c.env.forge.react(c.where, c.comment_id, "confused")
        loop.refuse(c.env, d.number, c.key, d.message)
    return f"refused: {d.reason.value}"


def _start(d: pol.StartTask, c: Context) -> str:
    # A workflow_dispatch prompt has no issue yet: vibe action opens one, then comes here.
    assert d.number is not None
    out = loop.start(
        c.env,
        loop.StartRequest(
            number=d.number,
            requester=d.requester,
            key=c.key,
            model=d.model,
            instruction=d.instruction,
            comment_id=c.comment_id,
            on_pr=d.pull_request is not None,
            repo_id=c.repo_id,
        ),
    )
    _react_done(c.env, c.where, c.comment_id, out.outcome)
    return f"start: iteration {out.iteration} {out.outcome}"


def _help(d: pol.Help, c: Context) -> str:
    loop.reply(c.env, c.where, c.key, help_text(trigger_label=c.env.settings.trigger_label))
    return "help"


def _on_task(run: Callable[[D, Context, TaskRecord], str]) -> Callable[[D, Context], str]:
    """A decision about the task here; without a task, the reply says so."""

    def handler(d: D, c: Context) -> str:
        if c.task is None:
            loop.reply(
                c.env, c.where, c.key, "There is no vibe task on this issue or pull request yet."
            )
            return "no task"
        return run(d, c, c.task)

    return handler


def _iterate(d: pol.Iterate, c: Context, task: TaskRecord) -> str:
    feedback = _feedback(c.env, d, c.where)
    if not feedback:
        return "ignored: a review with nothing to act on"
    trigger = "review" if d.review_id is not None else c.trigger
    key = f"review:{d.review_id}" if d.review_id is not None else c.key
    c.env.forge.react(c.where, d.comment_id, "eyes")
    out = loop.iterate(c.env, task, feedback, trigger=trigger, key=key)
    _react_done(c.env, c.where, d.comment_id, out.outcome)
    return f"iterate: iteration {out.iteration} {out.outcome}"


def _require(d: pol.AddRequirement, c: Context, task: TaskRecord) -> str:
    out = loop.require(c.env, task, d.text, author=d.requester, key=c.key)
    return f"require: iteration {out.iteration} {out.outcome}"


def _approve(d: pol.ApprovePlan, c: Context, task: TaskRecord) -> str:
    if d.plan_edited and c.comment is not None:
        edited = parse_plan(c.comment.body)  # the writer's edit is the approved plan
        if edited:
            c.env.tasks.set_plan(task.id, edited)
            task = c.env.tasks.load(task.id)
    result = loop.approve(c.env, task, key=c.key, where=c.where)
    return "approve" if result is None else f"approve: iteration {result.iteration}"


def _stop(d: pol.Stop, c: Context, task: TaskRecord) -> str:
    loop.stop(c.env, task, key=c.key, where=c.where, author=d.requester)
    return "stop"


def _retry(d: pol.Retry, c: Context, task: TaskRecord) -> str:
    out = loop.retry(c.env, task, key=c.key)
    return f"retry: iteration {out.iteration} {out.outcome}"


def _undo(d: pol.Undo, c: Context, task: TaskRecord) -> str:
    sha = loop.undo(c.env, task, key=c.key, where=c.where)
    return f"undo: {sha or 'nothing'}"


def _status(d: pol.Status, c: Context, task: TaskRecord) -> str:
    loop.status(c.env, task, key=c.key, where=c.where)
    return "status"


def _accept(d: pol.Accept, c: Context, task: TaskRecord) -> str:
    loop.accept(c.env, task, d.reason)
    return "accept"


def _abandon(d: pol.Abandon, c: Context, task: TaskRecord) -> str:
    loop.abandon(c.env, task, d.reason)
    return "abandon"


# Each decision the policy can make, and the handler that carries it out.
HANDLERS: dict[type[Any], Callable[[Any, Context], str]] = {
    pol.Refusal: _refusal,
    pol.StartTask: _start,
    pol.Help: _help,
    pol.Iterate: _on_task(_iterate),
    pol.AddRequirement: _on_task(_require),
    pol.ApprovePlan: _on_task(_approve),
    pol.Stop: _on_task(_stop),
    pol.Retry: _on_task(_retry),
    pol.Undo: _on_task(_undo),
    pol.Status: _on_task(_status),
    pol.Accept: _on_task(_accept),
    pol.Abandon: _on_task(_abandon),
}


def carry_out(decision: pol.Action | pol.Refusal, context: Context) -> str:
    """Carry out ``decision`` through its handler; returns what was done."""
    return HANDLERS[type(decision)](decision, context)


# ------------------------------------------------------------------------ event job


def handle(job: EventJob, wiring: Wiring) -> str:
    """Run one ``event`` job; returns what was done (for logs and tests)."""
    event = ev.parse_event(job.event_name, job.event_payload)
    bot = job.settings.bot_identity()
    outsider = pol.admit(event, bot)
    if outsider is not None:
        return f"refused: {outsider.message}"  # no reply, no work: nothing is asked of GitHub
    if isinstance(event, ev.WorkflowRun):
        return wiring.follow_run(job, event)
    if not isinstance(event, ev.IssueEvent | ev.Comment | ev.PullRequestEvent):
        return f"ignored {type(event).__name__}"
    repo = wiring.repository(event.repo, event.installation_id)
    # By the repository's id: a task begun before a rename or transfer is found under the
    # new name, and takes it.
    task = wiring.tasks(job).find(event.repo.full_name, event.number, event.repo.id)
    key = f"delivery:{job.delivery_id or job.job_id}"
    # A job claimed again after a crash decides as the first attempt did, before the task
    # it created existed; the loop then resumes the iteration keyed by this delivery.
    resumed = task is not None and any(it.key == key for it in task.iterations)
    config = quiet_config(repo, event)
    decision = decide(bot, event, repo, None if resumed else task, config)
    if isinstance(decision, pol.Ignore):
        log.info("event.ignored", reason=decision.reason, delivery=job.delivery_id)
        return f"ignored: {decision.reason}"
    acting: pol.Action | pol.Refusal = decision

    def here() -> str:
        return _here(job, wiring, repo, event, acting, task, key)

    if isinstance(acting, pol.RUN_ACTIONS):
        work = Work(event.repo.full_name, event.number, key, job.event_name, job.event_payload)
        return wiring.executor(job, config).run(work, here)
    return here()


def _here(
    job: EventJob,
    wiring: Wiring,
    repo: Repository,
    event: ev.IssueEvent | ev.Comment | ev.PullRequestEvent,
    decision: pol.Action | pol.Refusal,
    task: TaskRecord | None,
    key: str,
) -> str:
    env = wiring.env(job, repo)
    comment = event if isinstance(event, ev.Comment) else None
    try:
        context = Context(env, event.number, key, task, comment, repo_id=event.repo.id)
        return carry_out(decision, context)
    except Declined as exc:
        loop.refuse(env, event.number, key, str(exc))
        return f"refused: {exc}"
    except AgentUnavailable:
        raise
    except Exception as exc:
        # DESIGN.md section 5: every failure ends with a visible, redacted explanation.
        # Before the last attempt the job is retried, so only the last one says so.
        last = job.attempt >= job.settings.max_attempts
        if last or isinstance(wiring.judge(exc), Dead):
            _say_failed(env, event.number, key, f"{type(exc).__name__}: {exc}")
        raise


def _say_failed(env: Env, number: int, key: str, reason: str) -> None:
    try:
        loop.fail_visibly(env, number, key, reason)
    except Exception as exc:  # noqa: BLE001 - GitHub itself may be what failed; the job keeps its error
        log.warning("event.failure_not_posted", number=number, error=str(exc))


def event_handler(wiring: Wiring) -> Callable[[EventJob], None]:
    """The ``event`` job of the webhook service, built with the service's wiring."""

    def run(job: EventJob) -> None:
        result = handle(job, wiring)
        log.info("event.handled", delivery=job.delivery_id, result=result)

    return run
