"""Sign-in to the console with the GitHub App's OAuth (a user access token, the web
application flow:
https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app#using-the-web-application-flow-to-generate-a-user-access-token).

``GET /console/login`` sends the browser to ``{server}/login/oauth/authorize`` with the
App's client id, the callback ``<public URL>/console/oauth/callback`` and a random
``state``, kept server-side for ten minutes and bound to the browser by an HttpOnly,
SameSite=Lax cookie. The callback checks both, exchanges the code at
``{server}/login/oauth/access_token`` and reads ``GET {api}/user``. The user's token stays
in this process, in a session keyed by a random id: the browser holds only the id
(HttpOnly, SameSite=Lax, Secure under https), so the token never reaches the browser, a
forged or altered id names no session, and signing out forgets the session at once. A
restart signs everyone out.

What a person may see and do is asked of GitHub with their own token,
``GET /repos/{owner}/{repo}`` -> ``permissions`` (``pull``: read, ``push``: write), and
kept a minute per session and repository. A user token of a GitHub App sees only the
repositories where the App is installed, so a person sees no more than the bot serves.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode

import httpx
from fastapi import Request

from bot.settings import Settings

SESSION_COOKIE = "vibe_console_session"
STATE_COOKIE = "vibe_console_oauth_state"
CALLBACK_PATH = "/console/oauth/callback"
SESSION_SECONDS = 8 * 3600.0  # a GitHub App's user access token lives 8 hours
STATE_SECONDS = 600.0  # GitHub's code lives 10 minutes
PERMISSION_SECONDS = 60.0
MAX_SESSIONS = 10_000
MAX_PENDING = 1_000
HTTP_TIMEOUT = 10.0
MAX_ASKS = 8  # permission questions in flight at once
# GitHub logins: letters, digits and single inner hyphens, at most 39 characters.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?")
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

Level = Literal["none", "read", "write"]


class SignInError(Exception):
    """Sign-in did not complete; the message is one line for the person."""


@dataclass(frozen=True)
class OAuthConfig:
    client_id: str
    client_secret: str
    public_url: str
    server_url: str
    api_url: str

    @property
    def callback_url(self) -> str:
        return self.public_url.rstrip("/") + CALLBACK_PATH

    @property
    def secure(self) -> bool:
        return self.public_url.lower().startswith("https://")


@dataclass
class UserSession:
    id: str
    login: str
    token: str
    expires_at: float
    levels: dict[str, tuple[float, Level]] = field(default_factory=dict)


@dataclass(frozen=True)
class Viewer:
    """Who the console serves: ``session`` None for full access (the dashboard token or
    loopback), else a signed-in person limited to their repositories."""

    actor: str
    session: UserSession | None = None


def _cookie_id(value: str | None) -> str | None:
    if value is None or not 32 <= len(value) <= 64 or not set(value) <= _ID_CHARS:
        return None
    return value


class SignIn:
    def __init__(
        self,
        config: OAuthConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._transport = transport
        self._pending: dict[str, float] = {}
        self._sessions: dict[str, UserSession] = {}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=HTTP_TIMEOUT, transport=self._transport, follow_redirects=False
        )

    def _sweep(self, now: float) -> None:
        for state, until in list(self._pending.items()):
            if until <= now:
                del self._pending[state]
        for sid, session in list(self._sessions.items()):
            if session.expires_at <= now:
                del self._sessions[sid]

    def start(self) -> tuple[str, str]:
        """The authorize URL to send the browser to, and its state (for the cookie)."""
        now = self._clock()
        self._sweep(now)
        if len(self._pending) >= MAX_PENDING:
            oldest = min(self._pending, key=self._pending.__getitem__)
            del self._pending[oldest]
        state = secrets.token_urlsafe(32)
        self._pending[state] = now + STATE_SECONDS
        query = urlencode(
            {
                "client_id": self.config.client_id,
                "redirect_uri": self.config.callback_url,
                "state": state,
            }
        )
        return f"{self.config.server_url.rstrip('/')}/login/oauth/authorize?{query}", state

    async def finish(self, params: dict[str, str], cookie_state: str | None) -> UserSession:
        """The callback: check the state, exchange the code, read the login; a new session."""
        state = params.get("state")
        if (
            state is None
            or cookie_state is None
            or not hmac.compare_digest(state.encode(), cookie_state.encode())
        ):
            raise SignInError(
                "This sign-in was not started from this browser, or it was started too "
                "long ago: sign in again."
            )
        until = self._pending.pop(state, None)
        if until is None or until <= self._clock():
            raise SignInError("This sign-in has expired or was already used: sign in again.")
        if "error" in params:
            reason = params.get("error_description") or params["error"]
            raise SignInError(f"GitHub did not sign you in: {reason[:200]}")
        code = params.get("code")
        if not code:
            raise SignInError("GitHub's answer carried no code: sign in again.")
        server = self.config.server_url.rstrip("/")
        api = self.config.api_url.rstrip("/")
        try:
            async with self._client() as client:
                answer = await client.post(
                    f"{server}/login/oauth/access_token",
                    data={
                        "client_id": self.config.client_id,
                        "client_secret": self.config.client_secret,
                        "code": code,
                        "redirect_uri": self.config.callback_url,
                    },
                    headers={"accept": "application/json"},
                )
                grant = answer.json() if answer.status_code == 200 else {}
                token = grant.get("access_token") if isinstance(grant, dict) else None
                if not isinstance(token, str) or not token:
                    error = grant.get("error") if isinstance(grant, dict) else None
                    raise SignInError(
                        "GitHub refused the sign-in"
                        + (f" ({str(error)[:60]})" if error else f" (HTTP {answer.status_code})")
                        + ": sign in again."
                    )
                user = await client.get(f"{api}/user", headers=_api_headers(token))
                login = user.json().get("login") if user.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            raise SignInError(f"GitHub could not be asked: {type(exc).__name__}") from None
        if not isinstance(login, str) or _LOGIN.fullmatch(login) is None:
            raise SignInError("GitHub did not say who signed in: sign in again.")
        now = self._clock()
        self._sweep(now)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires_at)
            del self._sessions[oldest.id]
        session = UserSession(secrets.token_urlsafe(32), login, token, now + SESSION_SECONDS)
        self._sessions[session.id] = session
        return session

    def session(self, request: Request) -> UserSession | None:
        sid = _cookie_id(request.cookies.get(SESSION_COOKIE))
        if sid is None:
            return None
        session = self._sessions.get(sid)
        if session is None or session.expires_at <= self._clock():
            return None
        return session

    def end(self, request: Request) -> None:
        sid = _cookie_id(request.cookies.get(SESSION_COOKIE))
        if sid is not None:
            self._sessions.pop(sid, None)

    async def level(self, session: UserSession, repository: str) -> Level:
        return (await self.levels(session, [repository]))[repository]

    async def levels(self, session: UserSession, repositories: Iterable[str]) -> dict[str, Level]:
        """The person's access to each repository, asked of GitHub with their token (a
        minute's cache). An answer that is not a 200 with permissions counts as no access,
        and only a definite answer is cached."""
        now = self._clock()
        out: dict[str, Level] = {}
        ask: list[str] = []
        for repo in dict.fromkeys(repositories):
            cached = session.levels.get(repo)
            if cached is not None and cached[0] > now:
                out[repo] = cached[1]
            else:
                ask.append(repo)
        if ask:
            api = self.config.api_url.rstrip("/")
            gate = asyncio.Semaphore(MAX_ASKS)
            async with self._client() as client:

                async def one(repo: str) -> tuple[str, Level | None]:
                    try:
                        async with gate:
                            answer = await client.get(
                                f"{api}/repos/{repo}", headers=_api_headers(session.token)
                            )
                        data = answer.json() if answer.status_code == 200 else {}
                    except (httpx.HTTPError, ValueError):
                        return repo, None
                    if answer.status_code in (403, 404):
                        return repo, "none"
                    if answer.status_code != 200 or not isinstance(data, dict):
                        return repo, None
                    perms = data.get("permissions") or {}
                    if perms.get("push") is True:
                        return repo, "write"
                    return repo, "read" if perms.get("pull") is True else "none"

                for repo, found in await asyncio.gather(*(one(r) for r in ask)):
                    out[repo] = found or "none"
                    if found is not None:
                        session.levels[repo] = (now + PERMISSION_SECONDS, found)
        return out


def _api_headers(token: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {token}",
        "accept": "application/vnd.github+json",
        "x-github-api-version": "2022-11-28",
    }


def console_signin(settings: Settings) -> SignIn | None:
    """Sign-in with GitHub when the App's client id and secret and the public URL are set."""
    if not (settings.github_client_id and settings.github_client_secret and settings.public_url):
        return None
    return SignIn(
        OAuthConfig(
            client_id=settings.github_client_id,
            client_secret=settings.github_client_secret.get_secret_value(),
            public_url=settings.public_url,
            server_url=settings.github_server_url,
            api_url=settings.github_api_url,
        )
    )
