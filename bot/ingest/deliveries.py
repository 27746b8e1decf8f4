"""Deliveries in the database: dedupe, and each delivery with its job in one transaction.

A 202 means the work will happen (DESIGN.md section 5), so a delivery and its job are
committed together. The job row is written by the queue (:func:`bot.jobs.queue.enqueue_many`,
:func:`bot.jobs.queue.requeue_dead`), inside ingest's transaction: the queue is the only
writer of job rows. A repeated delivery id stores nothing new, unless its job ended dead:
GitHub redelivers on request (an operator, or the bot's own catch-up), so the job is queued
again with fresh attempts.

:class:`DeliveryWriter` is the group commit of the webhook path; :func:`stored_delivery` is
how an ``event`` job finds the delivery it was queued for.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam, case, or_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select, update

from bot.jobs.queue import NewJob, enqueue_many, requeue_dead
from bot.store.engine import write_transaction
from bot.store.tables import Delivery, Task, utcnow

LANE_RE = re.compile(r"(?P<repo>[^#]+)#(?P<number>\d+)(?P<suffix>/control)?")

StoreResult = Literal["new", "duplicate", "requeued"]


@dataclass(frozen=True)
class Ingested:
    """What ingest decided about a delivery."""

    outcome: str  # queued | ping | unsupported | unparseable
    action: str | None
    detail: str | None
    serial_key: str | None


@dataclass(frozen=True)
class Incoming:
    """A verified, parsed delivery on its way to the database."""

    delivery_id: str
    event_name: str
    payload: dict[str, Any]
    ingested: Ingested


@dataclass(frozen=True)
class StoredDelivery:
    """The delivery an ``event`` job was queued for."""

    id: str
    event_name: str
    payload: dict[str, Any]


class UnknownDelivery(LookupError):
    """A job names no stored delivery: there is nothing to handle, now or later."""


def stored_delivery(engine: Engine, delivery_id: str | None) -> StoredDelivery:
    """The stored delivery ``delivery_id``; :class:`UnknownDelivery` if there is none."""
    if delivery_id is not None:
        with Session(engine) as session:
            delivery = session.get(Delivery, delivery_id)
            if delivery is not None:
                return StoredDelivery(delivery.id, delivery.event, dict(delivery.payload))
    raise UnknownDelivery(f"the job has no stored delivery ({delivery_id or 'none named'})")


def _repository(payload: dict[str, Any]) -> str | None:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return name[:300] if isinstance(name, str) else None


def _id_of(payload: dict[str, Any], key: str) -> int | None:
    obj = payload.get(key)
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _installation(payload: dict[str, Any]) -> int | None:
    return _id_of(payload, "installation")


# Built once, with bound parameters, so each delivery reuses the compiled statements.
_KNOWN_DELIVERIES = select(Delivery.id).where(
    col(Delivery.id).in_(bindparam("ids", expanding=True))
)
_INSERT_DELIVERY = Delivery.__table__.insert()  # type: ignore[attr-defined]
# The task owning PR ``pr``: by repository id first, then by name (a task stored before its
# repository's id was kept), in one statement, as this runs for every delivery.
_TASK_BY_PR = (
    select(Task.number)
    .where(
        col(Task.pr_number) == bindparam("pr"),
        or_(col(Task.repository_id) == bindparam("id"), col(Task.repository) == bindparam("repo")),
    )
    .order_by(case((col(Task.repository_id) == bindparam("id"), 0), else_=1))
    .limit(1)
)


def task_lane(conn: Connection, key: str | None, repo_id: int | None = None) -> str | None:
    """Route a PR's events to the lane of the task that owns the PR.

    A task started from issue #7 opens PR #8; reviews on #8 and commands on #7 must never run
    at once, so both use the lane ``repo#7``. With GitHub's repository id the lane is
    ``repository:<id>#7``: a renamed or transferred repository keeps its id, so events sent
    under the old name and under the new one share the lane.
    """
    match = LANE_RE.fullmatch(key or "")
    if match is None:
        return key
    number = int(match["number"])
    lane = match["repo"] if repo_id is None else f"repository:{repo_id}"
    row = conn.execute(_TASK_BY_PR, {"id": repo_id, "repo": match["repo"], "pr": number}).first()
    owner = number if row is None else row.number
    return f"{lane}#{owner}{match['suffix'] or ''}"


def _store_batch(
    conn: Connection, items: Sequence[Incoming], max_attempts: int
) -> list[StoreResult]:
    """Store a batch with a handful of statements: one look-up of known ids, one multi-row
    insert of deliveries, one of jobs. Repeats (known ids, or twice in the batch) go the
    redelivery way one by one; they are rare."""
    ids = list({item.delivery_id for item in items})
    known = {row.id for row in conn.execute(_KNOWN_DELIVERIES, {"ids": ids})}
    results: list[StoreResult] = []
    fresh: list[Incoming] = []
    for item in items:
        if item.delivery_id in known:
            results.append(_redeliver(conn, item.delivery_id))
        else:
            known.add(item.delivery_id)
            fresh.append(item)
            results.append("new")
    if not fresh:
        return results
    now = utcnow()
    conn.execute(
        _INSERT_DELIVERY,
        [
            {
                "id": item.delivery_id,
                "event": item.event_name,
                "action": item.ingested.action,
                "repository": _repository(item.payload),
                "installation_id": _installation(item.payload),
                "outcome": item.ingested.outcome,
                "detail": item.ingested.detail,
                "payload": item.payload,
                "received_at": now,
                "redeliveries": 0,
            }
            for item in fresh
        ],
    )
    enqueue_many(
        conn,
        [
            NewJob(
                "event",
                {"event": item.event_name, "action": item.ingested.action},
                serial_key=task_lane(
                    conn, item.ingested.serial_key, _id_of(item.payload, "repository")
                ),
                delivery_id=item.delivery_id,
                max_attempts=max_attempts,
            )
            for item in fresh
            if item.ingested.outcome == "queued"
        ],
    )
    return results


def _redeliver(conn: Connection, delivery_id: str) -> StoreResult:
    conn.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id)
        .values(redeliveries=Delivery.redeliveries + 1)
    )
    return "requeued" if requeue_dead(conn, delivery_id) else "duplicate"


def store_deliveries(
    engine: Engine, items: Sequence[Incoming], max_attempts: int
) -> list[StoreResult]:
    """Store deliveries (each with its job) in one transaction; deduplicate on the id.

    If the batch collides with a concurrent writer in another process (PostgreSQL unique
    violation), each delivery is stored on its own so that only the duplicate is refused.
    """
    try:
        with write_transaction(engine) as conn:
            return _store_batch(conn, items, max_attempts)
    except IntegrityError:
        if len(items) == 1:
            # Two deliveries with one id raced (PostgreSQL): the other one won.
            return ["duplicate"]
        return [store_deliveries(engine, [item], max_attempts)[0] for item in items]


class DeliveryWriter:
    """Group commit for ingest: one thread stores waiting deliveries in one transaction.

    A request awaits its delivery's result, so a 202 still means the delivery and its job
    are committed. Batching turns N commits (and N fights over SQLite's write lock) into one,
    which is what keeps latency flat at high concurrency.
    """

    def __init__(self, engine: Engine, max_attempts: int, max_batch: int = 200) -> None:
        self.engine = engine
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[
            tuple[Incoming, asyncio.AbstractEventLoop, asyncio.Future[StoreResult]] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def store(self, item: Incoming) -> StoreResult:
        self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._queue.put((item, loop, future))
        return await future

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="vibe-ingest-writer", daemon=True
                )
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(
        self,
        batch: list[tuple[Incoming, asyncio.AbstractEventLoop, asyncio.Future[StoreResult]]],
    ) -> None:
        outcome: list[StoreResult] | BaseException
        try:
            outcome = store_deliveries(
                self.engine, [item for item, _, _ in batch], self.max_attempts
            )
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request as a 500
            outcome = exc
        by_loop: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        for n, (_, loop, future) in enumerate(batch):
            by_loop.setdefault(loop, []).append(_resolver(future, outcome, n))
        for loop, calls in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(_run_all, calls)


def _resolver(
    future: asyncio.Future[StoreResult], outcome: list[StoreResult] | BaseException, n: int
) -> Callable[[], None]:
    def resolve() -> None:
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome[n])

    return resolve


def _run_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()
