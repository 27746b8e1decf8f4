"""The task console: server-rendered pages and a JSON API over the store's read queries
(:mod:`bot.store.console`).

Pages: ``/console`` (tasks, filtered, sorted, paged), ``/console/tasks/{id}`` (requirements,
iterations, the agent's steps), ``/console/jobs`` (jobs, queue depth, lease holders, refused
deliveries). API: ``/api/console/tasks``, ``/api/console/tasks/{id}``, ``/api/console/jobs``.
Live: ``/console/tasks/{id}/iterations/{n}/events`` streams a running iteration's new steps
as server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html).

Access is the dashboard's (:func:`bot.entrypoints.dashboard.allowed`): the bearer token, or
without one a loopback client asking for a loopback host; or, when configured, sign-in with
GitHub (:mod:`bot.entrypoints.console.signin`), limited to the person's repositories.
Actions (``POST`` only: retry a task's failed iteration, stop a task, requeue a dead job;
:mod:`bot.loop.console`) also need a same-origin request (``Origin`` and
``Sec-Fetch-Site``) and the form's CSRF token,
an HMAC of the console's cookie (double submit): without a dashboard token any web page
could otherwise make the browser POST to the loopback address. Everything shown is redacted
(:mod:`bot.entrypoints.console.views`) and escaped (Jinja2 autoescape). Pages carry a
Content-Security-Policy that allows only the bot's own script and style: no inline script,
no other origin, no framing. Bad query parameters get a 400 with one line saying which.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets as random_secrets
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from bot.core.tasks import MODELS, State
from bot.entrypoints.console.signin import (
    CALLBACK_PATH,
    SESSION_COOKIE,
    SESSION_SECONDS,
    STATE_COOKIE,
    STATE_SECONDS,
    Level,
    SignIn,
    SignInError,
    Viewer,
)
from bot.entrypoints.console.views import Views
from bot.entrypoints.dashboard import ACCESS_HELP, allowed
from bot.loop import console as actions
from bot.store.console import (
    SORTS,
    QueryError,
    console_actions,
    iteration,
    iteration_steps,
    list_jobs,
    list_tasks,
    parse_job_query,
    parse_task_query,
    task_detail,
    task_repositories,
    task_repository,
)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    # No referrer leaves for another site; a same-origin POST keeps its Origin header, which
    # under "no-referrer" browsers send as "null" (https://fetch.spec.whatwg.org/#append-a-request-origin-header).
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
MAX_TASK_ID = 2**63 - 1
CSRF_COOKIE = "vibe_console_csrf"
MAX_FORM_BYTES = 4_096
_COOKIE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class Csrf:
    """Double submit with an HMAC: the console sets a random cookie (HttpOnly,
    SameSite=Strict) and puts HMAC(key, cookie) in each action form; a POST must carry
    both, matching. Another site can neither read the cookie nor compute the HMAC, and a
    cookie it could plant (a sibling subdomain) does not match a form it cannot read. The
    key is derived from the dashboard token when there is one (replicas agree), else
    random per process (a restart asks for a reload)."""

    def __init__(self, token: str | None) -> None:
        seed = token.encode() if token else random_secrets.token_bytes(32)
        self.key = hmac.new(seed, b"vibe-bot console csrf", hashlib.sha256).digest()

    def form_token(self, cookie: str) -> str:
        return hmac.new(self.key, cookie.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def cookie_of(request: Request) -> str | None:
        value = request.cookies.get(CSRF_COOKIE)
        if value is None or not 32 <= len(value) <= 64 or not set(value) <= _COOKIE_CHARS:
            return None
        return value

    def valid(self, request: Request, given: str | None) -> bool:
        cookie = self.cookie_of(request)
        if cookie is None or given is None:
            return False
        return hmac.compare_digest(self.form_token(cookie).encode(), given.encode())


def same_origin(request: Request) -> bool:
    """A browser's POST says where it comes from: ``Sec-Fetch-Site``
    (https://www.w3.org/TR/fetch-metadata/) must be ``same-origin`` when sent, and
    ``Origin`` (RFC 6454, sent with every POST by current browsers) must name the host
    the request was sent to. A request with neither is refused: it cannot be shown to
    come from the console's own page."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("origin")
    hosts = request.headers.getlist("host")
    if origin is None or origin == "null" or len(hosts) != 1:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.path or parts.query:
        return False
    return parts.netloc.lower() == hosts[0].lower()


class StreamSlots:
    """At most ``limit`` live streams at once: each holds a slot until it ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.open >= self.limit:
                return False
            self.open += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.open -= 1


def _params(request: Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        out.setdefault(key, []).append(value)
    return out


def _task_id(raw: str) -> int | None:
    if not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= MAX_TASK_ID:
        return None
    return int(raw)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def make_console_router(
    engine: Engine,
    secrets: Sequence[str],
    token: str | None,
    *,
    github_server: str = "https://github.com",
    poll_seconds: float = 1.0,
    max_streams: int = 16,
    stream_seconds: float = 3_600.0,
    signin: SignIn | None = None,
) -> APIRouter:
    """The console's routes. A live stream reads the store every ``poll_seconds`` (no
    faster), ends when its iteration ends, after ``stream_seconds`` or when the client
    leaves; at most ``max_streams`` run at once (more get a 503 with Retry-After). With
    ``signin``, a person signed in with GitHub (:mod:`bot.entrypoints.console.signin`) is
    served the tasks of the repositories they can read and acts on those they can write;
    the jobs page stays the operator's (token or loopback)."""
    router = APIRouter()
    views = Views(tuple(secrets), github_server.rstrip("/"))
    templates = Environment(
        loader=PackageLoader("bot.entrypoints.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )
    slots = StreamSlots(max_streams)
    static = {
        name: (resources.files(__package__).joinpath("static", name).read_bytes(), kind)
        for name, kind in STATIC.items()
    }

    csrf = Csrf(token)

    def viewer(request: Request) -> Viewer | None:
        """Who is served: the token or loopback (everything), else a signed-in person."""
        if allowed(request, token):
            return Viewer("dashboard token" if token else "loopback")
        session = signin.session(request) if signin is not None else None
        return None if session is None else Viewer(f"{session.login} (GitHub)", session)

    async def level(who: Viewer, repository: str | None) -> Level:
        if who.session is None:
            return "write"
        if signin is None or repository is None:
            return "none"
        return await signin.level(who.session, repository)

    def page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        body = templates.get_template(name).render(**values)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def action_page(request: Request, name: str, **values: Any) -> HTMLResponse:
        """A page with action forms: each carries the CSRF token of the console's cookie,
        set now when the browser has none."""
        cookie = csrf.cookie_of(request)
        fresh = cookie is None
        if cookie is None:
            cookie = random_secrets.token_urlsafe(32)
        response = page(name, csrf=csrf.form_token(cookie), **values)
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                path="/console",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    async def form_refused(request: Request) -> HTMLResponse | None:
        """A POST form's checks: same origin and the CSRF token; None when it passes."""
        if not same_origin(request):
            return page(
                "message.html",
                403,
                title="Refused",
                message="Actions are taken from the console's own pages; this request came "
                "from another site or did not say where it came from.",
            )
        body = await request.body()
        form = parse_qs(body[:MAX_FORM_BYTES].decode("latin-1"), max_num_fields=8)
        given = form.get("csrf", [None])
        if len(body) > MAX_FORM_BYTES or len(given) != 1 or not csrf.valid(request, given[0]):
            return page(
                "message.html",
                403,
                title="Refused",
                message="The form's CSRF token is missing or out of date: reload the page "
                "and try again.",
            )
        return None

    async def act(request: Request, action: str, raw_id: str, back: str) -> HTMLResponse:
        """An action's checks, in order: access, same origin, the CSRF token; then the use
        case (:mod:`bot.loop.console`), which records who did what."""
        who = viewer(request)
        if who is None:
            return refused_page()
        refusal = await form_refused(request)
        if refusal is not None:
            return refusal
        target = _task_id(raw_id)
        if target is None:
            return bad_page(f"an id is a positive whole number; got {raw_id[:40]!r}")
        if who.session is not None:
            repository = (
                None
                if action == "requeue"
                else await run_in_threadpool(task_repository, engine, target)
            )
            if await level(who, repository) != "write":
                return page(
                    "message.html",
                    403,
                    title="Refused",
                    message="Acting on a task needs write access to its repository on "
                    "GitHub; requeueing jobs is for the bot's operator.",
                )
        client = request.client
        run = {"stop": actions.stop, "retry": actions.retry, "requeue": actions.requeue}[action]
        done = await run_in_threadpool(
            run, engine, target, actions.Who(who.actor, client.host if client else None)
        )
        return page(
            "message.html",
            200 if done.ok else 409,
            title="Done" if done.ok else "Not done",
            message=done.message,
            back=back.format(id=target),
        )

    def refused_page() -> HTMLResponse:
        if signin is not None:
            return page(
                "message.html",
                403,
                title="Access denied",
                message="Sign in with GitHub to see the tasks of the repositories you can "
                "read. " + ACCESS_HELP,
                login=True,
            )
        return page("message.html", 403, title="Access denied", message=ACCESS_HELP)

    def unreadable_page(task_id: int) -> HTMLResponse:
        return page(
            "message.html",
            403,
            title="Access denied",
            message=f"Task {task_id} is not in a repository you can read on GitHub.",
        )

    def operators_page() -> HTMLResponse:
        return page(
            "message.html",
            403,
            title="Access denied",
            message="The jobs page is for the bot's operator (the dashboard token or the "
            "bot's own machine).",
        )

    def refused_json() -> JSONResponse:
        return JSONResponse({"error": ACCESS_HELP}, status_code=403, headers=SECURITY_HEADERS)

    def bad_page(message: str, status: int = 400) -> HTMLResponse:
        title = "Bad request" if status == 400 else "Not found"
        return page("message.html", status, title=title, message=message)

    def bad_json(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)

    async def unreadable(who: Viewer, task_id: int) -> bool:
        if who.session is None:
            return False
        repository = await run_in_threadpool(task_repository, engine, task_id)
        return repository is not None and await level(who, repository) == "none"

    async def tasks_data(request: Request, who: Viewer) -> dict[str, Any]:
        query = parse_task_query(_params(request))
        if who.session is not None and signin is not None:
            known = await run_in_threadpool(task_repositories, engine)
            levels = await signin.levels(who.session, known)
            query = replace(
                query, repositories=frozenset(r for r, v in levels.items() if v != "none")
            )
        found = await run_in_threadpool(list_tasks, engine, query)
        data = views.task_page(found, datetime.now(UTC))
        data["query"] = query.params()
        return data

    async def task_data(task_id: int) -> dict[str, Any] | None:
        def load() -> dict[str, Any] | None:
            detail = task_detail(engine, task_id)
            if detail is None:
                return None
            steps = iteration_steps(engine, [i.id for i in detail.iterations], limit=5_000)
            return views.task(detail, steps, datetime.now(UTC))

        return await run_in_threadpool(load)

    async def jobs_data(request: Request) -> dict[str, Any]:
        query = parse_job_query(_params(request))
        found = await run_in_threadpool(list_jobs, engine, query)
        data = views.jobs(found, datetime.now(UTC))
        data["query"] = {
            k: v for k, v in (("state", query.state), ("kind", query.kind)) if v is not None
        }
        return data

    @router.get("/console/static/{name}")
    def static_file(name: str) -> Response:
        # Served to anyone: the script and style are the package's own, with no data in them.
        if name not in static:
            return Response("not found", status_code=404, media_type="text/plain")
        body, kind = static[name]
        return Response(
            body, media_type=kind, headers={**SECURITY_HEADERS, "cache-control": "max-age=300"}
        )

    @router.get("/console/login", response_model=None)
    def login(request: Request) -> Response:
        if signin is None:
            return bad_page("sign-in with GitHub is not configured on this bot", 404)
        url, state = signin.start()
        response = RedirectResponse(url, status_code=302, headers=SECURITY_HEADERS)
        # Lax: the callback is a top-level GET navigation from GitHub, which Lax lets through.
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=int(STATE_SECONDS),
            path=CALLBACK_PATH,
            httponly=True,
            samesite="lax",
            secure=signin.config.secure,
        )
        return response

    @router.get(CALLBACK_PATH, response_model=None)
    async def callback(request: Request) -> Response:
        if signin is None:
            return bad_page("sign-in with GitHub is not configured on this bot", 404)
        params = dict(request.query_params.items())
        response: Response
        try:
            session = await signin.finish(params, request.cookies.get(STATE_COOKIE))
        except SignInError as exc:
            response = page(
                "message.html", 400, title="Sign-in failed", message=str(exc), login=True
            )
        else:
            response = RedirectResponse("/console", status_code=303, headers=SECURITY_HEADERS)
            response.set_cookie(
                SESSION_COOKIE,
                session.id,
                max_age=int(SESSION_SECONDS),
                path="/",
                httponly=True,
                samesite="lax",
                secure=signin.config.secure,
            )
        response.delete_cookie(STATE_COOKIE, path=CALLBACK_PATH)
        return response

    @router.post("/console/logout", response_class=HTMLResponse)
    async def logout(request: Request) -> HTMLResponse:
        if signin is None:
            return bad_page("sign-in with GitHub is not configured on this bot", 404)
        refusal = await form_refused(request)
        if refusal is not None:
            return refusal
        signin.end(request)
        response = page("message.html", title="Signed out", message="You are signed out.")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @router.get("/console", response_class=HTMLResponse)
    async def tasks_page(request: Request) -> HTMLResponse:
        who = viewer(request)
        if who is None:
            return refused_page()
        try:
            data = await tasks_data(request, who)
        except QueryError as exc:
            return bad_page(str(exc))
        return action_page(
            request,
            "tasks.html",
            **data,
            states=[s.value for s in State],
            models=MODELS,
            sorts=SORTS,
            signed_in=who.session.login if who.session else None,
        )

    @router.get("/console/jobs", response_class=HTMLResponse)
    async def jobs_page(request: Request) -> HTMLResponse:
        who = viewer(request)
        if who is None:
            return refused_page()
        if who.session is not None:
            return operators_page()
        try:
            data = await jobs_data(request)
        except QueryError as exc:
            return bad_page(str(exc))
        return action_page(request, "jobs.html", **data)

    @router.get("/console/tasks/{raw_id}", response_class=HTMLResponse)
    async def task_page(request: Request, raw_id: str) -> HTMLResponse:
        who = viewer(request)
        if who is None:
            return refused_page()
        task_id = _task_id(raw_id)
        if task_id is None:
            return bad_page(f"a task id is a positive whole number; got {raw_id[:40]!r}")
        access = await level(who, await run_in_threadpool(task_repository, engine, task_id))
        if who.session is not None and access == "none":
            return unreadable_page(task_id)
        data = await task_data(task_id)
        if data is None:
            return bad_page(f"there is no task {task_id}", 404)
        state = State(data["state"])
        last = data["iterations"][-1] if data["iterations"] else None
        writer = access == "write"
        can = {
            "stop": writer and not state.terminal,
            "retry": writer
            and last is not None
            and not state.busy
            and last["outcome"] in actions.RETRYABLE,
        }
        done = await run_in_threadpool(console_actions, engine, "task", task_id)
        return action_page(
            request,
            "task.html",
            task=data,
            can=can,
            actions=views.actions(done, datetime.now(UTC)),
            signed_in=who.session.login if who.session else None,
        )

    @router.post("/console/tasks/{raw_id}/stop", response_class=HTMLResponse)
    async def stop_task(request: Request, raw_id: str) -> HTMLResponse:
        return await act(request, "stop", raw_id, "/console/tasks/{id}")

    @router.post("/console/tasks/{raw_id}/retry", response_class=HTMLResponse)
    async def retry_task(request: Request, raw_id: str) -> HTMLResponse:
        return await act(request, "retry", raw_id, "/console/tasks/{id}")

    @router.post("/console/jobs/{raw_id}/requeue", response_class=HTMLResponse)
    async def requeue_job(request: Request, raw_id: str) -> HTMLResponse:
        return await act(request, "requeue", raw_id, "/console/jobs")

    @router.get("/api/console/tasks")
    async def api_tasks(request: Request) -> JSONResponse:
        who = viewer(request)
        if who is None:
            return refused_json()
        try:
            return JSONResponse(await tasks_data(request, who), headers=SECURITY_HEADERS)
        except QueryError as exc:
            return bad_json(str(exc))

    @router.get("/api/console/tasks/{raw_id}")
    async def api_task(request: Request, raw_id: str) -> JSONResponse:
        who = viewer(request)
        if who is None:
            return refused_json()
        task_id = _task_id(raw_id)
        if task_id is None:
            return bad_json(f"a task id is a positive whole number; got {raw_id[:40]!r}")
        if await unreadable(who, task_id):
            return bad_json(f"task {task_id} is not in a repository you can read on GitHub", 403)
        data = await task_data(task_id)
        if data is None:
            return bad_json(f"there is no task {task_id}", 404)
        return JSONResponse(data, headers=SECURITY_HEADERS)

    @router.get("/api/console/jobs")
    async def api_jobs(request: Request) -> JSONResponse:
        who = viewer(request)
        if who is None:
            return refused_json()
        if who.session is not None:
            return bad_json("the jobs are for the bot's operator", 403)
        try:
            return JSONResponse(await jobs_data(request), headers=SECURITY_HEADERS)
        except QueryError as exc:
            return bad_json(str(exc))

    @router.get("/console/tasks/{raw_id}/iterations/{raw_number}/events", response_model=None)
    async def events(
        request: Request, raw_id: str, raw_number: str
    ) -> StreamingResponse | JSONResponse:
        who = viewer(request)
        if who is None:
            return refused_json()
        task_id, number = _task_id(raw_id), _task_id(raw_number)
        if task_id is None or number is None:
            return bad_json("the task id and iteration number are positive whole numbers")
        if await unreadable(who, task_id):
            return bad_json(f"task {task_id} is not in a repository you can read on GitHub", 403)
        after_raw = request.query_params.get("after", "0")
        after = _task_id(after_raw) if after_raw != "0" else 0
        if after is None:
            return bad_json(f"after must be a step id; got {after_raw[:40]!r}")
        first = await run_in_threadpool(iteration, engine, task_id, number)
        if first is None:
            return bad_json(f"task {task_id} has no iteration {number}", 404)
        if not slots.take():
            return JSONResponse(
                {"error": "too many live views are open; retry in a minute"},
                status_code=503,
                headers={**SECURITY_HEADERS, "retry-after": "60"},
            )

        async def stream() -> AsyncIterator[str]:
            last = after
            deadline = time.monotonic() + stream_seconds
            try:
                while True:
                    now = datetime.now(UTC)
                    current = await run_in_threadpool(iteration, engine, task_id, number)
                    if current is None:
                        return
                    steps = await run_in_threadpool(iteration_steps, engine, [current.id], last)
                    for step in steps:
                        last = step.id
                        shown = views.step(step, now)
                        html = templates.get_template("step.html").render(step=shown)
                        yield _sse("step", {"id": step.id, "html": html})
                    yield _sse("iteration", views.iteration(current, now))
                    if current.outcome != "running":
                        yield _sse("end", {"outcome": current.outcome})
                        return
                    if time.monotonic() > deadline or await request.is_disconnected():
                        return
                    await asyncio.sleep(poll_seconds)
            finally:
                slots.give()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={**SECURITY_HEADERS, "x-accel-buffering": "no"},
        )

    return router
