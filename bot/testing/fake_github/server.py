"""The fake GitHub server: state, uvicorn on 127.0.0.1 in a thread, helpers, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import tempfile
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI

from bot.github.manifest import events_of, features, permissions_of
from bot.testing.fake_github import gitrepo
from bot.testing.fake_github.api import (
    ApiError,
    Fault,
    FaultKind,
    LoggedRequest,
    Recorded,
    create_api,
)
from bot.testing.fake_github.ci import CiJob, FakeCi, add_ci_routes
from bot.testing.fake_github.manifests import (
    EVENT_PERMISSIONS,
    ManifestFlow,
    add_manifest_routes,
)
from bot.testing.fake_github.shapes import JSON, Shapes, node_id
from bot.testing.fake_github.state import (
    App,
    Clock,
    Installation,
    Issue,
    IssueComment,
    Label,
    PullRequest,
    Repo,
    Review,
    ReviewComment,
    ReviewThread,
    Role,
    SystemClock,
    Token,
    World,
)

WebhookOrder = Literal["sent", "reversed", "shuffled"]
# Events GitHub sends to every App, with no subscription and no permission: "This event
# occurs when there is activity relating to a GitHub App installation"
# (https://docs.github.com/en/webhooks/webhook-events-and-payloads#installation).
UNSUBSCRIBED_EVENTS = frozenset({"installation", "installation_repositories"})

# An App registered from the default manifest of ``vibe setup`` (bot/github/manifest.py).
DEFAULT_APP_PERMISSIONS: dict[str, str] = dict(permissions_of(features()))
DEFAULT_APP_EVENTS = tuple(events_of(features()))


@dataclass(frozen=True)
class AppCredentials:
    """What an operator copies from the App's settings page: id and private key (PEM)."""

    app_id: int
    private_key_pem: str
    slug: str

    @property
    def bot_login(self) -> str:
        return f"{self.slug}[bot]"


@dataclass(frozen=True)
class InlineComment:
    """One inline comment of a review: a file path, a line of the new file, a text."""

    path: str
    line: int
    body: str


@dataclass(frozen=True)
class Delivery:
    """A webhook the fake sent (or tried to send): ``id`` is the GUID
    (``X-GitHub-Delivery``), shared by its redeliveries; ``attempt_id`` is the id of this
    one attempt in GitHub's delivery log (``GET /app/hook/deliveries``)."""

    id: str
    event: str
    payload: JSON
    status: int | None
    error: str | None
    attempt_id: int = 0
    delivered_at: float = 0.0
    redelivery: bool = False

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


Event = tuple[str, JSON]


class FakeGitHub:
    """A stateful GitHub on loopback. See the package docstring for a tour."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        token_lifetime: float = 3600.0,
        fault_delay: float = 1.0,
        port: int = 0,
        echo_api_events: bool = False,
        first_id: int = 1001,
        webhook_order: WebhookOrder = "sent",
        latency_seconds: float = 0.0,
    ) -> None:
        self.world = World(clock or SystemClock(), first_id)
        # Added before every API request is answered (not git over HTTP); settable while
        # running, so one fake measures the same scenario with and without network delay.
        self.latency_seconds = latency_seconds
        # Every request answered, in order, by method and route template.
        self.requests: list[LoggedRequest] = []
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.token_lifetime = token_lifetime
        self.fault_delay = fault_delay
        self.port = port
        self.echo_api_events = echo_api_events
        # The order in which one change's webhooks go out; settable while running.
        self.webhook_order: WebhookOrder = webhook_order
        self._shuffle = random.Random(first_id)  # noqa: S311 - test order, not security
        self.manifests = ManifestFlow()
        self.responses: list[Recorded] = []
        self.deliveries: list[Delivery] = []
        self._faults: list[Fault] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-github-")
        self.git_root = Path(self._tmp.name)
        self._server: uvicorn.Server | None = None
        self.app: FastAPI | None = None
        self._thread: threading.Thread | None = None
        # One client for every webhook delivery (a new one per request costs ~70 ms).
        self._hooks: httpx.Client | None = None
        self.base_url = ""
        self.shapes = Shapes("http://127.0.0.1", self.world)
        # The repositories' CI (bot/testing/fake_github/ci.py): declared with set_ci.
        self.ci = FakeCi(self)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> FakeGitHub:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.shapes = Shapes(self.base_url, self.world)
        # Kept so extensions (bot/testing/fake_actions.py) can add routes.
        self.app = create_api(self)
        add_manifest_routes(self.app, self)
        add_ci_routes(self.app, self)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="fake-github", daemon=True
        )
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("fake GitHub failed to start")
            threading.Event().wait(0.01)
        return self

    def stop(self) -> None:
        self.ci.close()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None
        with self.world.lock:
            hooks, self._hooks = self._hooks, None
        if hooks is not None:
            hooks.close()
        self._tmp.cleanup()

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        """The REST base URL (like ``https://api.github.com``)."""
        return self.base_url

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    def clone_url(self, full_name: str) -> str:
        return f"{self.base_url}/{full_name}.git"

    # --- faults and recording ---------------------------------------------------------

    def inject(
        self,
        method: str,
        path: str,
        kind: FaultKind,
        *,
        times: int = 1,
        retry_after: int | None = None,
        reset_at: int | None = None,
    ) -> Fault:
        """Make the next ``times`` requests matching ``method`` and ``path`` fail."""
        fault = Fault(kind, method.upper(), path, times, retry_after, reset_at)
        with self.world.lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every injected fault that has not fired yet."""
        with self.world.lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self.world.lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def record(self, recorded: Recorded) -> None:
        with self.world.lock:
            self.responses.append(recorded)

    def log_request(self, logged: LoggedRequest) -> None:
        with self.world.lock:
            self.requests.append(logged)

    def request_counts(self, since: int = 0, *, git: bool = False) -> Counter[str]:
        """API requests answered since index ``since`` of :attr:`requests`, counted by
        ``"METHOD /route/{template}"`` (git over HTTP only with ``git``)."""
        with self.world.lock:
            logged = self.requests[since:]
        return Counter(r.key for r in logged if git or not r.git)

    # --- setup helpers ----------------------------------------------------------------

    def add_user(self, login: str, *, bot: bool = False, org: bool = False) -> None:
        with self.world.lock:
            self.world.user(login, "Bot" if bot else "Organization" if org else "User")

    def create_repo(
        self,
        full_name: str,
        files: dict[str, str | bytes | None] | None = None,
        *,
        default_branch: str = "main",
        private: bool = False,
        plan: Literal["free", "pro", "team", "enterprise"] = "team",
        collaborators: dict[str, Role] | None = None,
    ) -> Repo:
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository name must be owner/name, got {full_name!r}")
        with self.world.lock:
            if full_name.lower() in self.world.repos:
                raise ValueError(f"{full_name} exists")
            self.world.moved.pop(full_name.lower(), None)  # a new repository ends a redirect
            if owner not in self.world.users:
                self.world.user(owner)
            path = self.git_root / owner.lower() / f"{name.lower()}.git"
            gitrepo.init_bare(path, default_branch)
            repo = Repo(
                owner=owner,
                name=name,
                id=self.world.next_id(),
                private=private,
                default_branch=default_branch,
                path=path,
                created_at=self.world.clock.now(),
                plan=plan,
            )
            self.world.repos[full_name.lower()] = repo
            for login, role in (collaborators or {}).items():
                self.set_role(full_name, login, role)
        gitrepo.commit_files(
            path, default_branch, files or {"README.md": f"# {name}\n"}, "Initial commit"
        )
        return repo

    def repo(self, full_name: str) -> Repo:
        owner, _, name = full_name.partition("/")
        found = self.world.repo(owner, name)
        if found is None:
            raise KeyError(full_name)
        return found

    def rename_repo(self, old: str, new: str, sender: str | None = None) -> Repo:
        """Rename a repository (same owner) or transfer it (another owner). The id stays; the
        old name answers 301 to the REST API and keeps serving git (:meth:`World.rename`).
        ``repository.renamed`` or ``repository.transferred`` goes to the App only if it
        subscribed to ``repository`` events
        (https://docs.github.com/en/webhooks/webhook-events-and-payloads#repository)."""
        owner, _, name = new.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"repository name must be owner/name, got {new!r}")
        with self.world.lock:
            repo = self.repo(old)
            if new.lower() != old.lower() and new.lower() in self.world.repos:
                raise ValueError(f"{new} exists")
            old_owner, old_name = repo.owner, repo.name
            new_owner = self.world.user(owner)
            path = self.git_root / owner.lower() / f"{name.lower()}.git"
            if path != repo.path:
                path.parent.mkdir(parents=True, exist_ok=True)
                repo.path.rename(path)
                repo.path = path
            self.world.rename(repo, owner, name)
            changes: JSON
            if old_owner == owner:
                action, changes = "renamed", {"repository": {"name": {"from": old_name}}}
            else:
                was = self.world.user(old_owner)
                kind = "organization" if was.type == "Organization" else "user"
                action = "transferred"
                changes = {"owner": {"from": {kind: self.shapes.user(was.login)}}}
            payload: JSON = {
                "action": action,
                "changes": changes,
                **self._common(repo, sender or new_owner.login),
            }
        self.deliver("repository", payload)
        return repo

    def fork(self, full_name: str, owner: str) -> Repo:
        """``owner`` forks a repository: ``owner/<name>`` with every branch of the original
        and ``fork: true`` ("parent" and "source" in its full shape). A pull request from it
        is opened with ``open_pull(full_name, owner, f"{owner}:{branch}", ...)``."""
        with self.world.lock:
            parent = self.repo(full_name)
            fork_name = f"{owner}/{parent.name}"
            if fork_name.lower() in self.world.repos:
                raise ValueError(f"{fork_name} exists")
            self.world.user(owner)
            path = self.git_root / owner.lower() / f"{parent.name.lower()}.git"
            gitrepo.init_bare(path, parent.default_branch)
            gitrepo.git(path, "fetch", "-q", str(parent.path), "+refs/heads/*:refs/heads/*")
            repo = Repo(
                owner=owner,
                name=parent.name,
                id=self.world.next_id(),
                private=parent.private,
                default_branch=parent.default_branch,
                path=path,
                created_at=self.world.clock.now(),
                parent=parent.full_name,
            )
            self.world.repos[fork_name.lower()] = repo
        return repo

    def set_ci(
        self,
        full_name: str,
        jobs: list[CiJob],
        *,
        workflow: str = "CI",
        hold: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Declare a workflow of CI jobs the fake runs on every push to a pull request's
        head (:mod:`bot.testing.fake_github.ci`); no jobs removes the workflow."""
        self.ci.set(full_name, jobs, workflow=workflow, hold=hold, delay=delay)

    def protect_branch(self, full_name: str, branch: str) -> None:
        """A branch protection rule: pushes to ``branch`` are refused (GH006)."""
        with self.world.lock:
            self.repo(full_name).protected_branches.add(branch)

    def set_role(self, full_name: str, login: str, role: Role | None) -> None:
        """Make ``login`` a collaborator with ``role`` (None removes them)."""
        with self.world.lock:
            repo = self.repo(full_name)
            self.world.user(login)
            if role is None:
                repo.collaborators.pop(login, None)
            else:
                repo.collaborators[login] = role

    def commit(
        self,
        full_name: str,
        branch: str,
        files: dict[str, str | bytes | None],
        message: str = "Update files",
        *,
        author: str = "fake-github",
    ) -> str:
        """Commit files on a branch (created from the default branch if new)."""
        repo = self.repo(full_name)
        sha = gitrepo.commit_files(
            repo.path, branch, files, message, author=author, parent_branch=repo.default_branch
        )
        self.after_push(repo, author)
        return sha

    def create_app(
        self,
        slug: str = "vibe-bot",
        *,
        owner: str = "vibe-owner",
        private_key_pem: str | None = None,
        permissions: dict[str, str] | None = None,
        events: tuple[str, ...] = DEFAULT_APP_EVENTS,
    ) -> AppCredentials:
        """Register the GitHub App; returns its id and its RS256 private key (generated
        unless ``private_key_pem`` gives one). ``permissions`` and ``events`` are what the
        App's settings grant and subscribe to (``GET /app`` reports them)."""
        if private_key_pem is None:
            generated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = generated.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode()
        else:
            pem = private_key_pem
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("a GitHub App key is an RSA key")
        public = (
            key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )
        with self.world.lock:
            app_id = self.world.next_id()
            self.world.user(owner)
            self.world.user(f"{slug}[bot]", "Bot")
            self.world.app = App(
                app_id,
                slug,
                slug.replace("-", " ").title(),
                public,
                owner,
                dict(permissions or DEFAULT_APP_PERMISSIONS),
                tuple(events),
            )
        return AppCredentials(app_id, pem, slug)

    def install_app(
        self,
        account: str,
        repositories: list[str] | None = None,
        permissions: dict[str, str] | None = None,
    ) -> int:
        """Install the App on an account (all its repositories, or the named ones)."""
        with self.world.lock:
            if self.world.app is None:
                raise RuntimeError("create_app() first")
            inst = Installation(
                id=self.world.next_id(),
                account=account,
                repositories=None
                if repositories is None
                else {f"{account}/{r}".lower() for r in repositories},
                permissions=dict(permissions or DEFAULT_APP_PERMISSIONS),
            )
            self.world.installations[inst.id] = inst
            return inst.id

    def installation_for(self, repo: Repo) -> Installation | None:
        for inst in self.world.installations.values():
            if inst.account.lower() != repo.owner.lower():
                continue
            if inst.repositories is None or repo.full_name.lower() in inst.repositories:
                return inst
        return None

    def repos_of(self, inst: Installation) -> list[Repo]:
        return [
            r
            for r in self.world.repos.values()
            if r.owner.lower() == inst.account.lower()
            and (inst.repositories is None or r.full_name.lower() in inst.repositories)
        ]

    def user_token(self, login: str, *, lifetime: float | None = None) -> str:
        """A personal access token (``ghp_...``) acting as ``login``."""
        with self.world.lock:
            self.world.user(login)
            return self.world.new_token(login, "user", "ghp_", lifetime).value

    def actions_token(self, full_name: str) -> str:
        """An Actions ``GITHUB_TOKEN`` for one repository (acts as ``github-actions[bot]``)."""
        with self.world.lock:
            self.world.user("github-actions[bot]", "Bot")
            repo = self.repo(full_name)
            return self.world.new_token(
                "github-actions[bot]",
                "installation",
                "ghs_",
                self.token_lifetime,
                repositories=frozenset({repo.full_name.lower()}),
                permissions=dict(DEFAULT_APP_PERMISSIONS),
            ).value

    def revoke_tokens(self, kind: Literal["installation", "user"] = "installation") -> int:
        """Revoke every token of a kind (the next request with one gets a 401)."""
        with self.world.lock:
            tokens = [t for t in self.world.tokens.values() if t.kind == kind and not t.revoked]
            for t in tokens:
                t.revoked = True
            return len(tokens)

    def issued_tokens(self, kind: Literal["installation", "user"] = "installation") -> list[Token]:
        with self.world.lock:
            return [t for t in self.world.tokens.values() if t.kind == kind]

    # --- state changes shared by the API and the helpers ------------------------------

    def ensure_label(self, repo: Repo, name: str) -> Label:
        if name not in repo.labels:
            repo.labels[name] = Label(self.world.next_id(), name)
        return repo.labels[name]

    def new_issue(self, repo: Repo, user: str, title: str, body: str | None) -> Issue:
        now = self.world.clock.now()
        issue = Issue(
            number=repo.next_number,
            id=self.world.next_id(),
            title=title,
            body=body,
            user=user,
            created_at=now,
            updated_at=now,
        )
        repo.issues[issue.number] = issue
        repo.next_number += 1
        return issue

    def add_issue_comment(self, repo: Repo, issue: Issue, user: str, body: str) -> IssueComment:
        now = self.world.clock.now()
        comment = IssueComment(
            repo.full_name, self.world.next_id(), issue.number, user, body, now, now
        )
        self.world.issue_comments[comment.id] = comment
        issue.comments.append(comment.id)
        issue.updated_at = now
        return comment

    def add_review_reply(
        self, repo: Repo, parent: ReviewComment, user: str, body: str
    ) -> ReviewComment:
        if parent.in_reply_to_id is not None:
            # "This must be the ID of a top-level review comment, not a reply to that
            # comment. Replies to replies are not supported."
            # https://docs.github.com/en/rest/pulls/comments#create-a-reply-for-a-review-comment
            raise ApiError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "PullRequestReviewComment",
                        "code": "invalid",
                        "field": "in_reply_to_id",
                        "message": "in_reply_to_id cannot be a reply",
                    }
                ],
            )
        now = self.world.clock.now()
        # A reply is a comment of a review of its own (GitHub sends pull_request_review
        # submitted for it too): the review that holds it is new, with an empty body.
        review = Review(
            repo.full_name,
            self.world.next_id(),
            parent.pull_number,
            user,
            "",
            "COMMENTED",
            parent.commit_id,
            now,
        )
        self.world.reviews[review.id] = review
        issue = repo.issues[parent.pull_number]
        assert issue.pull is not None
        issue.pull.reviews.append(review.id)
        comment = ReviewComment(
            repo.full_name,
            self.world.next_id(),
            parent.pull_number,
            review.id,
            user,
            body,
            parent.path,
            parent.line,
            parent.side,
            parent.commit_id,
            now,
            now,
            parent.thread_id,
            parent.id,
            position=parent.position,
            diff_hunk=parent.diff_hunk,
        )
        self.world.review_comments[comment.id] = comment
        self.world.threads[parent.thread_id].comment_ids.append(comment.id)
        return comment

    def after_push(self, repo: Repo, pusher: str) -> None:
        """A push landed: move the heads of open pull requests (GitHub's ``synchronize``);
        a push to a fork moves the heads of the pull requests it opened on its parent."""
        with self.world.lock:
            target = repo
            if repo.parent is not None:
                owner, _, name = repo.parent.partition("/")
                target = self.world.repo(owner, name) or repo
            changed = self._sync_pull_heads(target, repo)
        for issue, old in changed:
            self._deliver_pull(
                target,
                issue,
                "synchronize",
                pusher,
                extra={"before": old, "after": issue.pull.head_sha if issue.pull else ""},
            )
            self.ci.on_pull_head(target, issue, pusher, old)

    def _sync_pull_heads(self, repo: Repo, pushed: Repo) -> list[tuple[Issue, str]]:
        """Move the heads of ``repo``'s open pull requests whose head branch is in ``pushed``
        (``repo`` itself or a fork of it). A fork's head commit is fetched into ``repo`` as
        ``refs/pull/N/head``, as GitHub keeps it."""
        heads = gitrepo.heads(pushed.path)
        fork = pushed.full_name if pushed is not repo else None
        changed = []
        with self.world.lock:
            for issue in repo.issues.values():
                pr = issue.pull
                if pr is None or issue.state != "open":
                    continue
                if (pr.head_repo or "").lower() != (fork or "").lower():
                    continue
                new = heads.get(pr.head_ref)
                if new is not None and new != pr.head_sha:
                    if fork is not None:
                        self._fetch_pull_head(repo, pushed, issue.number, new)
                    changed.append((issue, pr.head_sha))
                    pr.head_sha = new
                    issue.updated_at = self.world.clock.now()
                base = heads.get(pr.base_ref) if fork is None else None
                if base is not None:
                    pr.base_sha = base
        return changed

    @staticmethod
    def _fetch_pull_head(repo: Repo, fork: Repo, number: int, sha: str) -> None:
        gitrepo.git(repo.path, "fetch", "-q", str(fork.path), f"+{sha}:refs/pull/{number}/head")

    # --- acting as a user (each sends the webhook GitHub would send) -------------------

    def open_issue(
        self, full_name: str, user: str, title: str, body: str = "", labels: list[str] | None = None
    ) -> int:
        with self.world.lock:
            repo = self.repo(full_name)
            self.world.user(user)
            issue = self.new_issue(repo, user, title, body)
        self._deliver_issue(repo, issue, "opened", user)
        for name in labels or []:
            self.label(full_name, issue.number, user, name)
        return issue.number

    def open_pull(
        self,
        full_name: str,
        user: str,
        head: str,
        title: str,
        body: str = "",
        *,
        base: str | None = None,
        draft: bool = False,
    ) -> int:
        with self.world.lock:
            repo = self.repo(full_name)
            base = base or repo.default_branch
            # "For cross-repository pull requests in the same network, namespace head with a
            # user like this: username:branch" (@octokit/openapi, "Create a pull request").
            head_owner, _, branch = head.rpartition(":")
            source = repo
            if head_owner and head_owner.lower() != repo.owner.lower():
                found = self.world.repo(head_owner, repo.name)
                if found is None or (found.parent or "").lower() != repo.full_name.lower():
                    raise ValueError(f"{head_owner} has no fork of {repo.full_name}")
                source = found
            head_sha = gitrepo.branch_sha(source.path, branch)
            base_sha = gitrepo.branch_sha(repo.path, base)
            if head_sha is None or base_sha is None:
                raise ValueError(f"branch {head if head_sha is None else base} does not exist")
            if draft and not repo.drafts_allowed:
                raise ValueError("Draft pull requests are not supported in this repository.")
            issue = self.new_issue(repo, user, title, body)
            fork = source.full_name if source is not repo else None
            issue.pull = PullRequest(branch, base, head_sha, base_sha, draft, head_repo=fork)
            if fork is not None:
                self._fetch_pull_head(repo, source, issue.number, head_sha)
        self._deliver_pull(repo, issue, "opened", user)
        self.ci.on_pull_head(repo, issue, user, None)
        return issue.number

    def label(self, full_name: str, number: int, user: str, name: str) -> None:
        """``user`` adds label ``name`` to an issue or PR (``issues``/``pull_request`` labeled)."""
        with self.world.lock:
            repo = self.repo(full_name)
            issue = repo.issues[number]
            self.ensure_label(repo, name)
            if name in issue.labels:
                return
            issue.labels.append(name)
            issue.updated_at = self.world.clock.now()
            event = self.label_event(repo, issue, name, user)
        self.deliver(*event)

    def comment(self, full_name: str, number: int, user: str, body: str) -> int:
        """``user`` comments on an issue or PR (``issue_comment`` created)."""
        with self.world.lock:
            repo = self.repo(full_name)
            issue = repo.issues[number]
            self.world.user(user)
            comment = self.add_issue_comment(repo, issue, user, body)
            event = self.comment_event(repo, issue, comment, user)
        self.deliver(*event)
        return comment.id

    def review(
        self,
        full_name: str,
        number: int,
        user: str,
        *,
        state: Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED"] = "COMMENTED",
        body: str = "",
        comments: list[InlineComment] | None = None,
    ) -> int:
        """``user`` submits a review with optional inline comments.

        Like GitHub: one ``pull_request_review`` (submitted) and one
        ``pull_request_review_comment`` (created) per inline comment, each starting a thread.
        """
        with self.world.lock:
            repo = self.repo(full_name)
            issue = repo.issues[number]
            pr = issue.pull
            if pr is None:
                raise ValueError(f"#{number} is not a pull request")
            self.world.user(user)
            now = self.world.clock.now()
            review = Review(
                repo.full_name, self.world.next_id(), number, user, body, state, pr.head_sha, now
            )
            self.world.reviews[review.id] = review
            pr.reviews.append(review.id)
            if user in pr.requested_reviewers:
                pr.requested_reviewers.remove(user)
            made = []
            for inline in comments or []:
                place = gitrepo.diff_place(
                    repo.path, pr.base_sha, pr.head_sha, inline.path, inline.line
                )
                if place is None:
                    # GitHub answers 422 "pull_request_review_thread.line must be part of
                    # the diff" for a line outside the PR's diff.
                    raise ValueError(f"{inline.path}:{inline.line} is not part of the diff")
                thread = ReviewThread(
                    repo.full_name,
                    node_id("PRRT", self.world.next_id()),
                    number,
                    inline.path,
                    inline.line,
                    [],
                )
                comment = ReviewComment(
                    repo.full_name,
                    self.world.next_id(),
                    number,
                    review.id,
                    user,
                    inline.body,
                    inline.path,
                    inline.line,
                    "RIGHT",
                    pr.head_sha,
                    now,
                    now,
                    thread.id,
                    position=place.position,
                    diff_hunk=place.diff_hunk,
                )
                thread.comment_ids.append(comment.id)
                self.world.threads[thread.id] = thread
                self.world.review_comments[comment.id] = comment
                made.append(comment)
            review_payload = {
                "action": "submitted",
                "review": self._review_webhook(repo, review),
                "pull_request": self.shapes.pull(repo, issue, full=False),
                **self._common(repo, user),
            }
            comment_payloads = [
                {
                    "action": "created",
                    "comment": self.shapes.review_comment(repo, c),
                    "pull_request": self.shapes.pull(repo, issue, full=False),
                    **self._common(repo, user),
                }
                for c in made
            ]
        self.send(
            [("pull_request_review", review_payload)]
            + [("pull_request_review_comment", payload) for payload in comment_payloads]
        )
        return review.id

    def approve(self, full_name: str, number: int, user: str, body: str = "") -> int:
        return self.review(full_name, number, user, state="APPROVED", body=body)

    def reply_to_review_comment(
        self, full_name: str, number: int, user: str, comment_id: int, body: str
    ) -> int:
        """``user`` answers in the thread of a review comment."""
        with self.world.lock:
            repo = self.repo(full_name)
            parent = self.world.review_comments[comment_id]
            comment = self.add_review_reply(repo, parent, user, body)
            events = self.reply_events(repo, comment, user)
        self.send(events)
        return comment.id

    def reply_events(self, repo: Repo, comment: ReviewComment, sender: str) -> list[Event]:
        """The webhooks of a reply in a thread: ``pull_request_review_comment`` created and,
        because the reply belongs to a review of its own, ``pull_request_review`` submitted.

        GitHub does not promise an order between them
        (https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks);
        the comment comes first here, the order that exposes double handling.
        """
        with self.world.lock:
            issue = repo.issues[comment.pull_number]
            pull = self.shapes.pull(repo, issue, full=False)
            return [
                (
                    "pull_request_review_comment",
                    {
                        "action": "created",
                        "comment": self.shapes.review_comment(repo, comment),
                        "pull_request": pull,
                        **self._common(repo, sender),
                    },
                ),
                (
                    "pull_request_review",
                    {
                        "action": "submitted",
                        "review": self._review_webhook(repo, self.world.reviews[comment.review_id]),
                        "pull_request": pull,
                        **self._common(repo, sender),
                    },
                ),
            ]

    def create_review(
        self,
        repo: Repo,
        issue: Issue,
        user: str,
        event: str | None,
        body: str | None,
        commit_id: str | None,
        comments: list[JSON],
    ) -> Review:
        """``POST /repos/{owner}/{repo}/pulls/{n}/reviews`` under the world's lock, as strict
        as GitHub: every comment is checked before anything is recorded, so a refused
        review leaves no trace. Messages are GitHub's ("Unprocessable Entity" with a list of
        strings for a review thread; the @octokit/openapi ``validation_failed_simple``
        shape)."""
        pr = issue.pull
        assert pr is not None

        def refuse(message: str) -> ApiError:
            return ApiError(422, "Unprocessable Entity", [message])

        if event in ("APPROVE", "REQUEST_CHANGES") and user.lower() == issue.user.lower():
            # GitHub refuses to let a PR's author approve it or request changes on it.
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise refuse(f"Can not {verb} your own pull request")
        if event in ("REQUEST_CHANGES", "COMMENT") and not (body or "").strip() and not comments:
            # "body: Required when using REQUEST_CHANGES or COMMENT for the event parameter"
            # (@octokit/openapi pulls/create-review).
            raise refuse("Body can't be blank")
        head = pr.head_sha
        if commit_id is not None:
            if gitrepo.resolve(repo.path, commit_id) is None:
                raise refuse(f"No commit found for SHA: {commit_id}")
            head = commit_id
        placed: list[tuple[JSON, gitrepo.DiffLine, gitrepo.DiffLine | None]] = []
        for item in comments:
            path, text = item.get("path"), item.get("body")
            if not isinstance(path, str) or not isinstance(text, str) or not text.strip():
                raise ApiError(
                    422,
                    'Invalid request.\n\nNo subschema in "anyOf" matched.\n'
                    '"path", "body" weren\'t supplied.',
                )
            if len(text) > 65_536:
                raise refuse("Body is too long (maximum is 65536 characters)")
            line, side = item.get("line"), item.get("side", "RIGHT")
            start, start_side = item.get("start_line"), item.get("start_side", side)
            lines = gitrepo.diff_lines(repo.path, pr.base_sha, head, path)
            if not lines:
                raise refuse("Path could not be resolved")
            position = item.get("position")
            if line is None and isinstance(position, int):
                # The older way to place a comment: "the number of lines down from the
                # first '@@' hunk header in the file" (pulls/create-review).
                found = [k for k, v in lines.items() if v.position == position]
                if not found:
                    raise refuse("Pull request review thread position is invalid")
                side, line = max(found)  # a context line: its RIGHT side, as GitHub shows
                item = {**item, "line": line, "side": side}
            # GitHub's texts, as recorded in its 422 answers (errors joined into one string):
            # "Pull request review thread line must be part of the diff and Pull request
            # review thread diff hunk can't be blank" (danobi/prr#11), with a start line
            # "... line must be part of the diff, Pull request review thread start line must
            # be part of the same hunk as the line., and ... diff hunk can't be blank"
            # (parkerbxyz/suggest-changes#28), "Path could not be resolved" for a file off
            # the diff (warpdotdev/oz-for-oss#310).
            off_diff = (
                "Pull request review thread line must be part of the diff, Pull request review "
                "thread start line must be part of the same hunk as the line., and Pull request "
                "review thread diff hunk can't be blank"
                if start is not None
                else "Pull request review thread line must be part of the diff and Pull request "
                "review thread diff hunk can't be blank"
            )
            if not isinstance(line, int) or side not in ("LEFT", "RIGHT"):
                raise refuse(off_diff)
            end = lines.get((side, line))
            if end is None:
                raise refuse(off_diff)
            first = None
            if start is not None:
                same_hunk = (
                    "Pull request review thread start line must be part of the same hunk "
                    "as the line."
                )
                if not isinstance(start, int) or start_side not in ("LEFT", "RIGHT"):
                    raise refuse(same_hunk)
                first = lines.get((start_side, start))
                # A multi-line comment is a selection within one hunk of the diff view
                # (https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/reviewing-changes-in-pull-requests/commenting-on-a-pull-request#adding-line-comments-to-a-pull-request).
                if first is None or first.hunk != end.hunk or first.position >= end.position:
                    raise refuse(same_hunk)
            placed.append((item, end, first))
        now = self.world.clock.now()
        state: Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "PENDING"] = "PENDING"
        if event == "APPROVE":
            state = "APPROVED"
        elif event == "REQUEST_CHANGES":
            state = "CHANGES_REQUESTED"
        elif event == "COMMENT":
            state = "COMMENTED"
        review = Review(
            repo.full_name,
            self.world.next_id(),
            issue.number,
            user,
            body or "",
            state,
            head,
            now,
        )
        self.world.reviews[review.id] = review
        pr.reviews.append(review.id)
        for item, end, first in placed:
            thread = ReviewThread(
                repo.full_name,
                node_id("PRRT", self.world.next_id()),
                issue.number,
                item["path"],
                item["line"],
                [],
            )
            comment = ReviewComment(
                repo.full_name,
                self.world.next_id(),
                issue.number,
                review.id,
                user,
                item["body"],
                item["path"],
                item["line"],
                item.get("side", "RIGHT"),
                head,
                now,
                now,
                thread.id,
                position=end.position,
                diff_hunk=end.diff_hunk,
                start_line=item.get("start_line") if first is not None else None,
                start_side=item.get("start_side", item.get("side", "RIGHT")) if first else None,
            )
            thread.comment_ids.append(comment.id)
            self.world.threads[thread.id] = thread
            self.world.review_comments[comment.id] = comment
        return review

    def review_events(self, repo: Repo, review: Review) -> list[Event]:
        """``pull_request_review`` submitted and one ``pull_request_review_comment`` created
        per inline comment, as GitHub sends for a review made through the API."""
        issue = repo.issues[review.pull_number]
        pull = self.shapes.pull(repo, issue, full=False)
        common = self._common(repo, review.user)
        events: list[Event] = [
            (
                "pull_request_review",
                {
                    "action": "submitted",
                    "review": self._review_webhook(repo, review),
                    "pull_request": pull,
                    **common,
                },
            )
        ]
        for c in self.world.review_comments.values():
            if c.repo == repo.full_name and c.review_id == review.id:
                comment = self.shapes.review_comment(repo, c)
                events.append(
                    (
                        "pull_request_review_comment",
                        {"action": "created", "comment": comment, "pull_request": pull, **common},
                    )
                )
        return events

    def merge(self, full_name: str, number: int, user: str) -> str:
        """``user`` merges the PR (a real merge in the bare repository)."""
        with self.world.lock:
            repo = self.repo(full_name)
            issue = repo.issues[number]
            pr = issue.pull
            if pr is None or issue.state != "open":
                raise ValueError(f"#{number} is not an open pull request")
            sha = gitrepo.merge(
                repo.path, pr.base_ref, pr.head_sha, f"Merge pull request #{number}", user
            )
            now = self.world.clock.now()
            pr.merged, pr.merged_at, pr.merged_by, pr.merge_commit_sha = True, now, user, sha
            issue.state, issue.closed_at, issue.updated_at = "closed", now, now
        self._deliver_pull(repo, issue, "closed", user)
        return sha

    def close(self, full_name: str, number: int, user: str) -> None:
        """``user`` closes an issue or a PR without merging."""
        with self.world.lock:
            repo = self.repo(full_name)
            issue = repo.issues[number]
            now = self.world.clock.now()
            issue.state, issue.closed_at, issue.updated_at = "closed", now, now
            if issue.pull is None:
                issue.state_reason = "completed"
        if issue.pull is not None:
            self._deliver_pull(repo, issue, "closed", user)
        else:
            self._deliver_issue(repo, issue, "closed", user)

    # --- inspection -------------------------------------------------------------------

    def issue(self, full_name: str, number: int) -> Issue:
        return self.repo(full_name).issues[number]

    def delete_comment(self, full_name: str, comment_id: int, user: str) -> None:
        """``user`` deletes an issue comment: it is gone (an edit answers 404) and
        ``issue_comment.deleted`` is sent with the comment as it was
        (https://docs.github.com/en/webhooks/webhook-events-and-payloads#issue_comment)."""
        with self.world.lock:
            repo = self.repo(full_name)
            comment = self.world.issue_comments.pop(comment_id)
            issue = repo.issues[comment.issue_number]
            issue.comments.remove(comment_id)
            payload: JSON = {
                "action": "deleted",
                "issue": self.shapes.issue(repo, issue),
                "comment": self.shapes.issue_comment(repo, comment),
                **self._common(repo, user),
            }
        self.send([("issue_comment", payload)])

    def comments(self, full_name: str, number: int) -> list[IssueComment]:
        with self.world.lock:
            return [self.world.issue_comments[c] for c in self.issue(full_name, number).comments]

    def pulls(self, full_name: str) -> list[Issue]:
        with self.world.lock:
            return [i for i in self.repo(full_name).issues.values() if i.pull is not None]

    def threads(self, full_name: str, number: int) -> list[ReviewThread]:
        with self.world.lock:
            return [
                t
                for t in self.world.threads.values()
                if t.repo == self.repo(full_name).full_name and t.pull_number == number
            ]

    def review_comments(self, full_name: str, number: int) -> list[ReviewComment]:
        with self.world.lock:
            name = self.repo(full_name).full_name
            return [
                c
                for c in self.world.review_comments.values()
                if c.repo == name and c.pull_number == number
            ]

    def read_file(self, full_name: str, ref: str, path: str) -> str | None:
        repo = self.repo(full_name)
        commit = gitrepo.resolve(repo.path, ref)
        entry = None if commit is None else gitrepo.read_path(repo.path, commit, path)
        return None if entry is None or entry.content is None else entry.content.decode()

    def branch_sha(self, full_name: str, branch: str) -> str | None:
        return gitrepo.branch_sha(self.repo(full_name).path, branch)

    # --- GraphQL subset ---------------------------------------------------------------

    def graphql(self, token: Token, query: str, variables: dict[str, Any]) -> JSON:
        """Answer the operations the adapter sends; see the package docstring."""
        if "markPullRequestReadyForReview" in query:
            return self.ci.mark_ready(token, variables)
        for name in ("unresolveReviewThread", "resolveReviewThread"):
            if name in query:
                return self._graphql_resolve(token, name, variables)
        if "reviewThreads" in query:
            return self._graphql_threads(token, variables)
        return {
            "data": None,
            "errors": [
                {
                    "message": "fake GitHub answers only reviewThreads, (un)resolveReviewThread "
                    "and markPullRequestReadyForReview"
                }
            ],
        }

    def _graphql_resolve(self, token: Token, name: str, variables: dict[str, Any]) -> JSON:
        raw = variables.get("input")
        thread_id = raw.get("threadId") if isinstance(raw, dict) else variables.get("threadId")
        thread = self.world.threads.get(str(thread_id))
        repo = self.world.repos.get(thread.repo.lower()) if thread is not None else None
        if thread is None or repo is None or not self.world.token_can(token, repo, None):
            return {
                "data": {name: None},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "path": [name],
                        "message": (
                            f"Could not resolve to a node with the global id of '{thread_id}'"
                        ),
                    }
                ],
            }
        # Resolving a thread needs Contents: write; Pull requests: write alone answers
        # FORBIDDEN (https://github.com/orgs/community/discussions/44650, github/gh-aw#35726).
        if not self.world.token_can(token, repo, "pull_requests") or not self.world.token_can(
            token, repo, "contents"
        ):
            return {
                "data": {name: None},
                "errors": [
                    {
                        "type": "FORBIDDEN",
                        "path": [name],
                        "message": "Resource not accessible by integration",
                    }
                ],
            }
        thread.resolved = name == "resolveReviewThread"
        thread.resolved_by = token.login if thread.resolved else None
        return {"data": {name: {"thread": {"id": thread.id, "isResolved": thread.resolved}}}}

    def _graphql_threads(self, token: Token, variables: dict[str, Any]) -> JSON:
        owner, name, number = variables.get("owner"), variables.get("name"), variables.get("number")
        repo = self.world.repo(str(owner), str(name))
        if repo is None or not self.world.token_can(token, repo, None):
            return {
                "data": {"repository": None},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "path": ["repository"],
                        "message": (
                            f"Could not resolve to a Repository with the name '{owner}/{name}'."
                        ),
                    }
                ],
            }
        issue = repo.issues.get(number) if isinstance(number, int) else None
        if issue is None or issue.pull is None:
            return {
                "data": {"repository": {"pullRequest": None}},
                "errors": [
                    {
                        "type": "NOT_FOUND",
                        "path": ["repository", "pullRequest"],
                        "message": (
                            f"Could not resolve to a PullRequest with the number of {number}."
                        ),
                    }
                ],
            }
        threads = [
            t
            for t in self.world.threads.values()
            if t.repo == repo.full_name and t.pull_number == issue.number
        ]
        first = variables.get("first", 100)
        start = int(variables["after"]) if str(variables.get("after") or "").isdigit() else 0
        size = first if isinstance(first, int) and 0 < first <= 100 else 100
        page = threads[start : start + size]
        nodes = []
        pr_html = f"{self.base_url}/{repo.full_name}/pull/{issue.number}"
        for t in page:
            comments = [self.world.review_comments[c] for c in t.comment_ids]
            nodes.append(
                {
                    "id": t.id,
                    "isResolved": t.resolved,
                    "isOutdated": False,
                    "path": t.path,
                    "line": t.line,
                    "comments": {
                        "nodes": [
                            {
                                # BigInt: "encoded as a string" (GitHub's schema).
                                "fullDatabaseId": str(c.id),
                                "body": c.body,
                                "author": {"login": c.user.removesuffix("[bot]")},
                                "url": f"{pr_html}#discussion_r{c.id}",
                                "createdAt": self.shapes.review_comment(repo, c)["created_at"],
                            }
                            for c in comments
                        ]
                    },
                }
            )
        end = start + len(page)
        return {
            "data": {
                "repository": {
                    "pullRequest": {
                        "reviewThreads": {
                            "pageInfo": {
                                "hasNextPage": end < len(threads),
                                "endCursor": str(end) if page else None,
                            },
                            "nodes": nodes,
                        }
                    }
                }
            }
        }

    # --- webhooks ---------------------------------------------------------------------

    def common_payload(self, repo: Repo, sender: str) -> JSON:
        """``repository``, ``sender`` and ``installation`` of a webhook payload."""
        return self._common(repo, sender)

    def _common(self, repo: Repo, sender: str) -> JSON:
        repository = {**self.shapes.repository(repo, full=False), "custom_properties": {}}
        data: JSON = {"repository": repository, "sender": self.shapes.user(sender)}
        inst = self.installation_for(repo)
        if inst is not None:
            data["installation"] = {
                "id": inst.id,
                "node_id": node_id("MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u", inst.id),
            }
        return data

    def _review_webhook(self, repo: Repo, review: Review) -> JSON:
        data = self.shapes.review(repo, review)
        data["state"] = review.state.lower()
        data["body"] = review.body or None
        return data

    def issue_event(
        self, repo: Repo, issue: Issue, action: str, sender: str, extra: JSON | None = None
    ) -> Event:
        """The ``issues`` webhook, or ``pull_request`` when the issue is a PR."""
        with self.world.lock:
            if issue.pull is not None:
                return (
                    "pull_request",
                    {
                        "action": action,
                        "number": issue.number,
                        "pull_request": self.shapes.pull(repo, issue),
                        **(extra or {}),
                        **self._common(repo, sender),
                    },
                )
            return (
                "issues",
                {
                    "action": action,
                    "issue": self.shapes.issue(repo, issue),
                    **(extra or {}),
                    **self._common(repo, sender),
                },
            )

    def label_event(self, repo: Repo, issue: Issue, name: str, sender: str) -> Event:
        label = {"label": self.shapes.label(repo, repo.labels[name])}
        return self.issue_event(repo, issue, "labeled", sender, extra=label)

    def comment_event(
        self,
        repo: Repo,
        issue: Issue,
        comment: IssueComment,
        sender: str,
        *,
        edited_from: str | None = None,
    ) -> Event:
        """``issue_comment.created``, or ``.edited`` with the body it had (``changes``)."""
        with self.world.lock:
            payload: JSON = {
                "action": "created" if edited_from is None else "edited",
                "issue": self.shapes.issue(repo, issue),
                "comment": self.shapes.issue_comment(repo, comment),
            }
            if edited_from is not None:
                payload["changes"] = {"body": {"from": edited_from}}
            return ("issue_comment", {**payload, **self._common(repo, sender)})

    def echo(self, events: list[Event]) -> None:
        """Send webhooks for changes made through the REST API, when ``echo_api_events``."""
        if self.echo_api_events:
            self.send(events)

    def _deliver_issue(
        self, repo: Repo, issue: Issue, action: str, sender: str, extra: JSON | None = None
    ) -> None:
        self.deliver(*self.issue_event(repo, issue, action, sender, extra))

    def _deliver_pull(
        self, repo: Repo, issue: Issue, action: str, sender: str, extra: JSON | None = None
    ) -> None:
        self.deliver(*self.issue_event(repo, issue, action, sender, extra))

    def send(self, events: list[Event]) -> None:
        """Send the webhooks of one change in :attr:`webhook_order`: as made, reversed or
        shuffled. "GitHub does not guarantee the order of delivery" (each is its own
        request): https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks"""
        ordered = list(events)
        if self.webhook_order == "reversed":
            ordered.reverse()
        elif self.webhook_order == "shuffled":
            with self.world.lock:
                self._shuffle.shuffle(ordered)
        for event, payload in ordered:
            self.deliver(event, payload)

    def reaches_app(self, event: str) -> bool:
        """Whether GitHub would send ``event`` to the App: only an event it subscribed to, and
        subscribing needs the event's permission ("Availability" of each event in
        https://docs.github.com/en/webhooks/webhook-events-and-payloads, e.g. Pull requests
        for ``pull_request_review``; Issues or Pull requests for ``issue_comment``). Without
        an App the webhook is a repository's or organisation's, which the fake sends as is."""
        with self.world.lock:
            app = self.world.app
            if app is None or event in UNSUBSCRIBED_EVENTS:
                return True
            granted = {name for name, level in app.permissions.items() if level != "none"}
            return event in app.events and bool(granted & set(EVENT_PERMISSIONS.get(event, ())))

    def deliver(
        self, event: str, payload: JSON, *, guid: str | None = None, redelivery: bool = False
    ) -> Delivery | None:
        """Send one webhook, signed like GitHub (``X-Hub-Signature-256``), and record it;
        ``None``, nothing sent or logged, when the App would not receive it (:meth:`reaches_app`).

        https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
        A redelivery sends the same GUID again, as a new attempt in the delivery log.
        """
        if not self.reaches_app(event):
            return None
        body = json.dumps(payload).encode()
        delivery_id = guid or str(uuid.uuid4())
        status: int | None = None
        error: str | None = None
        if self.webhook_url is not None:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/fake",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery_id,
                "X-GitHub-Hook-ID": "1",
            }
            if self.webhook_secret is not None:
                digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature-256"] = f"sha256={digest}"
            try:
                with self.world.lock:
                    if self._hooks is None:
                        self._hooks = httpx.Client(timeout=30)
                    hooks = self._hooks
                response = hooks.post(self.webhook_url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
        with self.world.lock:
            delivery = Delivery(
                delivery_id,
                event,
                payload,
                status,
                error,
                attempt_id=self.world.next_id(),
                delivered_at=self.world.clock.now(),
                redelivery=redelivery,
            )
            self.deliveries.append(delivery)
        return delivery

    def redeliver(self, attempt_id: int) -> Delivery | None:
        """Send an attempt's webhook again (``POST /app/hook/deliveries/{id}/attempts``);
        None when the log has no such attempt."""
        with self.world.lock:
            found = next((d for d in self.deliveries if d.attempt_id == attempt_id), None)
        if found is None:
            return None
        return self.deliver(found.event, found.payload, guid=found.id, redelivery=True)
