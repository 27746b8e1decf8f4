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

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog
from sqlalchemy.engine import Engine

from bot.core import events as ev
from bot.core import policy as pol
from bot.core.ci import own_names
from bot.core.commands import Verb, help_text, parse_commands
from bot.core.config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.core.errors import Declined
from bot.core.markers import carries, strip_markers
from bot.core.redact import redact
from bot.core.render import plan_marker
from bot.core.review import fix_offer
from bot.core.tasks import Feedback, State, TaskRecord
from bot.jobs.queue import Dead, Verdict
from bot.loop import actions as loop
from bot.loop import ci, review
from bot.loop.env import Env
from bot.loop.errors import AgentUnavailable
from bot.loop.iteration import Outcome, reader_reason
from bot.loop.ports import Executor, Forge, PullRequests, TaskStore, Work
from bot.loop.strategies.plan import parse_plan
from bot.settings import Settings
from bot.store.ci import SqlCiRounds
from bot.workspace.git import GitCredentials

log = structlog.get_logger(__name__)

D = TypeVar("D")
LOOP_BREAKER_WINDOW = timedelta(hours=1)
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@\-]")  # a key goes into a marker (bot.core.markers)


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
        pr_number=task.pr_number,
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
    identity = env.settings.bot_identity()
    for note in notes:
        author = note.author or ""
        if not identity.heeds(ev.Actor(author, None, author.lower().endswith("[bot]"))):
            continue  # the bot's own notes, and other bots' unless allow-listed
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


def _ran(what: str, out: Outcome) -> str:
    """What an iteration did, as one log line (error level when it failed, with the reason
    redacted when the iteration concluded) and as the job's result."""
    say = log.error if out.outcome == "failed" else log.info
    say("iteration.concluded", iteration=out.iteration, outcome=out.outcome, reason=out.reason)
    return f"{what}: iteration {out.iteration} {out.outcome}"


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
            attempts=d.attempts,
        ),
    )
    _react_done(c.env, c.where, c.comment_id, out.outcome)
    return _ran("start", out)


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
    out = loop.iterate(c.env, task, feedback, trigger=trigger, key=key, attempts=d.attempts)
    _react_done(c.env, c.where, d.comment_id, out.outcome)
    return _ran("iterate", out)


def _require(d: pol.AddRequirement, c: Context, task: TaskRecord) -> str:
    out = loop.require(c.env, task, d.text, author=d.requester, key=c.key)
    return _ran("require", out)


def _approve(d: pol.ApprovePlan, c: Context, task: TaskRecord) -> str:
    if d.plan_edited and c.comment is not None:
        edited = parse_plan(c.comment.body)  # the writer's edit is the approved plan
        if edited:
            c.env.tasks.set_plan(task.id, edited)
            task = c.env.tasks.load(task.id)
    result = loop.approve(c.env, task, key=c.key, where=c.where)
    return "approve" if result is None else _ran("approve", result)


def _stop(d: pol.Stop, c: Context, task: TaskRecord) -> str:
    loop.stop(c.env, task, key=c.key, where=c.where, author=d.requester)
    return "stop"


def _retry(d: pol.Retry, c: Context, task: TaskRecord) -> str:
    out = loop.retry(c.env, task, key=c.key)
    return _ran("retry", out)


def _undo(d: pol.Undo, c: Context, task: TaskRecord) -> str:
    sha = loop.undo(c.env, task, key=c.key, where=c.where)
    return f"undo: {sha or 'nothing'}"


def _fix_ci(d: pol.FixCi, c: Context, task: TaskRecord) -> str:
    return ci.fix_on_request(c.env, task, key=c.key, where=c.where)


def _pick(d: pol.Pick, c: Context, task: TaskRecord) -> str:
    sha = loop.pick(c.env, task, d.attempt, key=c.key, where=c.where, by=d.requester)
    return f"pick: {sha or 'refused'}"


def _status(d: pol.Status, c: Context, task: TaskRecord) -> str:
    loop.status(c.env, task, key=c.key, where=c.where)
    return "status"


def _review(d: pol.ReviewPull, c: Context) -> str:
    c.env.forge.react(c.where, c.comment_id, "eyes")
    request = review.ReviewRequest(d.number, c.key, d.focus, d.automatic)
    done = review.review_pull(c.env, request)
    _react_done(
        c.env, c.where, c.comment_id, "failed" if done.startswith("ignored") else "succeeded"
    )
    return done


def _fix(d: pol.FixFinding, c: Context) -> str:
    """``/vibe fix`` in reply to one of the bot's review comments: feedback for an iteration
    on the task's own PR; elsewhere, a reply in the thread with the suggested change (the
    bot pushes nothing to a branch no one asked it to work on)."""
    note = c.env.reviews.review_comment(d.finding_id) if c.env.reviews is not None else None
    identity = c.env.settings.bot_identity()
    if note is None or not identity.is_self(ev.Actor(note.author or "", None, True)):
        loop.reply(
            c.env, c.where, c.key, "`/vibe fix` works in reply to one of my review comments."
        )
        return "fix: not a comment of mine"
    if c.task is not None and not c.task.state.terminal and c.task.pr_number == c.where:
        feedback = Feedback(
            "human",
            strip_markers(note.body),
            author=d.requester,
            path=note.path,
            line=note.line,
            comment_id=note.comment_id,
            start_line=note.start_line,
            side=note.side,
        )
        c.env.forge.react(c.where, d.comment_id, "eyes")
        out = loop.iterate(c.env, c.task, (feedback,), trigger="comment", key=c.key)
        _react_done(c.env, c.where, d.comment_id, out.outcome)
        return _ran("fix", out)
    if c.env.prs is None:
        return "fix: no pull requests here"
    c.env.prs.reply_in_thread(c.where, note.comment_id, fix_offer(note.body, d.requester))
    return "fix: suggestion offered"


def _accept(d: pol.Accept, c: Context, task: TaskRecord) -> str:
    loop.accept(c.env, task, d.reason)
    return "accept"


def _abandon(d: pol.Abandon, c: Context, task: TaskRecord) -> str:
    loop.abandon(c.env, task, d.reason)
    if d.issue_closed:
        loop.say_abandoned(c.env, task, c.key, d.reason)
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
    pol.FixCi: _on_task(_fix_ci),
    pol.Status: _on_task(_status),
    pol.ReviewPull: _review,
    pol.FixFinding: _fix,
    pol.Pick: _on_task(_pick),
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
        followed = wiring.follow_run(job, event)
        news = event.as_ci()
        # A run the Actions executor follows is the bot's own runner, not CI feedback.
        if news is None or not followed.startswith("ignored"):
            return followed
        event = news
    if isinstance(event, ev.CiEvent):
        own = own_names(bot.login)
        return ci.observe(event, wiring.tasks(job), SqlCiRounds(job.engine), job.engine, own)
    if not isinstance(event, ev.IssueEvent | ev.Comment | ev.PullRequestEvent):
        return f"ignored {type(event).__name__}"
    if event.sender is not None and bot.is_self(event.sender):
        # The policy ignores the bot's own events; decided here, nothing is asked of GitHub
        # (every PR the bot opens and every review it posts comes back as a webhook).
        return "ignored: the bot's own event"
    # The job's lines say where it works (the worker clears this after the job).
    structlog.contextvars.bind_contextvars(repository=event.repo.full_name, number=event.number)
    repo = wiring.repository(event.repo, event.installation_id)
    # By the repository's id: a task begun before a rename or transfer is found under the
    # new name, and takes it.
    tasks = wiring.tasks(job)
    task = tasks.find(event.repo.full_name, event.number, event.repo.id) or _task_of_pull(
        tasks, event, bot
    )
    if task is not None:
        structlog.contextvars.bind_contextvars(task_id=task.id)
    key = work_key(job)
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


def _task_of_pull(
    tasks: TaskStore,
    event: ev.IssueEvent | ev.Comment | ev.PullRequestEvent,
    bot: pol.BotIdentity,
) -> TaskRecord | None:
    """The task of the bot's own PR whose number is not recorded yet (a review, a merge or a
    close can arrive before the iteration that opened the PR concluded): found from the PR's
    head branch, which is the task's (:func:`bot.core.branches.task_branch`); the number is
    recorded now. Only a PR the bot opened, from a branch of this repository, qualifies."""
    pull: object = None
    if isinstance(event, ev.PullRequestEvent):
        pull = event.pull_request
    elif isinstance(event, ev.Comment):
        pull = event.target
    if not isinstance(pull, ev.PullRequest) or pull.head_ref is None:
        return None
    if pull.author is None or not bot.is_self(pull.author) or not pull.same_repo(event.repo):
        return None
    task = tasks.find_by_branch(event.repo.full_name, pull.head_ref, event.repo.id)
    if task is None or task.pr_number == pull.number:
        return task
    log.info("task.pr_found_by_branch", task=task.id, pr=pull.number, branch=pull.head_ref)
    return tasks.record_pr(task.id, pull.number)


def work_key(job: EventJob) -> str:
    """What one piece of work is keyed by: one reply, one iteration per key.

    A comment is the same work under any delivery id (a repository webhook and the App
    both configured, a replay under a new id): keyed by its id, an edit by its id and the
    time of the edit, a review by its id. Anything else by its delivery (a label delivered
    twice finds the task the first one started, and the policy ignores it).
    """
    payload = job.event_payload
    comment, review = (
        payload.get(k) if isinstance(payload.get(k), dict) else None for k in ("comment", "review")
    )
    key = f"delivery:{job.delivery_id or job.job_id}"
    if job.event_name == "pull_request_review" and review and review.get("id") is not None:
        key = f"review:{review['id']}"
    elif comment and comment.get("id") is not None:
        edited = f"@{comment.get('updated_at')}" if payload.get("action") == "edited" else ""
        key = f"comment:{comment['id']}{edited}"
    return _KEY_UNSAFE.sub("-", key)[:200]


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
        # The reader gets a sentence and a reference; the job's log line has the detail.
        last = job.attempt >= job.settings.max_attempts
        if last or isinstance(wiring.judge(exc), Dead):
            reference = job.delivery_id or f"job-{job.job_id}"
            detail = redact(f"{type(exc).__name__}: {exc}", env.secrets)
            log.error("event.failed", error_ref=reference, error=detail, exc_info=exc)
            _say_failed(env, event.number, key, reader_reason(exc, reference))
        raise


def _say_failed(env: Env, number: int, key: str, reason: str) -> None:
    try:
        loop.fail_visibly(env, number, key, reason)
    except Exception as exc:  # noqa: BLE001 - GitHub itself may be what failed; the job keeps its error
        log.warning("event.failure_not_posted", number=number, error=str(exc))


def handle_ci(job: EventJob, wiring: Wiring) -> str:
    """Run one ``ci`` job (:func:`bot.loop.ci.review_head`): its payload names the task and
    the repository; a settle re-read is one more ``ci`` job in the task's lane."""
    payload = job.event_payload
    task_id, full_name = payload.get("task_id"), payload.get("repository")
    if not isinstance(task_id, int) or not isinstance(full_name, str) or "/" not in full_name:
        return "ignored: a ci job without a task"
    repo_id = payload.get("repo_id") if isinstance(payload.get("repo_id"), int) else None
    installation = payload.get("installation_id")
    owner, _, name = full_name.partition("/")
    where = ev.Repo(owner, name, full_name, repo_id, None, False, None, None)
    repository = wiring.repository(where, installation if isinstance(installation, int) else None)
    env = wiring.env(job, repository)
    number = env.tasks.load(task_id).number
    lane = ci.task_lane(full_name, repo_id, number)
    structlog.contextvars.bind_contextvars(repository=full_name, task_id=task_id)

    def settle(delay: float) -> bool:
        return ci.schedule_review(job.engine, {**payload, "settled": True}, lane, delay)

    return ci.review_head(env, task_id, settled=payload.get("settled") is True, schedule=settle)


def handle_console(job: EventJob, wiring: Wiring) -> str:
    """Run one ``console`` job (:mod:`bot.loop.console`): a retry an operator asked for in
    the console, carried out as ``/vibe retry`` (:func:`bot.loop.actions.retry`)."""
    payload = job.event_payload
    task_id, full_name = payload.get("task_id"), payload.get("repository")
    if payload.get("action") != "retry" or not isinstance(task_id, int):
        return "ignored: a console job without a retry of a task"
    if not isinstance(full_name, str) or "/" not in full_name:
        return "ignored: a console job without a repository"
    repo_id = payload.get("repo_id") if isinstance(payload.get("repo_id"), int) else None
    owner, _, name = full_name.partition("/")
    where = ev.Repo(owner, name, full_name, repo_id, None, False, None, None)
    env = wiring.env(job, wiring.repository(where, None))
    structlog.contextvars.bind_contextvars(repository=full_name, task_id=task_id)
    out = loop.retry(env, env.tasks.load(task_id), key=f"console:{job.job_id}")
    return _ran("retry", out)


def console_handler(wiring: Wiring) -> Callable[[EventJob], None]:
    """The ``console`` job of the webhook service, built with the service's wiring."""

    def run(job: EventJob) -> None:
        log.info("console.handled", result=handle_console(job, wiring))

    return run


def ci_handler(wiring: Wiring) -> Callable[[EventJob], None]:
    """The ``ci`` job of the webhook service, built with the service's wiring."""

    def run(job: EventJob) -> None:
        log.info("ci.handled", result=handle_ci(job, wiring))

    return run


def event_handler(wiring: Wiring) -> Callable[[EventJob], None]:
    """The ``event`` job of the webhook service, built with the service's wiring."""

    def run(job: EventJob) -> None:
        result = handle(job, wiring)
        log.info("event.handled", delivery=job.delivery_id, result=result)

    return run
