"""``create_app(settings)``: the FastAPI service with its adapters wired in.

Routes: ``POST /webhook`` (ingest), ``GET /`` (what is configured and what is missing,
GitHub's word on the credentials included), ``GET /healthz``, ``GET /readyz`` (database
reachable; configured GitHub credentials usable and covering what the bot needs, DESIGN.md
section 5 "ready means able"), ``GET /metrics`` (Prometheus). At start-up each gap is
logged once. With ``run_workers`` the app starts an in-process worker pool in its lifespan
(``vibe serve``).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from starlette.concurrency import run_in_threadpool

from bot import __version__
from bot.bootstrap import GitHubSetup, build_queue, build_worker
from bot.entrypoints.dashboard import make_dashboard_router
from bot.executors.actions.executor import make_runner_router, service_executor
from bot.ingest.deliveries import DeliveryWriter
from bot.ingest.webhook import make_router
from bot.jobs.queue import Handler
from bot.observability import Metrics
from bot.settings import Settings
from bot.store.engine import init_db, make_engine

log = structlog.get_logger(__name__)


def _nothing() -> None:
    return None


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    handlers: Mapping[str, Handler] | None = None,
    run_workers: bool = False,
) -> FastAPI:
    """Build the service. The database schema is created if needed."""
    engine = engine or make_engine(settings.effective_database_url)
    init_db(engine)
    queue = build_queue(settings, engine)
    metrics = Metrics(queue.depth)
    writer = DeliveryWriter(engine, settings.max_attempts)
    setup = GitHubSetup(settings)
    worker = build_worker(settings, queue, handlers=handlers, on_finished=metrics.job, setup=setup)

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
            await run_in_threadpool(writer.close)

    app = FastAPI(title="vibe-bot", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.queue = queue
    app.state.worker = worker
    app.state.metrics = metrics
    app.state.setup = setup

    def current_secrets() -> list[bytes]:
        return [
            s.get_secret_value().encode()
            for s in (settings.webhook_secret, settings.webhook_secret_previous)
            if s is not None
        ]

    app.include_router(
        make_router(
            writer,
            current_secrets,
            max_body_bytes=settings.max_body_bytes,
            # The control lane knows ``@login stop`` only with VIBE_BOT_LOGIN set: the
            # login GitHub gives is asked later, and ``/vibe stop`` works either way.
            bot_login=settings.bot_login or "",
            on_delivery=metrics.delivery,
            # Waking workers that cannot run event jobs would only make them poll the queue.
            on_queued=worker.wake if "event" in worker.handlers else _nothing,
        )
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

    @app.get("/")
    def index() -> JSONResponse:
        missing = setup.missing()
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
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            log.warning("readyz.database_unreachable", error=str(exc))
            return JSONResponse({"status": "database unreachable"}, status_code=503)
        github = setup.check()
        if github is not None and not github.ok:
            return JSONResponse(
                {"status": "GitHub credentials unusable", "reasons": list(github.findings)},
                status_code=503,
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
