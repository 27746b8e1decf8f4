"""The fake's world: users, the App, repositories, issues, pull requests, reviews, tokens.

Plain dataclasses behind one re-entrant lock (:attr:`World.lock`); the HTTP layer and the
"act as a user" helpers both mutate them under that lock. Repository contents live in real
bare git repositories (:mod:`bot.testing.fake_github.gitrepo`), not here.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

Role = Literal["admin", "maintain", "write", "triage", "read"]
ROLES: tuple[Role, ...] = ("admin", "maintain", "write", "triage", "read")
# GitHub's legacy ``permission`` field folds maintain into write and triage into read.
LEGACY_PERMISSION: dict[str, str] = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
}


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time and real sleeping."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it and records the wait.

    Share one instance between the fake and the adapter in a test: token expiry, JWT
    validity and rate-limit waits then all agree, and ``sleeps`` shows every wait.
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(seconds, 0.0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class User:
    login: str
    id: int
    type: Literal["User", "Bot", "Organization"] = "User"


@dataclass
class Token:
    value: str
    login: str
    kind: Literal["installation", "user"]
    expires_at: float | None
    repositories: frozenset[str] | None = None
    permissions: dict[str, str] = field(default_factory=dict)
    installation_id: int | None = None
    revoked: bool = False


@dataclass
class Installation:
    id: int
    account: str
    repositories: set[str] | None  # full names; None means all of the account's
    permissions: dict[str, str]


@dataclass
class App:
    id: int
    slug: str
    name: str
    public_key_pem: str
    owner: str
    # What the App's settings grant and subscribe to, as GET /app reports them.
    permissions: dict[str, str] = field(default_factory=dict)
    events: tuple[str, ...] = ()

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


# Apps other than the bot's that report checks on the fake: GitHub Actions (its real id and
# slug, https://api.github.com/apps/github-actions) and a third-party CI App.
GITHUB_ACTIONS = App(
    15368,
    "github-actions",
    "GitHub Actions",
    "",
    "github",
    {"actions": "write", "checks": "write", "contents": "write", "metadata": "read"},
    ("check_run", "check_suite", "pull_request", "push", "workflow_dispatch"),
)
CHECK_APP = App(
    9426,
    "fake-ci",
    "Fake CI",
    "",
    "fake-ci-org",
    {"checks": "write", "contents": "read", "metadata": "read", "statuses": "write"},
    ("check_suite", "pull_request", "push"),
)


@dataclass
class Reaction:
    id: int
    user: str
    content: str
    created_at: float


@dataclass
class Label:
    id: int
    name: str
    color: str = "ededed"
    description: str | None = None


@dataclass
class IssueComment:
    repo: str  # full name
    id: int
    issue_number: int
    user: str
    body: str
    created_at: float
    updated_at: float
    reactions: list[Reaction] = field(default_factory=list)
    via_app: bool = False


@dataclass
class Review:
    repo: str  # full name
    id: int
    pull_number: int
    user: str
    body: str
    state: Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]
    commit_id: str
    submitted_at: float


@dataclass
class ReviewComment:
    repo: str  # full name
    id: int
    pull_number: int
    review_id: int
    user: str
    body: str
    path: str
    line: int | None
    side: str
    commit_id: str
    created_at: float
    updated_at: float
    thread_id: str
    in_reply_to_id: int | None = None
    reactions: list[Reaction] = field(default_factory=list)
    # Where the line sits in the PR's diff (GitHub's ``position``), and the hunk down to it.
    position: int | None = None
    diff_hunk: str = ""
    # A multi-line comment's first line and its side (POST .../pulls/{n}/reviews).
    start_line: int | None = None
    start_side: str | None = None


@dataclass
class ReviewThread:
    repo: str  # full name
    id: str
    pull_number: int
    path: str
    line: int | None
    comment_ids: list[int]
    resolved: bool = False
    resolved_by: str | None = None


@dataclass
class PullRequest:
    head_ref: str
    base_ref: str
    head_sha: str
    base_sha: str
    draft: bool
    merged: bool = False
    merged_at: float | None = None
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    requested_reviewers: list[str] = field(default_factory=list)
    reviews: list[int] = field(default_factory=list)
    # The fork the head branch lives in (its full name); None: a branch of the repository.
    head_repo: str | None = None


@dataclass
class Issue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: float
    updated_at: float
    state: Literal["open", "closed"] = "open"
    state_reason: str | None = None
    closed_at: float | None = None
    labels: list[str] = field(default_factory=list)
    comments: list[int] = field(default_factory=list)
    reactions: list[Reaction] = field(default_factory=list)
    pull: PullRequest | None = None


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    status: str
    conclusion: str | None
    started_at: float
    completed_at: float | None
    external_id: str | None
    details_url: str | None
    output: dict[str, str | None]
    app_id: int | None
    # The check suite it belongs to (bot/testing/fake_github/ci.py) and its annotations, in
    # the shape of GET .../check-runs/{id}/annotations.
    suite_id: int | None = None
    annotations: list[dict[str, Any]] = field(default_factory=list)
    # The App reporting it when it is not the bot's (GitHub Actions, a third-party CI App).
    other_app: App | None = None


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    private: bool
    default_branch: str
    path: Path
    created_at: float
    collaborators: dict[str, Role] = field(default_factory=dict)
    labels: dict[str, Label] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    next_number: int = 1
    # The owner's plan decides where drafts exist: "Draft pull requests are available in
    # public repositories with GitHub Free and GitHub Free for organizations, GitHub Pro,
    # and legacy per-repository billing plans, and in public and private repositories with
    # GitHub Team and GitHub Enterprise Cloud."
    # https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/proposing-changes-to-your-work-with-pull-requests/about-pull-requests#draft-pull-requests
    plan: Literal["free", "pro", "team", "enterprise"] = "team"
    protected_branches: set[str] = field(default_factory=set)  # pushes to them are refused
    parent: str | None = None  # a fork: the full name of the repository it was forked from

    @property
    def drafts_allowed(self) -> bool:
        return not self.private or self.plan in ("team", "enterprise")

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class World:
    """All state of one fake GitHub; every access holds :attr:`lock`."""

    def __init__(self, clock: Clock, first_id: int = 1001) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        # GitHub's ids are 64-bit (review comments passed 2**31 long ago); a test may start
        # above that to catch code that assumes 32 bits.
        self._ids = itertools.count(first_id)
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}
        # The former names of renamed or transferred repositories (lowercase) and their ids.
        self.moved: dict[str, int] = {}
        self.tokens: dict[str, Token] = {}
        self.installations: dict[int, Installation] = {}
        self.app: App | None = None
        self.issue_comments: dict[int, IssueComment] = {}
        self.review_comments: dict[int, ReviewComment] = {}
        self.reviews: dict[int, Review] = {}
        self.threads: dict[str, ReviewThread] = {}
        self.check_runs: dict[int, tuple[str, int]] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def user(self, login: str, type_: Literal["User", "Bot", "Organization"] = "User") -> User:
        if login not in self.users:
            self.users[login] = User(login=login, id=self.next_id(), type=type_)
        return self.users[login]

    def repo(self, owner: str, name: str) -> Repo | None:
        return self.repos.get(f"{owner}/{name}".lower())

    def moved_repo(self, owner: str, name: str) -> Repo | None:
        """The repository that was called ``owner/name`` before a rename or a transfer."""
        repo_id = self.moved.get(f"{owner}/{name}".lower())
        return next((r for r in self.repos.values() if r.id == repo_id), None)

    def rename(self, repo: Repo, owner: str, name: str) -> None:
        """Give ``repo`` a new owner and name. GitHub keeps the id, the issues, pull
        requests and comments, and redirects the old name until a repository takes it:
        https://docs.github.com/en/repositories/creating-and-managing-repositories/renaming-a-repository
        """
        old, new = repo.full_name, f"{owner}/{name}"
        del self.repos[old.lower()]
        repo.owner, repo.name = owner, name
        self.repos[new.lower()] = repo
        self.moved.pop(new.lower(), None)
        self.moved[old.lower()] = repo.id
        things: list[IssueComment | Review | ReviewComment | ReviewThread] = [
            *self.issue_comments.values(),
            *self.reviews.values(),
            *self.review_comments.values(),
            *self.threads.values(),
        ]
        for thing in things:
            if thing.repo == old:
                thing.repo = new
        for inst in self.installations.values():
            if inst.repositories is not None and old.lower() in inst.repositories:
                inst.repositories = (inst.repositories - {old.lower()}) | {new.lower()}
        for token in self.tokens.values():
            if token.repositories is not None and old.lower() in token.repositories:
                token.repositories = (token.repositories - {old.lower()}) | {new.lower()}

    def issue_comment(self, comment_id: int) -> IssueComment | None:
        return self.issue_comments.get(comment_id)

    def new_token(
        self,
        login: str,
        kind: Literal["installation", "user"],
        prefix: str,
        lifetime: float | None,
        **extra: object,
    ) -> Token:
        value = prefix + secrets.token_hex(18)
        expires = None if lifetime is None else self.clock.now() + lifetime
        token = Token(value=value, login=login, kind=kind, expires_at=expires, **extra)  # type: ignore[arg-type]
        self.tokens[value] = token
        return token

    def token_valid(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        if token is None or token.revoked:
            return None
        if token.expires_at is not None and token.expires_at <= self.clock.now():
            return None
        return token

    def role_of(self, repo: Repo, login: str) -> Role | None:
        if (
            login.lower() == repo.owner.lower()
            and self.users.get(login, User(login, 0)).type == "User"
        ):
            return "admin"
        for name, role in repo.collaborators.items():
            if name.lower() == login.lower():
                return role
        return None

    def token_can(self, token: Token, repo: Repo, write_scope: str | None) -> bool:
        """Whether ``token`` may read ``repo`` (``write_scope`` None) or write the given
        permission scope of it (``contents``, ``issues``, ``pull_requests``, ``checks``)."""
        if token.kind == "installation":
            if token.repositories is not None and repo.full_name.lower() not in token.repositories:
                return False
            if write_scope is None:
                return True
            return token.permissions.get(write_scope) == "write"
        role = self.role_of(repo, token.login)
        if write_scope is None:
            return not repo.private or role is not None
        if write_scope == "checks":
            return False  # only Apps and Actions tokens create check runs
        if write_scope == "issues":
            return role is not None and role != "read"
        return role in ("admin", "maintain", "write")

    def token_reads(self, token: Token, scope: str) -> bool:
        """Whether an installation token was granted ``scope`` (read or write): a GitHub App
        reads a repository's contents, issues or pull requests only with that permission
        (https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps);
        personal tokens read what their user may read."""
        if token.kind != "installation":
            return True
        return token.permissions.get(scope) in ("read", "write")
