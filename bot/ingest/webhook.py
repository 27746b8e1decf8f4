"""``POST /webhook``: verify, deduplicate, store, answer. Nothing else happens here.

The order is the security boundary (DESIGN.md section 4 rule 1, section 5):

1. read the body as a stream, capped at ``max_body_bytes`` (413 without reading the rest);
2. verify ``X-Hub-Signature-256`` over the raw bytes against the current and previous secret
   with a constant-time compare (401, nothing stored);
3. require ``X-GitHub-Event`` and ``X-GitHub-Delivery`` and a JSON object body (400);
4. parse into a typed event (pure, no I/O) and store the delivery and its job in one
   transaction; a repeated delivery id answers 200 without a second job, unless its job
   ended dead, in which case the redelivery queues it again.

No GitHub call, no model call, no git on this path.
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import queue
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import bindparam
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update

from bot.core.events import Unparseable, Unsupported, parse_event
from bot.core.policy import serial_key
from bot.jobs.queue import write_transaction
from bot.store.tables import Delivery, Job, Task, utcnow

log = structlog.get_logger(__name__)

SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# GitHub sends a GUID; accept a conservative superset and refuse anything else.
DELIVERY_RE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
EVENT_RE = re.compile(r"[a-z_]{1,64}")
LANE_RE = re.compile(r"(?P<repo>[^#]+)#(?P<number>\d+)(?P<suffix>/control)?")

StoreResult = Literal["new", "duplicate", "requeued"]


class BodyTooLarge(Exception):
    pass


def signature_valid(body: bytes, header: str | None, secrets: Sequence[bytes]) -> bool:
    """True when ``header`` is ``sha256=<hex>`` and matches HMAC-SHA256 under any secret."""
    if not header:
        return False
    match = SIGNATURE_RE.fullmatch(header.strip())
    if match is None:
        return False
    given = match.group(1).lower().encode()
    valid = False
    for secret in secrets:
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        # Compare against every secret, so timing does not reveal which one matched.
        valid |= hmac.compare_digest(expected, given)
    return valid


async def read_capped(request: Request, cap: int) -> bytes:
    """Read the body, raising BodyTooLarge as soon as it exceeds ``cap`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise BodyTooLarge
    return bytes(body)


def decode_payload(body: bytes, content_type: str) -> dict[str, Any] | None:
    """The JSON object GitHub sent (``application/json`` or the form-encoded variant)."""
    try:
        if content_type.split(";")[0].strip() == "application/x-www-form-urlencoded":
            values = parse_qs(body.decode("utf-8"), strict_parsing=True).get("payload")
            if not values:
                return None
            data = json.loads(values[0])
        else:
            data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class Ingested:
    """What ingest decided about a delivery."""

    outcome: str  # queued | ping | unsupported | unparseable
    action: str | None
    detail: str | None
    serial_key: str | None


def classify(event_name: str, payload: dict[str, Any], bot_login: str) -> Ingested:
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    if event_name == "ping":
        return Ingested("ping", action, None, None)
    event = parse_event(event_name, payload)
    if isinstance(event, Unsupported):
        return Ingested("unsupported", action, None, None)
    if isinstance(event, Unparseable):
        return Ingested("unparseable", action, event.reason, None)
    return Ingested("queued", action, None, serial_key(event, bot_login))


def _repository(payload: dict[str, Any]) -> str | None:
    repo = payload.get("repository")
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return name[:300] if isinstance(name, str) else None


def _installation(payload: dict[str, Any]) -> int | None:
    inst = payload.get("installation")
    value = inst.get("id") if isinstance(inst, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Built once, with bound parameters, so each delivery reuses the compiled statements.
_KNOWN_DELIVERIES = select(Delivery.id).where(
    col(Delivery.id).in_(bindparam("ids", expanding=True))
)
_INSERT_DELIVERY = Delivery.__table__.insert()  # type: ignore[attr-defined]
_INSERT_JOBS = Job.__table__.insert()  # type: ignore[attr-defined]
_TASK_BY_PR = (
    select(Task.number)
    .where(col(Task.repository) == bindparam("repo"), col(Task.pr_number) == bindparam("pr"))
    .limit(1)
)


def task_lane(conn: Any, key: str | None) -> str | None:
    """Route a PR's events to the lane of the task that owns the PR.

    A task started from issue #7 opens PR #8; reviews on #8 and commands on #7 must never run
    at once, so both use the lane ``repo#7``.
    """
    match = LANE_RE.fullmatch(key or "")
    if match is None:
        return key
    number = int(match["number"])
    row = conn.execute(_TASK_BY_PR, {"repo": match["repo"], "pr": number}).first()
    if row is None or row.number == number:
        return key
    return f"{match['repo']}#{row.number}{match['suffix'] or ''}"


@dataclass(frozen=True)
class Incoming:
    """A verified, parsed delivery on its way to the database."""

    delivery_id: str
    event_name: str
    payload: dict[str, Any]
    ingested: Ingested


def _store_batch(conn: Any, items: Sequence[Incoming], max_attempts: int) -> list[StoreResult]:
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
    jobs = [
        {
            "kind": "event",
            "status": "queued",
            "payload": {"event": item.event_name, "action": item.ingested.action},
            "serial_key": task_lane(conn, item.ingested.serial_key),
            "delivery_id": item.delivery_id,
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_after": now,
            "created_at": now,
            "updated_at": now,
        }
        for item in fresh
        if item.ingested.outcome == "queued"
    ]
    if jobs:
        conn.execute(_INSERT_JOBS, jobs)
    return results


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


def _redeliver(conn: Any, delivery_id: str) -> StoreResult:
    conn.execute(
        update(Delivery)
        .where(col(Delivery.id) == delivery_id)
        .values(redeliveries=Delivery.redeliveries + 1)
    )
    now = utcnow()
    result = conn.execute(
        update(Job)
        .where(col(Job.delivery_id) == delivery_id, col(Job.status) == "dead")
        .values(
            status="queued",
            attempts=0,
            run_after=now,
            updated_at=now,
            finished_at=None,
            lease_owner=None,
            lease_expires=None,
        )
    )
    return "requeued" if result.rowcount else "duplicate"


def make_router(
    writer: DeliveryWriter,
    secrets: Callable[[], Sequence[bytes]],
    *,
    max_body_bytes: int,
    bot_login: str,
    on_delivery: Callable[[str, str], None],
    on_queued: Callable[[], None],
) -> APIRouter:
    """The ingest route. ``on_delivery(event, outcome)`` feeds metrics; ``on_queued`` wakes
    same-process workers."""
    router = APIRouter()

    @router.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        try:
            body = await read_capped(request, max_body_bytes)
        except BodyTooLarge:
            on_delivery("-", "too_large")
            return JSONResponse(
                {"error": f"body exceeds {max_body_bytes} bytes"},
                status_code=413,
                headers={"connection": "close"},
            )
        if not signature_valid(body, request.headers.get("x-hub-signature-256"), secrets()):
            on_delivery("-", "bad_signature")
            return JSONResponse({"error": "invalid or missing signature"}, status_code=401)
        event_name = request.headers.get("x-github-event", "")
        delivery_id = request.headers.get("x-github-delivery", "")
        if not EVENT_RE.fullmatch(event_name) or not DELIVERY_RE.fullmatch(delivery_id):
            on_delivery("-", "bad_headers")
            return JSONResponse(
                {"error": "X-GitHub-Event and X-GitHub-Delivery headers are required"},
                status_code=400,
            )
        payload = decode_payload(body, request.headers.get("content-type", "application/json"))
        if payload is None:
            on_delivery(event_name, "bad_json")
            return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
        bound = log.bind(delivery=delivery_id, gh_event=event_name)
        ingested = classify(event_name, payload, bot_login)
        result = await writer.store(Incoming(delivery_id, event_name, payload, ingested))
        outcome = "duplicate" if result == "duplicate" else ingested.outcome
        on_delivery(event_name, outcome)
        bound.info("delivery.stored", outcome=outcome, action=ingested.action, store=result)
        if result == "duplicate":
            return JSONResponse({"status": "duplicate", "delivery": delivery_id}, status_code=200)
        if ingested.outcome == "queued" or result == "requeued":
            on_queued()
        if ingested.outcome == "ping":
            return JSONResponse({"status": "pong"}, status_code=200)
        return JSONResponse(
            {"status": "requeued" if result == "requeued" else ingested.outcome},
            status_code=202,
        )

    return router
