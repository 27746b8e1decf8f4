"""One ingest process of ``vibe serve --processes N`` (N > 1, PostgreSQL or an SQLite file).

``vibe serve`` becomes the supervisor: it migrates the database, runs the checks, binds the
port once and has uvicorn start N of these processes (``spawn``) sharing that socket; it
restarts one that dies and stops them all on SIGTERM or Ctrl-C. Each process builds the
webhook service from the environment, as ``vibe serve`` did, and runs no job workers: the
supervisor runs the one worker pool (``--workers``), so N ingest processes never mean N
pools. A delivery's job reaches that pool through the database (the workers poll it; the
immediate wake-up exists within one process only).
"""

from __future__ import annotations

import gc

from fastapi import FastAPI

from bot.entrypoints.app import create_app
from bot.observability import configure_logging
from bot.settings import ensure_webhook_secret, load_settings


def create() -> FastAPI:
    """The service of one ingest process (uvicorn's application factory). The supervisor
    validated the settings and persisted a generated webhook secret before starting it."""
    settings, _ = ensure_webhook_secret(load_settings())
    configure_logging(settings.log_level, json=settings.log_json, secrets=settings.secret_values)
    # Its deliveries are read and stored by a process of its own, one transaction at a time
    # (bot/ingest/store_process.py): the other ingest processes store beside it.
    application = create_app(settings, run_workers=False, runs_jobs=False, store_process=True)
    settle_collector()
    return application


def settle_collector() -> None:
    """Keep the cyclic garbage collector off the request path of a serving process.

    What start-up made (some 300,000 objects: the agent, the context engine, their
    libraries) lives as long as the process; left to the collector, each full collection
    walks it all (0.1 to 0.3 s, a stall of every request in flight: the p99 of ingest). It
    is frozen out of every collection. A delivery makes a few hundred short-lived
    containers (its JSON, its typed event), so the youngest generation is collected every
    20,000 allocations rather than 700: the same garbage, found in fewer passes."""
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
