"""The cost of one log line, redacted, against the same line unredacted. Run with
``python tests/benchmarks/bench_log_line.py [--lines 20000]``.

At the default level (INFO) every delivery writes ``delivery.stored`` and uvicorn's access
line on the event loop, and every job three more on the workers: the lines are part of the
ingest path. Each line's values and the rendered line are redacted
(:class:`bot.core.redact.Redactor`, bot/observability.py). Measured in one run:

  unredacted  the processors of :func:`bot.observability.configure_logging` without the
              redaction (the baseline)
  redacted    configure_logging itself, with two configured secrets
  every text  the same, with every text searched by the credential pattern (the prefilter,
              :func:`bot.core.redact.might_hold_token`, patched to say yes): what each line
              cost before the prefilter

The stream is a sink that counts characters, so the figures are the processors' alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import structlog

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot import observability  # noqa: E402
from bot.core import redact as redact_module  # noqa: E402

SECRETS = ["bench-secret-0123456789abcdef", "sk-ant-" + "k" * 40]


def per_line(lines: int) -> float:
    """Microseconds per ``delivery.stored`` line as the webhook writes it."""
    log = structlog.get_logger("bot.ingest.webhook")
    started = time.perf_counter()
    for _ in range(lines):
        bound = log.bind(delivery="61e582f8-48eb-4a7d-bd9a-358424a34cfb", gh_event="issues")
        bound.info("delivery.stored", outcome="queued", action="labeled", store="new")
    return (time.perf_counter() - started) / lines * 1e6


def _always(_text: str) -> bool:
    return True


def unredacted() -> None:
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(20),
        logger_factory=structlog.PrintLoggerFactory(file=observability._STDERR),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sink: Any = observability._STDERR
    sink.write = len  # a sink: the characters are counted, not written
    figures: dict[str, list[float]] = {"unredacted": [], "redacted": [], "every text": []}
    for _ in range(args.rounds):
        unredacted()
        figures["unredacted"].append(per_line(args.lines))
        observability.configure_logging("INFO", json=True, secrets=SECRETS)
        figures["redacted"].append(per_line(args.lines))
        with mock.patch.object(redact_module, "might_hold_token", new=_always):
            figures["every text"].append(per_line(args.lines))
    base = statistics.median(figures["unredacted"])
    print(f"one delivery.stored line, JSON, median of {args.rounds} rounds of {args.lines}")
    for name, values in figures.items():
        value = statistics.median(values)
        print(f"{name:<11} {value:6.1f} us per line   {value / base:4.2f}x unredacted")


if __name__ == "__main__":
    main()
