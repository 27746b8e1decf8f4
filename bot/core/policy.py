"""Who may make the bot do what: a pure decision from an event and what the worker knows.

:func:`decide` maps a parsed event to one :data:`Decision`: an action for the loop, a
:class:`Refusal` the worker answers once (with :attr:`Refusal.message`), an :class:`Ignore`
(no reply), or a request for a fact the worker must look up first
(:class:`NeedsPermission`, :class:`NeedsPullRequest`), after which it calls :func:`decide`
again with the answer. It performs no I/O.

Rules (DESIGN.md section 4 rule 2 and the tables of section 1):

- Repositories outside the operator's allow-list are refused without a reply and without
  work (:func:`admit`, decided before anything is asked of GitHub).
- The bot's own events are ignored; other bots are ignored unless allow-listed, except
  for a PR they merged or closed (a merge queue merges as a bot): that still ends the task.
- Only senders with admin, maintain or write permission act. The permission comes from
  the collaborator-permission API (``GET /repos/{owner}/{repo}/collaborators/{user}/
  permission``), never from ``author_association``, which says nothing about access:
  https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user
  An allow-listed bot needs that permission too.
- Explicit requests (a command, a trigger label) from non-writers get one refusal; implicit
  signals (a review) from non-writers are ignored. Either way their text never reaches the
  agent.
- A loop breaker refuses new runs once an issue or PR had ``runs_per_hour`` runs in the
  last hour.
- Only the first command of a comment is acted on; commands act when a comment is created,
  not when it is edited (an edit must not start a second task). The one edit that counts is
  a writer editing the bot's posted plan while it awaits approval: that approves it.
- A state change GitHub already made (a PR merged or closed) needs no permission check:
  only writers (or the bot, the PR's author) can close a PR.
- Inline review comments are covered by the review they belong to (one iteration per
  review), so the ``pull_request_review_comment`` event itself is ignored unless it holds a
  command; a ``/vibe <feedback>`` in one names its review too, so the iteration it starts
  is the review's. A reply in a thread is a review of its own on GitHub, so it is feedback
  like any review.

:func:`serial_key` names the lane a job runs in: one lane per issue or PR, plus a control
lane for ``/vibe stop`` and ``/vibe status`` so those run while a task is running.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeAlias

from bot.core.commands import Command, Verb, parse_commands
from bot.core.config import RepoConfig
from bot.core.events import (
    Actor,
    CiEvent,
    Comment,
    CommentPlace,
    Event,
    InstallationEvent,
    IssueEvent,
    Ping,
    PullRequest,
    PullRequestEvent,
    Repo,
    ReviewState,
    ReviewThreadEvent,
    Unparseable,
    Unsupported,
    WorkflowDispatch,
    WorkflowRun,
)
from bot.core.tasks import MODELS, DevelopmentModel

# The collaborator permissions that may trigger the bot (DESIGN.md section 4.2); GitHub's
# roles are admin, maintain, write, triage and read
# (https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user).
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
MODEL_LABEL_PREFIX = "vibe:"
CONTROL_VERBS = frozenset({Verb.STOP, Verb.STATUS})


def _base_login(login: str) -> str:
    return login.casefold().removesuffix("[bot]")


@dataclass(frozen=True)
class AllowList:
    """The owners (``octo-org``) and repositories (``octo-org/hello``) the bot works for."""

    owners: frozenset[str] = frozenset()
    repositories: frozenset[str] = frozenset()

    def admits(self, repo: Repo) -> bool:
        return repo.owner.casefold() in {o.casefold() for o in self.owners} or (
            repo.full_name.casefold() in {r.casefold() for r in self.repositories}
        )


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot is and the operator's defaults (``Settings.bot_identity()``), for
    :func:`decide`. ``allowed``: whose repositories it works on (``None``: anyone's)."""

    login: str
    allowed_bots: frozenset[str] = frozenset()
    allowed: AllowList | None = None
    trigger_label: str = "vibe"
    default_model: DevelopmentModel = "conversational"
    runs_per_hour: int = 10

    def is_self(self, actor: Actor) -> bool:
        return _base_login(actor.login) == _base_login(self.login)

    def allows_bot(self, actor: Actor) -> bool:
        return _base_login(actor.login) in {_base_login(b) for b in self.allowed_bots}

    def heeds(self, actor: Actor) -> bool:
        """Whether text ``actor`` wrote (a comment, a review note) may reach the agent, its
        write permission apart: never the bot's own, and another bot's only when the
        operator allow-lists it. A bot cannot trigger the bot, so it cannot steer it
        through feedback either (DESIGN.md section 4 rules 2 and 3)."""
        if self.is_self(actor):
            return False
        return not actor.is_bot or self.allows_bot(actor)


@dataclass(frozen=True)
class TaskView:
    """What the store knows about the task of this issue or PR (``None``: no task).

    ``ended``: accepted or abandoned (a new ``/vibe`` on the issue starts a new task).
    ``awaiting_approval``: a plan is posted and waits for ``/vibe approve``;
    ``plan_comment_id`` is that plan's comment (a writer editing it approves it).
    """

    ended: bool = False
    awaiting_approval: bool = False
    plan_comment_id: int | None = None
    pr_number: int | None = None  # the PR the task opened or works on, once recorded


# ------------------------------------------------------------------------ actions


@dataclass(frozen=True)
class _Target:
    repo: str  # "owner/name"
    number: int  # the issue or PR the event is about
    requester: str  # login of the person behind the action


@dataclass(frozen=True)
class StartTask:
    """Start a task. ``number`` is the issue (or PR) it answers, ``None`` for a
    ``workflow_dispatch`` prompt. ``pull_request``/``head_ref`` are set when the task works
    on an existing same-repository PR's branch instead of a new ``vibe/*`` branch."""

    repo: str
    number: int | None
    requester: str
    model: DevelopmentModel
    instruction: str
    pull_request: int | None = None
    head_ref: str | None = None
    attempts: int | None = None  # ``/vibe attempts=N``: best-of-N for the first iteration


@dataclass(frozen=True)
class Iterate(_Target):
    """Run iteration k+1 with this feedback. ``review_id`` is set for a review (the loop
    reads its inline comments and replies to each thread); ``comment_id`` for a comment;
    ``attempts`` for ``/vibe attempts=N <feedback>`` (best-of-N, :mod:`bot.core.attempts`)."""

    feedback: str
    review_id: int | None = None
    comment_id: int | None = None
    attempts: int | None = None


@dataclass(frozen=True)
class Pick(_Target):
    """``/vibe pick <attempt>``: make that attempt of the last iteration the branch's head."""

    attempt: int


@dataclass(frozen=True)
class AddRequirement(_Target):
    text: str


@dataclass(frozen=True)
class ApprovePlan(_Target):
    plan_edited: bool = False  # approved by editing the plan comment, not by a command


@dataclass(frozen=True)
class Stop(_Target):
    pass


@dataclass(frozen=True)
class Retry(_Target):
    pass


@dataclass(frozen=True)
class Undo(_Target):
    pass


@dataclass(frozen=True)
class FixCi(_Target):
    """``/vibe fix-ci``: one fix of the failing CI checks of the task's PR head."""


@dataclass(frozen=True)
class Status(_Target):
    pass


@dataclass(frozen=True)
class ReviewPull(_Target):
    """Post one review of PR ``number`` (:mod:`bot.loop.review`). ``automatic``: asked by
    ``review.on`` in the config, not by a person's ``/vibe review [focus]``."""

    focus: str = ""
    automatic: bool = False


@dataclass(frozen=True)
class FixFinding(_Target):
    """``/vibe fix`` in reply to review comment ``finding_id``: iterate on it (the bot's own
    PR) or answer with a suggested change (another's). ``comment_id``: the reply."""

    finding_id: int
    comment_id: int | None = None


@dataclass(frozen=True)
class Help(_Target):
    not_understood: str = ""  # the command text that was not understood, if any


@dataclass(frozen=True)
class Accept(_Target):
    reason: str


@dataclass(frozen=True)
class Abandon(_Target):
    """End the task as abandoned. ``issue_closed``: its issue was closed, which is said on
    the issue and on the task's PR (closing the PR says enough by itself)."""

    reason: str
    issue_closed: bool = False


Action: TypeAlias = (
    StartTask
    | Iterate
    | AddRequirement
    | ApprovePlan
    | Stop
    | Retry
    | Undo
    | FixCi
    | Status
    | ReviewPull
    | FixFinding
    | Pick
    | Help
    | Accept
    | Abandon
)

# Actions that make the agent run, counted by the loop breaker.
RUN_ACTIONS: tuple[type, ...] = (
    StartTask,
    Iterate,
    AddRequirement,
    ApprovePlan,
    Retry,
    FixCi,
    FixFinding,
)


class RefusalReason(StrEnum):
    NOT_WRITER = "not_writer"
    LOOP_BREAKER = "loop_breaker"
    UNKNOWN_MODEL_LABEL = "unknown_model_label"
    FORK = "fork"
    DEFAULT_BRANCH = "default_branch"
    CLOSED = "closed"
    NO_TASK = "no_task"
    TASK_EXISTS = "task_exists"
    NOTHING_TO_APPROVE = "nothing_to_approve"
    NO_FEEDBACK = "no_feedback"
    NOT_ALLOWED_OWNER = "not_allowed_owner"
    NOT_A_PULL = "not_a_pull"
    NO_FINDING = "no_finding"
    BAD_COMMAND = "bad_command"


@dataclass(frozen=True)
class Refusal:
    """Answer once on ``number`` (or nowhere if ``None``) with ``message``."""

    reason: RefusalReason
    message: str
    repo: str
    number: int | None


@dataclass(frozen=True)
class Ignore:
    reason: str


@dataclass(frozen=True)
class NeedsPermission:
    """Look up ``login``'s permission on the repository, then call :func:`decide` again."""

    login: str


@dataclass(frozen=True)
class NeedsPullRequest:
    """Fetch PR ``number`` (head branch and repository), then call :func:`decide` again."""

    number: int


Decision: TypeAlias = Action | Refusal | Ignore | NeedsPermission | NeedsPullRequest


# ------------------------------------------------------------------------- intents


@dataclass(frozen=True)
class _Intent:
    """What the event asks for, before permission and loop checks."""

    decision: Action | Refusal | Ignore | NeedsPullRequest
    explicit: bool  # a command or a label: a non-writer gets a refusal, not silence


def _first_command(event: Comment, bot_login: str) -> Command | None:
    commands = parse_commands(event.body, bot_login)
    return commands[0] if commands else None


def _label_model(label: str, trigger: str) -> tuple[bool, DevelopmentModel | None]:
    """Whether ``label`` is a model label (``vibe:x`` or ``<trigger>:x``), and its model
    (``None`` when ``x`` names no model)."""
    name = label.casefold()
    for prefix in (MODEL_LABEL_PREFIX, trigger.casefold() + ":"):
        if name.startswith(prefix):
            suffix = name[len(prefix) :]
            return True, next((m for m in MODELS if m == suffix), None)
    return False, None


def _issue_closed(
    event: IssueEvent, task: TaskView | None, pull_request: PullRequest | None
) -> _Intent:
    """Closing the issue ends its task as closing its PR does (abandoned: a running
    iteration stops and pushes nothing half-done), unless the task's PR is merged: GitHub
    closes the issue a merged PR "Fixes", and that is the normal end (accepted).
    https://docs.github.com/en/issues/tracking-your-work-with-issues/using-issues/linking-a-pull-request-to-an-issue"""
    repo, number = event.repo.full_name, event.number
    actor = event.sender.login if event.sender else ""
    if task is None or task.ended:
        return _Intent(Ignore("issues.closed needs no action"), False)
    if task.pr_number is not None and pull_request is None:
        return _Intent(NeedsPullRequest(task.pr_number), False)
    if pull_request is not None and pull_request.merged:
        reason = f"pull request #{pull_request.number} was merged"
        return _Intent(Accept(repo, number, actor, reason), False)
    reason = f"the issue was closed by @{actor}"
    return _Intent(Abandon(repo, number, actor, reason, issue_closed=True), False)


def _issue_intent(
    event: IssueEvent,
    config: RepoConfig,
    bot: BotIdentity,
    task: TaskView | None,
    pull_request: PullRequest | None = None,
) -> _Intent:
    repo, issue = event.repo.full_name, event.issue
    if event.action == "closed":
        return _issue_closed(event, task, pull_request)
    trigger = config.trigger_label or bot.trigger_label
    if event.action != "labeled" or event.label is None:
        return _Intent(Ignore(f"issues.{event.action} needs no action"), explicit=False)
    is_model_label, labelled_model = _label_model(event.label, trigger)
    if event.label.casefold() == trigger.casefold():
        model: DevelopmentModel = config.model or bot.default_model
    elif labelled_model is not None:
        model = labelled_model
    elif is_model_label:
        known = ", ".join(f"`{MODEL_LABEL_PREFIX}{m}`" for m in MODELS)
        message = f"The label `{event.label}` names no development model; use one of {known}."
        return _Intent(
            Refusal(RefusalReason.UNKNOWN_MODEL_LABEL, message, repo, issue.number), True
        )
    else:
        return _Intent(Ignore(f"label {event.label!r} is not a trigger label"), explicit=False)
    if issue.state == "closed":
        return _Intent(Ignore("the issue is closed"), explicit=False)
    if task is not None and not task.ended:
        return _Intent(Ignore("a task already exists for this issue"), explicit=False)
    requester = event.sender.login if event.sender else ""
    return _Intent(StartTask(repo, issue.number, requester, model, ""), explicit=True)


def _start_on_pull(
    event: Comment, pull: PullRequest, model: DevelopmentModel, text: str, requester: str
) -> Action | Refusal:
    repo = event.repo.full_name
    if not pull.same_repo(event.repo):
        message = (
            "I can only work on pull requests whose branch is in this repository, not on a "
            "fork's branch."
        )
        return Refusal(RefusalReason.FORK, message, repo, pull.number)
    if pull.state == "closed":
        message = "This pull request is closed."
        return Refusal(RefusalReason.CLOSED, message, repo, pull.number)
    if pull.head_ref is None or pull.head_ref == event.repo.default_branch:
        # DESIGN.md section 4 rule 7: never push to the default branch.
        message = (
            "This pull request's branch is unknown or is the default branch, where I never push."
        )
        return Refusal(RefusalReason.DEFAULT_BRANCH, message, repo, pull.number)
    return StartTask(repo, pull.number, requester, model, text, pull.number, pull.head_ref)


def _command_intent(
    event: Comment,
    command: Command,
    config: RepoConfig,
    bot: BotIdentity,
    task: TaskView | None,
    pull_request: PullRequest | None,
) -> Action | Refusal | NeedsPullRequest:
    repo, number = event.repo.full_name, event.number
    requester = event.sender.login if event.sender else ""
    active = task is not None and not task.ended
    verb, text = command.verb, command.text

    def refuse(reason: RefusalReason, message: str) -> Refusal:
        return Refusal(reason, message, repo, number)

    no_task = "There is no active vibe task here; start one with `/vibe [instruction]`."
    if verb in (Verb.RUN, Verb.PLAN, Verb.TEST):
        model: DevelopmentModel = config.model or bot.default_model
        if verb is Verb.PLAN:
            model = "plan"
        elif verb is Verb.TEST:
            model = "test"
        if active:
            if verb is Verb.RUN and text:
                # An inline comment reaches the bot twice, as itself and with its review
                # (pull_request_review_comment and pull_request_review): keyed by the
                # review, the second finds the iteration the first one ran.
                review_id = (
                    event.review.id
                    if event.review is not None
                    else event.thread.review_id
                    if event.thread is not None
                    else None
                )
                return Iterate(
                    repo,
                    number,
                    requester,
                    text,
                    review_id=review_id,
                    comment_id=event.comment_id,
                    attempts=command.attempts,
                )
            if verb is Verb.RUN and event.is_pr:
                return refuse(RefusalReason.NO_FEEDBACK, "Say what to change: `/vibe <feedback>`.")
            return refuse(
                RefusalReason.TASK_EXISTS,
                "A task is already active here; give feedback with `/vibe <text>`, or end "
                "it with `/vibe stop` first.",
            )
        if event.target.state == "closed":
            return refuse(RefusalReason.CLOSED, "This is closed; reopen it first.")
        if not event.is_pr:
            return StartTask(repo, number, requester, model, text, attempts=command.attempts)
        pull = event.target if isinstance(event.target, PullRequest) else pull_request
        if pull is None:
            return NeedsPullRequest(number)
        return _start_on_pull(event, pull, model, text, requester)
    if verb is Verb.UNKNOWN and command.error is not None:
        return refuse(RefusalReason.BAD_COMMAND, command.error)
    if verb is Verb.HELP or verb is Verb.UNKNOWN:
        return Help(repo, number, requester, text if verb is Verb.UNKNOWN else "")
    if verb is Verb.REVIEW:
        if not event.is_pr:
            return refuse(RefusalReason.NOT_A_PULL, "`/vibe review` reviews a pull request.")
        return ReviewPull(repo, number, requester, text)
    if verb is Verb.FIX:
        parent = event.thread.in_reply_to if event.thread is not None else None
        if parent is None:
            return refuse(
                RefusalReason.NO_FINDING,
                "Write `/vibe fix` as a reply to one of my review comments.",
            )
        return FixFinding(repo, number, requester, parent, event.comment_id)
    if verb is Verb.APPROVE:
        if task is None or task.ended or not task.awaiting_approval:
            return refuse(RefusalReason.NOTHING_TO_APPROVE, "No plan here is awaiting approval.")
        return ApprovePlan(repo, number, requester)
    if not active:
        return refuse(RefusalReason.NO_TASK, no_task)
    if verb is Verb.REQUIRE:
        return AddRequirement(repo, number, requester, text)
    if verb is Verb.STOP:
        return Stop(repo, number, requester)
    if verb is Verb.RETRY:
        return Retry(repo, number, requester)
    if verb is Verb.UNDO:
        return Undo(repo, number, requester)
    if verb is Verb.FIX_CI:
        return FixCi(repo, number, requester)
    if verb is Verb.PICK:
        return Pick(repo, number, requester, int(text))
    return Status(repo, number, requester)


def _comment_intent(
    event: Comment,
    config: RepoConfig,
    bot: BotIdentity,
    task: TaskView | None,
    pull_request: PullRequest | None,
) -> _Intent:
    repo, number = event.repo.full_name, event.number
    requester = event.sender.login if event.sender else ""
    active = task is not None and not task.ended
    if event.action == "edited":
        edited_plan = (
            task is not None
            and not task.ended
            and task.awaiting_approval
            and task.plan_comment_id is not None
            and task.plan_comment_id == event.comment_id
            and event.author is not None
            and bot.is_self(event.author)
        )
        if edited_plan:
            return _Intent(ApprovePlan(repo, number, requester, plan_edited=True), True)
        return _Intent(Ignore("an edited comment does not repeat its commands"), False)
    command = _first_command(event, bot.login)
    if command is not None:
        decision = _command_intent(event, command, config, bot, task, pull_request)
        return _Intent(decision, explicit=True)
    if event.place is CommentPlace.REVIEW and event.review is not None:
        if not active:
            return _Intent(Ignore("a review on a pull request without a task"), False)
        if event.review.state is ReviewState.APPROVED:
            return _Intent(Accept(repo, number, requester, f"approved by @{requester}"), False)
        feedback = Iterate(repo, number, requester, event.body, review_id=event.review.id)
        return _Intent(feedback, False)
    if event.place is CommentPlace.REVIEW_THREAD and event.thread is not None:
        if event.thread.review_id is not None:
            return _Intent(Ignore("an inline comment is handled with its review"), False)
        if active:
            feedback = Iterate(repo, number, requester, event.body, comment_id=event.comment_id)
            return _Intent(feedback, False)
    return _Intent(Ignore("a comment without a command"), False)


def _pull_request_intent(
    event: PullRequestEvent, task: TaskView | None, config: RepoConfig
) -> _Intent:
    repo, number = event.repo.full_name, event.number
    actor = event.sender.login if event.sender else ""
    if event.action in ("opened", "ready_for_review"):
        # review.on: a draft is reviewed once it is marked ready (ready_for_review).
        wanted = event.action in config.review.on
        if not wanted or (event.action == "opened" and event.pull_request.draft):
            return _Intent(Ignore(f"pull_request.{event.action}: no review asked for"), False)
        return _Intent(ReviewPull(repo, number, actor, automatic=True), False)
    if event.action != "closed" or task is None or task.ended:
        return _Intent(Ignore(f"pull_request.{event.action} needs no action"), False)
    if event.pull_request.merged:
        return _Intent(Accept(repo, number, actor, f"merged by @{actor}"), False)
    return _Intent(Abandon(repo, number, actor, f"closed without merging by @{actor}"), False)


def _dispatch_intent(event: WorkflowDispatch, config: RepoConfig, bot: BotIdentity) -> _Intent:
    prompt = (event.input("prompt") or "").strip()
    if not prompt:
        return _Intent(Ignore("workflow_dispatch without a prompt input"), False)
    wanted = (event.input("model") or "").strip().casefold()
    model = next((m for m in MODELS if m == wanted), config.model or bot.default_model)
    requester = event.sender.login if event.sender else ""
    return _Intent(StartTask(event.repo.full_name, None, requester, model, prompt), True)


def _intent(
    event: Event,
    config: RepoConfig,
    bot: BotIdentity,
    task: TaskView | None,
    pull_request: PullRequest | None,
) -> _Intent:
    if isinstance(event, IssueEvent):
        return _issue_intent(event, config, bot, task, pull_request)
    if isinstance(event, Comment):
        return _comment_intent(event, config, bot, task, pull_request)
    if isinstance(event, PullRequestEvent):
        return _pull_request_intent(event, task, config)
    if isinstance(event, WorkflowDispatch):
        return _dispatch_intent(event, config, bot)
    return _Intent(Ignore(f"{type(event).__name__} needs no action"), False)


def admit(event: Event, bot: BotIdentity) -> Refusal | None:
    """Refuse, answering nowhere, an event from a repository outside the operator's
    allow-list: a public App installed by a stranger must not spend the operator's model
    key or write on the stranger's repository. Decided before anything is asked of
    GitHub."""
    repo: Repo | None = getattr(event, "repo", None)
    if bot.allowed is None or repo is None or bot.allowed.admits(repo):
        return None
    message = f"Refused: {repo.owner} is not an allowed owner ({repo.full_name})"
    return Refusal(RefusalReason.NOT_ALLOWED_OWNER, message, repo.full_name, None)


def decide(
    event: Event,
    *,
    permission: str | None,
    repo_config: RepoConfig,
    bot: BotIdentity,
    recent_runs: int,
    task: TaskView | None = None,
    pull_request: PullRequest | None = None,
) -> Decision:
    """Decide what ``event`` makes the bot do.

    ``permission``: the sender's repository permission (``admin``, ``maintain``,
    ``write``, ``triage``, ``read``, ``none``) or ``None`` when not looked up yet.
    ``recent_runs``: runs on this issue or PR in the last hour. ``task``: the task of this
    issue or PR, if any. ``pull_request``: the PR, once fetched after
    :class:`NeedsPullRequest`.
    """
    if isinstance(event, Unsupported | Unparseable):
        return Ignore(f"{type(event).__name__.lower()} event {event.event}.{event.action}")
    if isinstance(event, Ping | InstallationEvent | ReviewThreadEvent | WorkflowRun | CiEvent):
        # A workflow run is not a person's signal: the actions executor follows it. CI news
        # is not one either: bot.loop.ci reads the commit's checks.
        return Ignore(f"{event.event}.{event.action} needs no action")
    sender = event.sender
    if sender is None:
        return Ignore("the event names no sender")
    if bot.is_self(sender):
        return Ignore("the bot's own event")
    # A merge or close GitHub already made ends the task whoever made it: merge queues
    # and merge apps are bots (https://docs.github.com/en/repositories/configuring-branches-and-merges-in-your-repository/configuring-pull-request-merges/managing-a-merge-queue).
    made = _already_made(event)
    if sender.is_bot and not bot.allows_bot(sender) and not made:
        return Ignore(f"@{sender.login} is a bot that is not allow-listed")
    number = None if isinstance(event, WorkflowDispatch) else event.number
    intent = _intent(event, repo_config, bot, task, pull_request)
    if isinstance(intent.decision, Ignore):
        return intent.decision
    if made:
        return intent.decision  # GitHub already applied this change; nothing to authorise
    if isinstance(intent.decision, ReviewPull) and intent.decision.automatic:
        # review.on: the repository's config asked for it, whoever opened the PR (a fork's
        # author may have no access); a review writes nothing but itself.
        return intent.decision
    if permission is None:
        return NeedsPermission(sender.login)
    if permission.casefold() not in WRITE_PERMISSIONS:
        if not intent.explicit:
            return Ignore(f"@{sender.login} has {permission} permission, not write")
        message = (
            f"@{sender.login}, only people with write access to this repository can ask me "
            "to work; nothing was done."
        )
        return Refusal(RefusalReason.NOT_WRITER, message, event.repo.full_name, number)
    decision = intent.decision
    if isinstance(decision, RUN_ACTIONS) and recent_runs >= bot.runs_per_hour:
        message = (
            f"This already had {recent_runs} runs in the last hour (the limit is "
            f"{bot.runs_per_hour}), so I stopped here to break a possible loop; try again "
            "later."
        )
        return Refusal(RefusalReason.LOOP_BREAKER, message, event.repo.full_name, number)
    return decision


def _already_made(event: Event) -> bool:
    """A change GitHub already made (a PR merged, closed or pushed to, an issue closed):
    GitHub let whoever made it make it, so it acts whoever made it."""
    if isinstance(event, PullRequestEvent) and event.action in ("opened", "ready_for_review"):
        return False  # a new PR is no change of the task's; its opener is checked
    return isinstance(event, PullRequestEvent) or _abandons(event)


def _abandons(event: Event) -> bool:
    """Closing an issue or the task's PR (merged or not): its task's running iteration
    must stop, and it holds the main lane."""
    return isinstance(event, IssueEvent | PullRequestEvent) and event.action == "closed"


def serial_key(event: Event, bot_login: str = "") -> str | None:
    """The lane a job runs in: ``owner/name#number``, or ``owner/name#number/control`` for a
    comment whose first command is ``/vibe stop`` or ``/vibe status`` and for closing the
    issue or the PR (it stops a running iteration, which holds the main lane); ``None`` for events
    not tied to an issue or PR."""
    if not isinstance(event, IssueEvent | Comment | PullRequestEvent | ReviewThreadEvent):
        return None
    key = f"{event.repo.full_name}#{event.number}"
    if _abandons(event):
        return key + "/control"  # it must stop an iteration running in the main lane
    if isinstance(event, Comment):
        command = _first_command(event, bot_login)
        if command is not None and command.verb in CONTROL_VERBS:
            return key + "/control"
    return key
