"""Helpers for the service tests: signing as GitHub does and a live uvicorn server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bot.ingest.deliveries import Incoming, Ingested
from bot.jobs.queue import Handler
from bot.settings import Settings
from tests.support.actions import serve

SECRET = "test-webhook-secret-0123456789"
PREVIOUS = "previous-webhook-secret-9876543210"
WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(event: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
    }


def fixture_payload(name: str) -> tuple[str, dict[str, Any]]:
    """(event name, payload) of ``tests/fixtures/webhooks/<name>.json``."""
    return name.split(".")[0], json.loads((WEBHOOKS / f"{name}.json").read_text())


def incoming(
    payload: dict[str, Any], *, action: str | None = "created", delivery_id: str | None = None
) -> Incoming:
    """An ``issue_comment`` delivery as ingest hands it to the store, queued in the lane
    ``acme/widgets#1``."""
    body = json.dumps(payload).encode()
    ingested = Ingested("queued", action, None, "acme/widgets#1")
    return Incoming(
        delivery_id or str(uuid.uuid4()), "issue_comment", payload, ingested, body,
        "application/json",
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Live:
    app: FastAPI
    url: str
    settings: Settings


def make_settings(tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        webhook_secret=SECRET,
        webhook_secret_previous=PREVIOUS,
        **extra,
    )


@pytest.fixture
def live(tmp_path: Path, database_url: str) -> Iterator[Live]:
    """The real app (no workers) on a real port, on SQLite and on PostgreSQL."""
    from bot.entrypoints.app import create_app

    settings = make_settings(tmp_path, database_url)
    handlers: dict[str, Handler] = {}
    app = create_app(settings, handlers=handlers)
    with serve(app, lifespan="on") as url:
        yield Live(app=app, url=url, settings=settings)
    app.state.engine.dispose()


def post(live: Live, event: str, body: bytes, **headers: str) -> httpx.Response:
    merged = headers_for(event, body)
    merged.update(headers)
    return httpx.post(f"{live.url}/webhook", content=body, headers=merged, timeout=30)
