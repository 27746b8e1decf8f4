"""GitHub's App manifest flow in the fake: the web page that registers an App from a
manifest, and the API call that turns the one-time code into the App's credentials.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest

1. A form POSTs ``manifest`` (JSON) to ``/settings/apps/new`` or
   ``/organizations/{org}/settings/apps/new``, with an optional ``state`` in the query.
   GitHub shows the signed-in person a page to confirm; the fake confirms at once, as
   :attr:`ManifestFlow.login` (the "signed-in" user), and redirects to the manifest's
   ``redirect_url`` with ``code`` and the unchanged ``state``.
2. ``POST /app-manifests/{code}/conversions`` (no authentication) answers 201 with the App:
   ``id``, ``slug``, ``pem``, ``webhook_secret``, ``client_id``, ``client_secret`` ... The
   code works once and for one hour ("you must complete this step of the GitHub App
   Manifest flow within one hour"); an unknown, used or expired code is a 404, as the
   OpenAPI description of ``apps/create-from-manifest`` lists (404 and 422).

The registered App becomes the fake's App (:attr:`World.app`, one per fake): its JWTs
authenticate, ``GET /app`` shows the manifest's permissions and events, and when the
manifest's hook is active the fake's webhooks go to its URL, signed with its secret.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from bot.testing.fake_github.api import ApiError, Recorded, not_found

if TYPE_CHECKING:
    from bot.testing.fake_github.server import FakeGitHub

CODE_LIFETIME = 3600.0

# Repository permissions a manifest may ask for and their levels
# (https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps).
PERMISSIONS: dict[str, frozenset[str]] = {
    name: frozenset({"read", "write"})
    for name in (
        "actions",
        "administration",
        "checks",
        "contents",
        "deployments",
        "environments",
        "issues",
        "packages",
        "pages",
        "pull_requests",
        "repository_hooks",
        "repository_projects",
        "secret_scanning_alerts",
        "secrets",
        "security_events",
        "statuses",
        "vulnerability_alerts",
        "workflows",
    )
} | {"metadata": frozenset({"read"})}

# The permission each event needs before an App may subscribe to it (the "Availability"
# of each event in https://docs.github.com/en/webhooks/webhook-events-and-payloads);
# issue_comment comes with Issues or with Pull requests.
EVENT_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "check_run": ("checks",),
    "check_suite": ("checks",),
    "create": ("contents",),
    "delete": ("contents",),
    "issue_comment": ("issues", "pull_requests"),
    "issues": ("issues",),
    "label": ("metadata",),
    "pull_request": ("pull_requests",),
    "pull_request_review": ("pull_requests",),
    "pull_request_review_comment": ("pull_requests",),
    "pull_request_review_thread": ("pull_requests",),
    "push": ("contents",),
    "release": ("contents",),
    "repository": ("metadata",),
    "status": ("statuses",),
    "workflow_dispatch": ("actions",),
    "workflow_job": ("actions",),
    "workflow_run": ("actions",),
}


@dataclass
class Pending:
    """A code handed out by the web step and not yet converted."""

    owner: str
    manifest: dict[str, Any]
    issued_at: float


@dataclass
class ManifestFlow:
    """The manifest flow's state: who is signed in on the web, open codes, App names taken."""

    login: str = "octocat"
    pending: dict[str, Pending] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


def slug_of(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def manifest_problems(manifest: object, taken: set[str]) -> list[str]:
    """What GitHub would refuse in a manifest (the parameters table of the manifest doc)."""
    if not isinstance(manifest, dict):
        return ["The manifest must be a JSON object."]
    problems: list[str] = []
    name = manifest.get("name")
    if not isinstance(name, str) or not name.strip():
        # GitHub would ask the person for a name; the fake has nobody to ask.
        problems.append("Name can't be blank.")
    elif len(name) > 34:
        problems.append("Name is too long (maximum is 34 characters).")
    elif slug_of(name) in taken:
        problems.append("Name is already in use.")
    if not _http_url(manifest.get("url")):
        problems.append("Url (the App's homepage) is required and must be an http(s) URL.")
    hook = manifest.get("hook_attributes")
    if not isinstance(hook, dict) or not _http_url(hook.get("url")):
        problems.append("Hook attributes: url is required and must be an http(s) URL.")
    elif not isinstance(hook.get("active", True), bool):
        problems.append("Hook attributes: active must be a boolean.")
    if not _http_url(manifest.get("redirect_url")):
        problems.append("Redirect url is required and must be an http(s) URL.")
    if not isinstance(manifest.get("public", False), bool):
        problems.append("Public must be a boolean.")
    perms = manifest.get("default_permissions", {})
    if not isinstance(perms, dict):
        problems.append("Default permissions must be an object.")
        perms = {}
    for perm, level in perms.items():
        if perm not in PERMISSIONS:
            problems.append(f"Default permission {perm!r} does not exist.")
        elif level not in PERMISSIONS[perm]:
            problems.append(f"Default permission {perm!r} cannot be {level!r}.")
    events = manifest.get("default_events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        return [*problems, "Default events must be an array of strings."]
    for event in events:
        needs = EVENT_PERMISSIONS.get(event)
        if needs is None:
            problems.append(f"Default event {event!r} is not supported.")
        elif not any(p in perms or p == "metadata" for p in needs):
            problems.append(f"Default event {event!r} needs the {' or '.join(needs)} permission.")
    return problems


def add_manifest_routes(app: FastAPI, fake: FakeGitHub) -> None:
    """Serve the manifest flow on ``app`` (the fake's API and web host are one server)."""
    world = fake.world
    flow = fake.manifests

    async def new_app(request: Request, owner: str) -> Response:
        raw: str | None = request.query_params.get("manifest")
        if request.method == "POST":
            form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
            raw = form["manifest"][0] if form.get("manifest") else raw
        try:
            manifest = json.loads(raw) if raw else None
        except ValueError:
            manifest = None
        with world.lock:
            problems = (
                ["A manifest is required (a form field named manifest, holding JSON)."]
                if manifest is None
                else manifest_problems(manifest, flow.names)
            )
            if problems:
                items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
                return HTMLResponse(
                    f"<h1>Invalid GitHub App manifest</h1><ul>{items}</ul>", status_code=422
                )
            assert isinstance(manifest, dict)
            code = secrets.token_hex(20)
            flow.pending[code] = Pending(owner, manifest, world.clock.now())
        query = {"code": code}
        state = request.query_params.get("state")
        if state is not None:
            query["state"] = state
        target = str(manifest["redirect_url"])
        joiner = "&" if "?" in target else "?"
        return RedirectResponse(target + joiner + urllib.parse.urlencode(query), status_code=302)

    @app.api_route("/settings/apps/new", methods=["GET", "POST"], include_in_schema=False)
    async def new_user_app(request: Request) -> Response:
        with world.lock:
            world.user(flow.login)
        return await new_app(request, flow.login)

    @app.api_route(
        "/organizations/{org}/settings/apps/new", methods=["GET", "POST"], include_in_schema=False
    )
    async def new_org_app(request: Request, org: str) -> Response:
        with world.lock:
            account = world.users.get(org)
            if account is None or account.type != "Organization":
                return HTMLResponse(
                    "<h1>404: this is not the web page you are looking for</h1>", 404
                )
        return await new_app(request, account.login)

    @app.post("/app-manifests/{code}/conversions")
    def create_from_manifest(request: Request, code: str) -> Response:
        with world.lock:
            pending = flow.pending.pop(code, None)
            if pending is None or world.clock.now() - pending.issued_at > CODE_LIFETIME:
                raise not_found()
            manifest = pending.manifest
            name = str(manifest["name"])
            slug = slug_of(name)
            if slug in flow.names:
                # Two flows raced for one name: the second conversion fails validation.
                raise ApiError(
                    422,
                    "Validation Failed",
                    [{"resource": "Integration", "field": "name", "code": "already_exists"}],
                )
            flow.names.add(slug)
            # Every App can read metadata, asked for or not.
            creds = fake.create_app(
                slug,
                owner=pending.owner,
                permissions={"metadata": "read", **manifest.get("default_permissions", {})},
                events=tuple(manifest.get("default_events", [])),
            )
            gh_app = world.app
            assert gh_app is not None
            gh_app.name = name
            hook = manifest["hook_attributes"]
            webhook_secret = secrets.token_hex(20)
            if hook.get("active", True):
                fake.webhook_url = str(hook["url"])
                fake.webhook_secret = webhook_secret
            body = {
                **fake.shapes.app(gh_app),
                "external_url": manifest["url"],
                "description": manifest.get("description") or "",
                "pem": creds.private_key_pem,
                "webhook_secret": webhook_secret,
                "client_secret": secrets.token_hex(20),
            }
            fake.record(Recorded(request.method, "/app-manifests/{code}/conversions", 201, body))
            return JSONResponse(body, status_code=201)
