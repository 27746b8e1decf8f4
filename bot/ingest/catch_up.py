"""Catch-up of missed deliveries: GitHub does not redeliver by itself (DESIGN.md section 5).

A periodic ``catch_up`` job reads the App webhook's delivery log (the last
:data:`WINDOW_SECONDS`; GitHub keeps 3 days) and asks GitHub to redeliver each event whose
GUID is not in our ``delivery`` table: one that failed while we were down or unreachable,
or one GitHub logged as delivered that never got here (a proxy answered, a database was
restored). A GUID we stored needs nothing, whatever GitHub logged for it: ingest answers
only after storing, and a redelivery of it would only be deduplicated. Each GUID is asked
for at most once: once the log holds a redelivery of it (ours or an operator's), it is
left alone, so an event our ingest refuses (a bad signature) is not asked for forever.

Each run queues the next one first (:func:`schedule`), so a run that fails (GitHub down, a
missing permission) does not end the chain; the job has one attempt, the next run is its
retry. Runs share one lane, and a run queues the next only when none is waiting, so
processes that each scheduled one at start end up with one chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot.jobs.queue import schedule_single
from bot.store.tables import Delivery

log = structlog.get_logger(__name__)

KIND = "catch_up"
LANE = "app:catch-up"
EVERY_SECONDS = 300.0
WINDOW_SECONDS = 3 * 24 * 3600.0  # GitHub keeps (and redelivers) 3 days of deliveries


class LoggedAttempt(Protocol):
    """One attempt of the App's delivery log, as the GitHub adapter reads it."""

    @property
    def attempt_id(self) -> int: ...

    @property
    def guid(self) -> str: ...

    @property
    def redelivery(self) -> bool: ...


class DeliveryLog(Protocol):
    def recent(self, since: float) -> Sequence[LoggedAttempt]: ...

    def redeliver(self, attempt_id: int) -> None: ...


@dataclass(frozen=True)
class CaughtUp:
    """What one run saw and asked for."""

    seen: int
    asked: tuple[str, ...]  # GUIDs


_STORED = select(Delivery.id).where(col(Delivery.id).in_(bindparam("ids", expanding=True)))


def missed(engine: Engine, attempts: Sequence[LoggedAttempt]) -> list[LoggedAttempt]:
    """The newest attempt of each GUID to ask for again: not stored here, never redelivered."""
    by_guid: dict[str, list[LoggedAttempt]] = {}
    for attempt in attempts:
        by_guid.setdefault(attempt.guid, []).append(attempt)
    if not by_guid:
        return []
    with engine.connect() as conn:
        stored = {row.id for row in conn.execute(_STORED, {"ids": list(by_guid)})}
    return [
        max(tries, key=lambda t: t.attempt_id)
        for guid, tries in by_guid.items()
        if guid not in stored and not any(t.redelivery for t in tries)
    ]


def catch_up(engine: Engine, deliveries: DeliveryLog, now: float) -> CaughtUp:
    """Ask GitHub to redeliver what the log of the last :data:`WINDOW_SECONDS` shows we
    missed."""
    attempts = deliveries.recent(now - WINDOW_SECONDS)
    asked: list[str] = []
    for attempt in missed(engine, attempts):
        deliveries.redeliver(attempt.attempt_id)
        asked.append(attempt.guid)
    if asked:
        log.info("ingest.redelivery_asked", count=len(asked), guids=asked[:20])
    return CaughtUp(len(attempts), tuple(asked))


def schedule(engine: Engine, delay: float = EVERY_SECONDS) -> bool:
    """Queue the next catch-up in ``delay`` seconds unless one is already waiting; True if
    this call queued it."""
    return schedule_single(engine, KIND, LANE, delay)
