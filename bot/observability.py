"""Structured logs and Prometheus metrics.

Logs go through structlog; configured secrets and token patterns are redacted from every
event's values before it is rendered and from the rendered line (DESIGN.md section 4 rule 8).
The standard library's loggers (uvicorn's, the SDKs') go through the same processors and the
same renderer on the root logger, so with JSON logs every line on stderr is one JSON object.

Metrics come in two kinds. Events of this process (API calls, rate-limit waits, sandboxed
commands, refused deliveries, job run times) are counted in :data:`PROCESS_REGISTRY`, which
holds the standard process, platform and GC collectors too. Each app's :class:`Metrics` has a
registry of its own for its deliveries (several apps in one process, as in tests, do not
collide) and the collectors it is given (what the database says at scrape time, in
``bot/entrypoints/metrics.py``); :meth:`Metrics.render` serves both.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

import structlog
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.registry import Collector

from bot.core.redact import Redactor


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the moment of writing, so that replacing it
    later (a test's capture, a daemon's redirect) never leaves logs pointing at a closed
    stream."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_STDERR = _CurrentStderr()


class _RootHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` puts on the root logger (found again by its
    class when logging is configured anew)."""


# The keys structlog's ConsoleRenderer prints as columns of their own, in its order, before
# the other keys (the empty key is its default column's, so it comes first, as ``=value``);
# and the characters that make it quote a string value (its ``_repr``).
_COLUMNS = ("", "timestamp", "level", "event", "logger", "logger_name")
_QUOTE_IF = frozenset(" \t=\r\n\"'")


class ConsoleLines:
    """structlog's ``ConsoleRenderer(colors=False)``, the same text for the same event, at
    a fraction of its cost: it builds every column with a formatter object and a StringIO
    of its own, which made it half the cost of a log line (about 18 of 35 us), and every
    delivery the service takes writes one. A line with a stack or an exception goes to
    structlog's own renderer, whose tracebacks this does not copy. The columns: the
    timestamp; the level in brackets, padded to the longest level name; the event padded
    to 30 characters; the logger's name in brackets; then every other key, sorted, as
    ``key=value``, a string as it is unless it holds a space, a quote, ``=`` or a line
    break (then its ``repr``), any other value as its ``repr``. That they agree is tested
    on generated events (tests/entrypoints/test_console_lines.py)."""

    def __init__(self) -> None:
        self.structlog_renderer = structlog.dev.ConsoleRenderer(colors=False)
        levels = structlog.dev.ConsoleRenderer.get_default_level_styles(colors=False)
        self.level_width = max(map(len, levels))

    def __call__(self, logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        if "stack" in event_dict or "exception" in event_dict or "exc_info" in event_dict:
            return str(self.structlog_renderer(logger, name, event_dict))
        parts: list[str] = []
        for key in _COLUMNS:
            if key not in event_dict:
                continue
            value = event_dict.pop(key)
            if key == "":
                parts.append(f"={_console_value(value)}")
            elif key == "timestamp":
                parts.append(str(value))
            elif key == "level":
                parts.append(f"[{value.ljust(self.level_width)}]")
            elif key == "event":
                parts.append(str(value).ljust(30))
            else:
                parts.append(f"[{value}]")
        parts += [f"{key}={_console_value(event_dict[key])}" for key in sorted(event_dict)]
        return " ".join(part for part in parts if part).rstrip(" ")


def _console_value(value: Any) -> str:
    if isinstance(value, str) and _QUOTE_IF.isdisjoint(value):
        return value
    return repr(value)


def configure_logging(level: str, *, json: bool, secrets: Sequence[str]) -> None:
    """Configure structlog and the standard library's root logger for the process: one
    stream (stderr), one renderer (JSON or console), every rendered value redacted."""
    redact = Redactor(secrets)

    def redact_event(
        _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        texts = [value for value in event_dict.values() if isinstance(value, str)]
        if redact.leaves_alone(texts):
            return event_dict
        for key, value in list(event_dict.items()):
            if isinstance(value, str):
                event_dict[key] = redact(value)
        return event_dict

    renderer: Any = structlog.processors.JSONRenderer() if json else ConsoleLines()

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        # Values that are not strings (dicts, lists, exceptions) are only text once
        # rendered: redact the rendered line too.
        return redact(renderer(logger, name, event_dict))

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    finish: list[Any] = [structlog.processors.format_exc_info, redact_event, render]
    structlog.configure(
        processors=[*shared, *finish],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # Logs go to stderr, so that a command's own output on stdout (--json) stays clean.
        logger_factory=structlog.PrintLoggerFactory(file=_STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    # Lines of the standard library's loggers (uvicorn's access and error logs, the SDKs')
    # take the same way: the job's context, the level, the time, redaction, the renderer.
    handler = _RootHandler(_STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _RootHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The HTTP clients log every request at INFO; the bot's own lines say what matters.
    # alembic 1.17 logs each of its plugins' set-up at INFO before every migration check,
    # seven lines ahead of what `vibe serve` has to say; its migrations' lines stay.
    for chatty in ("httpx", "httpx2", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


# Per-process events (API calls, rate-limit waits, sandbox commands, refused deliveries, job
# run times) are counted in one registry per process: they happen in whichever component
# does the work, far below the app, and every /metrics of the process serves them beside the
# values collected from the database at scrape time.
PROCESS_REGISTRY = REGISTRY  # prometheus_client's own: the process, platform and GC collectors
# No ``*_created`` series: Prometheus does not need them and they double every counter.
disable_created_metrics()  # type: ignore[no-untyped-call]

_DURATION_BUCKETS = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600)

SANDBOX_OUTCOMES = ("ok", "failed", "limit", "timeout", "cancelled", "start_failed")

# Why POST /webhook refused a delivery before storing it (bot/ingest/webhook.py);
# ``malformed_body`` is stored all the same, and refused by the job that handles it.
WEBHOOK_REJECTIONS = (
    "oversize",
    "missing_signature",
    "malformed_signature",
    "bad_signature",
    "no_secret",
    "missing_headers",
    "malformed_body",
)

# Kinds of GitHub rate limit the adapter waited for (bot/github/retry.py): a retry-after
# header, the primary limit spent (x-ratelimit-remaining: 0), a secondary limit.
RATE_LIMIT_KINDS = ("retry_after", "primary", "secondary")

_SANDBOX_SECONDS = Histogram(
    "vibe_sandbox_command_seconds",
    "Sandboxed command wall time by outcome (ok, failed, limit, timeout, cancelled, start_failed)",
    ["outcome"],
    buckets=_DURATION_BUCKETS,
    registry=PROCESS_REGISTRY,
)
_JOB_SECONDS = Histogram(
    "vibe_job_duration_seconds",
    "Job run time by kind and outcome (done, queued for a retry, dead, released, lost)",
    ["kind", "outcome"],
    buckets=_DURATION_BUCKETS,
    registry=PROCESS_REGISTRY,
)
_WEBHOOK_REJECTED = Counter(
    "vibe_webhook_verification_failures",
    "Deliveries refused before they were stored, by reason",
    ["reason"],
    registry=PROCESS_REGISTRY,
)
_GITHUB_REQUESTS = Counter(
    "vibe_github_requests",
    "GitHub API request attempts by status: 2xx, GitHub's error status, timeout, "
    "connection_error, or error (a GraphQL answer with errors)",
    ["status"],
    registry=PROCESS_REGISTRY,
)
_RATE_LIMIT_WAITS = Counter(
    "vibe_github_rate_limit_waits",
    "Waits for a GitHub rate limit by kind (retry_after, primary, secondary)",
    ["kind"],
    registry=PROCESS_REGISTRY,
)
_RATE_LIMIT_SECONDS = Counter(
    "vibe_github_rate_limit_wait_seconds",
    "Seconds spent waiting for GitHub rate limits by kind",
    ["kind"],
    registry=PROCESS_REGISTRY,
)
_MODEL_REQUESTS = Counter(
    "vibe_model_requests",
    "Model API request attempts (the SDK's retries included) by model and HTTP status, "
    "or timeout, connection_error",
    ["model", "status"],
    registry=PROCESS_REGISTRY,
)
_MODEL_ERRORS = Counter(
    "vibe_model_errors",
    "Model turns that failed after the SDK's retries, by model and kind (spend_limit, "
    "too_large, stream_broken, unavailable, fatal, cancelled)",
    ["model", "kind"],
    registry=PROCESS_REGISTRY,
)
_MODEL_TOKENS = Counter(
    "vibe_model_tokens",
    "Model tokens by model and kind (input, output, cache_write, cache_read)",
    ["model", "kind"],
    registry=PROCESS_REGISTRY,
)
_MODEL_DOLLARS = Counter(
    "vibe_model_cost_dollars",
    "What the model calls cost, in US dollars at the configured prices, by model",
    ["model"],
    registry=PROCESS_REGISTRY,
)

# Known label values start at zero, so a rate over them exists before the first event.
for _outcome in SANDBOX_OUTCOMES:
    _SANDBOX_SECONDS.labels(outcome=_outcome)
for _reason in WEBHOOK_REJECTIONS:
    _WEBHOOK_REJECTED.labels(reason=_reason)
for _kind in RATE_LIMIT_KINDS:
    _RATE_LIMIT_WAITS.labels(kind=_kind)
    _RATE_LIMIT_SECONDS.labels(kind=_kind)


def _known(value: str, known: tuple[str, ...], what: str) -> str:
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}")
    return value


def sandbox_command(outcome: str, seconds: float) -> None:
    """Count one sandboxed command: how it ended and how long it ran."""
    _SANDBOX_SECONDS.labels(outcome=_known(outcome, SANDBOX_OUTCOMES, "sandbox outcome")).observe(
        seconds
    )


def job_finished(kind: str, outcome: str, seconds: float) -> None:
    """Count one job run (the worker's ``on_finished``)."""
    _JOB_SECONDS.labels(kind=kind, outcome=outcome).observe(seconds)


def webhook_rejected(reason: str) -> None:
    """Count a delivery refused before it was stored."""
    _WEBHOOK_REJECTED.labels(reason=_known(reason, WEBHOOK_REJECTIONS, "rejection")).inc()


def github_request(status: str) -> None:
    """Count one attempt of a GitHub API request."""
    _GITHUB_REQUESTS.labels(status=status).inc()


def github_rate_limit_wait(kind: str, seconds: float) -> None:
    """Count a wait for a GitHub rate limit and its length."""
    _known(kind, RATE_LIMIT_KINDS, "rate limit kind")
    _RATE_LIMIT_WAITS.labels(kind=kind).inc()
    _RATE_LIMIT_SECONDS.labels(kind=kind).inc(seconds)


def model_request(model: str, status: str) -> None:
    """Count one HTTP attempt of a model API call."""
    _MODEL_REQUESTS.labels(model=model, status=status).inc()


def model_error(model: str, kind: str) -> None:
    """Count a model turn that failed after the SDK's retries."""
    _MODEL_ERRORS.labels(model=model, kind=kind).inc()


def model_usage(model: str, tokens: Mapping[str, int], dollars: float) -> None:
    """Count what one model turn used (``tokens`` by kind: input, output, cache_write,
    cache_read) and cost. Counted where the turn ends, not read back from the stored agent
    steps: pruning old steps must not make a counter go down."""
    for kind, count in tokens.items():
        _MODEL_TOKENS.labels(model=model, kind=kind).inc(count)
    _MODEL_DOLLARS.labels(model=model).inc(dollars)


class Metrics:
    """One app's metrics: its deliveries and the collectors it is given (the database's
    numbers), served with the process's own by :meth:`render`."""

    def __init__(self, *collectors: Collector) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "vibe_deliveries",
            "Webhook deliveries by event and outcome",
            ["event", "outcome"],
            registry=self.registry,
        )
        for collector in collectors:
            self.registry.register(collector)

    def delivery(self, event: str, outcome: str) -> None:
        self.deliveries.labels(event=event, outcome=outcome).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition: this app's families, then the process's."""
        return generate_latest(self.registry) + generate_latest(PROCESS_REGISTRY)
