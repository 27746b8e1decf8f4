"""``create_app(settings)``: the FastAPI service with its adapters wired in.

Routes: ``POST /webhook`` (ingest), ``GET /`` (what is configured and what is missing, with
each check of :mod:`bot.entrypoints.readiness`), ``GET /healthz``, ``GET /readyz`` (503 with
the reasons when something configured does not work: GitHub's credentials, the sandbox,
the database and its schema, the data directory, the model key; DESIGN.md section 5 "ready
means able"), ``GET /metrics`` (Prometheus). ``/docs``, ``/redoc`` and ``/openapi.json``
only with ``VIBE_API_DOCS``. At start-up each gap GitHub reports is logged once. With
``run_workers`` the app starts an in-process worker pool in its lifespan (``vibe serve``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from bot import __version__
from bot.bootstrap import GitHubSetup, build_queue, build_worker
from bot.entrypoints.console import make_console_router
from bot.entrypoints.console.signin import console_signin
from bot.entrypoints.dashboard import make_dashboard_router
from bot.entrypoints.metrics import DatabaseCollector
from bot.entrypoints.readiness import Readiness, problems, unready
from bot.executors.actions.executor import make_runner_router, service_executor
from bot.ingest.deliveries import DeliveryStore, DeliveryWriter, writers_for
from bot.ingest.store_process import StoreConfig, StoreProcess
from bot.ingest.webhook import (
    WEBHOOK_PATH,
    BodyLimits,
    BoundedBodies,
    WebhookEndpoint,
    database_away,
    leave_out_stored_access_lines,
)
from bot.jobs.queue import Handler
from bot.observability import Metrics
from bot.settings import Settings
from bot.store.engine import init_db, make_engine

log = structlog.get_logger(__name__)


def _nothing() -> None:
    return None


class Service(FastAPI):
    """The FastAPI app with ``/webhook`` served ahead of its routing and middleware
    (:class:`bot.ingest.webhook.WebhookEndpoint`, which applies the same checks and answers
    itself); every other request takes FastAPI's way."""

    webhook: WebhookEndpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.webhook is not None and scope["type"] == "http" and scope["path"] == WEBHOOK_PATH:
            await self.webhook(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    handlers: Mapping[str, Handler] | None = None,
    run_workers: bool = False,
    runs_jobs: bool = True,
    store_process: bool = False,
) -> FastAPI:
    """Build the service. The database schema is created if needed. ``runs_jobs``: False
    for a web process that never runs jobs (``vibe serve --workers 0``), whose readiness
    leaves the sandbox to the workers. ``store_process``:
    deliveries are read and stored in a process of its own, started here
    (:mod:`bot.ingest.store_process`; ``vibe serve``), not on this process's event loop."""
    engine = engine or make_engine(settings.effective_database_url)
    init_db(engine)
    queue = build_queue(settings, engine)
    metrics = Metrics(DatabaseCollector(engine))
    # The control lane knows ``@login stop`` only with VIBE_BOT_LOGIN set: the login GitHub
    # gives is asked later, and ``/vibe stop`` works either way.
    bot_login = settings.bot_login or ""
    store: DeliveryStore
    process: StoreProcess | None = None
    if store_process:
        store = process = StoreProcess(
            StoreConfig(
                database_url=settings.effective_database_url,
                max_attempts=settings.max_attempts,
                bot_login=bot_login,
                log_level=settings.log_level,
                log_json=settings.log_json,
                secrets=tuple(settings.secret_values),
            )
        )
        process.start()
    else:
        store = DeliveryWriter(
            engine,
            settings.max_attempts,
            writers=writers_for(engine),
            bot_login=bot_login,
        )
    setup = GitHubSetup(settings)
    worker = build_worker(settings, queue, handlers=handlers, setup=setup)

    def check_github() -> None:
        check = setup.check()
        for finding in check.findings if check else ():
            log.warning("setup.missing", item=finding)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Asked in the background: an unreachable GitHub is retried with backoff, and the
        # service takes deliveries meanwhile.
        threading.Thread(target=check_github, name="github-check", daemon=True).start()
        if run_workers:
            worker.start()
        try:
            yield
        finally:
            if run_workers:
                await run_in_threadpool(worker.stop)
            await run_in_threadpool(store.close)

    async def away(request: Request, exc: Exception) -> JSONResponse:
        answer = database_away(request.url.path, exc)
        return JSONResponse(answer.content, status_code=answer.status, headers=answer.headers)

    # The API description is off on the public port unless asked for (VIBE_API_DOCS).
    docs = settings.api_docs
    app = Service(
        title="vibe-bot",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        exception_handlers={OperationalError: away, PoolTimeout: away},
    )
    readiness = Readiness(settings, engine, setup, runs_jobs=runs_jobs, store=process)
    app.state.settings = settings
    app.state.engine = engine
    app.state.queue = queue
    app.state.worker = worker
    app.state.metrics = metrics
    app.state.setup = setup
    app.state.readiness = readiness

    def current_secrets() -> list[bytes]:
        return [
            s.get_secret_value().encode()
            for s in (settings.webhook_secret, settings.webhook_secret_previous)
            if s is not None
        ]

    # One budget for the process's unauthenticated bodies: the webhook's and every other
    # route's (bot/ingest/webhook.py).
    body_limits = BodyLimits(
        settings.webhook_body_budget_bytes,
        settings.webhook_max_bodies,
        settings.webhook_body_timeout,
    )
    app.add_middleware(BoundedBodies, limits=body_limits, cap=settings.max_body_bytes)
    leave_out_stored_access_lines()
    app.webhook = WebhookEndpoint(
        store,
        current_secrets,
        max_body_bytes=settings.max_body_bytes,
        limits=body_limits,
        database_wait=settings.database_wait_seconds,
        on_delivery=metrics.delivery,
        # Waking workers that cannot run event jobs would only make them poll the queue.
        on_queued=worker.wake if "event" in worker.handlers else _nothing,
    )

    # The runner API of the actions executor: vibe-runner.yml jobs claim their tasks here.
    app.include_router(make_runner_router(service_executor(settings, engine)))

    app.include_router(
        make_dashboard_router(
            engine,
            settings.secret_values,
            settings.dashboard_token.get_secret_value() if settings.dashboard_token else None,
        )
    )

    app.include_router(
        make_console_router(
            engine,
            settings.secret_values,
            settings.dashboard_token.get_secret_value() if settings.dashboard_token else None,
            github_server=settings.github_server_url,
            signin=console_signin(settings),
        )
    )

    @app.get("/")
    def index() -> JSONResponse:
        checks = readiness.run()
        missing = problems(checks)
        if settings.webhook_secret is None:
            missing.insert(0, "webhook secret: set VIBE_WEBHOOK_SECRET")
        return JSONResponse(
            {
                "service": "vibe-bot",
                "version": __version__,
                "webhook": "/webhook",
                "database": make_url(settings.effective_database_url).render_as_string(
                    hide_password=True
                ),
                "ready_for_tasks": not missing,
                "missing": missing,
                "checks": [c.as_json() for c in checks],
                "message": (
                    "Ready: deliveries are accepted and tasks can run."
                    if not missing
                    else "Deliveries are accepted and stored, but tasks cannot run until "
                    "the items under 'missing' are configured."
                ),
            }
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        reasons = unready(readiness.run())
        if not reasons:
            return JSONResponse({"status": "ready"})
        log.warning("readyz.not_ready", reasons=reasons)
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app
