"""Which handler runs which job kind. Both ``vibe serve`` and ``vibe worker`` use this map.

``probe`` is an operator's liveness check of the pipeline (``vibe jobs probe``): it waits the
requested seconds, watching its cancel event, and succeeds.

``event`` jobs need GitHub: without credentials no worker claims them, so they wait, stored,
until a worker that has credentials starts (a 202 means the work will happen; ``GET /`` and
the start-up message say what is missing).
"""

from __future__ import annotations

from bot.queue import Handler, JobContext
from bot.settings import Settings

MAX_PROBE_SECONDS = 600.0


def probe(ctx: JobContext) -> None:
    seconds = ctx.payload.get("seconds", 0)
    wait = min(float(seconds), MAX_PROBE_SECONDS) if isinstance(seconds, int | float) else 0.0
    ctx.cancel.wait(wait)


def build_handlers(settings: Settings) -> dict[str, Handler]:
    # Runs the agent locally, or on the repository's Actions runners (executor: actions).
    from bot.executor import event_handler

    handlers: dict[str, Handler] = {"probe": probe}
    if settings.has_github_credentials:
        handlers["event"] = event_handler(settings)
    return handlers
