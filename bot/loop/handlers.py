"""The ``event`` job: a stored webhook delivery -> typed event -> decision -> the loop.

A thin wiring function (:func:`handle_event`) in front of a testable core
(:func:`handle`, STYLE.md item 6). The decision is :func:`bot.core.policy.decide`; this
module only looks up what the policy asks for (the sender's live permission, the PR) and
hands the action to :mod:`bot.loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from bot.core import events as ev
from bot.core import policy as pol
from bot.core.commands import help_text
from bot.core.config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.core.markers import carries
from bot.core.render import plan_marker
from bot.core.tasks import Feedback, State, TaskRecord
from bot.jobs.queue import JobContext, PermanentError, RetryableError
from bot.loop import actions as loop
from bot.loop.env import Env
from bot.loop.errors import Refused
from bot.loop.ports import Forge, PullRequests
from bot.loop.strategies.base import AgentUnavailable
from bot.loop.strategies.plan import parse_plan
from bot.settings import Settings
from bot.store import tasks as taskdb
from bot.store.tables import Iteration, utcnow
from bot.workspace.git import GitCredentials

log = structlog.get_logger(__name__)


class Repository(Forge, PullRequests, Protocol):
    """Everything the dispatcher and the loop need of one GitHub repository."""

    def permission(self, login: str) -> str: ...

    def pull_request(self, number: int) -> ev.PullRequest | None: ...

    def clone_url(self) -> str: ...

    def git_credentials(self) -> GitCredentials | None: ...


@dataclass(frozen=True)
class Wiring:
    """Builds the loop's environment for one repository (production or tests)."""

    repository: Callable[[ev.Repo, int | None], Repository]
    env: Callable[[JobContext, Repository], Env]


def _recent_runs(engine: Engine, task: TaskRecord | None) -> int:
    if task is None:
        return 0
    since = utcnow() - timedelta(hours=1)
    with Session(engine) as session:
        count = session.exec(
            select(func.count())
            .select_from(Iteration)
            .where(Iteration.task_id == task.id, col(Iteration.started_at) >= since)
        ).one()
    return int(count)


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


def _quiet_config(repo: Repository, event: ev.Event) -> RepoConfig:
    """The config for the decision only; problems are announced when the loop acts."""
    branch = getattr(getattr(event, "repo", None), "default_branch", None) or repo.default_branch()
    config, _ = parse_repo_config(repo.read_file(CONFIG_PATH, branch))
    return config


def decide(
    ctx: JobContext, event: ev.Event, repo: Repository, task: TaskRecord | None
) -> pol.Decision:
    bot = pol.BotIdentity.from_settings(ctx.settings)
    sender = getattr(event, "sender", None)
    if sender is not None and bot.is_self(sender):
        return pol.Ignore("the bot's own event")
    config = _quiet_config(repo, event)
    permission: str | None = None
    pull: ev.PullRequest | None = None
    runs = _recent_runs(ctx.engine, task)
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


def _comment_id(event: ev.Event) -> int | None:
    return event.comment_id if isinstance(event, ev.Comment) else None


def handle(ctx: JobContext, wiring: Wiring) -> str:
    """Run one ``event`` job; returns what was done (for logs and tests)."""
    if ctx.event_name is None or ctx.event_payload is None:
        raise PermanentError("the job has no stored delivery")
    event = ev.parse_event(ctx.event_name, ctx.event_payload)
    if not isinstance(event, ev.IssueEvent | ev.Comment | ev.PullRequestEvent):
        return f"ignored {type(event).__name__}"
    repo = wiring.repository(event.repo, event.installation_id)
    task = taskdb.find(ctx.engine, event.repo.full_name, event.number)
    key = f"delivery:{ctx.delivery_id or ctx.job_id}"
    # A job claimed again after a crash decides as the first attempt did, before the task
    # it created existed; the loop then resumes the iteration keyed by this delivery.
    resumed = task is not None and taskdb.has_iteration(ctx.engine, task.id, key)
    decision = decide(ctx, event, repo, None if resumed else task)
    if isinstance(decision, pol.Ignore):
        log.info("event.ignored", reason=decision.reason, delivery=ctx.delivery_id)
        return f"ignored: {decision.reason}"
    env = wiring.env(ctx, repo)
    try:
        return _act(env, repo, event, decision, task, key)
    except Refused as exc:
        loop.refuse(env, event.number, key, str(exc))
        return f"refused: {exc}"
    except AgentUnavailable as exc:
        raise RetryableError(str(exc)) from exc
    except Exception as exc:
        # DESIGN.md section 5: every failure ends with a visible, redacted explanation.
        # Before the last attempt the job is retried, so only the last one says so.
        if isinstance(exc, PermanentError) or ctx.attempt >= ctx.settings.max_attempts:
            _say_failed(env, event.number, key, f"{type(exc).__name__}: {exc}")
        raise


def _say_failed(env: Env, number: int, key: str, reason: str) -> None:
    try:
        loop.fail_visibly(env, number, key, reason)
    except Exception as exc:  # noqa: BLE001 - GitHub itself may be what failed; the job keeps its error
        log.warning("event.failure_not_posted", number=number, error=str(exc))


def _act(
    env: Env,
    repo: Repository,
    event: ev.IssueEvent | ev.Comment | ev.PullRequestEvent,
    decision: pol.Decision,
    task: TaskRecord | None,
    key: str,
) -> str:
    where = event.number
    if isinstance(decision, pol.Refusal):
        if decision.number is not None:
            env.forge.react(where, _comment_id(event), "confused")
            loop.refuse(env, decision.number, key, decision.message)
        return f"refused: {decision.reason.value}"
    if isinstance(decision, pol.StartTask):
        assert decision.number is not None
        out = loop.start(
            env,
            loop.StartRequest(
                number=decision.number,
                requester=decision.requester,
                key=key,
                model=decision.model,
                instruction=decision.instruction,
                comment_id=_comment_id(event),
                on_pr=decision.pull_request is not None,
            ),
        )
        _react_done(env, where, _comment_id(event), out.outcome)
        return f"start: iteration {out.iteration} {out.outcome}"
    if isinstance(decision, pol.Help):
        loop.reply(env, where, key, help_text(trigger_label=env.settings.trigger_label))
        return "help"
    if task is None:
        loop.reply(env, where, key, "There is no vibe task on this issue or pull request yet.")
        return "no task"
    if isinstance(decision, pol.Iterate):
        feedback = _feedback(repo, decision, where)
        if not feedback:
            return "ignored: a review with nothing to act on"
        trigger = "review" if decision.review_id is not None else "comment"
        ikey = f"review:{decision.review_id}" if decision.review_id is not None else key
        env.forge.react(where, decision.comment_id, "eyes")
        out = loop.iterate(env, task, feedback, trigger=trigger, key=ikey)
        _react_done(env, where, decision.comment_id, out.outcome)
        return f"iterate: iteration {out.iteration} {out.outcome}"
    if isinstance(decision, pol.AddRequirement):
        out = loop.require(env, task, decision.text, author=decision.requester, key=key)
        return f"require: iteration {out.iteration} {out.outcome}"
    if isinstance(decision, pol.ApprovePlan):
        if decision.plan_edited and isinstance(event, ev.Comment):
            edited = parse_plan(event.body)  # the writer's edit is the approved plan
            if edited:
                taskdb.update(env.engine, task.id, plan=edited)
                task = taskdb.load(env.engine, task.id)
        result = loop.approve(env, task, key=key, where=where)
        return "approve" if result is None else f"approve: iteration {result.iteration}"
    if isinstance(decision, pol.Stop):
        loop.stop(env, task, key=key, where=where, author=decision.requester)
        return "stop"
    if isinstance(decision, pol.Retry):
        out = loop.retry(env, task, key=key)
        return f"retry: iteration {out.iteration} {out.outcome}"
    if isinstance(decision, pol.Undo):
        sha = loop.undo(env, task, key=key, where=where)
        return f"undo: {sha or 'nothing'}"
    if isinstance(decision, pol.Status):
        loop.status(env, task, key=key, where=where)
        return "status"
    if isinstance(decision, pol.Accept):
        loop.accept(env, task, decision.reason)
        return "accept"
    assert isinstance(decision, pol.Abandon)
    loop.abandon(env, task, decision.reason)
    return "abandon"


def _react_done(env: Env, number: int, comment_id: int | None, outcome: str) -> None:
    """Rocket on the trigger when the iteration succeeded (or planned), confused if not."""
    ok = outcome in ("succeeded", "planned")
    env.forge.react(number, comment_id, "rocket" if ok else "confused")


def _feedback(repo: Repository, action: pol.Iterate, pr: int) -> tuple[Feedback, ...]:
    """One review's body and all its inline comments form one iteration's feedback."""
    items: list[Feedback] = []
    if action.feedback.strip():
        items.append(Feedback("human", action.feedback, author=action.requester, comment_id=None))
    if action.review_id is not None:
        for note in repo.review_notes(pr, action.review_id):
            items.append(
                Feedback(
                    "human",
                    note.body,
                    author=note.author,
                    path=note.path,
                    line=note.line,
                    comment_id=note.comment_id,
                )
            )
    return tuple(items)


def event_handler(settings: Settings) -> Callable[[JobContext], None]:
    """The ``event`` job handler of the webhook service, wired to GitHub."""
    from bot.bootstrap import ServiceWiring

    service = ServiceWiring(settings)
    wiring = Wiring(service.repository, service.env)

    def run(ctx: JobContext) -> None:
        result = handle(ctx, wiring)
        log.info("event.handled", delivery=ctx.delivery_id, result=result)

    return run
