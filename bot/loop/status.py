"""The task's one status comment, updated at most every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import structlog

from bot.core.render import (
    Final,
    Phase,
    PhaseState,
    render_status,
    status_marker,
)
from bot.core.tasks import (
    TaskRecord,
)
from bot.loop.ports import Forge

log = structlog.get_logger(__name__)


class StatusBoard:
    """The task's one status comment, updated at most every ``interval`` seconds."""

    def __init__(
        self,
        forge: Forge,
        task: TaskRecord,
        iteration: int,
        number: int,
        *,
        interval: float,
        secrets: Sequence[str] = (),
        note: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.forge = forge
        self.interval = interval
        self.secrets = list(secrets)
        self.note = note
        self.task = task
        self.iteration = iteration
        self.number = number
        self.phases: dict[str, Phase] = {}
        self.last = 0.0
        self.dirty = False
        self.finished = False
        self.lock = threading.Lock()

    def phase(self, name: str, state: PhaseState, detail: str = "") -> None:
        with self.lock:
            self.phases[name] = Phase(name, state, detail)
            self.dirty = True
        self.note(f"  {state:8} {name}{f' ({detail})' if detail else ''}")
        self.flush()

    def restore(self, name: str, state: PhaseState, detail: str = "") -> None:
        """A phase an earlier run of the job finished, shown again from the records;
        published with the next change, not on its own."""
        with self.lock:
            self.phases[name] = Phase(name, state, detail)

    def flush(self, force: bool = False) -> None:
        """Publish pending changes if the interval has passed (or ``force``). Rendering and
        sending happen under one lock, so an older body never lands after a newer one."""
        with self.lock:
            now = time.monotonic()
            if self.finished or not self.dirty:
                return
            if not force and now - self.last < self.interval:
                return
            body = render_status(
                self.task.id,
                self.iteration,
                self.task.model,
                list(self.phases.values()),
                secrets=self.secrets,
            )
            self.last, self.dirty = now, False
            self.forge.upsert_comment(self.number, status_marker(self.task.id), body)

    def finish(self, final: Final) -> None:
        with self.lock:
            self.finished = True
            for name, phase in list(self.phases.items()):
                if phase.state in ("running", "pending"):
                    self.phases[name] = replace(
                        phase, state="failed" if final.outcome != "succeeded" else "done"
                    )
            body = render_status(
                self.task.id,
                self.iteration,
                self.task.model,
                list(self.phases.values()),
                final,
                self.secrets,
            )
            self.forge.upsert_comment(self.number, status_marker(self.task.id), body)
