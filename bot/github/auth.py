"""Credentials for GitHub: a GitHub App (JWT, then installation tokens) or a fixed token.

App flow, https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app:
an RS256 JWT (``iat`` 60 s in the past against clock drift, at most 10 minutes of
validity, ``iss`` the App id) finds the installation of a repository and asks it for a
token scoped to that one repository (DESIGN.md section 4 rule 9). Tokens are cached until
shortly before they expire and dropped on a 401.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, Github

from bot.github.retry import Clock, GitHubRequestError, RequestPolicy

JWT_BACKDATE = 60  # GitHub's advice: set iat 60 s in the past
JWT_LIFETIME = 540  # below GitHub's 10-minute maximum, leaving room for drift
REFRESH_MARGIN = 300.0  # get a new installation token 5 minutes before expiry


def whole_seconds(timeout: float) -> int:
    """PyGithub insists on whole seconds for its timeout."""
    return max(1, math.ceil(timeout))


def parse_private_key(text: str) -> str:
    """The App's private key as a PEM text, checked to be an RSA private key.

    ``.env`` files and many secret stores keep a multi-line value on one line with literal
    ``\\n`` escapes (and sometimes in quotes); that form is accepted. GitHub issues App keys
    as RSA PEM: https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/managing-private-keys-for-github-apps
    Raises ValueError saying what is wrong, never quoting the key.
    """
    pem = text.strip().strip("\"'").replace("\\r\\n", "\n").replace("\\n", "\n").strip() + "\n"
    if "PRIVATE KEY" not in pem:
        raise ValueError("the GitHub App private key is not a PEM key")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("the GitHub App private key does not parse as a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the GitHub App private key is not an RSA key")
    return pem


class SystemClock:
    """Wall-clock time and real sleeping."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass(frozen=True)
class IssuedToken:
    value: str
    expires_at: float | None


AuthKind = Literal["app", "token", "actions"]


class TokenSource(Protocol):
    """Gives the token to use for one repository; may cache and refresh."""

    @property
    def kind(self) -> AuthKind: ...

    def token(self, repo: str) -> IssuedToken: ...

    def live_tokens(self) -> list[str]:
        """Every token handed out and not yet expired (for redaction)."""
        ...

    def invalidate(self, repo: str) -> bool:
        """Drop a cached token after a 401; True if a fresh one may help."""
        ...


class StaticToken:
    """A personal access token or the Actions ``GITHUB_TOKEN``: one token for everything."""

    def __init__(self, value: str, kind: Literal["token", "actions"] = "token") -> None:
        if not value.strip():
            raise ValueError("the GitHub token is empty")
        self._kind: AuthKind = kind
        self._value = value.strip()

    @property
    def kind(self) -> AuthKind:
        return self._kind

    def token(self, repo: str) -> IssuedToken:
        return IssuedToken(self._value, None)

    def live_tokens(self) -> list[str]:
        return [self._value]

    def invalidate(self, repo: str) -> bool:
        return False


class _JwtAuth(Auth.Auth):
    """PyGithub auth that signs a fresh App JWT for every request."""

    def __init__(self, source: AppTokens) -> None:
        self._source = source

    @property
    def token_type(self) -> str:
        return "Bearer"

    @property
    def token(self) -> str:
        return self._source.jwt()


class AppTokens:
    """Installation tokens of a GitHub App, one per repository, cached."""

    def __init__(
        self,
        app_id: int,
        private_key: str,
        api_url: str,
        *,
        clock: Clock,
        policy: RequestPolicy,
        timeout: float,
        permissions: dict[str, str] | None = None,
    ) -> None:
        self.app_id = app_id
        self._key = parse_private_key(private_key)
        self._clock = clock
        self._policy = policy
        self._permissions = permissions
        # _lock guards the caches only and is never held across a request or a wait, so
        # live_tokens() (every redaction) and other repositories never queue behind a slow
        # or rate-limited token request; _connection serialises requests on the one
        # PyGithub connection; _fetching makes one token request per repository at a time.
        self._lock = threading.Lock()
        self._connection = threading.Lock()
        self._fetching: dict[str, threading.Lock] = {}
        self._cache: dict[str, IssuedToken] = {}
        self._installations: dict[str, int] = {}
        self._github = Github(
            auth=_JwtAuth(self),
            base_url=api_url,
            timeout=whole_seconds(timeout),
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self.issued = 0

    @property
    def kind(self) -> AuthKind:
        return "app"

    def live_tokens(self) -> list[str]:
        with self._lock:
            return [t.value for t in self._cache.values()]

    def jwt(self) -> str:
        now = int(self._clock.now())
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": str(self.app_id)}
        return jwt.encode(claims, self._key, algorithm="RS256")

    def _app_call(
        self, what: str, verb: str, url: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            with self._connection:  # one PyGithub connection: one request at a time
                _, data = self._github.requester.requestJsonAndCheck(verb, url, input=body)
            if not isinstance(data, dict):
                raise GitHubRequestError(200, f"{what}: unexpected answer")
            return data

        return self._policy.run(what, call, write=False, idempotent=True)

    def app_request(
        self,
        what: str,
        verb: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        write: bool = False,
    ) -> tuple[dict[str, Any], Any]:
        """One request as the App itself (JWT), through the request policy; returns the
        response headers (for ``Link`` pagination) and the decoded body."""

        def call() -> tuple[dict[str, Any], Any]:
            with self._connection:  # one PyGithub connection: one request at a time
                headers, data = self._github.requester.requestJsonAndCheck(
                    verb, url, parameters=params
                )
            return dict(headers), data

        return self._policy.run(what, call, write=write, idempotent=not write)

    def app(self) -> dict[str, Any]:
        """``GET /app``: the App's slug, owner, permissions and events
        (https://docs.github.com/en/rest/apps/apps#get-the-authenticated-app)."""
        return self._app_call("read the App", "GET", "/app")

    def installation_id(self, repo: str) -> int:
        key = repo.lower()
        with self._lock:
            known = self._installations.get(key)
        if known is None:
            try:
                data = self._app_call(
                    f"find the App installation of {repo}", "GET", f"/repos/{repo}/installation"
                )
            except GitHubRequestError as exc:
                if exc.status == 404:
                    raise GitHubRequestError(
                        404, f"the GitHub App is not installed on {repo}"
                    ) from None
                raise
            known = int(data["id"])
            with self._lock:
                self._installations[key] = known
        return known

    def _fresh(self, key: str) -> IssuedToken | None:
        with self._lock:
            cached = self._cache.get(key)
        if (
            cached is not None
            and cached.expires_at is not None
            and cached.expires_at - self._clock.now() > REFRESH_MARGIN
        ):
            return cached
        return None

    def token(self, repo: str) -> IssuedToken:
        key = repo.lower()
        cached = self._fresh(key)
        if cached is not None:
            return cached
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            cached = self._fresh(key)  # another thread may have fetched it meanwhile
            if cached is not None:
                return cached
            installation = self.installation_id(repo)
            body: dict[str, Any] = {"repositories": [repo.split("/", 1)[1]]}
            if self._permissions is not None:
                body["permissions"] = self._permissions
            # Asking for a token is idempotent: a retried request merely yields another.
            try:
                data = self._app_call(
                    f"get an installation token for {repo}",
                    "POST",
                    f"/app/installations/{installation}/access_tokens",
                    body,
                )
            except GitHubRequestError:
                with self._lock:
                    self._installations.pop(key, None)  # uninstalled or reinstalled: look again
                raise
            expires = datetime.fromisoformat(str(data["expires_at"]).replace("Z", "+00:00"))
            issued = IssuedToken(str(data["token"]), expires.timestamp())
            with self._lock:
                self._cache[key] = issued
                self.issued += 1
            return issued

    def invalidate(self, repo: str) -> bool:
        with self._lock:
            self._cache.pop(repo.lower(), None)
        return True

    def close(self) -> None:
        self._github.close()


class LiveAuth(Auth.Auth):
    """PyGithub auth asking a :class:`TokenSource` for the current token of one repository
    on every request, so a refreshed installation token is used at once."""

    def __init__(self, source: TokenSource, repo: str) -> None:
        self._source = source
        self._repo = repo

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        return self._source.token(self._repo).value

    def mask_authentication(self, headers: dict[str, Any]) -> None:
        headers["Authorization"] = "token (redacted)"
