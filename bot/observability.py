"""Structured logs and Prometheus metrics.

Logs go through structlog; configured secrets and token patterns are redacted from every
event's values before it is rendered and from the rendered line (DESIGN.md section 4 rule 8).
Metrics live in a registry per app, so several apps in one process (tests) do not collide.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot.core.redact import redact


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of writing, so that replacing it
    later (a test's capture, a daemon's redirect) never leaves logs pointing at a closed
    stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _CurrentStderr()


def configure_logging(level: str, *, json: bool, secrets: Sequence[str]) -> None:
    """Configure structlog for the process; every rendered value is redacted."""
    secret_list = tuple(secrets)

    def redact_event(
        _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if isinstance(value, str):
                event_dict[key] = redact(value, secret_list)
        return event_dict

    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        # Values that are not strings (dicts, lists, exceptions) are only text once
        # rendered: redact the rendered line too.
        return redact(renderer(logger, name, event_dict), secret_list)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,
            render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # Logs go to stderr, so that a command's own output on stdout (--json) stays clean.
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


class _QueueDepth(Collector):
    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self._depth = depth

    def collect(self) -> Any:
        family = GaugeMetricFamily("vibe_jobs", "Jobs in the queue by status", labels=["status"])
        counts = self._depth()
        for status in ("queued", "running", "done", "dead"):
            family.add_metric([status], counts.get(status, 0))
        yield family


class Metrics:
    """The service's Prometheus metrics."""

    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "vibe_deliveries",
            "Webhook deliveries by event and outcome",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "vibe_job_duration_seconds",
            "Job run time by kind and outcome",
            ["kind", "outcome"],
            buckets=(0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600),
            registry=self.registry,
        )
        self.registry.register(_QueueDepth(depth))

    def delivery(self, event: str, outcome: str) -> None:
        self.deliveries.labels(event=event, outcome=outcome).inc()

    def job(self, kind: str, outcome: str, seconds: float) -> None:
        self.job_seconds.labels(kind=kind, outcome=outcome).observe(seconds)
