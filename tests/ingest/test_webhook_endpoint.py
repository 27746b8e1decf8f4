"""``/webhook`` is served ahead of FastAPI's routing (bot/ingest/webhook.py
``WebhookEndpoint``): the answers FastAPI gave for what the route itself does not handle
(another method, the database away) are still given, and every other route still takes
FastAPI's way."""

from __future__ import annotations

import json

import httpx
from sqlmodel import Session, select

from bot.store.tables import Delivery
from tests.support.database import refuse_writes
from tests.support.web import Live, fixture_payload, headers_for


def test_another_method_answers_405_as_fastapi_did(live: Live) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = httpx.request(method, f"{live.url}/webhook")
        assert response.status_code == 405
        assert response.json() == {"detail": "Method Not Allowed"}
        assert response.headers["allow"] == "POST"
    # Every other path is FastAPI's, as before.
    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    assert httpx.post(f"{live.url}/nowhere", content=b"{}").json() == {"detail": "Not Found"}


def test_a_database_that_refuses_the_write_answers_503_and_keeps_nothing(live: Live) -> None:
    engine = live.app.state.engine
    body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
    headers = headers_for("issues", body)
    if engine.dialect.name != "sqlite":
        # PostgreSQL in read-only mode refuses the one delivery, not the database: a 400
        # with the reason, as before the endpoint moved.
        undo = refuse_writes(engine)
        try:
            response = httpx.post(f"{live.url}/webhook", content=body, headers=headers)
        finally:
            undo()
        assert response.status_code == 400
        assert response.json()["error"].startswith("the delivery cannot be stored: ")
    else:
        # SQLite at its page limit is "database or disk is full": the database is away.
        undo = refuse_writes(engine)
        try:
            response = httpx.post(f"{live.url}/webhook", content=body, headers=headers)
        finally:
            undo()
        assert response.status_code == 503
        assert response.json() == {"error": "the database is unavailable, retry later"}
        assert response.headers["retry-after"] == "10"
        assert response.headers["content-type"] == "application/json"
    with Session(engine) as session:
        assert list(session.exec(select(Delivery))) == []
    # GitHub's redelivery of the same delivery is taken once the database writes again.
    again = httpx.post(f"{live.url}/webhook", content=body, headers=headers)
    assert again.status_code == 202
    assert again.json() == {"status": "queued"}
