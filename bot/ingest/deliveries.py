"""Deliveries in the database: dedupe, and each delivery with its job in one transaction.

A 202 means the work will happen (DESIGN.md section 5), so a delivery and its job are
committed together. The job row is written by the queue (:func:`bot.jobs.queue.enqueue_many`,
:func:`bot.jobs.queue.requeue_dead`), inside ingest's transaction: the queue is the only
writer of job rows. A repeated delivery id stores nothing new, unless its job ended dead:
GitHub redelivers on request (an operator, or the bot's own catch-up), so the job is queued
again with fresh attempts.

A delivery is stored as received (its verified body and media type) with the few columns
ingest read from it; the ``event`` job decodes the body (:func:`stored_delivery`), and a
body that is no JSON object the bot can store is refused there, for good, with the reason
recorded on the delivery (outcome ``refused``).

:func:`read_delivery` is ingest's reading of a delivery (what the answer and the job's lane
need); :class:`DeliveryWriter` is the group commit of the webhook path in process, on
SQLite and PostgreSQL alike (one transaction for the deliveries waiting, with one look-up
of the lanes of the batch), and :mod:`bot.ingest.store_process` does both in a process of
its own (``vibe serve``); :func:`stored_delivery` is how an ``event`` job finds the
delivery it was queued for.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Literal, Protocol

import structlog
from sqlalchemy import and_, bindparam, or_
from sqlalchemy import select as sql_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session, col, select, update

from bot.core.events import Unparseable, Unsupported, parse_event
from bot.core.policy import serial_key
from bot.ingest.payload import BadPayload, decode_payload
from bot.jobs.queue import NewJob, enqueue_many, requeue_dead
from bot.store.engine import write_transaction
from bot.store.tables import Delivery, Task, utcnow

log = structlog.get_logger(__name__)

# The database is away (down, frozen past a timeout, the pool exhausted): no delivery of the
# batch can be stored now, and the request answers 503.
AWAY = (OperationalError, PoolTimeout)

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
    """A verified delivery on its way to the database: the body as received and its media
    type are stored; ``payload``, what ingest read of it (empty when it read nothing), gives
    the few columns ingest fills and the job's lane."""

    delivery_id: str
    event_name: str
    payload: dict[str, Any]
    ingested: Ingested
    body: bytes
    content_type: str


@dataclass(frozen=True)
class StoredDelivery:
    """The delivery an ``event`` job was queued for."""

    id: str
    event_name: str
    payload: dict[str, Any]


def classify(event_name: str, payload: dict[str, Any], bot_login: str) -> Ingested:
    """What ingest makes of a delivery it could read: a ping, an event the bot does not
    handle, one it cannot use (and why), or a job queued in its lane."""
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    if event_name == "ping":
        return Ingested("ping", action, None, None)
    event = parse_event(event_name, payload)
    if isinstance(event, Unsupported):
        return Ingested("unsupported", action, None, None)
    if isinstance(event, Unparseable):
        return Ingested("unparseable", action, event.reason, None)
    return Ingested("queued", action, None, serial_key(event, bot_login))


@dataclass(frozen=True)
class Received:
    """A verified delivery as the request hands it over: the body as received, its media
    type, and the two headers that name it."""

    delivery_id: str
    event_name: str
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Taken:
    """A delivery stored with its job: how the store went, what ingest made of it, and,
    for a body that is no JSON object the bot can store, why (stored and queued all the
    same: the job that handles it refuses it and records the reason on the delivery)."""

    result: StoreResult
    ingested: Ingested
    malformed: str | None = None


class DeliveryStore(Protocol):
    """What the webhook hands a verified delivery to, to be read and stored: a
    :class:`DeliveryWriter` reads it on the caller's event loop and stores it from threads
    of this process; :class:`bot.ingest.store_process.StoreProcess` does both in a process
    of its own. :class:`Unstorable` for a delivery the database refuses, one of
    :data:`AWAY` when the database (or the store's process) is away."""

    async def take(self, received: Received) -> Taken: ...

    def close(self) -> None: ...


def read_delivery(received: Received, bot_login: str) -> tuple[Incoming, str | None]:
    """The delivery read (:func:`bot.ingest.payload.decode_payload`) and classified, on its
    way to the database; with the reason when the body cannot be read."""
    malformed: str | None = None
    try:
        payload = decode_payload(received.body, received.content_type)
    except BadPayload as exc:
        payload, ingested, malformed = {}, Ingested("queued", None, None, None), str(exc)
    else:
        ingested = classify(received.event_name, payload, bot_login)
    incoming = Incoming(
        received.delivery_id,
        received.event_name,
        payload,
        ingested,
        received.body,
        received.content_type,
    )
    return incoming, malformed


class Unstorable(Exception):
    """The database refused this one delivery's values; the others of its batch are stored."""


class UnknownDelivery(LookupError):
    """A job names no stored delivery: there is nothing to handle, now or later."""


class RefusedDelivery(UnknownDelivery):
    """The stored body is no JSON object the bot can read: the delivery records why
    (outcome ``refused``) and there is nothing to handle, now or later."""


REFUSED = "refused"


def stored_delivery(engine: Engine, delivery_id: str | None) -> StoredDelivery:
    """The stored delivery ``delivery_id``, its body decoded here, in the job that handles
    it; :class:`UnknownDelivery` if there is none, :class:`RefusedDelivery` (recorded on the
    delivery, with the reason) if its body cannot be read."""
    if delivery_id is not None:
        with Session(engine) as session:
            delivery = session.get(Delivery, delivery_id)
        if delivery is not None:
            if delivery.body is None:  # stored before revision 0006
                return StoredDelivery(delivery.id, delivery.event, dict(delivery.payload or {}))
            try:
                payload = decode_payload(delivery.body, delivery.content_type or "")
            except BadPayload as exc:
                reason = f"body is not a JSON object the bot can store: {exc}"
                _record_refusal(engine, delivery.id, reason)
                raise RefusedDelivery(f"delivery {delivery.id} refused: {reason}") from None
            return StoredDelivery(delivery.id, delivery.event, payload)
    raise UnknownDelivery(f"the job has no stored delivery ({delivery_id or 'none named'})")


def _record_refusal(engine: Engine, delivery_id: str, reason: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            update(Delivery)
            .where(col(Delivery.id) == delivery_id)
            .values(outcome=REFUSED, detail=reason)
        )
    log.warning("delivery.refused", delivery=delivery_id, reason=reason)


def _repository(payload: dict[str, Any]) -> str | None:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return name[:300] if isinstance(name, str) else None


# The integer columns' ranges: a number past them is no GitHub id, and stored it would fail
# the insert (PostgreSQL "integer out of range", SQLite OverflowError).
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _id_of(payload: dict[str, Any], key: str, largest: int = INT64_MAX) -> int | None:
    obj = payload.get(key)
    value = obj.get("id") if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= largest else None


def _installation(payload: dict[str, Any]) -> int | None:
    return _id_of(payload, "installation", INT32_MAX)


def _fit(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


# Built once, with bound parameters, so each delivery reuses the compiled statements.
_DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
_KNOWN_DELIVERIES = select(Delivery.id).where(
    col(Delivery.id).in_(bindparam("ids", expanding=True))
)
_INSERT_DELIVERY = _DELIVERY.insert()
# PostgreSQL: the deliveries whose id is not stored yet, and their ids back, in one
# statement; the unique index decides, so a delivery another process is storing at the
# same moment is waited for and then skipped, not a unique violation that fails the batch.
# https://www.postgresql.org/docs/current/sql-insert.html#SQL-ON-CONFLICT
_INSERT_NEW_DELIVERIES = (
    pg_insert(_DELIVERY).on_conflict_do_nothing(index_elements=[_DELIVERY.c.id])
).returning(_DELIVERY.c.id)
# The tasks that may own the PRs of a batch: by PR number or by a head branch the task
# opened its PR from, in the repository by id or by name (a task stored before its
# repository's id was kept). One statement per batch; :func:`task_lanes` picks per delivery.
_TASKS_BY_PR = sql_select(
    col(Task.number),
    col(Task.pr_number),
    col(Task.branch),
    col(Task.owns_pr),
    col(Task.repository_id),
    col(Task.repository),
).where(
    or_(
        col(Task.pr_number).in_(bindparam("prs", expanding=True)),
        and_(col(Task.branch).in_(bindparam("heads", expanding=True)), col(Task.owns_pr)),
    ),
    or_(
        col(Task.repository_id).in_(bindparam("ids", expanding=True)),
        col(Task.repository).in_(bindparam("repos", expanding=True)),
    ),
)


def _head_branch(payload: dict[str, Any]) -> str | None:
    """The head branch of the PR a delivery is about, when it lives in the repository."""
    pull = payload.get("pull_request")
    head = pull.get("head") if isinstance(pull, dict) else None
    if not isinstance(head, dict) or not isinstance(head.get("ref"), str):
        return None
    head_repo = head.get("repo")
    name = head_repo.get("full_name") if isinstance(head_repo, dict) else None
    return head["ref"] if name is not None and name == _repository(payload) else None


@dataclass(frozen=True)
class LaneQuery:
    """What routes one delivery: its serial key, its repository's id, its PR's head branch."""

    key: str | None
    repo_id: int | None = None
    head: str | None = None


def task_lane(
    conn: Connection, key: str | None, repo_id: int | None = None, head: str | None = None
) -> str | None:
    """Route a PR's events to the lane of the task that owns the PR.

    A task started from issue #7 opens PR #8; reviews on #8 and commands on #7 must never run
    at once, so both use the lane ``repo#7``. With GitHub's repository id the lane is
    ``repository:<id>#7``: a renamed or transferred repository keeps its id, so events sent
    under the old name and under the new one share the lane.
    """
    return task_lanes(conn, [LaneQuery(key, repo_id, head)])[0]


def task_lanes(conn: Connection, queries: Sequence[LaneQuery]) -> list[str | None]:
    """:func:`task_lane` of each query, with one statement for all of them (a batch)."""
    parsed = [(q, LANE_RE.fullmatch(q.key or "")) for q in queries]
    # A number past INT32_MAX is no pull request's, and no column's: nothing to look up.
    wanted = [(q, m) for q, m in parsed if m is not None and int(m["number"]) <= INT32_MAX]
    rows: list[Any] = []
    if wanted:
        rows = list(
            conn.execute(
                _TASKS_BY_PR,
                {
                    "prs": sorted({int(m["number"]) for _, m in wanted}),
                    "heads": sorted({q.head for q, _ in wanted if q.head is not None}),
                    "ids": sorted({q.repo_id for q, _ in wanted if q.repo_id is not None}),
                    "repos": sorted({m["repo"] for _, m in wanted}),
                },
            )
        )
    lanes: list[str | None] = []
    for query, match in parsed:
        if match is None:
            lanes.append(query.key)
            continue
        number = int(match["number"])
        lane = match["repo"] if query.repo_id is None else f"repository:{query.repo_id}"
        owner = _owner(rows, match["repo"], number, query) if number <= INT32_MAX else None
        lanes.append(f"{lane}#{number if owner is None else owner}{match['suffix'] or ''}")
    return lanes


def _owner(rows: Sequence[Any], repo: str, pr: int, query: LaneQuery) -> int | None:
    """The number of the task owning PR ``pr``, or opening its own PR from the branch
    ``query.head``, in the repository (by id, else by name): a task by PR number before one
    by branch, one matched by repository id before one matched by name."""
    best: tuple[int, int, int] | None = None
    for row in rows:
        by_pr = row.pr_number == pr
        by_branch = query.head is not None and row.branch == query.head and bool(row.owns_pr)
        by_id = query.repo_id is not None and row.repository_id == query.repo_id
        if not (by_pr or by_branch) or not (by_id or row.repository == repo):
            continue
        rank = (0 if by_pr else 1, 0 if by_id else 1, row.number)
        if best is None or rank < best:
            best = rank
    return None if best is None else best[2]


def _store_batch(
    conn: Connection, items: Sequence[Incoming], max_attempts: int
) -> list[StoreResult]:
    """Store a batch with a handful of statements: one multi-row insert of the deliveries
    not stored yet (:func:`_insert_new`), one of their jobs. Repeats (ids stored before, or
    twice in the batch) go the redelivery way one by one, after the insert; they are rare.

    Rows are inserted and updated in the order of their ids: two batches holding the same
    ids in opposite orders (redeliveries landing on two processes) otherwise each waited on
    a key the other held, and PostgreSQL broke the deadlock by failing one batch (in 12 of
    30 tries with 200 ids)."""
    firsts: dict[str, int] = {}
    for index, item in enumerate(items):
        firsts.setdefault(item.delivery_id, index)
    distinct = [items[index] for index in firsts.values()]
    stored = _insert_new(conn, sorted(distinct, key=attrgetter("delivery_id")))
    results: list[StoreResult] = ["new"] * len(items)
    repeats = [
        (item.delivery_id, index)
        for index, item in enumerate(items)
        if firsts[item.delivery_id] != index or item.delivery_id not in stored
    ]
    for delivery_id, index in sorted(repeats):
        results[index] = _redeliver(conn, delivery_id)
    fresh = [item for item in distinct if item.delivery_id in stored]
    if not fresh:
        return results
    queued = [item for item in fresh if item.ingested.outcome == "queued"]
    lanes = task_lanes(
        conn,
        [
            LaneQuery(
                item.ingested.serial_key,
                _id_of(item.payload, "repository"),
                _head_branch(item.payload),
            )
            for item in queued
        ],
    )
    enqueue_many(
        conn,
        [
            NewJob(
                "event",
                {"event": item.event_name, "action": item.ingested.action},
                serial_key=lane,
                delivery_id=item.delivery_id,
                max_attempts=max_attempts,
            )
            for item, lane in zip(queued, lanes, strict=True)
        ],
    )
    return results


def _insert_new(conn: Connection, items: Sequence[Incoming]) -> set[str]:
    """Insert those of ``items`` (distinct ids) not stored yet; the ids inserted.

    PostgreSQL skips the known ids in the insert itself (:data:`_INSERT_NEW_DELIVERIES`).
    A look-up first there cost more than the insert: on a table that grew faster than
    autovacuum analyses it (a new install under load) the planner scanned the whole table
    for each batch, and the PostgreSQL ingest of bench_ingest fell to 0.44 of the bare
    endpoint, against 0.63 without it (issue 15). SQLite looks the ids up by the primary
    key first, which its write lock keeps exact, and which needs no RETURNING (SQLite 3.35
    and later: some distributions' Python links an older one)."""
    now = utcnow()
    rows = [
        {
            "id": item.delivery_id,
            "event": item.event_name,
            "action": _fit(item.ingested.action, 100),
            "repository": _repository(item.payload),
            "installation_id": _installation(item.payload),
            "outcome": item.ingested.outcome,
            "detail": item.ingested.detail,
            "payload": None,
            "body": item.body,
            "content_type": item.content_type,
            "received_at": now,
            "redeliveries": 0,
        }
        for item in items
    ]
    if conn.dialect.name == "postgresql":
        return {row.id for row in conn.execute(_INSERT_NEW_DELIVERIES, rows)}
    ids = [item.delivery_id for item in items]
    known = {row.id for row in conn.execute(_KNOWN_DELIVERIES, {"ids": ids})}
    if len(known) < len(ids):
        conn.execute(_INSERT_DELIVERY, [row for row in rows if row["id"] not in known])
    return set(ids) - known


def _redeliver(conn: Connection, delivery_id: str) -> StoreResult:
    conn.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id)
        .values(redeliveries=Delivery.redeliveries + 1)
    )
    return "requeued" if requeue_dead(conn, delivery_id) else "duplicate"


def store_deliveries(
    engine: Engine, items: Sequence[Incoming], max_attempts: int
) -> list[StoreResult | Unstorable]:
    """Store deliveries (each with its job) in one transaction; deduplicate on the id.

    One bad delivery affects only itself: when the batch fails for anything but the
    database being away, each delivery is stored on its own, so a delivery whose values the
    database refuses gets :class:`Unstorable` and the others are stored. A known id is no
    such failure: :func:`_insert_new` skips it, and a delivery another process is storing
    at the same moment is a duplicate. A database that is away (:data:`AWAY`) fails them
    all, as retrying each would only multiply the wait.
    """
    try:
        with write_transaction(engine) as conn:
            return list(_store_batch(conn, items, max_attempts))
    except AWAY:
        raise
    except (SQLAlchemyError, ValueError, OverflowError) as exc:
        if len(items) == 1:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            log.warning("delivery.unstorable", delivery=items[0].delivery_id, error=reason)
            return [Unstorable(reason[:300])]
    return [store_deliveries(engine, [item], max_attempts)[0] for item in items]


class DeliveryWriter:
    """Group commit for ingest: a writer thread stores the deliveries waiting in one
    transaction.

    A request awaits its delivery's result, so a 202 still means the delivery and its job
    are committed. Batching turns N commits (and N fights over SQLite's write lock) into one,
    which is what keeps latency flat at high concurrency. On PostgreSQL ``writers`` threads
    (:func:`writers_for`) each commit a batch of their own, so that one batch fills while
    another waits for its commit to be flushed: the same concurrency as the processes of
    ``vibe serve --processes``, whose writers already store side by side. SQLite takes one
    writer at a time whatever the threads, so it has one.
    """

    def __init__(
        self,
        engine: Engine,
        max_attempts: int,
        max_batch: int = 200,
        writers: int = 1,
        *,
        bot_login: str = "",
    ) -> None:
        if writers < 1:
            raise ValueError(f"writers must be at least 1, not {writers}")
        self.engine = engine
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self.writers = writers
        self.bot_login = bot_login
        self._queue: queue.SimpleQueue[
            tuple[Incoming, asyncio.AbstractEventLoop, asyncio.Future[StoreResult]] | None
        ] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    async def take(self, received: Received) -> Taken:
        """Read ``received`` here, on the caller's event loop, and store it."""
        incoming, malformed = read_delivery(received, self.bot_login)
        return Taken(await self.store(incoming), incoming.ingested, malformed)

    async def store(self, item: Incoming) -> StoreResult:
        self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._queue.put((item, loop, future))
        return await future

    def _start(self) -> None:
        with self._lock:
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            while len(self._threads) < self.writers:
                thread = threading.Thread(
                    target=self._run, name=f"vibe-ingest-writer-{len(self._threads)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        deadline = time.monotonic() + 30
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

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
        outcome: list[StoreResult | Unstorable] | BaseException
        try:
            outcome = store_deliveries(
                self.engine, [item for item, _, _ in batch], self.max_attempts
            )
        except Exception as exc:  # noqa: BLE001 - handed to every waiting request (503 or 500)
            outcome = exc
        by_loop: dict[asyncio.AbstractEventLoop, list[Callable[[], None]]] = {}
        for n, (_, loop, future) in enumerate(batch):
            by_loop.setdefault(loop, []).append(_resolver(future, outcome, n))
        for loop, calls in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed meanwhile
                loop.call_soon_threadsafe(_run_all, calls)


def writers_for(engine: Engine) -> int:
    """How many writer threads :class:`DeliveryWriter` runs on ``engine`` in a service that
    stores in process: two on PostgreSQL, one on SQLite (one write lock). The store process
    of ``vibe serve`` stores one batch at a time (bot/ingest/store_process.py): there, two
    loops on PostgreSQL cost more CPU per delivery (3.0 against 2.1 times the bare
    endpoint's, in two runs) for fewer deliveries per second (0.38 against 0.46 of its
    rate)."""
    return 2 if engine.dialect.name == "postgresql" else 1


def _resolver(
    future: asyncio.Future[StoreResult],
    outcome: list[StoreResult | Unstorable] | BaseException,
    n: int,
) -> Callable[[], None]:
    def resolve() -> None:
        if future.done():  # its request stopped waiting (bot/ingest/webhook.py)
            return
        mine = outcome if isinstance(outcome, BaseException) else outcome[n]
        if isinstance(mine, BaseException):
            future.set_exception(mine)
        else:
            future.set_result(mine)

    return resolve


def _run_all(calls: list[Callable[[], None]]) -> None:
    for call in calls:
        call()
