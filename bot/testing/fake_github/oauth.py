"""The GitHub App's web application flow (user-to-server tokens) on the fake GitHub.

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-user-access-token-for-a-github-app#using-the-web-application-flow-to-generate-a-user-access-token

``GET /login/oauth/authorize`` is GitHub's consent page. The fake has no person to click
"Authorize": it approves at once as the configured ``approve_as`` login (a test-only
auto-approve) and redirects to ``redirect_uri`` with ``code`` and ``state``; with
``approve_as`` None it answers as when the person clicks "Cancel" (``error=access_denied``).
``POST /login/oauth/access_token`` exchanges the code for a ``ghu_`` token acting as that
login with its collaborator roles (``GET /user``, ``GET /repos/{owner}/{repo}`` with
``permissions``). Mount with :meth:`FakeOAuth.mount` after :meth:`FakeGitHub.start`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

if TYPE_CHECKING:
    from bot.testing.fake_github.server import FakeGitHub

DOCS = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
AUTH_DOCS = (
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors"
)
# "the code will expire after 10 minutes" (generating a user access token, step 2).
CODE_SECONDS = 600.0
# "By default, the user access token expires after 8 hours."
TOKEN_SECONDS = 8 * 3600.0


@dataclass
class Grant:
    login: str
    redirect_uri: str
    expires_at: float


@dataclass
class FakeOAuth:
    """The App's OAuth credentials and callback URL, and the login that approves."""

    fake: FakeGitHub
    callback_url: str
    approve_as: str | None = None
    client_id: str = field(default_factory=lambda: "Iv1." + secrets.token_hex(8))
    client_secret: str = field(default_factory=lambda: secrets.token_hex(20))
    codes: dict[str, Grant] = field(default_factory=dict)

    @classmethod
    def mount(cls, fake: FakeGitHub, callback_url: str, approve_as: str | None) -> FakeOAuth:
        if fake.app is None:
            raise RuntimeError("start() the fake GitHub first")
        oauth = cls(fake, callback_url, approve_as)
        add_oauth_routes(fake.app, oauth)
        return oauth


def _error(error: str, description: str) -> JSONResponse:
    # GitHub answers a refused exchange with 200 and an error object (the troubleshooting
    # page's examples), not with an HTTP error status.
    return JSONResponse({"error": error, "error_description": description, "error_uri": DOCS})


def add_oauth_routes(app: FastAPI, oauth: FakeOAuth) -> None:
    world = oauth.fake.world

    @app.get("/login/oauth/authorize")
    def authorize(request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != oauth.client_id:
            return Response("Not Found", status_code=404, media_type="text/plain")
        redirect = params.get("redirect_uri") or oauth.callback_url
        state = params.get("state")
        extra = {"state": state} if state is not None else {}
        if redirect != oauth.callback_url:
            # "If you provide a redirect_uri that doesn't match what you've registered with
            # your application, GitHub will redirect to the registered callback URL with the
            # following parameters" (troubleshooting authorization request errors). The fake
            # matches exactly (GitHub also takes a subdirectory of the callback URL).
            query = {
                "error": "redirect_uri_mismatch",
                "error_description": "The redirect_uri MUST match the registered callback "
                "URL for this application.",
                "error_uri": AUTH_DOCS,
                **extra,
            }
            return RedirectResponse(f"{oauth.callback_url}?{urlencode(query)}", status_code=302)
        if oauth.approve_as is None:
            query = {
                "error": "access_denied",
                "error_description": "The user has denied your application access.",
                "error_uri": AUTH_DOCS,
                **extra,
            }
            return RedirectResponse(f"{redirect}?{urlencode(query)}", status_code=302)
        code = secrets.token_hex(10)
        with world.lock:
            oauth.codes[code] = Grant(oauth.approve_as, redirect, world.clock.now() + CODE_SECONDS)
        return RedirectResponse(f"{redirect}?{urlencode({'code': code, **extra})}", 302)

    @app.post("/login/oauth/access_token")
    async def access_token(request: Request) -> Response:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("latin-1")).items()}
        form.update(request.query_params.items())
        if (
            form.get("client_id") != oauth.client_id
            or form.get("client_secret") != oauth.client_secret
        ):
            return _error(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            )
        with world.lock:
            # A code is good once: "bad_verification_code" for one that is wrong, expired
            # or already used.
            grant = oauth.codes.pop(form.get("code", ""), None)
            if grant is None or grant.expires_at <= world.clock.now():
                return _error("bad_verification_code", "The code passed is incorrect or expired.")
            if "redirect_uri" in form and form["redirect_uri"] != grant.redirect_uri:
                return _error(
                    "redirect_uri_mismatch",
                    "The redirect_uri MUST match the registered callback URL for this application.",
                )
            world.user(grant.login)
            token = world.new_token(grant.login, "user", "ghu_", TOKEN_SECONDS).value
        body = {
            "access_token": token,
            "expires_in": int(TOKEN_SECONDS),
            "scope": "",
            "token_type": "bearer",
        }
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(body)
        # Without Accept: application/json GitHub answers form-encoded.
        return Response(urlencode(body), media_type="application/x-www-form-urlencoded")
