"""What the database says, as Prometheus metrics, and the worker's small HTTP port.

:class:`DatabaseCollector` reads tasks, iterations, model usage and the queue with a few
aggregate queries at scrape time: the numbers are right whichever process did the work, and
across restarts. Per-process events (API calls, waits, sandboxed commands) are counted in
:mod:`bot.observability`.

:func:`start_worker_http` serves ``/healthz`` and ``/metrics`` for ``vibe worker --port``
(the Kubernetes probes of the worker Deployment).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.engine import Connection, Engine

from bot.core.tasks import IterationOutcome, State
from bot.jobs.queue import Worker
from bot.observability import Metrics
from bot.store.tables import Iteration, Job, Task, utcnow

log = structlog.get_logger(__name__)

JOB_STATUSES = ("queued", "running", "done", "dead")
ITERATION_OUTCOMES: tuple[IterationOutcome, ...] = (
    "succeeded",
    "failed",
    "stopped",
    "limit",
    "planned",
    "reverted",
)

_TASK = Task.__table__  # type: ignore[attr-defined]
_ITERATION = Iteration.__table__  # type: ignore[attr-defined]
_JOB = Job.__table__  # type: ignore[attr-defined]


def _aware(value: datetime) -> datetime:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class DatabaseCollector(Collector):
    """Tasks by state, iterations by outcome and development model, and the queue: three
    aggregate queries per scrape. Tokens and dollars are counted per process where each
    model turn ends (:func:`bot.observability.model_usage`): pruned agent steps must not
    make a counter go down."""

    def __init__(
        self, engine: Engine, clock: Callable[[], datetime] = utcnow, wait: float = 5.0
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.wait = wait

    def describe(self) -> Iterable[Metric]:
        # Registering must not query the database.
        return ()

    def collect(self) -> Iterator[Metric]:
        """The database's families, or only ``vibe_database_scrape_ok 0`` when the database
        does not answer within ``wait`` seconds (a frozen database must not hang /metrics:
        issue 14); the query thread is left to finish on its own."""
        found: list[list[Metric]] = []

        def gather() -> None:
            with self.engine.connect() as conn:
                found.append([*self._tasks(conn), *self._iterations(conn), *self._jobs(conn)])

        def guarded() -> None:
            try:
                gather()
            except Exception as exc:  # noqa: BLE001 - reported as the scrape's own gauge
                log.warning("metrics.database_failed", error=str(exc)[:300])

        thread = threading.Thread(target=guarded, name="metrics-database", daemon=True)
        thread.start()
        thread.join(self.wait)
        ok = GaugeMetricFamily(
            "vibe_database_scrape_ok",
            "1 when the database answered this scrape's queries in time, else 0",
        )
        ok.add_metric([], 1.0 if found else 0.0)
        yield ok
        if found:
            yield from found[0]

    @staticmethod
    def _tasks(conn: Connection) -> Iterator[Metric]:
        counts = dict.fromkeys((s.value for s in State), 0)
        for state, count in conn.execute(
            select(_TASK.c.state, func.count()).group_by(_TASK.c.state)
        ):
            counts[state] = int(count)
        family = GaugeMetricFamily("vibe_tasks", "Tasks by state", labels=["state"])
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        yield family

    @staticmethod
    def _iterations(conn: Connection) -> Iterator[Metric]:
        ended = CounterMetricFamily(
            "vibe_iterations",
            "Finished iterations by outcome and development model",
            labels=["outcome", "model"],
        )
        seconds = CounterMetricFamily(
            "vibe_iteration_seconds",
            "Wall time of finished iterations by outcome and development model",
            labels=["outcome", "model"],
        )
        running = GaugeMetricFamily(
            "vibe_iterations_running", "Iterations under way by development model", labels=["model"]
        )
        rows = conn.execute(
            select(
                _ITERATION.c.outcome,
                _TASK.c.model,
                func.count(),
                func.coalesce(func.sum(_ITERATION.c.duration), 0.0),
            )
            .select_from(_ITERATION.join(_TASK, _ITERATION.c.task_id == _TASK.c.id))
            .group_by(_ITERATION.c.outcome, _TASK.c.model)
        )
        for outcome, model, count, duration in rows:
            if outcome == "running":
                running.add_metric([model], int(count))
            else:
                ended.add_metric([outcome, model], int(count))
                seconds.add_metric([outcome, model], float(duration))
        yield from (ended, seconds, running)

    def _jobs(self, conn: Connection) -> Iterator[Metric]:
        now = self.clock()
        # Ready: queued and due, or running under a lapsed lease (another worker may take
        # it); ready since then.
        ready_since = case(
            ((_JOB.c.status == "queued") & (_JOB.c.run_after <= now), _JOB.c.run_after),
            (
                (_JOB.c.status == "running") & (_JOB.c.lease_expires < now),
                _JOB.c.lease_expires,
            ),
        )
        rows = conn.execute(
            select(
                _JOB.c.status, func.count(), func.count(ready_since), func.min(ready_since)
            ).group_by(_JOB.c.status)
        ).all()
        depth = GaugeMetricFamily("vibe_jobs", "Jobs in the queue by status", labels=["status"])
        counts = dict.fromkeys(JOB_STATUSES, 0)
        ready = 0
        oldest: datetime | None = None
        for status, count, due, since in rows:
            counts[status] = int(count)
            ready += int(due)
            if since is not None:
                since = _aware(since)
                oldest = since if oldest is None else min(oldest, since)
        for status, count in counts.items():
            depth.add_metric([status], count)
        yield depth
        yield GaugeMetricFamily(
            "vibe_jobs_ready",
            "Jobs a worker could claim now (due, or under a lapsed lease)",
            value=ready,
        )
        yield GaugeMetricFamily(
            "vibe_jobs_oldest_ready_age_seconds",
            "How long the oldest claimable job has waited (0 when none waits)",
            value=max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0,
        )


def start_worker_http(
    host: str, port: int, *, engine: Engine, worker: Worker
) -> Callable[[], None]:
    """Serve ``/healthz`` (200 while the worker's threads are alive, else 503) and
    ``/metrics`` (the database's numbers and this process's) on ``host:port`` from a
    thread; returns the function that stops it. Binding errors (a port in use) raise
    ``OSError`` here, before anything runs."""
    metrics = Metrics(DatabaseCollector(engine))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                alive = worker.alive
                self._send(
                    200 if alive else 503,
                    b"ok\n" if alive else b"worker threads stopped\n",
                    "text/plain; charset=utf-8",
                )
            elif path == "/metrics":
                try:
                    body = metrics.render()
                except Exception as exc:  # noqa: BLE001 - a scrape must answer, not kill the thread
                    log.error("metrics.scrape_failed", error=f"{type(exc).__name__}: {exc}")
                    self._send(503, b"metrics unavailable\n", "text/plain; charset=utf-8")
                else:
                    self._send(200, body, CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            # Through structlog like every other line, not straight onto stderr.
            log.debug("worker_http.request", line=format % args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    # A client gone between readiness and accept() would leave a blocking accept() waiting
    # for the next one (accept(2)), and stop() waiting with it: accept fails instead.
    server.socket.setblocking(False)
    thread = threading.Thread(target=server.serve_forever, name="vibe-worker-http", daemon=True)
    thread.start()
    log.info("worker_http.started", host=host, port=server.server_address[1])

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5.0)

    return stop
