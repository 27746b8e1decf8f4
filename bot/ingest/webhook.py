"""``POST /webhook``: cap, verify, parse, hand to the writer, answer. Nothing else happens here.

The order is the security boundary (DESIGN.md section 4 rule 1, section 5):

1. read the body as a stream, capped at ``max_body_bytes`` (413 without reading the rest);
2. verify ``X-Hub-Signature-256`` over the raw bytes against the current and previous secret
   with a constant-time compare (401, nothing stored);
3. require ``X-GitHub-Event`` and ``X-GitHub-Delivery`` and a JSON object body (400);
4. parse into a typed event (pure, no I/O) and hand it to :mod:`bot.ingest.deliveries`,
   which stores the delivery and its job in one transaction; a repeated delivery id answers
   200 without a second job, unless its job ended dead, in which case the redelivery queues
   it again.

No GitHub call, no model call, no git on this path.
https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from bot.core.events import Unparseable, Unsupported, parse_event
from bot.core.policy import serial_key
from bot.ingest.deliveries import DeliveryWriter, Incoming, Ingested

log = structlog.get_logger(__name__)

SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
# GitHub sends a GUID; accept a conservative superset and refuse anything else.
DELIVERY_RE = re.compile(r"[A-Za-z0-9._:-]{1,100}")
EVENT_RE = re.compile(r"[a-z_]{1,64}")


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
        if not secret:
            continue  # an empty key signs nothing: anyone can compute HMAC under b""
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
