"""Webhook payloads parsed once into small typed values. Performs no I/O of its own.

:func:`parse_event` takes the ``X-GitHub-Event`` name and the decoded JSON body and
returns one frozen dataclass. Nothing deeper in the bot touches the raw dict. Parsing is
lenient: unknown fields are ignored and optional fields may be missing or malformed, in
which case they read as ``None``/empty. A payload that lacks what the bot needs becomes
:class:`Unparseable` with a reason; an event or action the bot does not handle becomes
:class:`Unsupported`. :func:`parse_event` never raises on any JSON value.

Comment-like events (an issue comment, a comment on a PR's conversation, a review body, an
inline review comment) fold into one :class:`Comment` type whose :attr:`Comment.place`
says where it was said (the idea of prow's ``GenericCommentEvent``).

Payload reference: https://docs.github.com/en/webhooks/webhook-events-and-payloads
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

# GitHub's limit for an issue, comment or PR body, in characters: longer ones are refused
# with 422 (https://docs.github.com/en/rest/issues/comments). The bot reads no more of a
# body than this and writes no more than this.
MAX_BODY_CHARS = 65_536

# Event name -> the actions the bot handles; ``None`` marks events without an action.
KNOWN_ACTIONS: Mapping[str, frozenset[str] | None] = {
    "issues": frozenset({"opened", "edited", "labeled", "unlabeled", "closed"}),
    "issue_comment": frozenset({"created", "edited"}),
    "pull_request_review": frozenset({"submitted"}),
    "pull_request_review_comment": frozenset({"created"}),
    "pull_request_review_thread": frozenset({"resolved"}),
    # opened and ready_for_review: ``review.on`` (bot.core.policy) reviews a new PR.
    "pull_request": frozenset({"closed", "synchronize", "opened", "ready_for_review"}),
    "installation": frozenset(
        {"created", "deleted", "suspend", "unsuspend", "new_permissions_accepted"}
    ),
    "installation_repositories": frozenset({"added", "removed"}),
    "workflow_dispatch": None,
    "workflow_run": frozenset({"requested", "in_progress", "completed"}),
    # CI on a commit (bot.loop.ci): only a conclusion can complete a suite, so the other
    # actions are recorded without a job.
    "check_suite": frozenset({"completed"}),
    "check_run": frozenset({"completed"}),
    "status": None,
    "ping": None,
}


def is_supported(event: str, action: str | None) -> bool:
    """Whether the bot handles ``event`` with ``action`` (ingest queues a job only then)."""
    if event not in KNOWN_ACTIONS:
        return False
    actions = KNOWN_ACTIONS[event]
    return actions is None or action in actions


class _Missing(Exception):
    """Internal: a required field is absent or has the wrong type."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Actor:
    """A GitHub account. ``is_bot`` is true for ``type == "Bot"`` or a ``[bot]`` login."""

    login: str
    id: int | None
    is_bot: bool


@dataclass(frozen=True)
class Repo:
    owner: str
    name: str
    full_name: str
    id: int | None
    default_branch: str | None
    private: bool
    clone_url: str | None
    html_url: str | None


@dataclass(frozen=True)
class RepoRef:
    """A repository as installation events list it (no owner object, no URLs)."""

    full_name: str
    id: int | None
    private: bool


@dataclass(frozen=True)
class Issue:
    """An issue, or a PR seen through the issues API (``is_pr``)."""

    number: int
    title: str
    body: str
    author: Actor | None
    state: str
    labels: tuple[str, ...]
    is_pr: bool
    html_url: str | None


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    body: str
    author: Actor | None
    state: str
    merged: bool
    draft: bool
    head_ref: str | None
    head_sha: str | None
    head_repo: str | None  # full name; None when the fork was deleted
    base_ref: str | None
    labels: tuple[str, ...]
    html_url: str | None

    is_pr = True

    def same_repo(self, repo: Repo) -> bool:
        """Whether the head branch lives in ``repo`` (not a fork)."""
        return self.head_repo is not None and self.head_repo.casefold() == repo.full_name.casefold()


class ReviewState(StrEnum):
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    COMMENTED = "commented"


@dataclass(frozen=True)
class Review:
    id: int
    state: ReviewState
    commit_id: str | None


@dataclass(frozen=True)
class ThreadPosition:
    """Where an inline review comment sits in the diff."""

    path: str
    line: int | None
    start_line: int | None
    side: str | None
    in_reply_to: int | None
    review_id: int | None
    commit_id: str | None
    diff_hunk: str


class CommentPlace(StrEnum):
    ISSUE = "issue"  # the conversation of an issue
    PULL_REQUEST = "pull_request"  # the conversation of a PR
    REVIEW = "review"  # the body of a submitted review
    REVIEW_THREAD = "review_thread"  # an inline comment on the diff


# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class _Common:
    event: str
    action: str | None
    sender: Actor | None
    installation_id: int | None


@dataclass(frozen=True)
class IssueEvent(_Common):
    """``issues``: opened, edited, labeled, unlabeled, closed."""

    repo: Repo
    issue: Issue
    label: str | None  # the label added or removed (labeled/unlabeled)

    @property
    def number(self) -> int:
        return self.issue.number


@dataclass(frozen=True)
class Comment(_Common):
    """Someone said something on an issue or PR: any comment-like event.

    ``comment_id`` is the issue comment or inline comment id, ``None`` for a review body
    (use ``review.id``). ``target`` is an :class:`Issue` for ``issue_comment`` (the payload
    has no branch data, even on a PR) and a :class:`PullRequest` for review events.
    """

    repo: Repo
    place: CommentPlace
    target: Issue | PullRequest
    author: Actor | None
    body: str
    comment_id: int | None
    html_url: str | None
    review: Review | None  # place == REVIEW
    thread: ThreadPosition | None  # place == REVIEW_THREAD

    @property
    def number(self) -> int:
        return self.target.number

    @property
    def is_pr(self) -> bool:
        return self.place is not CommentPlace.ISSUE


@dataclass(frozen=True)
class PullRequestEvent(_Common):
    """``pull_request``: closed (merged or not), synchronize (``before``/``after``), and
    opened or ready_for_review (a review when ``review.on`` asks for one)."""

    repo: Repo
    pull_request: PullRequest
    before: str | None
    after: str | None

    @property
    def number(self) -> int:
        return self.pull_request.number


@dataclass(frozen=True)
class ReviewThreadEvent(_Common):
    """``pull_request_review_thread``: resolved."""

    repo: Repo
    pull_request: PullRequest
    thread_node_id: str | None
    comment_ids: tuple[int, ...]

    @property
    def number(self) -> int:
        return self.pull_request.number


@dataclass(frozen=True)
class InstallationEvent(_Common):
    """``installation`` and ``installation_repositories``.

    ``added``/``removed`` are the repositories that became reachable or unreachable: for
    ``installation`` ``created`` the listed repositories count as added, for ``deleted``
    as removed; other actions list none.
    """

    account: Actor | None
    repository_selection: str | None
    added: tuple[RepoRef, ...]
    removed: tuple[RepoRef, ...]


@dataclass(frozen=True)
class WorkflowDispatch(_Common):
    repo: Repo
    ref: str | None
    workflow: str | None
    inputs: tuple[tuple[str, str], ...]  # sorted (name, value); non-string values as JSON text

    def input(self, name: str) -> str | None:
        return dict(self.inputs).get(name)


@dataclass(frozen=True)
class WorkflowRun(_Common):
    """``workflow_run``: requested, in_progress, completed. A run of any workflow in the
    repository; the ``actions`` executor follows the runs it dispatched by their title.

    ``status`` is the run's (requested, queued, in_progress, completed, ...), ``conclusion``
    is set once it completed (success, failure, cancelled, ...). ``title`` is the run's
    ``display_title`` (its ``run-name``), empty when absent."""

    repo: Repo
    run_id: int
    status: str
    conclusion: str | None
    title: str
    workflow_path: str | None  # .github/workflows/<file>
    run_attempt: int | None
    html_url: str | None
    head_sha: str | None = None
    head_branch: str | None = None
    head_repo: str | None = None  # full name; None when absent
    pull_numbers: tuple[int, ...] = ()

    def as_ci(self) -> CiEvent | None:
        """A completed run of a commit as CI news (:class:`CiEvent`); None before it
        completed or when the payload names no head commit."""
        if self.action != "completed" or self.head_sha is None:
            return None
        fork = self.head_repo is not None and (
            self.head_repo.casefold() != self.repo.full_name.casefold()
        )
        return CiEvent(
            event=self.event,
            action=self.action,
            sender=self.sender,
            installation_id=self.installation_id,
            repo=self.repo,
            head_sha=self.head_sha,
            branches=(self.head_branch,) if self.head_branch else (),
            pull_numbers=self.pull_numbers,
            fork=fork,
            name=self.title,
            conclusion=self.conclusion,
        )


@dataclass(frozen=True)
class CiEvent(_Common):
    """CI news about a commit: ``check_suite`` or ``check_run`` completed, a ``status``,
    or a ``workflow_run`` completed (:meth:`WorkflowRun.as_ci`). It says which commit to
    look at again, never what to decide: the loop reads the commit's checks itself.

    ``branches``: the branches the payload names for the commit; ``pull_numbers``: the PRs
    whose head it is (GitHub lists only PRs of the same repository); ``fork``: the payload
    says the head lives in another repository."""

    repo: Repo
    head_sha: str
    branches: tuple[str, ...]
    pull_numbers: tuple[int, ...]
    fork: bool
    name: str
    conclusion: str | None


@dataclass(frozen=True)
class Ping(_Common):
    repo: Repo | None
    hook_id: int | None
    zen: str | None


@dataclass(frozen=True)
class Unsupported:
    """An event or action the bot does not handle (recorded, no job)."""

    event: str
    action: str | None


@dataclass(frozen=True)
class Unparseable:
    """A supported event whose payload lacks what the bot needs."""

    event: str
    action: str | None
    reason: str


Event: TypeAlias = (
    IssueEvent
    | Comment
    | PullRequestEvent
    | ReviewThreadEvent
    | InstallationEvent
    | WorkflowDispatch
    | WorkflowRun
    | CiEvent
    | Ping
    | Unsupported
    | Unparseable
)

# ------------------------------------------------------------------- field readers


def _obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise _Missing(f"{key} is missing or not an object")
    return value


def _opt_obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    return value if isinstance(value, Mapping) else None


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Missing(f"{where}.{key} is missing or not an integer")
    return value


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    return None if isinstance(value, bool) or not isinstance(value, int) else value


def _str(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _Missing(f"{where}.{key} is missing or not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _text(data: Mapping[str, Any], key: str) -> str:
    """A free-text field: GitHub sends ``null`` for an empty body."""
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _bool(data: Mapping[str, Any], key: str) -> bool:
    return data.get(key) is True


def _actor(data: Mapping[str, Any] | None) -> Actor | None:
    if data is None:
        return None
    login = data.get("login")
    if not isinstance(login, str) or not login:
        return None
    is_bot = data.get("type") == "Bot" or login.lower().endswith("[bot]")
    return Actor(login=login, id=_opt_int(data, "id"), is_bot=is_bot)


def _labels(data: Mapping[str, Any]) -> tuple[str, ...]:
    raw = data.get("labels")
    if not isinstance(raw, list):
        return ()
    names = (item.get("name") for item in raw if isinstance(item, Mapping))
    return tuple(name for name in names if isinstance(name, str))


def _repo(data: Mapping[str, Any]) -> Repo:
    raw = _obj(data, "repository")
    full_name = _str(raw, "full_name", "repository")
    owner_obj = _opt_obj(raw, "owner")
    owner = owner_obj.get("login") if owner_obj is not None else None
    name = raw.get("name")
    if "/" in full_name:
        split_owner, _, split_name = full_name.partition("/")
        owner = owner if isinstance(owner, str) and owner else split_owner
        name = name if isinstance(name, str) and name else split_name
    if not isinstance(owner, str) or not owner or not isinstance(name, str) or not name:
        raise _Missing("repository owner or name is missing")
    return Repo(
        owner=owner,
        name=name,
        full_name=full_name,
        id=_opt_int(raw, "id"),
        default_branch=_opt_str(raw, "default_branch"),
        private=_bool(raw, "private"),
        clone_url=_opt_str(raw, "clone_url"),
        html_url=_opt_str(raw, "html_url"),
    )


def _issue(raw: Mapping[str, Any]) -> Issue:
    return Issue(
        number=_int(raw, "number", "issue"),
        title=_text(raw, "title"),
        body=_text(raw, "body"),
        author=_actor(_opt_obj(raw, "user")),
        state=_opt_str(raw, "state") or "open",
        labels=_labels(raw),
        is_pr=_opt_obj(raw, "pull_request") is not None,
        html_url=_opt_str(raw, "html_url"),
    )


def parse_pull_request(raw: Mapping[str, Any]) -> PullRequest:
    """A REST or webhook ``pull_request`` object as a value (raises :class:`ValueError`)."""
    try:
        return _pull_request(raw)
    except _Missing as exc:
        raise ValueError(str(exc)) from None


def _pull_request(raw: Mapping[str, Any]) -> PullRequest:
    head = _opt_obj(raw, "head") or {}
    base = _opt_obj(raw, "base") or {}
    head_repo = _opt_obj(head, "repo")
    return PullRequest(
        number=_int(raw, "number", "pull_request"),
        title=_text(raw, "title"),
        body=_text(raw, "body"),
        author=_actor(_opt_obj(raw, "user")),
        state=_opt_str(raw, "state") or "open",
        merged=_bool(raw, "merged"),
        draft=_bool(raw, "draft"),
        head_ref=_opt_str(head, "ref"),
        head_sha=_opt_str(head, "sha"),
        head_repo=_opt_str(head_repo, "full_name") if head_repo is not None else None,
        base_ref=_opt_str(base, "ref"),
        labels=_labels(raw),
        html_url=_opt_str(raw, "html_url"),
    )


def _repo_refs(data: Mapping[str, Any], key: str) -> tuple[RepoRef, ...]:
    raw = data.get(key)
    if not isinstance(raw, list):
        return ()
    refs = []
    for item in raw:
        if isinstance(item, Mapping) and isinstance(item.get("full_name"), str):
            refs.append(
                RepoRef(
                    full_name=item["full_name"],
                    id=_opt_int(item, "id"),
                    private=_bool(item, "private"),
                )
            )
    return tuple(refs)


# ------------------------------------------------------------- parsers per family


def _parse_issues(data: Mapping[str, Any], common: _Common) -> IssueEvent:
    label = _opt_obj(data, "label")
    return IssueEvent(
        **vars(common),
        repo=_repo(data),
        issue=_issue(_obj(data, "issue")),
        label=_opt_str(label, "name") if label is not None else None,
    )


def _parse_issue_comment(data: Mapping[str, Any], common: _Common) -> Comment:
    issue = _issue(_obj(data, "issue"))
    comment = _obj(data, "comment")
    return Comment(
        **vars(common),
        repo=_repo(data),
        place=CommentPlace.PULL_REQUEST if issue.is_pr else CommentPlace.ISSUE,
        target=issue,
        author=_actor(_opt_obj(comment, "user")),
        body=_text(comment, "body"),
        comment_id=_int(comment, "id", "comment"),
        html_url=_opt_str(comment, "html_url"),
        review=None,
        thread=None,
    )


def _parse_review(data: Mapping[str, Any], common: _Common) -> Comment:
    review = _obj(data, "review")
    state = review.get("state")
    if not isinstance(state, str) or state.lower() not in {s.value for s in ReviewState}:
        raise _Missing(f"review.state {state!r} is not approved/changes_requested/commented")
    return Comment(
        **vars(common),
        repo=_repo(data),
        place=CommentPlace.REVIEW,
        target=_pull_request(_obj(data, "pull_request")),
        author=_actor(_opt_obj(review, "user")),
        body=_text(review, "body"),
        comment_id=None,
        html_url=_opt_str(review, "html_url"),
        review=Review(
            id=_int(review, "id", "review"),
            state=ReviewState(state.lower()),
            commit_id=_opt_str(review, "commit_id"),
        ),
        thread=None,
    )


def _parse_review_comment(data: Mapping[str, Any], common: _Common) -> Comment:
    comment = _obj(data, "comment")
    return Comment(
        **vars(common),
        repo=_repo(data),
        place=CommentPlace.REVIEW_THREAD,
        target=_pull_request(_obj(data, "pull_request")),
        author=_actor(_opt_obj(comment, "user")),
        body=_text(comment, "body"),
        comment_id=_int(comment, "id", "comment"),
        html_url=_opt_str(comment, "html_url"),
        review=None,
        thread=ThreadPosition(
            path=_str(comment, "path", "comment"),
            line=_opt_int(comment, "line"),
            start_line=_opt_int(comment, "start_line"),
            side=_opt_str(comment, "side"),
            in_reply_to=_opt_int(comment, "in_reply_to_id"),
            review_id=_opt_int(comment, "pull_request_review_id"),
            commit_id=_opt_str(comment, "commit_id"),
            diff_hunk=_text(comment, "diff_hunk"),
        ),
    )


def _parse_review_thread(data: Mapping[str, Any], common: _Common) -> ReviewThreadEvent:
    thread = _obj(data, "thread")
    comments = thread.get("comments")
    items = comments if isinstance(comments, list) else []
    ids = tuple(i for c in items if isinstance(c, Mapping) and (i := _opt_int(c, "id")) is not None)
    return ReviewThreadEvent(
        **vars(common),
        repo=_repo(data),
        pull_request=_pull_request(_obj(data, "pull_request")),
        thread_node_id=_opt_str(thread, "node_id"),
        comment_ids=ids,
    )


def _parse_pull_request(data: Mapping[str, Any], common: _Common) -> PullRequestEvent:
    return PullRequestEvent(
        **vars(common),
        repo=_repo(data),
        pull_request=_pull_request(_obj(data, "pull_request")),
        before=_opt_str(data, "before"),
        after=_opt_str(data, "after"),
    )


def _parse_installation(data: Mapping[str, Any], common: _Common) -> InstallationEvent:
    installation = _obj(data, "installation")
    if common.installation_id is None:
        raise _Missing("installation.id is missing or not an integer")
    if common.event == "installation":
        listed = _repo_refs(data, "repositories")
        added = listed if common.action == "created" else ()
        removed = listed if common.action == "deleted" else ()
    else:
        added = _repo_refs(data, "repositories_added")
        removed = _repo_refs(data, "repositories_removed")
    return InstallationEvent(
        **vars(common),
        account=_actor(_opt_obj(installation, "account")),
        repository_selection=_opt_str(installation, "repository_selection")
        or _opt_str(data, "repository_selection"),
        added=added,
        removed=removed,
    )


def _input_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _parse_workflow_dispatch(data: Mapping[str, Any], common: _Common) -> WorkflowDispatch:
    raw_inputs = _opt_obj(data, "inputs") or {}
    inputs = tuple(sorted((str(k), _input_text(v)) for k, v in raw_inputs.items()))
    return WorkflowDispatch(
        **vars(common),
        repo=_repo(data),
        ref=_opt_str(data, "ref"),
        workflow=_opt_str(data, "workflow"),
        inputs=inputs,
    )


def _parse_workflow_run(data: Mapping[str, Any], common: _Common) -> WorkflowRun:
    run = _obj(data, "workflow_run")
    repo = _repo(data)
    numbers, _ = _pull_heads(run, repo)
    head_repo = _opt_obj(run, "head_repository")
    return WorkflowRun(
        **vars(common),
        repo=repo,
        head_sha=_opt_str(run, "head_sha"),
        head_branch=_opt_str(run, "head_branch"),
        head_repo=_opt_str(head_repo, "full_name") if head_repo is not None else None,
        pull_numbers=numbers,
        run_id=_int(run, "id", "workflow_run"),
        status=_str(run, "status", "workflow_run"),
        conclusion=_opt_str(run, "conclusion"),
        title=_text(run, "display_title"),
        workflow_path=_opt_str(run, "path"),
        run_attempt=_opt_int(run, "run_attempt"),
        html_url=_opt_str(run, "html_url"),
    )


def _pull_heads(raw: Mapping[str, Any], repo: Repo) -> tuple[tuple[int, ...], bool]:
    """The numbers in a ``pull_requests`` list, and whether any head is in another
    repository (a fork: its head repository's id differs from the repository's)."""
    items = raw.get("pull_requests")
    numbers: list[int] = []
    fork = False
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping) or (number := _opt_int(item, "number")) is None:
            continue
        numbers.append(number)
        head_repo = _opt_obj(_opt_obj(item, "head") or {}, "repo")
        head_id = _opt_int(head_repo, "id") if head_repo is not None else None
        if head_id is not None and repo.id is not None and head_id != repo.id:
            fork = True
    return tuple(numbers), fork


def _sha(data: Mapping[str, Any], key: str, where: str) -> str:
    value = _str(data, key, where)
    if len(value) != 40 or any(c not in "0123456789abcdef" for c in value.lower()):
        raise _Missing(f"{where}.{key} is not a commit sha")
    return value


def _parse_check_suite(data: Mapping[str, Any], common: _Common) -> CiEvent:
    repo = _repo(data)
    suite = _obj(data, "check_suite")
    numbers, fork = _pull_heads(suite, repo)
    branch = _opt_str(suite, "head_branch")
    app = _opt_obj(suite, "app") or {}
    return CiEvent(
        **vars(common),
        repo=repo,
        head_sha=_sha(suite, "head_sha", "check_suite"),
        branches=(branch,) if branch else (),
        pull_numbers=numbers,
        fork=fork,
        name=_opt_str(app, "slug") or _opt_str(app, "name") or "",
        conclusion=_opt_str(suite, "conclusion"),
    )


def _parse_check_run(data: Mapping[str, Any], common: _Common) -> CiEvent:
    repo = _repo(data)
    run = _obj(data, "check_run")
    suite = _opt_obj(run, "check_suite") or {}
    numbers, fork = _pull_heads(run, repo)
    branch = _opt_str(suite, "head_branch")
    return CiEvent(
        **vars(common),
        repo=repo,
        head_sha=_sha(run, "head_sha", "check_run"),
        branches=(branch,) if branch else (),
        pull_numbers=numbers,
        fork=fork,
        name=_text(run, "name"),
        conclusion=_opt_str(run, "conclusion"),
    )


def _parse_status(data: Mapping[str, Any], common: _Common) -> CiEvent:
    raw = data.get("branches")
    branches = tuple(
        name
        for item in (raw if isinstance(raw, list) else [])
        if isinstance(item, Mapping) and isinstance(name := item.get("name"), str) and name
    )
    state = _opt_str(data, "state")
    return CiEvent(
        **vars(common),
        repo=_repo(data),
        head_sha=_sha(data, "sha", "status"),
        branches=branches,
        pull_numbers=(),
        fork=False,
        name=_text(data, "context"),
        conclusion=None if state == "pending" else state,
    )


def _parse_ping(data: Mapping[str, Any], common: _Common) -> Ping:
    try:
        repo: Repo | None = _repo(data)
    except _Missing:
        repo = None  # organisation and App hooks ping without a repository
    return Ping(
        **vars(common), repo=repo, hook_id=_opt_int(data, "hook_id"), zen=_opt_str(data, "zen")
    )


_PARSERS: Mapping[str, Callable[[Mapping[str, Any], _Common], Event]] = {
    "issues": _parse_issues,
    "issue_comment": _parse_issue_comment,
    "pull_request_review": _parse_review,
    "pull_request_review_comment": _parse_review_comment,
    "pull_request_review_thread": _parse_review_thread,
    "pull_request": _parse_pull_request,
    "installation": _parse_installation,
    "installation_repositories": _parse_installation,
    "workflow_dispatch": _parse_workflow_dispatch,
    "workflow_run": _parse_workflow_run,
    "check_suite": _parse_check_suite,
    "check_run": _parse_check_run,
    "status": _parse_status,
    "ping": _parse_ping,
}


def parse_event(event: str, payload: object) -> Event:
    """Parse a webhook delivery (``X-GitHub-Event`` name and decoded JSON) into a value."""
    if event not in KNOWN_ACTIONS:
        raw = payload.get("action") if isinstance(payload, Mapping) else None
        return Unsupported(event=event, action=raw if isinstance(raw, str) else None)
    if not isinstance(payload, Mapping):
        return Unparseable(event, None, f"payload is a {type(payload).__name__}, not an object")
    data: Mapping[str, Any] = payload
    raw_action = data.get("action")
    action = raw_action if isinstance(raw_action, str) else None
    if KNOWN_ACTIONS[event] is not None and action is None:
        return Unparseable(event, None, "action is missing or not a string")
    if not is_supported(event, action):
        return Unsupported(event=event, action=action)
    installation = _opt_obj(data, "installation")
    common = _Common(
        event=event,
        action=action,
        sender=_actor(_opt_obj(data, "sender")),
        installation_id=_opt_int(installation, "id") if installation is not None else None,
    )
    try:
        return _PARSERS[event](data, common)
    except _Missing as exc:
        return Unparseable(event=event, action=action, reason=str(exc))
