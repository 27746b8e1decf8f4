"""The fake's HTTP surface: REST routes, a GraphQL subset, git smart HTTP, fault injection.

Route templates use the parameter names of GitHub's OpenAPI description so recorded
responses can be matched to its operations by the contract test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import jwt
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.routing import Match

from bot.testing.fake_github import gitrepo
from bot.testing.fake_github.shapes import iso
from bot.testing.fake_github.state import (
    LEGACY_PERMISSION,
    CheckRun,
    Issue,
    IssueComment,
    PullRequest,
    Reaction,
    Repo,
    Token,
)

if TYPE_CHECKING:
    from bot.testing.fake_github.server import Delivery, FakeGitHub

JSON = dict[str, Any]
DOCS = "https://docs.github.com/rest"
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
MAX_BODY_CHARS = 65536  # GitHub's limit for issue, comment and PR bodies
MAX_JSON_BYTES = 5 * 1024 * 1024
HOOK_DELIVERY_DAYS = 3  # how long GitHub keeps (and redelivers) webhook deliveries

FaultKind = Literal[
    "502",
    "timeout",
    "timeout_after_write",
    "secondary_rate_limit",
    "secondary_rate_limit_no_headers",
    "secondary_rate_limit_429",
    "primary_rate_limit",
]


@dataclass
class Fault:
    """A scripted failure for requests matching ``method`` and ``path`` (a route template
    such as ``/repos/{owner}/{repo}/pulls`` or a literal path)."""

    kind: FaultKind
    method: str
    path: str
    times: int = 1
    retry_after: int | None = None
    reset_at: int | None = None
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        parts = re.split(r"(\{[^}]+\})", self.path)
        regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        self._pattern = re.compile(regex)

    def matches(self, method: str, path: str) -> bool:
        return (
            self.hits < self.times
            and self.method in ("*", method.upper())
            and self._pattern.fullmatch(path) is not None
        )


@dataclass(frozen=True)
class LoggedRequest:
    """One request the fake answered: method, route template (``/repos/{owner}/{repo}``),
    status, whether it was git over HTTP rather than the API, and the path asked."""

    method: str
    route: str
    status: int
    git: bool = False
    path: str = ""

    @property
    def key(self) -> str:
        return f"{self.method} {self.route}"


GIT_ROUTE_PREFIX = "/{owner}/{repo_git}/"


def etag(body: Any) -> str:
    """A weak entity tag of a JSON body, as GitHub's ``W/"<hex>"``."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return f'W/"{hashlib.sha256(canonical).hexdigest()[:40]}"'


def if_none_match(header: str | None) -> set[str]:
    """The tags an ``If-None-Match`` header lists, compared weakly (RFC 9110 section
    13.1.2): ``"x"`` and ``W/"x"`` name the same representation."""
    tags: set[str] = set()
    for part in (header or "").split(","):
        value = part.strip()
        if value:
            bare = value.removeprefix("W/")
            tags.update({bare, f"W/{bare}"})
    return tags


@dataclass(frozen=True)
class Recorded:
    """One JSON response the fake sent, for the contract test."""

    method: str
    template: str
    status: int
    body: Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        errors: list[JSON] | list[str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


@dataclass(frozen=True)
class Principal:
    kind: Literal["app", "token", "anonymous"]
    token: Token | None = None

    @property
    def login(self) -> str:
        assert self.token is not None
        return self.token.login


@dataclass(frozen=True)
class Kit:
    """The route helpers of :func:`create_api` for routes added elsewhere (``ci.py``), kept
    on ``app.state.kit``: authentication and permissions, recording, pagination, bodies."""

    repo_for: Callable[..., tuple[Repo, Principal]]
    reply: Callable[..., Response]
    paginate: Callable[[Request, list[Any]], tuple[list[Any], dict[str, str]]]
    body_json: Callable[[Request], Awaitable[JSON]]
    text_field: Callable[..., str | None]


def _template(app: FastAPI, scope: dict[str, Any]) -> str | None:
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return getattr(route, "path", None)
    return None


def create_api(fake: FakeGitHub) -> FastAPI:
    world = fake.world
    shapes = fake.shapes
    app = FastAPI(title="fake GitHub", docs_url=None, redoc_url=None, openapi_url=None)

    # --- middleware: faults, then recording -------------------------------------------

    @app.middleware("http")
    async def faults_and_recording(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        route = _template(app, dict(request.scope)) or request.url.path
        git = route.startswith(GIT_ROUTE_PREFIX)
        if fake.latency_seconds > 0 and not git:
            # Injected network latency of GitHub's API (git over HTTP is not delayed).
            await asyncio.sleep(fake.latency_seconds)
        fault = fake.take_fault(request.method, request.url.path)
        if fault is not None and fault.kind != "timeout_after_write":
            response = await _fault_response(fault)
        else:
            response = await call_next(request)
            if fault is not None:
                await asyncio.sleep(fake.fault_delay)
        logged = LoggedRequest(request.method, route, response.status_code, git, request.url.path)
        fake.log_request(logged)
        return response

    async def _fault_response(fault: Fault) -> Response:
        now = int(world.clock.now())
        if fault.kind == "502":
            return JSONResponse({"message": "Server Error"}, status_code=502)
        if fault.kind == "timeout":
            await asyncio.sleep(fake.fault_delay)
            return JSONResponse({"message": "timeout"}, status_code=504)
        # https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
        if fault.kind == "primary_rate_limit":
            reset = fault.reset_at if fault.reset_at is not None else now + 60
            return JSONResponse(
                {
                    "message": "API rate limit exceeded for installation.",
                    "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
                },
                status_code=403,
                headers={
                    "x-ratelimit-limit": "5000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-used": "5000",
                    "x-ratelimit-reset": str(reset),
                    "x-ratelimit-resource": "core",
                },
            )
        message = (
            "You have exceeded a secondary rate limit. Please wait a few minutes before you "
            "try again. If you reach out to GitHub Support for help, please include the "
            "request ID."
        )
        headers: dict[str, str] = {}
        if fault.kind in ("secondary_rate_limit", "secondary_rate_limit_429"):
            headers["retry-after"] = str(fault.retry_after if fault.retry_after is not None else 60)
        status = 429 if fault.kind == "secondary_rate_limit_429" else 403
        return JSONResponse(
            {
                "message": message,
                "documentation_url": (
                    f"{DOCS}/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits"
                ),
            },
            status_code=status,
            headers=headers,
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        body: JSON = {
            "message": exc.message,
            "documentation_url": DOCS,
            "status": str(exc.status),
        }
        if exc.errors is not None:
            body["errors"] = exc.errors
        template = _template(app, dict(request.scope))
        if template is not None:
            fake.record(Recorded(request.method, template, exc.status, body))
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    def reply(
        request: Request, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        if request.method == "GET" and status == 200:
            # "Most endpoints return an etag header [...] You can use the values of these
            # headers to make conditional GET requests. If the response has not changed, you
            # will receive a 304 Not Modified response. Making a conditional request does not
            # count against your primary rate limit if a 304 response is returned"
            # (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#use-conditional-requests).
            # GitHub's tags are weak (W/"..."); a 304 carries the tag and no body.
            tag = etag(body)
            headers = {**(headers or {}), "ETag": tag}
            if tag in if_none_match(request.headers.get("if-none-match")):
                return Response(status_code=304, headers=headers)
        template = _template(app, dict(request.scope)) or request.url.path
        fake.record(Recorded(request.method, template, status, body))
        return JSONResponse(body, status_code=status, headers=headers)

    # --- authentication ---------------------------------------------------------------

    def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        if not header:
            return Principal("anonymous")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value).decode()
            except (ValueError, UnicodeDecodeError):
                raise ApiError(401, "Bad credentials") from None
            value = decoded.partition(":")[2]
        elif scheme.lower() not in ("token", "bearer"):
            raise ApiError(401, "Bad credentials")
        if value.count(".") == 2 and not value.startswith(("ghs_", "ghp_")):
            return _app_principal(value)
        token = world.token_valid(value)
        if token is None:
            raise ApiError(401, "Bad credentials")
        return Principal("token", token)

    def _app_principal(value: str) -> Principal:
        # https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app
        gh_app = world.app
        if gh_app is None:
            raise ApiError(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(
                value,
                gh_app.public_key_pem,
                algorithms=["RS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            raise ApiError(401, "A JSON web token could not be decoded") from None
        now = world.clock.now()
        iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
        if not isinstance(iat, int | float) or not isinstance(exp, int | float):
            raise ApiError(401, "'Issued at' and 'Expiration time' claims are required")
        if str(iss) != str(gh_app.id):
            raise ApiError(401, "'Issuer' claim ('iss') must be an Integer")
        if iat > now + 5:
            raise ApiError(
                401, "'Issued at' claim ('iat') must be an Integer representing a time in the past."
            )
        if exp <= now:
            raise ApiError(
                401,
                "'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires.",
            )
        if exp - iat > 600:
            raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future.")
        return Principal("app")

    def need_app(request: Request) -> None:
        if principal(request).kind != "app":
            raise ApiError(401, "A JSON web token could not be decoded")

    def moved_or_missing(request: Request, owner: str, repo: str) -> ApiError:
        """404, or a permanent redirect (301 with the new address in ``Location``) for the
        old name of a renamed or transferred repository: the ``moved_permanently`` response
        of ``GET /repos/{owner}/{repo}`` in @octokit/openapi, and
        https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#follow-redirects.
        GitHub's Location names ``/repositories/{id}``, which the fake does not serve; it
        names the new owner and name instead."""
        moved = world.moved_repo(owner, repo)
        if moved is None:
            return not_found()
        path = request.url.path.replace(f"/repos/{owner}/{repo}", f"/repos/{moved.full_name}", 1)
        location = str(request.url.replace(path=path))
        return ApiError(301, "Moved Permanently", headers={"Location": location})

    def repo_for(
        request: Request,
        owner: str,
        repo: str,
        write: str | None = None,
        *,
        read: str | None = None,
    ) -> tuple[Repo, Principal]:
        """The repository a request names and who asks; ``write`` and ``read`` name the
        App permission the route needs (GitHub answers 403 "Resource not accessible by
        integration" to a token without it)."""
        who = principal(request)
        if who.kind == "app":
            raise ApiError(403, "Resource not accessible by integration")
        found = world.repo(owner, repo)
        if found is None:
            raise moved_or_missing(request, owner, repo)
        if who.token is None:
            if found.private:
                raise not_found()
            if write is not None:
                raise ApiError(401, "Requires authentication")
            return found, who
        if not world.token_can(who.token, found, None):
            raise not_found()
        if read is not None and not world.token_reads(who.token, read):
            raise ApiError(403, "Resource not accessible by integration")
        if write is not None and not world.token_can(who.token, found, write):
            raise ApiError(
                403,
                "Resource not accessible by integration"
                if who.token.kind == "installation"
                else "Must have admin rights to Repository.",
            )
        return found, who

    async def body_json(request: Request) -> JSON:
        raw = await request.body()
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(413, "Payload too large")
        if not raw:
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "Problems parsing JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Problems parsing JSON")
        return data

    def text_field(
        data: JSON, name: str, required: bool = False, limit: int = MAX_BODY_CHARS
    ) -> str | None:
        value = data.get(name)
        if value is None:
            if required:
                raise ApiError(
                    422,
                    "Validation Failed",
                    [{"resource": "Issue", "field": name, "code": "missing_field"}],
                )
            return None
        if not isinstance(value, str):
            raise ApiError(422, f"Invalid request.\n\nFor '{name}', {value!r} is not a string.")
        if len(value) > limit:
            raise ApiError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "IssueComment",
                        "field": name,
                        "code": "custom",
                        "message": f"{name} is too long (maximum is {limit} characters)",
                    }
                ],
            )
        return value

    def paginate(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
        try:
            per_page = max(1, min(100, int(request.query_params.get("per_page", "30"))))
            page = max(1, int(request.query_params.get("page", "1")))
        except ValueError:
            raise ApiError(422, "Invalid pagination parameters") from None
        start = (page - 1) * per_page
        chunk = items[start : start + per_page]
        links = []
        last = max(1, -(-len(items) // per_page))
        params = dict(request.query_params)

        def link(p: int, rel: str) -> str:
            params.update({"page": str(p), "per_page": str(per_page)})
            return (
                f'<{fake.base_url}{request.url.path}?{urllib.parse.urlencode(params)}>; rel="{rel}"'
            )

        if page < last:
            links.append(link(page + 1, "next"))
            links.append(link(last, "last"))
        if page > 1:
            links.append(link(1, "first"))
            links.append(link(page - 1, "prev"))
        return chunk, ({"Link": ", ".join(links)} if links else {})

    def issue_of(repo: Repo, number: int) -> Issue:
        issue = repo.issues.get(number)
        if issue is None:
            raise not_found()
        return issue

    def pull_of(repo: Repo, number: int) -> Issue:
        issue = repo.issues.get(number)
        if issue is None or issue.pull is None:
            raise not_found()
        return issue

    # --- App routes (JWT) -------------------------------------------------------------

    @app.get("/app")
    def get_app(request: Request) -> Response:
        need_app(request)
        assert world.app is not None
        with world.lock:
            return reply(request, shapes.app(world.app))

    # The App webhook's delivery log: https://docs.github.com/en/rest/apps/webhooks (JWT
    # only). GitHub keeps deliveries for 3 days and redelivers only those (docs:
    # webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks); the list is
    # newest first and paginated by an opaque cursor given in the Link header.
    def hook_delivery(d: Delivery) -> JSON:
        inst = d.payload.get("installation")
        repo = d.payload.get("repository")
        if d.ok:
            status = "OK"
        elif d.error is not None:
            status = "failed to connect"
        else:
            status = f"Invalid HTTP Response: {d.status}"
        return {
            "id": d.attempt_id,
            "guid": d.id,
            "delivered_at": iso(d.delivered_at),
            "redelivery": d.redelivery,
            "duration": 0.01,
            "status": status,
            "status_code": d.status or 0,
            "event": d.event,
            "action": d.payload.get("action"),
            "installation_id": inst.get("id") if isinstance(inst, dict) else None,
            "repository_id": repo.get("id") if isinstance(repo, dict) else None,
            "throttled_at": None,
        }

    def delivery_log() -> list[Delivery]:
        """Attempts of the last 3 days, newest first (only those made to a webhook URL)."""
        since = world.clock.now() - HOOK_DELIVERY_DAYS * 86400
        kept = [d for d in fake.deliveries if d.attempt_id and d.delivered_at >= since]
        return sorted(
            (d for d in kept if d.status is not None or d.error is not None),
            key=lambda d: d.attempt_id,
            reverse=True,
        )

    @app.get("/app/hook/deliveries")
    def list_hook_deliveries(request: Request) -> Response:
        need_app(request)
        try:
            per_page = max(1, min(100, int(request.query_params.get("per_page", "30"))))
        except ValueError:
            raise ApiError(422, "Invalid pagination parameters") from None
        cursor = request.query_params.get("cursor")
        with world.lock:
            log = delivery_log()
            if cursor is not None:
                try:
                    start = int(cursor.removeprefix("v1_"))
                except ValueError:
                    raise ApiError(400, "Invalid cursor") from None
                log = [d for d in log if d.attempt_id <= start]
            page, rest = log[:per_page], log[per_page:]
            headers = {}
            if rest:
                query = urllib.parse.urlencode(
                    {"per_page": per_page, "cursor": f"v1_{rest[0].attempt_id}"}
                )
                headers["Link"] = f'<{fake.base_url}{request.url.path}?{query}>; rel="next"'
            return reply(request, [hook_delivery(d) for d in page], headers=headers)

    @app.post("/app/hook/deliveries/{delivery_id}/attempts")
    async def redeliver_hook_delivery(request: Request, delivery_id: int) -> Response:
        need_app(request)
        with world.lock:
            known = any(d.attempt_id == delivery_id for d in delivery_log())
        if not known:
            raise not_found()
        await asyncio.to_thread(fake.redeliver, delivery_id)
        return reply(request, {}, status=202)

    @app.get("/repos/{owner}/{repo}/installation")
    def repo_installation(request: Request, owner: str, repo: str) -> Response:
        need_app(request)
        with world.lock:
            found = world.repo(owner, repo)
            if found is None:
                raise moved_or_missing(request, owner, repo)
            inst = fake.installation_for(found)
            if inst is None:
                raise not_found()
            return reply(request, shapes.installation(inst))

    @app.get("/app/installations/{installation_id}")
    def get_installation(request: Request, installation_id: int) -> Response:
        need_app(request)
        with world.lock:
            inst = world.installations.get(installation_id)
            if inst is None:
                raise not_found()
            return reply(request, shapes.installation(inst))

    @app.post("/app/installations/{installation_id}/access_tokens")
    async def create_access_token(request: Request, installation_id: int) -> Response:
        need_app(request)
        data = await body_json(request)
        with world.lock:
            inst = world.installations.get(installation_id)
            if inst is None:
                raise not_found()
            names = data.get("repositories")
            covered = fake.repos_of(inst)
            if names is not None:
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise ApiError(
                        422, "Invalid request.\n\nFor 'repositories', must be an array of strings."
                    )
                wanted = {f"{inst.account}/{n}".lower() for n in names}
                unknown = wanted - {r.full_name.lower() for r in covered}
                if unknown:
                    raise ApiError(
                        422,
                        "There is at least one repository that does not exist or is not "
                        "accessible to the parent installation.",
                    )
                scope: frozenset[str] | None = frozenset(wanted)
            else:
                scope = None if inst.repositories is None else frozenset(inst.repositories)
            perms = dict(inst.permissions)
            asked = data.get("permissions")
            if isinstance(asked, dict):
                for key, level in asked.items():
                    if inst.permissions.get(key) not in ("write", level):
                        raise ApiError(
                            422,
                            "The permissions requested are not granted to this "
                            f"installation: {key}",
                        )
                perms = {str(k): str(v) for k, v in asked.items()}
            token = world.new_token(
                world.app.bot_login if world.app else "app[bot]",
                "installation",
                "ghs_",
                fake.token_lifetime,
                repositories=scope,
                permissions=perms,
                installation_id=inst.id,
            )
            repos = [r for r in covered if scope is None or r.full_name.lower() in scope]
            assert token.expires_at is not None
            return reply(
                request,
                {
                    "token": token.value,
                    "expires_at": iso(token.expires_at),
                    "permissions": perms,
                    "repository_selection": "all" if scope is None else "selected",
                    "repositories": [shapes.repository(r, full=False) for r in repos],
                },
                status=201,
            )

    # --- repositories and collaborators -----------------------------------------------

    @app.get("/user")
    def get_authenticated_user(request: Request) -> Response:
        who = principal(request)
        if who.token is None:
            raise ApiError(401, "Requires authentication")
        if who.token.kind == "installation":
            raise ApiError(403, "Resource not accessible by integration")
        with world.lock:
            return reply(request, shapes.private_user(who.login))

    @app.get("/repos/{owner}/{repo}")
    def get_repo(request: Request, owner: str, repo: str) -> Response:
        with world.lock:
            found, who = repo_for(request, owner, repo)
            body = shapes.repository(found)
            if who.token is not None and who.token.kind == "user":
                # A user's request gets their permissions on it (@octokit/openapi,
                # full-repository.permissions: admin, maintain, push, triage, pull).
                role = world.role_of(found, who.login)
                body["permissions"] = {
                    "admin": role == "admin",
                    "maintain": role in ("admin", "maintain"),
                    "push": role in ("admin", "maintain", "write"),
                    "triage": role in ("admin", "maintain", "write", "triage"),
                    "pull": role is not None or not found.private,
                }
            return reply(request, body)

    @app.get("/repos/{owner}/{repo}/collaborators/{username}/permission")
    def collaborator_permission(request: Request, owner: str, repo: str, username: str) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            if username not in world.users:
                raise not_found()
            role = world.role_of(found, username)
            if role is None:
                legacy, role_name = ("none", "none") if found.private else ("read", "read")
            else:
                legacy, role_name = LEGACY_PERMISSION[role], role
            user = shapes.user(username)
            user["permissions"] = {
                "admin": role == "admin",
                "maintain": role in ("admin", "maintain"),
                "push": role in ("admin", "maintain", "write"),
                "triage": role in ("admin", "maintain", "write", "triage"),
                "pull": role is not None or not found.private,
            }
            user["role_name"] = role_name
            return reply(request, {"permission": legacy, "role_name": role_name, "user": user})

    # --- contents ---------------------------------------------------------------------

    @app.get("/repos/{owner}/{repo}/contents/{path:path}")
    def get_content(request: Request, owner: str, repo: str, path: str) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo, read="contents")
            ref = request.query_params.get("ref") or found.default_branch
        commit = gitrepo.resolve(found.path, ref)
        if commit is None:
            raise ApiError(404, f"No commit found for the ref {ref}")
        path = path.strip("/")
        entry = gitrepo.read_path(found.path, commit, path)
        if entry is None:
            raise not_found()
        with world.lock:
            if entry.type == "blob":
                assert entry.content is not None
                if len(entry.content) > 1024 * 1024:
                    raise ApiError(403, "This API returns blobs up to 1 MB in size.")
                return reply(
                    request, shapes.content_file(found, path, ref, entry.sha, entry.content)
                )
            items = [
                shapes.dir_entry(
                    found,
                    f"{path}/{name}" if path else name,
                    ref,
                    "file" if kind == "blob" else "dir",
                    sha,
                    size,
                )
                for name, kind, sha, size in gitrepo.list_tree(found.path, commit, path)
            ]
            return reply(request, items)

    # --- issues, comments, reactions, labels ------------------------------------------

    @app.get("/repos/{owner}/{repo}/issues/{issue_number}")
    def get_issue(request: Request, owner: str, repo: str, issue_number: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            return reply(request, shapes.issue(found, issue_of(found, issue_number)))

    @app.get("/repos/{owner}/{repo}/issues/{issue_number}/comments")
    def list_comments(request: Request, owner: str, repo: str, issue_number: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            issue = issue_of(found, issue_number)
            items = [shapes.issue_comment(found, world.issue_comments[c]) for c in issue.comments]
            chunk, headers = paginate(request, items)
            return reply(request, chunk, headers=headers)

    @app.post("/repos/{owner}/{repo}/issues/{issue_number}/comments")
    async def create_comment(
        request: Request, owner: str, repo: str, issue_number: int
    ) -> Response:
        data = await body_json(request)
        body = text_field(data, "body", required=True)
        assert body is not None
        with world.lock:
            found, who = repo_for(request, owner, repo, write="issues")
            issue = issue_of(found, issue_number)
            comment = fake.add_issue_comment(found, issue, who.login, body)
            response = reply(request, shapes.issue_comment(found, comment), status=201)
            events = [fake.comment_event(found, issue, comment, who.login)]
        fake.echo(events)
        return response

    def comment_of(found: Repo, comment_id: int) -> IssueComment:
        comment = world.issue_comment(comment_id)
        if comment is None or comment.repo != found.full_name:
            raise not_found()
        return comment

    @app.get("/repos/{owner}/{repo}/issues/comments/{comment_id}")
    def get_comment(request: Request, owner: str, repo: str, comment_id: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            return reply(request, shapes.issue_comment(found, comment_of(found, comment_id)))

    @app.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}")
    async def update_comment(request: Request, owner: str, repo: str, comment_id: int) -> Response:
        data = await body_json(request)
        body = text_field(data, "body", required=True)
        assert body is not None
        with world.lock:
            found, who = repo_for(request, owner, repo, write="issues")
            comment = comment_of(found, comment_id)
            if comment.user != who.login and world.role_of(found, who.login) not in (
                "admin",
                "maintain",
                "write",
            ):
                raise ApiError(403, "Resource not accessible by integration")
            before, comment.body = comment.body, body
            comment.updated_at = world.clock.now()
            response = reply(request, shapes.issue_comment(found, comment))
            # GitHub sends issue_comment.edited for edits made through the API too, the
            # App's own included (the bot's status comment is edited in place).
            issue = issue_of(found, comment.issue_number)
            events = [fake.comment_event(found, issue, comment, who.login, edited_from=before)]
        fake.echo(events)
        return response

    def add_reaction(request: Request, target: list[Reaction], login: str, data: JSON) -> Response:
        content = data.get("content")
        if content not in REACTIONS:
            raise ApiError(
                422,
                "Validation Failed",
                [{"resource": "Reaction", "field": "content", "code": "invalid"}],
            )
        for existing in target:
            if existing.user == login and existing.content == content:
                return reply(request, shapes.reaction(existing), status=200)
        reaction = Reaction(world.next_id(), login, str(content), world.clock.now())
        target.append(reaction)
        return reply(request, shapes.reaction(reaction), status=201)

    @app.post("/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
    async def react_comment(request: Request, owner: str, repo: str, comment_id: int) -> Response:
        data = await body_json(request)
        with world.lock:
            found, who = repo_for(request, owner, repo, write="issues")
            return add_reaction(request, comment_of(found, comment_id).reactions, who.login, data)

    @app.post("/repos/{owner}/{repo}/issues/{issue_number}/reactions")
    async def react_issue(request: Request, owner: str, repo: str, issue_number: int) -> Response:
        data = await body_json(request)
        with world.lock:
            found, who = repo_for(request, owner, repo, write="issues")
            return add_reaction(request, issue_of(found, issue_number).reactions, who.login, data)

    @app.post("/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions")
    async def react_review_comment(
        request: Request, owner: str, repo: str, comment_id: int
    ) -> Response:
        data = await body_json(request)
        with world.lock:
            found, who = repo_for(request, owner, repo, write="pull_requests")
            comment = world.review_comments.get(comment_id)
            if comment is None or comment.repo != found.full_name:
                raise not_found()
            return add_reaction(request, comment.reactions, who.login, data)

    @app.post("/repos/{owner}/{repo}/issues/{issue_number}/labels")
    async def add_labels(request: Request, owner: str, repo: str, issue_number: int) -> Response:
        raw = await request.body()
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(413, "Payload too large")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None
        names = data.get("labels") if isinstance(data, dict) else data
        if not isinstance(names, list) or not all(
            isinstance(n, str) and 0 < len(n) <= 50 for n in names
        ):
            raise ApiError(
                422, "Invalid request.\n\nFor 'labels', must be an array of label names."
            )
        with world.lock:
            found, who = repo_for(request, owner, repo, write="issues")
            issue = issue_of(found, issue_number)
            events = []
            for name in names:
                fake.ensure_label(found, name)
                if name not in issue.labels:
                    issue.labels.append(name)
                    events.append(fake.label_event(found, issue, name, who.login))
            issue.updated_at = world.clock.now()
            response = reply(request, [shapes.label(found, found.labels[n]) for n in issue.labels])
        fake.echo(events)
        return response

    @app.delete("/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}")
    def remove_label(
        request: Request, owner: str, repo: str, issue_number: int, name: str
    ) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo, write="issues")
            issue = issue_of(found, issue_number)
            if name not in issue.labels:
                raise ApiError(404, "Label does not exist")
            issue.labels.remove(name)
            issue.updated_at = world.clock.now()
            return reply(request, [shapes.label(found, found.labels[n]) for n in issue.labels])

    # --- pull requests ----------------------------------------------------------------

    @app.get("/repos/{owner}/{repo}/pulls")
    def list_pulls(request: Request, owner: str, repo: str) -> Response:
        state = request.query_params.get("state", "open")
        head = request.query_params.get("head")
        base = request.query_params.get("base")
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            items = []
            for issue in sorted(found.issues.values(), key=lambda i: -i.number):
                pr = issue.pull
                if pr is None or (state != "all" and issue.state != state):
                    continue
                if head is not None:
                    # "Filter pulls by head user or head organization and branch name in the
                    # format of `user:ref-name`" (@octokit/openapi, "List pull requests"): a
                    # fork's PR has the fork's owner as its head user.
                    head_owner, _, head_ref = head.partition(":")
                    owner_of_head = (pr.head_repo or found.full_name).partition("/")[0]
                    if (
                        not head_ref
                        or head_owner.lower() != owner_of_head.lower()
                        or head_ref != pr.head_ref
                    ):
                        continue
                if base is not None and base != pr.base_ref:
                    continue
                items.append(shapes.pull(found, issue, full=False))
            chunk, headers = paginate(request, items)
            return reply(request, chunk, headers=headers)

    @app.post("/repos/{owner}/{repo}/pulls")
    async def create_pull(request: Request, owner: str, repo: str) -> Response:
        data = await body_json(request)
        title = text_field(data, "title", required=True, limit=256)
        body = text_field(data, "body")
        head = text_field(data, "head", required=True, limit=255)
        base = text_field(data, "base", required=True, limit=255)
        assert title is not None
        assert head is not None
        assert base is not None
        draft = bool(data.get("draft", False))
        with world.lock:
            found, who = repo_for(request, owner, repo, write="pull_requests")
            if draft and not found.drafts_allowed:
                # Private repositories of Free and Pro plans have no drafts; GitHub answers
                # 422 with this message (seen in SWE-agent/SWE-agent#179):
                # https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/proposing-changes-to-your-work-with-pull-requests/about-pull-requests#draft-pull-requests
                raise ApiError(422, "Draft pull requests are not supported in this repository.")
            head_ref = head.partition(":")[2] if ":" in head else head
            head_sha = gitrepo.branch_sha(found.path, head_ref)
            base_sha = gitrepo.branch_sha(found.path, base)
            if head_sha is None or base_sha is None:
                field_name = "head" if head_sha is None else "base"
                raise ApiError(
                    422,
                    "Validation Failed",
                    [{"resource": "PullRequest", "field": field_name, "code": "invalid"}],
                )
            for issue in found.issues.values():
                if (
                    issue.pull
                    and issue.state == "open"
                    and issue.pull.head_ref == head_ref
                    and issue.pull.base_ref == base
                ):
                    raise ApiError(
                        422,
                        "Validation Failed",
                        [
                            {
                                "resource": "PullRequest",
                                "code": "custom",
                                "message": (
                                    f"A pull request already exists for {found.owner}:{head_ref}."
                                ),
                            }
                        ],
                    )
            if head_sha == base_sha:
                raise ApiError(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"No commits between {base} and {head_ref}",
                        }
                    ],
                )
            issue = fake.new_issue(found, who.login, title, body)
            issue.pull = PullRequest(
                head_ref=head_ref, base_ref=base, head_sha=head_sha, base_sha=base_sha, draft=draft
            )
            response = reply(request, shapes.pull(found, issue), status=201)
            events = [fake.issue_event(found, issue, "opened", who.login)]
        fake.echo(events)
        fake.ci.on_pull_head(found, issue, who.login, None)
        return response

    @app.get("/repos/{owner}/{repo}/pulls/{pull_number}")
    def get_pull(request: Request, owner: str, repo: str, pull_number: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            return reply(request, shapes.pull(found, pull_of(found, pull_number)))

    @app.patch("/repos/{owner}/{repo}/pulls/{pull_number}")
    async def update_pull(request: Request, owner: str, repo: str, pull_number: int) -> Response:
        data = await body_json(request)
        title = text_field(data, "title", limit=256)
        body = text_field(data, "body")
        state = data.get("state")
        if state not in (None, "open", "closed"):
            raise ApiError(
                422,
                "Validation Failed",
                [{"resource": "PullRequest", "field": "state", "code": "invalid"}],
            )
        with world.lock:
            found, who = repo_for(request, owner, repo, write="pull_requests")
            issue = pull_of(found, pull_number)
            if title is not None:
                issue.title = title
            if "body" in data:
                issue.body = body
            events = []
            if (
                state is not None
                and state != issue.state
                and not (issue.pull and issue.pull.merged)
            ):
                issue.state = state
                issue.closed_at = world.clock.now() if state == "closed" else None
                action = "closed" if state == "closed" else "reopened"
                events.append(fake.issue_event(found, issue, action, who.login))
            elif title is not None or "body" in data:
                events.append(
                    fake.issue_event(found, issue, "edited", who.login, extra={"changes": {}})
                )
            issue.updated_at = world.clock.now()
            response = reply(request, shapes.pull(found, issue))
        fake.echo(events)
        return response

    @app.post("/repos/{owner}/{repo}/issues")
    async def create_issue(request: Request, owner: str, repo: str) -> Response:
        data = await body_json(request)
        title = text_field(data, "title", required=True, limit=256)
        body = text_field(data, "body")
        assert title is not None
        labels = data.get("labels", [])
        if not isinstance(labels, list) or not all(
            isinstance(n, str) and 0 < len(n) <= 50 for n in labels
        ):
            raise ApiError(422, "Invalid request.\n\nFor 'labels', must be an array of names.")
        with world.lock:
            found, who = repo_for(request, owner, repo, write="issues")
            issue = fake.new_issue(found, who.login, title, body)
            for name in labels:
                fake.ensure_label(found, name)
                if name not in issue.labels:
                    issue.labels.append(name)
            response = reply(request, shapes.issue(found, issue), status=201)
            events = [fake.issue_event(found, issue, "opened", who.login)]
            events += [fake.label_event(found, issue, name, who.login) for name in issue.labels]
        fake.echo(events)
        return response

    @app.post("/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers")
    async def request_reviewers(
        request: Request, owner: str, repo: str, pull_number: int
    ) -> Response:
        data = await body_json(request)
        names = data.get("reviewers", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ApiError(422, "Invalid request.\n\nFor 'reviewers', must be an array of logins.")
        with world.lock:
            found, _ = repo_for(request, owner, repo, write="pull_requests")
            issue = pull_of(found, pull_number)
            assert issue.pull is not None
            for name in names:
                if name.lower() == issue.user.lower():
                    raise ApiError(422, "Review cannot be requested from pull request author.")
                if world.role_of(found, name) is None:
                    raise ApiError(
                        422,
                        "Reviews may only be requested from collaborators. One or more of "
                        "the users or teams you specified is not a collaborator of the "
                        "repository.",
                    )
            for name in names:
                if name not in issue.pull.requested_reviewers:
                    issue.pull.requested_reviewers.append(name)
            return reply(request, shapes.pull(found, issue, full=False), status=201)

    @app.get("/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
    def list_reviews(request: Request, owner: str, repo: str, pull_number: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            issue = pull_of(found, pull_number)
            assert issue.pull is not None
            items = [shapes.review(found, world.reviews[r]) for r in issue.pull.reviews]
            chunk, headers = paginate(request, items)
            return reply(request, chunk, headers=headers)

    @app.post("/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
    async def create_review(request: Request, owner: str, repo: str, pull_number: int) -> Response:
        """ "Create a review for a pull request" (@octokit/openapi ``pulls/create-review``):
        ``event`` APPROVE, REQUEST_CHANGES or COMMENT (blank: PENDING), ``body`` "Required
        when using REQUEST_CHANGES or COMMENT", ``comments`` each with ``path`` and
        ``body`` and a place (``line`` with ``side``, ``start_line``/``start_side`` for a
        range). A comment whose line is not part of the diff fails the whole review with
        422, and nothing is recorded (:meth:`FakeGitHub.create_review`)."""
        data = await body_json(request)
        event = data.get("event")
        if event is not None and event not in ("APPROVE", "REQUEST_CHANGES", "COMMENT"):
            raise ApiError(
                422,
                "Invalid request.\n\nFor 'event', "
                + json.dumps(event)
                + ' is not a member of ["APPROVE", "REQUEST_CHANGES", "COMMENT"].',
            )
        body = data.get("body")
        if body is not None and not isinstance(body, str):
            raise ApiError(422, "Invalid request.\n\nFor 'body', must be a string.")
        if isinstance(body, str) and len(body) > MAX_BODY_CHARS:
            raise ApiError(
                422, "Unprocessable Entity", ["Body is too long (maximum is 65536 characters)"]
            )
        comments = data.get("comments", [])
        if not isinstance(comments, list) or not all(isinstance(c, dict) for c in comments):
            raise ApiError(422, "Invalid request.\n\nFor 'comments', must be an array of objects.")
        commit_id = data.get("commit_id")
        if commit_id is not None and not isinstance(commit_id, str):
            raise ApiError(422, "Invalid request.\n\nFor 'commit_id', must be a string.")
        with world.lock:
            found, who = repo_for(request, owner, repo, write="pull_requests")
            issue = pull_of(found, pull_number)
            review = fake.create_review(found, issue, who.login, event, body, commit_id, comments)
            response = reply(request, shapes.review(found, review))
            events = fake.review_events(found, review) if review.state != "PENDING" else []
        fake.echo(events)
        return response

    @app.get("/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments")
    def review_comments_of(
        request: Request, owner: str, repo: str, pull_number: int, review_id: int
    ) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            pull_of(found, pull_number)
            review = world.reviews.get(review_id)
            if (
                review is None
                or review.repo != found.full_name
                or review.pull_number != pull_number
            ):
                raise not_found()
            items = []
            for c in world.review_comments.values():
                if c.repo == found.full_name and c.review_id == review_id:
                    item = shapes.review_comment(found, c)
                    # This listing answers with the diff ``position`` but without the file
                    # lines (GitHub's example, the ``review-comment`` schema of
                    # https://docs.github.com/en/rest/pulls/reviews#list-comments-for-a-pull-request-review);
                    # ``in_reply_to_id`` stays.
                    for key in (
                        "line",
                        "original_line",
                        "side",
                        "start_line",
                        "original_start_line",
                        "start_side",
                        "subject_type",
                    ):
                        item.pop(key, None)
                    items.append(item)
            chunk, headers = paginate(request, items)
            return reply(request, chunk, headers=headers)

    @app.get("/repos/{owner}/{repo}/pulls/{pull_number}/comments")
    def list_review_comments(request: Request, owner: str, repo: str, pull_number: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            pull_of(found, pull_number)
            items = [
                shapes.review_comment(found, c)
                for c in world.review_comments.values()
                if c.repo == found.full_name and c.pull_number == pull_number
            ]
            chunk, headers = paginate(request, items)
            return reply(request, chunk, headers=headers)

    @app.get("/repos/{owner}/{repo}/pulls/comments/{comment_id}")
    def get_review_comment(request: Request, owner: str, repo: str, comment_id: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            comment = world.review_comments.get(comment_id)
            if comment is None or comment.repo != found.full_name:
                raise not_found()
            return reply(request, shapes.review_comment(found, comment))

    @app.post("/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies")
    async def reply_review_comment(
        request: Request, owner: str, repo: str, pull_number: int, comment_id: int
    ) -> Response:
        data = await body_json(request)
        body = text_field(data, "body", required=True)
        assert body is not None
        with world.lock:
            found, who = repo_for(request, owner, repo, write="pull_requests")
            pull_of(found, pull_number)
            parent = world.review_comments.get(comment_id)
            if (
                parent is None
                or parent.repo != found.full_name
                or parent.pull_number != pull_number
            ):
                raise not_found()
            comment = fake.add_review_reply(found, parent, who.login, body)
            response = reply(request, shapes.review_comment(found, comment), status=201)
            events = fake.reply_events(found, comment, who.login)
        fake.echo(events)
        return response

    # --- check runs -------------------------------------------------------------------

    def check_fields(run: CheckRun, data: JSON) -> None:
        status = data.get("status")
        conclusion = data.get("conclusion")
        if status is not None:
            if status not in ("queued", "in_progress", "completed"):
                raise ApiError(
                    422,
                    "Validation Failed",
                    [{"resource": "CheckRun", "field": "status", "code": "invalid"}],
                )
            run.status = status
        if conclusion is not None:
            if conclusion not in (
                "success",
                "failure",
                "neutral",
                "cancelled",
                "skipped",
                "timed_out",
                "action_required",
            ):
                raise ApiError(
                    422,
                    "Validation Failed",
                    [{"resource": "CheckRun", "field": "conclusion", "code": "invalid"}],
                )
            run.conclusion = conclusion
            run.status = "completed"
        if run.status == "completed":
            if run.conclusion is None:
                raise ApiError(
                    422,
                    "Validation Failed",
                    [{"resource": "CheckRun", "field": "conclusion", "code": "missing_field"}],
                )
            run.completed_at = run.completed_at or world.clock.now()
        output = data.get("output")
        if output is not None:
            if (
                not isinstance(output, dict)
                or not isinstance(output.get("title"), str)
                or not isinstance(output.get("summary"), str)
            ):
                raise ApiError(
                    422,
                    "Validation Failed",
                    [{"resource": "CheckRun", "field": "output", "code": "invalid"}],
                )
            if (
                len(output["summary"]) > MAX_BODY_CHARS
                or len(str(output.get("text") or "")) > MAX_BODY_CHARS
            ):
                raise ApiError(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "CheckRun",
                            "field": "output",
                            "code": "custom",
                            "message": "Output summary is too long",
                        }
                    ],
                )
            run.output = {
                "title": output["title"],
                "summary": output["summary"],
                "text": output.get("text"),
            }
        for key in ("external_id", "details_url", "name"):
            if isinstance(data.get(key), str):
                setattr(run, key, data[key])

    @app.post("/repos/{owner}/{repo}/check-runs")
    async def create_check_run(request: Request, owner: str, repo: str) -> Response:
        data = await body_json(request)
        name = text_field(data, "name", required=True, limit=255)
        head_sha = text_field(data, "head_sha", required=True, limit=64)
        assert name is not None
        assert head_sha is not None
        with world.lock:
            found, who = repo_for(request, owner, repo, write="checks")
            if gitrepo.resolve(found.path, head_sha) is None:
                raise ApiError(422, "No commit found for SHA: " + head_sha)
            run = CheckRun(
                id=world.next_id(),
                name=name,
                head_sha=head_sha,
                status="queued",
                conclusion=None,
                started_at=world.clock.now(),
                completed_at=None,
                external_id=None,
                details_url=None,
                output={},
                app_id=world.app.id
                if world.app and who.token and who.token.kind == "installation"
                else None,
            )
            check_fields(run, data)
            found.check_runs[run.id] = run
            fake.ci.suite_for_app_run(found, run, world.app if run.app_id is not None else None)
            return reply(request, shapes.check_run(found, run), status=201)

    @app.get("/repos/{owner}/{repo}/check-runs/{check_run_id}")
    def get_check_run(request: Request, owner: str, repo: str, check_run_id: int) -> Response:
        with world.lock:
            found, _ = repo_for(request, owner, repo)
            run = found.check_runs.get(check_run_id)
            if run is None:
                raise not_found()
            return reply(request, shapes.check_run(found, run))

    @app.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}")
    async def update_check_run(
        request: Request, owner: str, repo: str, check_run_id: int
    ) -> Response:
        data = await body_json(request)
        with world.lock:
            found, _ = repo_for(request, owner, repo, write="checks")
            run = found.check_runs.get(check_run_id)
            if run is None:
                raise not_found()
            check_fields(run, data)
            fake.ci.refresh_run_suite(run)
            return reply(request, shapes.check_run(found, run))

    # --- GraphQL subset ---------------------------------------------------------------

    @app.post("/graphql")
    async def graphql(request: Request) -> Response:
        data = await body_json(request)
        who = principal(request)
        if who.token is None:
            raise ApiError(401, "This endpoint requires you to be authenticated.")
        query = data.get("query")
        variables = data.get("variables") or {}
        if not isinstance(query, str) or not isinstance(variables, dict):
            return reply(
                request,
                {
                    "errors": [
                        {"message": "A query attribute must be specified and must be a string."}
                    ]
                },
            )
        with world.lock:
            response = reply(request, fake.graphql(who.token, query, variables))
        fake.echo(fake.ci.take_events())  # a mutation's webhooks (markPullRequestReadyForReview)
        return response

    # --- git smart HTTP ---------------------------------------------------------------

    async def git_route(request: Request, owner: str, repo_git: str, service_path: str) -> Response:
        if not repo_git.endswith(".git"):
            raise not_found()
        name = repo_git[: -len(".git")]
        with world.lock:
            # Git keeps working under a renamed repository's old name: "all git clone, git
            # fetch, or git push operations targeting the previous location will continue to
            # function as if made on the new location."
            # https://docs.github.com/en/repositories/creating-and-managing-repositories/renaming-a-repository
            found = world.repo(owner, name) or world.moved_repo(owner, name)
            who = _git_principal(request)
            if who is None and request.headers.get("authorization"):
                return _git_auth_challenge()  # bad credentials fail even on public repos
            if found is None or (
                found.private and (who is None or not world.token_can(who, found, None))
            ):
                return _git_auth_challenge()
            if who is not None and not world.token_can(who, found, None):
                return _git_auth_challenge()
        push = (
            service_path == "git-receive-pack"
            or request.query_params.get("service") == "git-receive-pack"
        )
        if push:
            if who is None:
                return _git_auth_challenge()
            if not world.token_can(who, found, "contents"):
                return Response(
                    f"Permission to {found.full_name}.git denied to {who.login}.\n", status_code=403
                )
        rules: dict[str, str] = {}
        if push and who is not None:
            with world.lock:
                protected = sorted(f"refs/heads/{b}" for b in found.protected_branches)
                # An App's token changes workflow files only with the Workflows permission;
                # personal tokens are not modelled by scope.
                workflows = who.kind != "installation" or world.token_can(who, found, "workflows")
            rules = {
                gitrepo.PROTECTED_ENV: " ".join(protected),
                gitrepo.WORKFLOWS_ENV: "1" if workflows else "0",
            }
        body = await request.body()
        result = await asyncio.to_thread(
            gitrepo.http_backend,
            fake.git_root,
            f"/{found.full_name.lower()}.git/{service_path}",
            request.method,
            request.url.query,
            request.headers.get("content-type"),
            request.headers.get("content-encoding"),
            body,
            who.login if who is not None else "anonymous",
            request.headers.get("git-protocol"),
            rules,
        )
        if push and request.method == "POST":
            fake.after_push(found, who.login if who else "anonymous")
        return Response(result.body, status_code=result.status, headers=dict(result.headers))

    def _git_principal(request: Request) -> Token | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return world.token_valid(decoded.partition(":")[2])

    def _git_auth_challenge() -> Response:
        return Response(
            "Authentication required\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="GitHub"'},
        )

    @app.get("/{owner}/{repo_git}/info/refs")
    async def git_info_refs(request: Request, owner: str, repo_git: str) -> Response:
        return await git_route(request, owner, repo_git, "info/refs")

    @app.post("/{owner}/{repo_git}/git-upload-pack")
    async def git_upload_pack(request: Request, owner: str, repo_git: str) -> Response:
        return await git_route(request, owner, repo_git, "git-upload-pack")

    @app.post("/{owner}/{repo_git}/git-receive-pack")
    async def git_receive_pack(request: Request, owner: str, repo_git: str) -> Response:
        return await git_route(request, owner, repo_git, "git-receive-pack")

    @app.exception_handler(404)
    async def unknown_route(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"message": "Not Found", "documentation_url": DOCS, "status": "404"}, status_code=404
        )

    app.state.kit = Kit(repo_for, reply, paginate, body_json, text_field)
    return app
