"""The GitHub adapter over PyGithub: :class:`GitHub` (process-wide) and :class:`RepoClient`
(one repository, with its own installation token).

Every call is synchronous and blocking; the worker runs handlers in threads, so this never
runs on an event loop. Every request goes through :class:`~bot.github.policy.RequestPolicy`.

Nothing leaves unredacted (DESIGN.md section 4 rule 8): every write, REST or GraphQL, passes
:meth:`RepoClient._request` or :meth:`RepoClient._graphql`, which redact every string of the
payload (configured secrets, live tokens, token patterns) and replace the host's directories
(data directory, workspaces, home) with a label before it is sent. A caller cannot forget it.
"""

from __future__ import annotations

import base64
import contextvars
import copy
import functools
import re
import tempfile
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
import structlog
from github import Github

from bot.core.ci import Annotation, HeadChecks
from bot.core.config import CONFIG_PATH
from bot.core.events import MAX_BODY_CHARS, Actor
from bot.core.forge import IssueText, PullInfo
from bot.core.markers import Marker, carries
from bot.core.policy import WRITE_PERMISSIONS, BotIdentity
from bot.core.redact import hide_paths, redact
from bot.github.access import AppCheck, Needs, gaps
from bot.github.auth import (
    AppTokens,
    LiveAuth,
    StaticToken,
    SystemClock,
    TokenSource,
    whole_seconds,
)
from bot.github.checks import (
    MAX_ANNOTATIONS,
    NEEDS_DETAIL,
    annotation,
    check_result,
    job_ids,
    log_tail,
    status_result,
)
from bot.github.retry import (
    AmbiguousWrite,
    Clock,
    GitHubRequestError,
    GitHubUnavailable,
    RequestPolicy,
    RetrySettings,
)
from bot.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")
U = TypeVar("U")

Permission = Literal["admin", "maintain", "write", "triage", "read", "none"]
Reaction = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
CheckStatus = Literal["queued", "in_progress", "completed"]
CheckConclusion = Literal[
    "success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"
]
MAX_CHECK_TEXT = 65_535
MAX_FILE_BYTES = 1024 * 1024  # the contents API serves files up to 1 MB
# The words of GitHub's 403 for a blob the contents API will not serve ("This API returns
# blobs up to 1 MB in size. The requested blob is too large to fetch via the API, ...").
TOO_LARGE = "blobs up to"
MAX_ISSUES_SEARCHED = 300  # the newest issues find_issue looks through
_REPO_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
_BRANCH = re.compile(r"^(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/\-]{1,255}(?<!/)(?<!\.lock)$")
_TRUNCATED = "\n\n…(truncated)"
APP_CHECK_SECONDS = 60.0  # how long GitHub's answer about the App is reused (/readyz)
MAX_CONDITIONAL_ENTRIES = 2048  # GET answers kept for conditional requests, per process
PARALLEL_CALLS = 4  # threads for independent calls of one operation


@dataclass(frozen=True)
class Comment:
    id: int
    author: str
    body: str
    created_at: str
    author_is_bot: bool = False


@dataclass(frozen=True)
class IssueThread:
    """An issue or PR with the comments of writers only (DESIGN.md section 4 rule 3)."""

    number: int
    title: str
    body: str
    author: str
    state: str
    is_pull_request: bool
    labels: tuple[str, ...]
    comments: tuple[Comment, ...]
    dropped_comments: int


@dataclass(frozen=True)
class PullRequest:
    number: int
    html_url: str
    title: str
    body: str
    head_ref: str
    head_sha: str
    base_ref: str
    draft: bool
    state: str
    merged: bool
    author: str | None
    same_repo: bool


@dataclass(frozen=True)
class ReviewComment:
    """An inline comment. ``line`` is the file line (of the head, or of the base when
    ``side`` is ``LEFT``; the original line when the comment is outdated); ``start_line``
    the first line of a multi-line comment."""

    id: int
    author: str
    body: str
    path: str
    line: int | None
    review_id: int | None
    in_reply_to_id: int | None
    start_line: int | None = None
    side: str | None = None
    author_is_bot: bool = False


@dataclass(frozen=True)
class ThreadComment:
    id: int
    author: str
    body: str


@dataclass(frozen=True)
class ReviewThread:
    """An unresolved review thread (GraphQL node id, for resolving it)."""

    id: str
    path: str
    line: int | None
    outdated: bool
    comments: tuple[ThreadComment, ...]


@dataclass(frozen=True)
class ConfigSource:
    """``.github/vibe.yml`` text and where it came from (``repo``, ``org`` or ``none``)."""

    text: str | None
    source: Literal["repo", "org", "none"]
    repo: str | None


@dataclass(frozen=True)
class GitCredentials:
    """What git needs for one command: the URL and an HTTP header carrying the token.

    Pass the header per command (``git -c http.extraHeader=<header> ...``) so the token
    never lands in ``.git/config`` or the sandbox. ``expires_at`` is epoch seconds.
    """

    clone_url: str
    username: str
    token: str
    expires_at: float | None

    @property
    def extra_header(self) -> str:
        basic = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return f"Authorization: Basic {basic}"

    def __repr__(self) -> str:
        return f"GitCredentials(clone_url={self.clone_url!r}, token=[redacted])"


# GraphQL operations (checked against GitHub's schema by tests/github/test_contract.py).
# Comment ids are ``fullDatabaseId``, a BigInt sent as a string: ``databaseId`` is an Int
# that "does not support 64-bit signed integer identifiers" (GitHub's schema).
THREADS_QUERY = """
query($owner: String!, $name: String!, $number: Int!, $after: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id isResolved isOutdated path line
          comments(first: 100) { nodes { fullDatabaseId body author { login } } }
        }
      }
    }
  }
}"""
RESOLVE_MUTATION = """
mutation($threadId: ID!) {
  resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } }
}"""
MARK_READY_MUTATION = """
mutation($pullRequestId: ID!) {
  markPullRequestReadyForReview(input: {pullRequestId: $pullRequestId}) {
    pullRequest { id isDraft }
  }
}"""
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
MAX_LOG_DOWNLOAD = 64 * 1024 * 1024  # read no further into a job log that ignores Range


# "Draft pull requests are available in public repositories with GitHub Free [...] GitHub
# Pro [...], and in public and private repositories with GitHub Team and GitHub Enterprise
# Cloud"; elsewhere creating one answers 422 with this message (SWE-agent/SWE-agent#179).
# https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/proposing-changes-to-your-work-with-pull-requests/about-pull-requests#draft-pull-requests
DRAFTS_REFUSED = "Draft pull requests are not supported"
WIP_PREFIX = "[WIP] "
WIP_NOTE = (
    "\n\n---\nWork in progress: this repository's plan has no draft pull requests, so this "
    "one is open for review only; a person decides when it is ready to merge."
)


def _failing(run: dict[str, Any]) -> bool:
    return run.get("status") == "completed" and run.get("conclusion") in NEEDS_DETAIL


def _review_comment(d: dict[str, Any]) -> ReviewComment:
    """A review comment as the REST API gives it (one, or an item of the PR's listing);
    an outdated comment keeps its place in ``original_line`` and ``original_start_line``."""
    return ReviewComment(
        id=int(d["id"]),
        author=(d.get("user") or {}).get("login", ""),
        body=str(d.get("body") or ""),
        path=str(d.get("path") or ""),
        line=d.get("line") if d.get("line") is not None else d.get("original_line"),
        review_id=d.get("pull_request_review_id"),
        in_reply_to_id=d.get("in_reply_to_id"),
        start_line=(
            d.get("start_line") if d.get("start_line") is not None else d.get("original_start_line")
        ),
        side=d.get("side"),
        # https://docs.github.com/en/rest/pulls/comments: ``user.type`` is "Bot" for Apps.
        author_is_bot=(d.get("user") or {}).get("type") == "Bot",
    )


def _truncate(text: str, limit: int = MAX_BODY_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(_TRUNCATED)] + _TRUNCATED


def check_repo_name(repo: str) -> str:
    if not isinstance(repo, str) or not _REPO_NAME.match(repo) or repo.endswith((".", ".git")):
        raise ValueError(f"not a repository name (owner/name): {repo!r}")
    return repo


def check_branch(name: str) -> str:
    if not _BRANCH.match(name) or name.startswith("-"):
        raise ValueError(f"not a branch name: {name!r}")
    return name


def host_paths(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The host's directories that posted text must not show, with what stands instead."""
    return (
        (str(settings.workspace_dir), "<workspaces>"),
        (str(settings.data_dir), "<data>"),
        (str(Path.home()), "~"),
        (tempfile.gettempdir(), "<tmp>"),
    )


class ConditionalCache:
    """The last answer and ``ETag`` of the GET requests the bot repeats (the config, the
    repository, permissions, an issue and its comments, across the jobs of a task), sent
    back as ``If-None-Match``: "Making a conditional request does not count against your
    primary rate limit if a 304 response is returned and the request was made while
    correctly authorized with an Authorization header"
    (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests).
    Bounded: the least recently used of :data:`MAX_CONDITIONAL_ENTRIES` go first."""

    def __init__(self, size: int = 0) -> None:
        self.size = size or MAX_CONDITIONAL_ENTRIES
        self._entries: OrderedDict[str, tuple[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    def tag(self, key: str) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry[0] if entry else None

    def hit(self, key: str) -> Any:
        """The kept answer after a 304 (a copy: callers may change theirs)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                raise GitHubUnavailable(f"GitHub answered 304 for {key} with nothing kept")
            self._entries.move_to_end(key)
            self.hits += 1
            return copy.deepcopy(entry[1])

    def keep(self, key: str, tag: str | None, data: Any) -> None:
        with self._lock:
            if not tag:
                self._entries.pop(key, None)
                return
            self._entries[key] = (tag, copy.deepcopy(data))
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


@dataclass(frozen=True)
class _WhoAmI:
    """GitHub's answer about the credentials, or why there is none."""

    login: str | None = None
    owner: str | None = None
    permissions: dict[str, Any] | None = None
    events: tuple[Any, ...] = ()
    error: str = ""


class GitHub:
    """The process-wide GitHub adapter: credentials, pacing and one client per repository.

    Build it with :meth:`from_settings`; get a :class:`RepoClient` with :meth:`repo`.
    """

    def __init__(
        self,
        tokens: TokenSource,
        *,
        api_url: str,
        graphql_url: str | None = None,
        bot_login: str | None = None,
        secrets: Sequence[str] = (),
        host_paths: Sequence[tuple[str, str]] = (),
        allowed_bots: Sequence[str] = (),
        timeout: float = 30.0,
        clock: Clock | None = None,
        retry: RetrySettings | None = None,
        policy: RequestPolicy | None = None,
    ) -> None:
        self.tokens = tokens
        self.api_url = api_url.rstrip("/")
        self.graphql_url = graphql_url
        self._bot_login = bot_login
        self.expected_login: str | None = None
        self.secrets = tuple(secrets)
        self.host_paths = tuple(host_paths)
        self.allowed_bots = frozenset(allowed_bots)
        self.timeout = timeout
        self.clock = clock or SystemClock()
        self.policy = policy or RequestPolicy(self.clock, retry or RetrySettings())
        # PyGithub keeps one connection per client: one client per repository per thread.
        self._local = threading.local()
        self._all_clients: list[Github] = []
        self._clients_lock = threading.Lock()
        self._closed = False
        self._whoami_lock = threading.Lock()
        self._whoami: tuple[float, _WhoAmI] | None = None
        # Repositories that refused a draft PR (private ones on Free and Pro plans): their
        # PRs open as work in progress from then on, for the life of the process.
        self.no_drafts: set[str] = set()
        self.etags = ConditionalCache()
        # Independent calls of one operation run here, each thread with its own clients;
        # made when first needed, and again after :meth:`close`.
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        actions: bool = False,
        clock: Clock | None = None,
        retry: RetrySettings | None = None,
    ) -> GitHub:
        """App credentials when an App id and key are set, else the token (``actions``
        says it is the Actions ``GITHUB_TOKEN``, which can create check runs)."""
        clock = clock or SystemClock()
        retry = retry or RetrySettings(min_write_interval=settings.github_min_write_interval)
        policy = RequestPolicy(clock, retry)
        key = settings.private_key()
        tokens: TokenSource
        if settings.github_app_id is not None and key:
            tokens = AppTokens(
                settings.github_app_id,
                key,
                settings.github_api_url,
                clock=clock,
                policy=policy,
                timeout=settings.github_timeout,
            )
        elif settings.github_token is not None:
            tokens = StaticToken(
                settings.github_token.get_secret_value(), "actions" if actions else "token"
            )
        else:
            raise ValueError(
                "no GitHub credentials: set VIBE_GITHUB_APP_ID and VIBE_GITHUB_PRIVATE_KEY_PATH, "
                "or VIBE_GITHUB_TOKEN"
            )
        hub = cls(
            tokens,
            api_url=settings.github_api_url,
            graphql_url=settings.github_graphql_url,
            bot_login=None,
            secrets=settings.secret_values,
            host_paths=host_paths(settings),
            allowed_bots=settings.allowed_bots,
            timeout=settings.github_timeout,
            clock=clock,
            policy=policy,
        )
        hub.expected_login = settings.bot_login
        return hub

    @property
    def bot_login(self) -> str:
        """The login the bot's comments carry, asked of GitHub unless given: the App's
        ``<slug>[bot]``, the token's user, or ``github-actions[bot]``."""
        if self._bot_login is None:
            self._bot_login = self._resolve_login()
            if self.expected_login and self._bot_login.lower() != self.expected_login.lower():
                log.warning(
                    "github.bot_login_mismatch",
                    configured=self.expected_login,
                    actual=self._bot_login,
                    hint=f"set VIBE_BOT_LOGIN={self._bot_login} so the bot ignores itself",
                )
        return self._bot_login

    def _resolve_login(self) -> str:
        if self.tokens.kind == "actions":
            return "github-actions[bot]"
        who = self._ask_whoami()
        if who.login is None:
            raise GitHubUnavailable(f"GitHub did not say who the bot is: {who.error}")
        return who.login

    # --- the App's set-up -----------------------------------------------------------------

    def app_check(self, wanted: Needs) -> AppCheck:
        """Whether these credentials work and cover ``wanted``: ``GET /app`` for an App
        (its slug, owner, permissions and events), ``GET /user`` for a token
        (https://docs.github.com/en/rest/users/users#get-the-authenticated-user). GitHub's
        answer is reused for :data:`APP_CHECK_SECONDS`, so ``/readyz`` stays cheap."""
        if self.tokens.kind == "actions":
            return AppCheck("actions", "github-actions[bot]", None, ())
        who = self._ask_whoami()
        if who.login is None:
            what = "the GitHub App (GET /app)" if self.tokens.kind == "app" else "GET /user"
            hint = (
                "check VIBE_GITHUB_APP_ID and the private key"
                if self.tokens.kind == "app"
                else "check VIBE_GITHUB_TOKEN"
            )
            return AppCheck(self.tokens.kind, None, None, (f"{what} failed: {who.error}; {hint}",))
        findings: tuple[str, ...] = ()
        if self.tokens.kind == "app":
            findings = tuple(gaps(who.permissions or {}, who.events, wanted))
        return AppCheck(self.tokens.kind, who.login, who.owner, findings)

    def _ask_whoami(self) -> _WhoAmI:
        with self._whoami_lock:
            now = self.clock.now()
            if self._whoami is not None and now - self._whoami[0] < APP_CHECK_SECONDS:
                return self._whoami[1]
            who = self._fetch_whoami()
            self._whoami = (now, who)
            return who

    def _fetch_whoami(self) -> _WhoAmI:
        try:
            if isinstance(self.tokens, AppTokens):
                app = self.tokens.app()
                owner = app.get("owner")
                return _WhoAmI(
                    login=f"{app['slug']}[bot]",
                    owner=str(owner["login"]) if isinstance(owner, dict) else None,
                    permissions=dict(app.get("permissions") or {}),
                    events=tuple(app.get("events") or ()),
                )
            client = self.client("")
            user = self.policy.run(
                "read the token's user",
                lambda: client.requester.requestJsonAndCheck("GET", "/user")[1],
            )
            return _WhoAmI(login=str(user["login"]), owner=str(user["login"]))
        except (GitHubRequestError, GitHubUnavailable) as exc:
            return _WhoAmI(error=redact(str(exc), self.secrets))

    @property
    def can_create_check_runs(self) -> bool:
        """Check runs need an App installation token (or the Actions token)."""
        return self.tokens.kind in ("app", "actions")

    def client(self, repo: str) -> Github:
        self._check_open()
        clients: dict[str, Github] | None = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        key = repo.lower()
        if key not in clients:
            clients[key] = Github(
                auth=LiveAuth(self.tokens, repo),
                base_url=self.api_url,
                timeout=whole_seconds(self.timeout),
                retry=None,
                seconds_between_requests=None,
                seconds_between_writes=None,
                per_page=100,
                lazy=True,
            )
            with self._clients_lock:
                try:
                    self._check_open()
                except GitHubUnavailable:
                    clients.pop(key).close()
                    raise
                self._all_clients.append(clients[key])
        return clients[key]

    def repo(self, repo: str) -> RepoClient:
        return RepoClient(self, check_repo_name(repo))

    def heeds(self, login: str, is_bot: bool) -> bool:
        """Whether a comment by ``login`` may reach the agent, write permission apart
        (:meth:`bot.core.policy.BotIdentity.heeds`): not the bot's, not another bot's
        unless allow-listed (``VIBE_ALLOWED_BOTS``)."""
        identity = BotIdentity(self.bot_login, allowed_bots=self.allowed_bots)
        return identity.heeds(Actor(login, None, is_bot or login.lower().endswith("[bot]")))

    def redact(self, text: str) -> str:
        """``text`` as it may leave the host: no secret, token or host directory."""
        return hide_paths(
            redact(text, [*self.secrets, *self.tokens.live_tokens()]), self.host_paths
        )

    def redact_payload(self, value: Any) -> Any:
        """Every string of a JSON payload (keys too) through :meth:`redact`."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {self.redact_payload(k): self.redact_payload(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_payload(v) for v in value]
        return value

    def parallel(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run independent calls at once (PyGithub clients are per thread, so each pool
        thread talks through its own); the results in order, the first failure raised."""
        if len(calls) < 2:
            return [call() for call in calls]
        pool = self._executor()
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
        return [future.result() for future in futures]

    def both(self, first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
        """Two independent calls at once (:meth:`parallel`)."""
        later = self._executor().submit(contextvars.copy_context().run, second)
        return first(), later.result()

    def _executor(self) -> ThreadPoolExecutor:
        with self._clients_lock:
            self._check_open()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=PARALLEL_CALLS, thread_name_prefix="vibe-github"
                )
            return self._pool

    def _check_open(self) -> None:
        # A job thread outliving the shutdown would otherwise open a connection that nothing
        # closes any more.
        if self._closed:
            raise GitHubUnavailable("the GitHub client is closed: the process is stopping")

    def close(self) -> None:
        """Close every connection; later calls fail with :class:`GitHubUnavailable`."""
        with self._clients_lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._clients_lock:
            for client in self._all_clients:
                client.close()
            self._all_clients.clear()
        self._local = threading.local()
        if isinstance(self.tokens, AppTokens):
            self.tokens.close()


class RepoClient:
    """Everything the bot does on one repository. Satisfies :class:`bot.loop.ports.Forge`."""

    def __init__(self, hub: GitHub, repo: str) -> None:
        self.hub = hub
        self.repo = repo
        self.owner, self.name = repo.split("/", 1)
        self._permissions: dict[str, Permission] = {}
        self._repo_data: dict[str, Any] | None = None

    # --- plumbing ---------------------------------------------------------------------

    @property
    def _gh(self) -> Github:
        return self.hub.client(self.repo)

    def _run(
        self, what: str, call: Callable[[], T], *, write: bool = False, idempotent: bool = True
    ) -> T:
        return self.hub.policy.run(
            what,
            call,
            write=write,
            idempotent=idempotent,
            on_unauthorized=lambda: self.hub.tokens.invalidate(self.repo),
        )

    def _request(
        self,
        verb: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One REST call; the body of every write is redacted here, the one way out. A GET
        is conditional when an earlier answer is kept (:class:`ConditionalCache`)."""
        if body is not None:
            body = self.hub.redact_payload(body)
        if verb != "GET":
            _, data = self._gh.requester.requestJsonAndCheck(
                verb, path, parameters=params, input=body
            )
            return data
        key = path + ("?" + urllib.parse.urlencode(sorted(params.items())) if params else "")
        tag = self.hub.etags.tag(key)
        headers, data = self._gh.requester.requestJsonAndCheck(
            verb, path, parameters=params, headers={"If-None-Match": tag} if tag else None
        )
        if data is None and tag is not None:
            return self.hub.etags.hit(key)  # 304 Not Modified: an empty body
        self.hub.etags.keep(key, headers.get("etag"), data)
        return data

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every item of a listing, 100 a page (each page a conditional GET)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            batch = self._request(
                "GET", path, params={**(params or {}), "per_page": 100, "page": page}
            )
            out.extend(d for d in batch if isinstance(d, dict))
            if len(batch) < 100:
                return out
            page += 1

    def _poster(self, path: str, body: dict[str, Any]) -> Callable[[], Any]:
        return lambda: self._request("POST", path, body)

    def _graphql(
        self, what: str, query: str, variables: dict[str, Any], *, write: bool = False
    ) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            requester = self._gh.requester
            url = self.hub.graphql_url or requester.graphql_url
            _, data = requester.requestJsonAndCheck(
                "POST", url, input={"query": query, "variables": self.hub.redact_payload(variables)}
            )
            errors = data.get("errors")
            if errors:
                messages = "; ".join(
                    str(e.get("message", e)) for e in errors if isinstance(e, dict)
                )
                # https://docs.github.com/en/graphql/overview/rate-limits-and-node-limits-for-the-graphql-api
                if any(isinstance(e, dict) and e.get("type") == "RATE_LIMITED" for e in errors):
                    raise GitHubUnavailable(f"{what}: {messages}")
                raise GitHubRequestError(200, f"{what}: {messages or errors}")
            result = data.get("data")
            if not isinstance(result, dict):
                raise GitHubRequestError(200, f"{what}: GraphQL answered without data")
            return result

        return self._run(what, call, write=write, idempotent=not write)

    def _clean(self, text: str, limit: int = MAX_BODY_CHARS) -> str:
        return _truncate(self.hub.redact(text), limit)

    # --- repository -------------------------------------------------------------------

    def repository(self, fresh: bool = False) -> dict[str, Any]:
        """``GET /repos/{owner}/{repo}``, read once per client (one job) unless ``fresh``."""
        if self._repo_data is None or fresh:
            self._repo_data = self._run(
                "read the repository", lambda: self._request("GET", f"/repos/{self.repo}")
            )
        return self._repo_data

    def default_branch(self) -> str:
        return str(self.repository(fresh=True)["default_branch"])

    def permission(self, login: str) -> Permission:
        """The live collaborator role of ``login`` (admin, maintain, write, triage, read or
        none); never the ``author_association`` of a payload (DESIGN.md section 4 rule 2)."""
        if not _LOGIN.match(login):
            return "none"
        if login in self._permissions:
            return self._permissions[login]
        try:
            data = self._run(
                f"read the permission of {login}",
                lambda: self._request(
                    "GET", f"/repos/{self.repo}/collaborators/{login}/permission"
                ),
            )
        except GitHubRequestError as exc:
            if exc.status == 404:
                self._permissions[login] = "none"
                return "none"
            raise
        role = str(data.get("role_name") or data.get("permission") or "none")
        legacy = str(data.get("permission") or "none")
        result: Permission
        if role in ("admin", "maintain", "write", "triage", "read"):
            result = role  # type: ignore[assignment]
        elif legacy in ("admin", "write", "read"):
            result = legacy  # type: ignore[assignment]  # custom roles fall back to the base
        else:
            result = "none"
        self._permissions[login] = result
        return result

    def is_writer(self, login: str) -> bool:
        return self.permission(login) in WRITE_PERMISSIONS

    # --- reactions --------------------------------------------------------------------

    def react(
        self,
        number: int,
        comment_id: int | None,
        content: str,
        *,
        review_comment: bool | None = None,
    ) -> None:
        """Add a reaction to an issue/PR (``comment_id`` None) or to a comment on it.

        ``review_comment`` says which kind of comment; None tries an issue comment, then a
        review comment. A reaction is cosmetic: a target that no longer exists is logged.
        """
        if content not in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
            raise ValueError(f"not a reaction: {content!r}")
        if comment_id is None:
            paths = [f"/repos/{self.repo}/issues/{number}/reactions"]
        elif review_comment is True:
            paths = [f"/repos/{self.repo}/pulls/comments/{comment_id}/reactions"]
        elif review_comment is False:
            paths = [f"/repos/{self.repo}/issues/comments/{comment_id}/reactions"]
        else:
            paths = [
                f"/repos/{self.repo}/issues/comments/{comment_id}/reactions",
                f"/repos/{self.repo}/pulls/comments/{comment_id}/reactions",
            ]
        for path in paths:
            try:
                # Reacting twice answers 200 with the same reaction: safe to repeat.
                self._run("add a reaction", self._poster(path, {"content": content}), write=True)
                return
            except GitHubRequestError as exc:
                if exc.status != 404:
                    raise
        log.warning(
            "github.reaction_target_missing", repo=self.repo, number=number, comment=comment_id
        )

    # --- comments ---------------------------------------------------------------------

    def post_comment(self, number: int, body: str) -> int:
        """A new comment; on an ambiguous failure, an identical comment of the bot posted
        meanwhile counts as this one, so a retry never posts it twice."""
        text = self._clean(body)

        def create() -> int:
            path = f"/repos/{self.repo}/issues/{number}/comments"
            return int(self._request("POST", path, {"body": text})["id"])

        try:
            return self._run(f"comment on #{number}", create, write=True, idempotent=False)
        except AmbiguousWrite:
            found = self._find_comment(number, lambda b: b == text)
            if found is not None:
                return found
            return self._run(f"comment on #{number}", create, write=True, idempotent=False)

    def _comments(self, number: int) -> list[dict[str, Any]]:
        path = f"/repos/{self.repo}/issues/{number}/comments"
        return self._run(f"list the comments of #{number}", lambda: self._pages(path))

    def _bot_comments(self, number: int) -> list[tuple[int, str]]:
        bot = self.hub.bot_login.lower()
        return [
            (int(c["id"]), str(c.get("body") or ""))
            for c in self._comments(number)
            if str((c.get("user") or {}).get("login") or "").lower() == bot
        ]

    def _find_comment(self, number: int, match: Callable[[str], bool]) -> int | None:
        for comment_id, body in self._bot_comments(number):
            if match(body):
                return comment_id
        return None

    def upsert_comment(self, number: int, mark: Marker | str, body: str) -> int:
        """One comment per marker: edit the bot's comment carrying ``mark``, else create it.

        The marker ends the comment (moved there if ``body`` has it elsewhere) and survives
        redaction and truncation. Comments by anyone but the bot are never matched, so a
        pasted marker cannot hijack the status comment.
        """
        marker, text = self._marked(mark, body)
        existing = self._find_comment(number, lambda b: marker in b)
        if existing is not None:
            self._edit_comment(existing, text)
            return existing
        return self.post_comment(number, text)

    def edit_comment(self, number: int, comment_id: int, mark: Marker | str, body: str) -> bool:
        """Edit the bot's comment ``comment_id`` (on ``number``) by its id, as
        :meth:`upsert_comment` would; False when it no longer exists (404)."""
        _, text = self._marked(mark, body)
        try:
            self._edit_comment(comment_id, text)
        except GitHubRequestError as exc:
            if exc.status != 404:
                raise
            log.info("github.comment_gone", repo=self.repo, number=number, comment=comment_id)
            return False
        return True

    def _marked(self, mark: Marker | str, body: str) -> tuple[str, str]:
        """The marker and the body as posted: redacted, truncated, the marker at its end."""
        marker = mark.render() if isinstance(mark, Marker) else mark
        if not marker.startswith("<!--") or not marker.endswith("-->") or len(marker) > 1000:
            raise ValueError(f"not a hidden marker: {marker!r}")
        visible = self.hub.redact(body.replace(marker, "").rstrip())
        return marker, f"{_truncate(visible, MAX_BODY_CHARS - len(marker) - 2)}\n\n{marker}"

    def _edit_comment(self, comment_id: int, text: str) -> None:
        self._run(
            "edit a comment",
            lambda: self._request(
                "PATCH", f"/repos/{self.repo}/issues/comments/{comment_id}", {"body": text}
            ),
            write=True,
        )

    # --- issues and pull requests -----------------------------------------------------

    def issue_thread(self, number: int) -> IssueThread:
        """The issue or PR with the comments of writers only; the rest are counted."""

        def read_issue() -> dict[str, Any]:
            path = f"/repos/{self.repo}/issues/{number}"
            return dict(self._run(f"read #{number}", lambda: self._request("GET", path)))

        # The issue and its comments are independent reads: both at once.
        issue, listed = self.hub.both(read_issue, lambda: self._comments(number))
        user = issue.get("user") or {}
        comments = [
            Comment(
                int(c["id"]),
                str((c.get("user") or {}).get("login") or ""),
                str(c.get("body") or ""),
                str(c.get("created_at") or ""),
                (c.get("user") or {}).get("type") == "Bot",
            )
            for c in listed
        ]
        # A bot's comment never counts (an App installed with write access is a writer),
        # unless the operator allow-lists it; nor does the bot's own. The permissions of
        # the distinct authors are independent reads too.
        heard = [c for c in comments if self.hub.heeds(c.author, c.author_is_bot)]
        authors = list(dict.fromkeys(c.author for c in heard))
        writers = dict(
            zip(
                authors,
                self.hub.parallel([functools.partial(self.is_writer, a) for a in authors]),
                strict=True,
            )
        )
        kept = tuple(c for c in heard if writers[c.author])
        return IssueThread(
            number=number,
            title=str(issue.get("title") or ""),
            body=str(issue.get("body") or ""),
            author=str(user.get("login") or ""),
            state=str(issue.get("state") or ""),
            is_pull_request=issue.get("pull_request") is not None,
            labels=tuple(str(label.get("name")) for label in issue.get("labels") or ()),
            comments=kept,
            dropped_comments=len(comments) - len(kept),
        )

    def issue_text(self, number: int) -> IssueText:
        thread = self.issue_thread(number)
        return IssueText(
            thread.title, thread.body, tuple(f"@{c.author}: {c.body}" for c in thread.comments)
        )

    def create_issue(self, title: str, body: str, mark: Marker | None = None) -> int:
        """Open an issue (title and body redacted); its number. ``mark`` ends the body,
        kept through truncation, so :meth:`find_issue` finds the issue again."""
        rendered = f"\n\n{mark.render()}" if mark is not None else ""
        text = _truncate(self.hub.redact(body), MAX_BODY_CHARS - len(rendered)) + rendered
        payload = {"title": self._clean(title, 256), "body": text}
        data = self._run(
            "open an issue",
            self._poster(f"/repos/{self.repo}/issues", payload),
            write=True,
            idempotent=False,
        )
        return int(data["number"])

    def find_issue(self, mark: Marker) -> int | None:
        """The newest issue (not PR) the bot opened whose body carries ``mark``, among the
        :data:`MAX_ISSUES_SEARCHED` newest. Anyone can paste a marker into an issue of their
        own, so only the bot's issues count."""
        bot = self.hub.bot_login.casefold()
        per_page = 100

        def listed(page: int) -> Callable[[], Any]:
            params = {"state": "all", "sort": "created", "direction": "desc", "page": page}
            return lambda: self._request(
                "GET", f"/repos/{self.repo}/issues", params={**params, "per_page": per_page}
            )

        for page in range(1, MAX_ISSUES_SEARCHED // per_page + 1):
            batch = self._run(f"list the issues (page {page})", listed(page))
            for issue in batch:
                author = str((issue.get("user") or {}).get("login") or "").casefold()
                if "pull_request" in issue or author != bot:
                    continue
                if carries(issue.get("body"), mark):
                    return int(issue["number"])
            if len(batch) < per_page:
                return None
        return None

    def get_pull(self, number: int) -> PullRequest | None:
        try:
            data = self._run(
                f"read PR #{number}",
                lambda: self._request("GET", f"/repos/{self.repo}/pulls/{number}"),
            )
        except GitHubRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return self._pull(data)

    def _pull(self, data: dict[str, Any]) -> PullRequest:
        head_repo = (data.get("head") or {}).get("repo") or {}
        return PullRequest(
            number=int(data["number"]),
            html_url=str(data.get("html_url", "")),
            title=str(data.get("title") or ""),
            body=str(data.get("body") or ""),
            head_ref=str(data["head"]["ref"]),
            head_sha=str(data["head"]["sha"]),
            base_ref=str(data["base"]["ref"]),
            draft=bool(data.get("draft")),
            state=str(data.get("state")),
            merged=bool(data.get("merged") or data.get("merged_at")),
            author=(data.get("user") or {}).get("login"),
            same_repo=str(head_repo.get("full_name", "")).lower() == self.repo.lower(),
        )

    def pull(self, number: int) -> PullInfo | None:
        found = self.get_pull(number)
        if found is None:
            return None
        return PullInfo(
            found.number,
            found.title,
            found.body,
            found.head_ref,
            found.base_ref,
            found.same_repo,
            found.author,
        )

    def find_pull(self, head: str) -> PullRequest | None:
        """The newest PR (any state) whose head is ``head`` in this repository."""
        data = self._run(
            f"find the PR of {head}",
            lambda: self._request(
                "GET",
                f"/repos/{self.repo}/pulls",
                params={"head": f"{self.owner}:{head}", "state": "all", "per_page": 100},
            ),
        )
        pulls = [self._pull(d) for d in data if isinstance(d, dict)]
        open_ = [p for p in pulls if p.state == "open"]
        if open_:
            return open_[0]
        return pulls[0] if pulls else None

    def find_or_create_pull(
        self, head: str, base: str, title: str, body: str, draft: bool = True
    ) -> PullRequest:
        """The open PR for ``head``, or a new one. A 422 "already exists" or a create that
        timed out (or failed with 5xx) after GitHub made the PR resolves to that PR."""
        check_branch(head)
        check_branch(base)
        existing = self.find_pull(head)
        if existing is not None and existing.state == "open":
            return existing
        wip = draft and self.repo.lower() in self.hub.no_drafts

        def create() -> PullRequest:
            payload = {
                "title": self._clean(WIP_PREFIX + title if wip else title, 256),
                "body": self._clean(body + WIP_NOTE if wip else body),
                "head": head,
                "base": base,
                "draft": draft and not wip,
            }
            return self._pull(self._request("POST", f"/repos/{self.repo}/pulls", payload))

        for _ in range(3):
            try:
                return self._run(f"open a PR for {head}", create, write=True, idempotent=False)
            except AmbiguousWrite:
                pass
            except GitHubRequestError as exc:
                if exc.status == 422 and DRAFTS_REFUSED in exc.message and not wip:
                    log.info("github.drafts_refused", repo=self.repo)
                    self.hub.no_drafts.add(self.repo.lower())
                    wip = True
                    continue
                if exc.status != 422 or "already exists" not in exc.message:
                    raise
            found = self.find_pull(head)
            if found is not None and found.state == "open":
                return found
        raise AmbiguousWrite(f"open a PR for {head}: GitHub kept failing")

    def find_or_create_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> int:
        return self.find_or_create_pull(head, base, title, body, draft).number

    def update_pull(
        self, number: int, *, title: str | None = None, body: str | None = None
    ) -> None:
        payload: dict[str, Any] = {}
        if title is not None:
            payload["title"] = self._clean(title, 256)
        if body is not None:
            payload["body"] = self._clean(body)
        if not payload:
            return
        self._run(
            f"update PR #{number}",
            lambda: self._request("PATCH", f"/repos/{self.repo}/pulls/{number}", payload),
            write=True,
        )

    def update_pr_body(self, number: int, body: str) -> None:
        wip = self.repo.lower() in self.hub.no_drafts
        self.update_pull(number, body=body + WIP_NOTE if wip else body)

    def request_review(self, number: int, login: str) -> None:
        """Ask ``login`` to review. GitHub refuses the PR's author and non-collaborators
        with a 422; that is logged, not raised (the PR is still there to review)."""
        if not login or login.endswith("[bot]"):
            return
        try:
            self._run(
                f"request a review on #{number}",
                lambda: self._request(
                    "POST",
                    f"/repos/{self.repo}/pulls/{number}/requested_reviewers",
                    {"reviewers": [login]},
                ),
                write=True,
            )
        except GitHubRequestError as exc:
            if exc.status != 422:
                raise
            log.info(
                "github.review_request_refused",
                repo=self.repo,
                pr=number,
                login=login,
                reason=exc.message,
            )

    # --- review comments and threads --------------------------------------------------

    def reply_in_thread(self, pr: int, comment_id: int, body: str) -> int:
        text = self._clean(body)
        return int(
            self._run(
                f"reply in a thread of #{pr}",
                lambda: self._request(
                    "POST",
                    f"/repos/{self.repo}/pulls/{pr}/comments/{comment_id}/replies",
                    {"body": text},
                ),
                write=True,
                idempotent=False,
            )["id"]
        )

    def find_review(self, pr: int, mark: Marker) -> int | None:
        """The id of the bot's review of ``pr`` that carries ``mark`` (a review posted
        before a crash is not posted again)."""
        reviews = self._run(
            f"list reviews of #{pr}", lambda: self._pages(f"/repos/{self.repo}/pulls/{pr}/reviews")
        )
        login = self.hub.bot_login.casefold()
        for review in reviews:
            author = str((review.get("user") or {}).get("login", "")).casefold()
            if author == login and carries(str(review.get("body") or ""), mark):
                return int(review["id"])
        return None

    def create_review(
        self, pr: int, commit_id: str, body: str, comments: Sequence[dict[str, Any]]
    ) -> int:
        """Post one review, event ``COMMENT`` (the bot never approves or requests changes):
        https://docs.github.com/en/rest/pulls/reviews#create-a-review-for-a-pull-request.
        Every text is redacted on the way out (:meth:`_request`)."""
        payload = {
            "commit_id": commit_id,
            "body": self._clean(body),
            "event": "COMMENT",
            "comments": [{**c, "body": self._clean(str(c["body"]))} for c in comments],
        }
        return int(
            self._run(
                f"review #{pr}",
                lambda: self._request("POST", f"/repos/{self.repo}/pulls/{pr}/reviews", payload),
                write=True,
                idempotent=False,
            )["id"]
        )

    def review_comment(self, comment_id: int) -> ReviewComment | None:
        """One inline comment by its id, or None when it is gone."""
        path = f"/repos/{self.repo}/pulls/comments/{comment_id}"
        try:
            d = self._run(f"read review comment {comment_id}", lambda: self._request("GET", path))
        except GitHubRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return _review_comment(d)

    def review_comments(self, pr: int, review_id: int | None = None) -> list[ReviewComment]:
        """Inline comments of one review, or of the whole PR.

        Read from the PR's listing even for one review: the review's own listing answers
        with ``position``, an index into the diff, but not the file ``line``
        (https://docs.github.com/en/rest/pulls/reviews#list-comments-for-a-pull-request-review).
        """
        path = f"/repos/{self.repo}/pulls/{pr}/comments"

        def call() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            page = 1
            while True:
                batch = self._request("GET", path, params={"per_page": 100, "page": page})
                out.extend(d for d in batch if isinstance(d, dict))
                if len(batch) < 100:
                    return out
                page += 1

        return [
            _review_comment(d)
            for d in self._run(f"list review comments of #{pr}", call)
            if review_id is None or d.get("pull_request_review_id") == review_id
        ]

    def unresolved_threads(self, pr: int) -> list[ReviewThread]:
        threads: list[ReviewThread] = []
        after: str | None = None
        for _ in range(50):
            data = self._graphql(
                f"list review threads of #{pr}",
                THREADS_QUERY,
                {"owner": self.owner, "name": self.name, "number": pr, "after": after},
            )
            conn = ((data.get("repository") or {}).get("pullRequest") or {}).get(
                "reviewThreads"
            ) or {}
            for node in conn.get("nodes") or []:
                if node.get("isResolved"):
                    continue
                comments = tuple(
                    ThreadComment(
                        int(c["fullDatabaseId"]),
                        ((c.get("author") or {}).get("login") or ""),
                        str(c.get("body") or ""),
                    )
                    for c in (node.get("comments") or {}).get("nodes") or []
                )
                threads.append(
                    ReviewThread(
                        str(node["id"]),
                        str(node.get("path") or ""),
                        node.get("line"),
                        bool(node.get("isOutdated")),
                        comments,
                    )
                )
            info = conn.get("pageInfo") or {}
            if not info.get("hasNextPage"):
                break
            after = info.get("endCursor")
        return threads

    def resolve_thread_id(self, thread_id: str) -> None:
        self._graphql(
            "resolve a review thread", RESOLVE_MUTATION, {"threadId": thread_id}, write=True
        )

    def resolve_thread(self, pr: int, comment_id: int) -> None:
        """Resolve the thread that holds review comment ``comment_id`` (if unresolved)."""
        for thread in self.unresolved_threads(pr):
            if any(c.id == comment_id for c in thread.comments):
                self.resolve_thread_id(thread.id)
                return

    # --- check runs -------------------------------------------------------------------

    def create_check_run(
        self,
        head_sha: str,
        name: str,
        *,
        title: str,
        summary: str,
        details_url: str | None = None,
        external_id: str | None = None,
    ) -> int | None:
        """A check run in progress on ``head_sha``; None when the credentials cannot
        create check runs (a personal token)."""
        if not self.hub.can_create_check_runs:
            return None
        payload: dict[str, Any] = {
            "name": self._clean(name, 255),
            "head_sha": head_sha,
            "status": "in_progress",
            "output": {
                "title": self._clean(title, 255),
                "summary": self._clean(summary, MAX_CHECK_TEXT),
            },
        }
        if details_url:
            payload["details_url"] = details_url
        if external_id:
            payload["external_id"] = external_id
        data = self._run(
            f"create check run {name}",
            lambda: self._request("POST", f"/repos/{self.repo}/check-runs", payload),
            write=True,
            idempotent=False,
        )
        return int(data["id"])

    def update_check_run(
        self,
        check_run_id: int,
        *,
        title: str,
        summary: str,
        text: str | None = None,
        status: CheckStatus | None = None,
        conclusion: CheckConclusion | None = None,
    ) -> None:
        """Report progress (``status``) or the end (``conclusion``, which completes it)."""
        output: dict[str, Any] = {
            "title": self._clean(title, 255),
            "summary": self._clean(summary, MAX_CHECK_TEXT),
        }
        if text is not None:
            output["text"] = self._clean(text, MAX_CHECK_TEXT)
        payload: dict[str, Any] = {"output": output}
        if status is not None:
            payload["status"] = status
        if conclusion is not None:
            payload["conclusion"] = conclusion
        self._run(
            "update a check run",
            lambda: self._request(
                "PATCH", f"/repos/{self.repo}/check-runs/{check_run_id}", payload
            ),
            write=True,
        )

    # --- the repository's CI on a head commit ---------------------------------------

    def head_checks(self, sha: str) -> HeadChecks:
        """Every check of commit ``sha``: its check runs (the newest of each name, so a
        re-run replaces its first attempt), with annotations and the job's attempt for the
        failing ones, and the latest commit status of each context. Calls: one per 100
        check runs, one per failing run with annotations, one per workflow run with a
        failing job, one for the combined status."""
        if not _SHA.fullmatch(sha):
            raise ValueError(f"not a commit sha: {sha[:80]!r}")
        runs = self._listing(
            f"list check runs of {sha[:12]}",
            f"/repos/{self.repo}/commits/{sha}/check-runs",
            "check_runs",
        )
        attempts: dict[int, int] = {}
        for run_id in sorted({ids[0] for r in runs if _failing(r) and (ids := job_ids(r))}):
            jobs = self._listing(
                f"list jobs of workflow run {run_id}",
                f"/repos/{self.repo}/actions/runs/{run_id}/jobs",
                "jobs",
            )
            attempts.update(
                {int(j["id"]): int(j["run_attempt"]) for j in jobs if j.get("run_attempt")}
            )
        results = []
        for run in runs:
            notes: tuple[Annotation, ...] = ()
            if _failing(run) and (run.get("output") or {}).get("annotations_count"):
                notes = self._annotations(int(run["id"]))
            ids = job_ids(run)
            results.append(check_result(run, notes, attempts.get(ids[1]) if ids else None))
        combined = self._run(
            f"read the combined status of {sha[:12]}",
            lambda: self._request(
                "GET", f"/repos/{self.repo}/commits/{sha}/status", params={"per_page": 100}
            ),
        )
        results += [status_result(s) for s in combined.get("statuses") or [] if isinstance(s, dict)]
        return HeadChecks(sha, tuple(results))

    def _annotations(self, check_run_id: int) -> tuple[Annotation, ...]:
        path = f"/repos/{self.repo}/check-runs/{check_run_id}/annotations"
        data = self._run(
            f"read annotations of check run {check_run_id}",
            lambda: self._request("GET", path, params={"per_page": MAX_ANNOTATIONS}),
        )
        return tuple(annotation(a) for a in data if isinstance(a, dict))

    def _listing(self, what: str, path: str, key: str) -> list[dict[str, Any]]:
        """Every item of a ``{"total_count": n, key: [...]}`` listing (at most 10 pages)."""

        def call() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            for page in range(1, 11):
                data = self._request("GET", path, params={"per_page": 100, "page": page})
                batch = [i for i in data.get(key) or [] if isinstance(i, dict)]
                items += batch
                if len(batch) < 100 or len(items) >= int(data.get("total_count") or 0):
                    break
            return items

        return self._run(what, call)

    def job_log_tail(self, job_id: int, max_bytes: int) -> str | None:
        """The end of an Actions job's log, at most ``max_bytes`` (redacted, timestamps
        dropped); None when GitHub has none to give (404, or 410 for logs past their
        retention). GitHub answers 302 with a download URL valid for a minute ("Look for
        ``Location:`` in the response header", the endpoint's description); the download
        asks only for the tail (``Range: bytes=-N``) and carries no credentials."""
        path = f"/repos/{self.repo}/actions/jobs/{job_id}/logs"
        limit = max(int(max_bytes), 1)

        def call() -> str | None:
            headers, _ = self._gh.requester.requestBlobAndCheck("GET", path)
            location = headers.get("location")
            if not location:
                raise GitHubRequestError(200, f"the logs of job {job_id}: no download address")
            with requests.get(
                location,
                headers={"Range": f"bytes=-{limit}"},
                timeout=self.hub.timeout,
                stream=True,
                allow_redirects=False,
            ) as answer:
                if answer.status_code in (403, 404, 410):
                    return None  # the link expired or the blob is gone
                if answer.status_code not in (200, 206):
                    raise GitHubUnavailable(
                        f"the logs of job {job_id}: download answered {answer.status_code}"
                    )
                tail = bytearray()
                read = 0
                for chunk in answer.iter_content(64 * 1024):
                    read += len(chunk)
                    tail += chunk
                    del tail[: max(len(tail) - limit, 0)]
                    if read > MAX_LOG_DOWNLOAD:
                        break
                whole = answer.status_code == 200 and read <= limit
                if answer.status_code == 206:
                    total = answer.headers.get("content-range", "").rpartition("/")[2]
                    whole = total.isdigit() and int(total) <= limit
            return self.hub.redact(log_tail(bytes(tail), limit, whole))

        try:
            return self._run(f"read the log of job {job_id}", call)
        except GitHubRequestError as exc:
            if exc.status in (404, 410):
                return None
            raise

    def rerun_job(self, job_id: int) -> bool:
        """Re-run one Actions job (``POST .../actions/jobs/{job_id}/rerun``, 201). False when
        GitHub refuses: no Actions: write permission, the run still going (403), or no such
        job (404)."""
        try:
            self._run(
                f"re-run job {job_id}",
                lambda: self._request(
                    "POST", f"/repos/{self.repo}/actions/jobs/{job_id}/rerun", {}
                ),
                write=True,
                idempotent=False,
            )
        except GitHubRequestError as exc:
            if exc.status not in (403, 404, 422):
                raise
            log.info("github.rerun_refused", repo=self.repo, job=job_id, reason=exc.message)
            return False
        return True

    def mark_ready_for_review(self, pr_number: int) -> None:
        """Turn a draft PR into one ready for review (GraphQL
        ``markPullRequestReadyForReview`` with the PR's node id; REST cannot do it).
        Nothing to do for a PR that is not a draft."""
        data = self._run(
            f"read PR #{pr_number}",
            lambda: self._request("GET", f"/repos/{self.repo}/pulls/{pr_number}"),
        )
        if not data.get("draft"):
            return
        self._graphql(
            f"mark #{pr_number} ready for review",
            MARK_READY_MUTATION,
            {"pullRequestId": str(data["node_id"])},
            write=True,
        )

    # --- labels -----------------------------------------------------------------------

    def add_labels(self, number: int, labels: Sequence[str]) -> None:
        names = [label for label in labels if label]
        if not names:
            return
        self._run(
            f"label #{number}",
            lambda: self._request(
                "POST", f"/repos/{self.repo}/issues/{number}/labels", {"labels": names}
            ),
            write=True,
        )

    def remove_label(self, number: int, label: str) -> None:
        """Remove a label; a label that is not there is fine."""
        quoted = urllib.parse.quote(label, safe="")
        try:
            self._run(
                f"unlabel #{number}",
                lambda: self._request(
                    "DELETE", f"/repos/{self.repo}/issues/{number}/labels/{quoted}"
                ),
                write=True,
            )
        except GitHubRequestError as exc:
            if exc.status != 404:
                raise

    # --- files ------------------------------------------------------------------------

    def read_file(self, path: str, ref: str) -> str | None:
        return self._read(self.repo, path, ref)

    def _read(self, repo: str, path: str, ref: str | None) -> str | None:
        clean = path.strip("/")
        if not clean or ".." in clean.split("/"):
            raise ValueError(f"not a repository path: {path!r}")

        def call() -> Any:
            params = {"ref": ref} if ref else None
            return self._request("GET", f"/repos/{repo}/contents/{clean}", params=params)

        try:
            data = self._run(f"read {clean} of {repo}", call)
        except GitHubRequestError as exc:
            if exc.status == 404 or (exc.status == 403 and TOO_LARGE in exc.message):
                return None  # missing, or larger than the contents API serves
            if exc.status == 403:
                # "Resource not accessible by integration": the App lacks the permission,
                # which is not the same as "no such file" (no config would mean defaults).
                raise GitHubRequestError(
                    403,
                    f"reading {clean} of {repo} was refused: the GitHub App needs the "
                    f"Contents: read permission ({exc.message})",
                ) from None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        if int(data.get("size") or 0) > MAX_FILE_BYTES:
            return None
        raw = base64.b64decode(str(data.get("content") or ""))
        return raw.decode("utf-8", errors="replace")

    def read_config(self, ref: str) -> ConfigSource:
        """``.github/vibe.yml`` at ``ref`` (for a PR: its base branch, DESIGN.md section 4
        rule 3), else the one in the owner's ``.github`` repository, else none."""
        text = self.read_file(CONFIG_PATH, ref)
        if text is not None:
            return ConfigSource(text, "repo", self.repo)
        org_repo = f"{self.owner}/.github"
        if self.name.lower() != ".github":
            try:
                org = self.hub.repo(org_repo)._read(org_repo, CONFIG_PATH, None)
            except GitHubRequestError as exc:
                log.info("github.org_config_unreadable", repo=org_repo, reason=exc.message)
                org = None
            if org is not None:
                return ConfigSource(org, "org", org_repo)
        return ConfigSource(None, "none", None)

    # --- git ----------------------------------------------------------------------------

    def git_credentials(self, fresh: bool = False) -> GitCredentials:
        """The clone URL and a short-lived token for git, asked for as each fetch or push
        starts; ``fresh`` after the remote refused the last one drops the cached token."""
        clone_url = str(self.repository()["clone_url"])
        if fresh:
            self.hub.tokens.invalidate(self.repo)
        issued = self.hub.tokens.token(self.repo)
        return GitCredentials(clone_url, "x-access-token", issued.value, issued.expires_at)
