"""The cost of one log line, redacted, against the same line unredacted. Run with
``python tests/benchmarks/bench_log_line.py [--lines 20000]``.

At the default level (INFO) every delivery writes ``delivery.stored`` on the event loop
(uvicorn's access line for it is left out: bot/ingest/webhook.py), and every job three more
on the workers: the lines are part of the ingest path. A line's values are checked at once
(:meth:`bot.core.redact.Redactor.leaves_alone`) and redacted one by one only when the check
finds something; the rendered line is redacted (bot/observability.py). Measured in one run:

  unredacted    the processors of :func:`bot.observability.configure_logging` without the
                redaction (the baseline)
  redacted      configure_logging itself, with two configured secrets
  value by value  the same, with the one check patched to say "redact each": what each line
                cost before the check
  every text    the same again, with every text searched by the credential pattern too (the
                prefilter, :func:`bot.core.redact.might_hold_token`, patched to say yes):
                what each line cost before the prefilter

And the console line (the default, ``VIBE_LOG_JSON`` unset), each against the other:

  console, structlog's   configure_logging with structlog's ``ConsoleRenderer`` patched in
                         (what every console line cost before ConsoleLines)
  console, ours          configure_logging itself: :class:`bot.observability.ConsoleLines`,
                         the same text

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
        bound.info(
            "delivery.stored",
            outcome="queued",
            action="labeled",
            store="new",
            status=202,
            client="140.82.115.20:51522",
        )
    return (time.perf_counter() - started) / lines * 1e6


def _always(_text: str) -> bool:
    return True


def _never(_self: redact_module.Redactor, _texts: object) -> bool:
    return False


def _structlogs_console() -> structlog.dev.ConsoleRenderer:
    return structlog.dev.ConsoleRenderer(colors=False)


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
    figures: dict[str, list[float]] = {
        "unredacted": [],
        "redacted": [],
        "value by value": [],
        "every text": [],
        "console, structlog's": [],
        "console, ours": [],
    }
    for _ in range(args.rounds):
        unredacted()
        figures["unredacted"].append(per_line(args.lines))
        observability.configure_logging("INFO", json=True, secrets=SECRETS)
        figures["redacted"].append(per_line(args.lines))
        with mock.patch.object(redact_module.Redactor, "leaves_alone", new=_never):
            figures["value by value"].append(per_line(args.lines))
            with mock.patch.object(redact_module, "might_hold_token", new=_always):
                figures["every text"].append(per_line(args.lines))
        with mock.patch.object(observability, "ConsoleLines", new=_structlogs_console):
            observability.configure_logging("INFO", json=False, secrets=SECRETS)
        figures["console, structlog's"].append(per_line(args.lines))
        observability.configure_logging("INFO", json=False, secrets=SECRETS)
        figures["console, ours"].append(per_line(args.lines))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(f"one delivery.stored line, median of {args.rounds} rounds of {args.lines}")
    print("JSON")
    for name in ("unredacted", "redacted", "value by value", "every text"):
        value = medians[name]
        ratio = value / medians["unredacted"]
        print(f"  {name:<22} {value:6.1f} us per line   {ratio:4.2f}x unredacted")
    print("console")
    for name in ("console, structlog's", "console, ours"):
        value = medians[name]
        ratio = value / medians["console, structlog's"]
        print(f"  {name:<22} {value:6.1f} us per line   {ratio:4.2f}x structlog's")


if __name__ == "__main__":
    main()
