"""The task's one status comment: phase changes written when they happen, progress within a
phase coalesced, the last state always written.

GitHub's secondary limits on content creation (80 a minute, 500 an hour) are per account
and shared by every task of an organisation, and so is the installation's hourly budget
(https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api), so what
one iteration writes must not grow with its agent steps:

- a change of the phases (a phase added, or its state changed) is written at once, or, when
  the last write was less than :data:`PHASE_SPACING` ago (GitHub asks for a second between
  writes; never more than the interval), as soon as that has passed
  (:func:`bot.loop.iteration._watch` flushes);
- a change of a running phase's detail alone (its step count) is progress: written at most
  once per ``interval`` (the repository's ``status.min_interval``) and at most
  :data:`MAX_PROGRESS_WRITES` times per phase, so a phase of any length costs the same;
- :meth:`StatusBoard.finish` writes the final state at once and nothing is written after it.

The comment's id is kept with the task: an update is one PATCH by id. A comment deleted
meanwhile (the edit answers 404) is found again by its marker or created, and the new id
kept.
"""

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
from bot.loop.ports import EditsComments, Forge

log = structlog.get_logger(__name__)

PHASE_SPACING = 1.0  # seconds between writes of phase changes (GitHub: a second between writes)
MAX_PROGRESS_WRITES = 2  # progress-only writes per phase


class StatusBoard:
    """The task's one status comment (see the module docstring for when it is written).

    ``comment_id`` is the comment's id as kept with the task (None before the first write);
    ``on_comment`` keeps a new one. ``clock`` gives monotonic seconds (tests inject one).
    """

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
        comment_id: int | None = None,
        on_comment: Callable[[int], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
        link: str | None = None,
    ) -> None:
        self.forge = forge
        self.link = link  # the task's console page (bot.core.render.console_link)
        self.interval = interval
        self.secrets = list(secrets)
        self.note = note
        self.task = task
        self.iteration = iteration
        self.number = number
        self.comment_id = comment_id
        self.on_comment = on_comment
        self.clock = clock
        self.phases: dict[str, Phase] = {}
        self.last = float("-inf")
        self.dirty = False
        self.finished = False
        self.written: tuple[tuple[str, str], ...] | None = None  # phases and states last written
        self.progress_writes = 0
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

    def _shape(self) -> tuple[tuple[str, str], ...]:
        return tuple((p.name, p.state) for p in self.phases.values())

    def due(self) -> bool:
        """Whether a pending change is to be written now (callers hold the lock)."""
        if self.finished or not self.dirty:
            return False
        since = self.clock() - self.last
        if self._shape() != self.written:
            return since >= min(PHASE_SPACING, self.interval)
        return since >= self.interval and self.progress_writes < MAX_PROGRESS_WRITES

    def flush(self, force: bool = False) -> None:
        """Publish pending changes when they are due (or ``force``). Rendering and sending
        happen under one lock, so an older body never lands after a newer one."""
        with self.lock:
            if self.finished or not self.dirty or not (force or self.due()):
                return
            shape = self._shape()
            self.progress_writes = self.progress_writes + 1 if shape == self.written else 0
            self.written, self.last, self.dirty = shape, self.clock(), False
            self._send(
                render_status(
                    self.task.id,
                    self.iteration,
                    self.task.model,
                    list(self.phases.values()),
                    secrets=self.secrets,
                    link=self.link,
                )
            )

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
                self.link,
            )
            self._send(body)

    def _send(self, body: str) -> None:
        """One PATCH by the kept id where the forge edits by id; else (no id yet, the
        comment deleted, a forge without ids) find by marker or create, and keep the id."""
        mark = status_marker(self.task.id)
        known = self.comment_id
        if known is not None and isinstance(self.forge, EditsComments):
            if self.forge.edit_comment(self.number, known, mark, body):
                return
            log.info("status.comment_gone", task=self.task.id, comment=known)
        found = self.forge.upsert_comment(self.number, mark, body)
        if found != known:
            self.comment_id = found
            try:
                self.on_comment(found)
            except Exception:  # an id not kept is found again by its marker next time
                log.warning("status.comment_id_not_kept", task=self.task.id, exc_info=True)
