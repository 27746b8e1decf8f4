"""``POST /webhook``: cap, verify, hand to the store, answer. Nothing else happens here.

The order is the security boundary (DESIGN.md section 4 rule 1, section 5):

1. read the body as a stream, capped at ``max_body_bytes`` (413 without reading the rest),
   within the process-wide bounds of :class:`BodyLimits` (503 with ``Retry-After`` past the
   byte budget or the bodies read at once, 408 past the body deadline);
2. verify ``X-Hub-Signature-256`` over the raw bytes against the current and previous secret
   with a constant-time compare (401, nothing stored);
3. require ``X-GitHub-Event`` and ``X-GitHub-Delivery`` (400);
4. hand the body as received, its media type and the two headers to the delivery store
   (:class:`bot.ingest.deliveries.DeliveryStore`), which reads the body (orjson,
   :mod:`bot.ingest.payload`) for what the answer needs (a ping, an event or action the
   bot does not handle, a payload it cannot use, the job's lane) and stores the delivery
   and its job in one transaction (group commit): in this process, or in a process of its
   own (``vibe serve``: :mod:`bot.ingest.store_process`). A repeated delivery id answers
   200 without a second job, unless its job ended dead, in which case the redelivery
   queues it again. The store is awaited at most
   ``database_wait`` seconds (then 503: GitHub waits 10 s, and the catch-up job asks for
   what was missed). A body that is no JSON object the bot can store is stored and queued
   all the same: the job that handles it refuses it and records why on the delivery.

The job decodes the stored body again (:func:`bot.ingest.deliveries.stored_delivery`): the
request neither cleans nor re-serialises the payload.

No GitHub call, no model call, no git on this path.
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import orjson
import structlog
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.ingest.deliveries import AWAY, DeliveryStore, Received, Unstorable
from bot.ingest.payload import media_type
from bot.observability import webhook_rejected

log = structlog.get_logger(__name__)

SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# GitHub sends a GUID; accept a conservative superset and refuse anything else.
DELIVERY_RE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
EVENT_RE = re.compile(r"[a-z_]{1,64}")
RETRY_AFTER_SECONDS = 10
WEBHOOK_PATH = "/webhook"


def signature_valid(body: bytes | bytearray, header: str | None, secrets: Sequence[bytes]) -> bool:
    """True when ``header`` is ``sha256=<hex>`` and matches HMAC-SHA256 under any secret."""
    if not header:
        return False
    match = SIGNATURE_RE.fullmatch(header.strip())
    if match is None:
        return False
    given = match.group(1).lower().encode()
    valid = False
    for secret in secrets:
        if not secret:
            continue  # an empty key signs nothing: anyone can compute HMAC under b""
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
        # Compare against every secret, so timing does not reveal which one matched.
        valid |= hmac.compare_digest(expected, given)
    return valid


def _signature_failure(header: str | None, secrets: Sequence[bytes]) -> str:
    """Why a signature check failed, for the metrics."""
    if not any(secrets):
        return "no_secret"
    if not header:
        return "missing_signature"
    if SIGNATURE_RE.fullmatch(header.strip()) is None:
        return "malformed_signature"
    return "bad_signature"


class Refused(Exception):
    """The body was not taken: answer ``status`` with ``reason`` (and ``Retry-After`` for a
    503: the sender may come back when the service is less busy)."""

    def __init__(self, status: int, reason: str, metric: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.metric = metric

    def answer(self) -> Answer:
        headers = {"connection": "close"}  # the rest of the body is not read
        if self.status == 503:
            headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        return Answer(self.status, {"error": self.reason}, headers)


@dataclass(frozen=True)
class Answer:
    """A JSON answer, on the wire as FastAPI's ``JSONResponse`` puts it (compact UTF-8 JSON,
    ``content-length``, ``content-type: application/json``), sent without building one."""

    status: int
    content: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    async def send(self, send: Send) -> None:
        body = orjson.dumps(self.content)
        raw = [
            (b"content-length", b"%d" % len(body)),
            (b"content-type", b"application/json"),
            *(
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in self.headers.items()
            ),
        ]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


class BodyLimits:
    """What the requests of one process may hold at once of bodies not yet authenticated.

    Before its signature is checked a body is anybody's, and the cap per body (25 MB,
    GitHub's own) alone lets a few hundred slow senders hold gigabytes. So every byte
    received draws from one budget, given back when its request ends; at most
    ``max_bodies`` bodies are read at once; and each must arrive whole within ``timeout``
    seconds. Past a bound the request is answered at once (503 with ``Retry-After``, or
    408), never queued. Bytes count as they arrive, not as declared: a sender must really
    send what it holds. Used from the event loop only, so plain counters are enough.
    """

    def __init__(self, budget_bytes: int, max_bodies: int, timeout: float) -> None:
        self.max_bodies = max_bodies
        self.timeout = timeout
        self.free_bytes = budget_bytes
        self.reading = 0

    @contextlib.asynccontextmanager
    async def read(self, request: Request, cap: int) -> AsyncIterator[bytes]:
        """The body, read within the bounds and counted until the block ends;
        :class:`Refused` when a bound is reached."""
        length = request.headers.get("content-length")
        declared = int(length) if length is not None and length.isdigit() else 0
        if declared > cap:
            raise Refused(413, f"body exceeds {cap} bytes", "too_large")
        if self.reading >= self.max_bodies:
            raise Refused(503, "too many deliveries at once, retry later", "busy")
        if declared > self.free_bytes:
            raise Refused(503, "too many delivery bytes at once, retry later", "busy")
        # The chunks as received, each debited from free_bytes: a list holds exactly their
        # bytes while the sender is slow (a growing bytearray holds up to twice as many).
        chunks: list[bytes] = []
        try:
            self.reading += 1
            try:
                await self._receive(request, chunks, cap)
            finally:
                self.reading -= 1
            yield b"".join(chunks)
        finally:
            self.free_bytes += sum(map(len, chunks))

    async def _receive(self, request: Request, chunks: list[bytes], cap: int) -> None:
        size = 0
        try:
            async with asyncio.timeout(self.timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > cap:
                        raise Refused(413, f"body exceeds {cap} bytes", "too_large")
                    if len(chunk) > self.free_bytes:
                        raise Refused(503, "too many delivery bytes at once, retry later", "busy")
                    self.free_bytes -= len(chunk)
                    chunks.append(chunk)
        except TimeoutError:
            raise Refused(
                408, f"body not received within {self.timeout:g} s", "slow_body"
            ) from None
        except ClientDisconnect:
            raise Refused(400, "the client went away", "disconnected") from None


class BoundedBodies:
    """ASGI middleware: the request bodies of every FastAPI route (``/webhook``, served ahead
    of them, reads its own with the same :class:`BodyLimits`) are read within the one
    budget, deadline and count, then handed on whole. The runner API reads a body before it
    checks the credential, so its bodies are as unauthenticated as a delivery's."""

    def __init__(self, app: ASGIApp, *, limits: BodyLimits, cap: int) -> None:
        self.app = app
        self.limits = limits
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        handed_on = False
        try:
            async with self.limits.read(Request(scope, receive), self.cap) as body:
                handed_on = True
                await self.app(scope, _replay(body, receive), send)
        except Refused as refused:
            if handed_on:  # not the limits': the app's own
                raise
            await refused.answer().send(send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for an app whose body was read already: the body once, then what the
    connection says (a disconnect)."""
    pending = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay


class WebhookEndpoint:
    """``/webhook`` as a plain ASGI app, which the service serves ahead of FastAPI's routing
    (:class:`bot.entrypoints.app.Service`): a delivery is the one request the service takes
    at volume, and FastAPI's middleware, routing, request wrapper and response classes were
    a third of the app's CPU per delivery (1.5 ms before, 1.1 ms after, driven in process at
    concurrency 50). Every check and answer is the same: the ones this module's docstring
    lists, and for the database away the service's own 503 (:func:`database_away`).

    ``store`` reads and stores the deliveries; ``limits`` bound the bodies not yet
    authenticated (one per process); ``database_wait``:
    the longest wait for the store, past which the delivery answers 503 and GitHub's
    redelivery or the catch-up job brings it back. ``on_delivery(event, outcome)`` feeds
    metrics; ``on_queued`` wakes same-process workers."""

    def __init__(
        self,
        store: DeliveryStore,
        secrets: Callable[[], Sequence[bytes]],
        *,
        max_body_bytes: int,
        limits: BodyLimits,
        database_wait: float,
        on_delivery: Callable[[str, str], None],
        on_queued: Callable[[], None],
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.max_body_bytes = max_body_bytes
        self.limits = limits
        self.database_wait = database_wait
        self.on_delivery = on_delivery
        self.on_queued = on_queued

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            # What FastAPI answers for a route of another method.
            answer = Answer(405, {"detail": "Method Not Allowed"}, {"allow": "POST"})
        else:
            answer = await self._take(Request(scope, receive))
        await answer.send(send)

    async def _take(self, request: Request) -> Answer:
        try:
            async with self.limits.read(request, self.max_body_bytes) as body:
                return await self._ingest(request, body)
        except Refused as refused:
            if refused.status == 413:
                webhook_rejected("oversize")
            self.on_delivery("-", refused.metric)
            return refused.answer()

    async def _ingest(self, request: Request, body: bytes) -> Answer:
        headers = request.headers
        signature = headers.get("x-hub-signature-256")
        keys = self.secrets()
        if not signature_valid(body, signature, keys):
            webhook_rejected(_signature_failure(signature, keys))
            self.on_delivery("-", "bad_signature")
            return Answer(401, {"error": "invalid or missing signature"})
        event_name = headers.get("x-github-event", "")
        delivery_id = headers.get("x-github-delivery", "")
        if not EVENT_RE.fullmatch(event_name) or not DELIVERY_RE.fullmatch(delivery_id):
            webhook_rejected("missing_headers")
            self.on_delivery("-", "bad_headers")
            return Answer(
                400, {"error": "X-GitHub-Event and X-GitHub-Delivery headers are required"}
            )
        content_type = media_type(headers.get("content-type", "application/json"))
        bound = log.bind(delivery=delivery_id, gh_event=event_name)
        try:
            async with asyncio.timeout(self.database_wait):
                taken = await self.store.take(Received(delivery_id, event_name, body, content_type))
        except TimeoutError:
            # Not acknowledged, so not promised: if the store still lands, GitHub's
            # redelivery answers "duplicate".
            bound.warning("delivery.store_timeout", seconds=self.database_wait)
            self.on_delivery(event_name, "store_timeout")
            return Refused(
                503,
                f"the database did not answer within {self.database_wait:g} s",
                "store_timeout",
            ).answer()
        except Unstorable as exc:
            bound.error("delivery.unstorable", error=str(exc))
            self.on_delivery(event_name, "unstorable")
            return Answer(400, {"error": f"the delivery cannot be stored: {exc}"})
        except AWAY as exc:
            return database_away(request.url.path, exc)
        result, ingested = taken.result, taken.ingested
        if taken.malformed is not None:
            # Stored as received all the same, with a job: the job that handles it refuses
            # it and records why on the delivery (bot/ingest/deliveries.py).
            webhook_rejected("malformed_body")
            bound.warning("delivery.malformed", error=taken.malformed)
        outcome = "duplicate" if result == "duplicate" else ingested.outcome
        self.on_delivery(event_name, outcome)
        if result == "duplicate":
            answer = Answer(200, {"status": "duplicate", "delivery": delivery_id})
        elif ingested.outcome == "ping":
            answer = Answer(200, {"status": "pong"})
        else:
            status = "requeued" if result == "requeued" else ingested.outcome
            answer = Answer(202, {"status": status})
        if result != "duplicate" and (ingested.outcome == "queued" or result == "requeued"):
            self.on_queued()
        # The delivery's one line: uvicorn's access line for it is left out
        # (StoredAccessFilter), so this one says what that said too.
        client = request.scope.get("client")
        bound.info(
            "delivery.stored",
            outcome=outcome,
            action=ingested.action,
            store=result,
            status=answer.status,
            client=f"{client[0]}:{client[1]}" if client else None,
        )
        return answer


class StoredAccessFilter(logging.Filter):
    """On uvicorn's access logger: leaves out the access line of a delivery the service took
    (``POST /webhook`` answered 200 or 202), whose ``delivery.stored`` line says the same
    and more (the delivery, the event, the outcome, the status, the client). At the default
    level (INFO) a delivery then writes one line, not two; the access lines of refusals
    (401, 400, 413, 503) and of every other route stay. uvicorn logs a response as
    ``'%s - "%s %s HTTP/%s" %d'`` with the client, method, path and query, version and
    status as the arguments (uvicorn/protocols/http/h11_impl.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            type(args) is tuple
            and len(args) == 5
            and args[1] == "POST"
            and args[2] == WEBHOOK_PATH
            and args[4] in (200, 202)
        )


def leave_out_stored_access_lines() -> None:
    """Put :class:`StoredAccessFilter` on uvicorn's access logger, once per process."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, StoredAccessFilter) for f in access.filters):
        access.addFilter(StoredAccessFilter())


def database_away(path: str, exc: BaseException) -> Answer:
    """The database is down, frozen past its timeouts or its pool exhausted: a JSON 503 the
    sender may retry (GitHub's redelivery, the catch-up job), not a plain 500. The service
    answers every route so (bot/entrypoints/app.py)."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    log.warning("request.database_away", path=path, error=reason)
    return Answer(
        503,
        {"error": "the database is unavailable, retry later"},
        {"retry-after": str(RETRY_AFTER_SECONDS)},
    )
