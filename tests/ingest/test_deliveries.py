"""Deliveries and their jobs: stored together, and a dead job redelivered goes back to the
queue through the jobs API, to be run by the worker pool again."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.bootstrap import event_job
from bot.entrypoints.app import create_app
from bot.github.retry import GitHubRequestError
from bot.ingest.deliveries import UnknownDelivery, stored_delivery
from bot.jobs.queue import JobContext
from bot.loop.handlers import EventJob
from bot.store.engine import make_engine
from bot.store.tables import Delivery, Job, JobRun
from tests.support.actions import serve
from tests.support.web import Live, fixture_payload, make_settings, post


def job_and_runs(engine: Engine) -> tuple[Job, list[JobRun]]:
    with Session(engine) as session:
        job = session.exec(select(Job)).one()
        runs = list(session.exec(select(JobRun).where(JobRun.job_id == job.id)))
    return job, sorted(runs, key=lambda r: r.id or 0)


def wait_until(engine: Engine, status: str, runs: int) -> Job:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job, done = job_and_runs(engine)
        if job.status == status and len([r for r in done if r.outcome is not None]) == runs:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job did not reach {status} after {runs} runs: {job_and_runs(engine)}")


def test_a_redelivered_dead_job_is_queued_again_and_run_by_the_workers(
    tmp_path: Path, database_url: str
) -> None:
    seen: list[tuple[str | None, int]] = []
    first = threading.Event()

    def event(ctx: JobContext) -> None:
        seen.append((ctx.delivery_id, ctx.attempt))
        if not first.is_set():
            first.set()
            # GitHub refused: the job boundary ends the job dead at once.
            raise GitHubRequestError(422, "Validation Failed")

    settings = make_settings(tmp_path, database_url, heartbeat_seconds=0.05)
    app = create_app(settings, handlers={"event": event}, run_workers=True)
    engine: Engine = app.state.engine
    body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
    delivery = str(uuid.uuid4())
    with serve(app, lifespan="on") as url:
        live = Live(app=app, url=url, settings=settings)
        assert post(live, "issues", body, **{"X-GitHub-Delivery": delivery}).status_code == 202
        dead = wait_until(engine, "dead", runs=1)
        assert dead.attempts == 1
        assert dead.last_error == "GitHubRequestError: GitHub answered 422: Validation Failed"

        again = post(live, "issues", body, **{"X-GitHub-Delivery": delivery})
        assert (again.status_code, again.json()["status"]) == (202, "requeued")
        done = wait_until(engine, "done", runs=2)
    _, runs = job_and_runs(engine)
    assert [(r.attempt, r.outcome) for r in runs] == [(1, "dead"), (1, "done")]
    assert (done.attempts, done.delivery_id) == (1, delivery)
    assert seen == [(delivery, 1), (delivery, 1)]
    engine.dispose()


def test_the_stored_delivery_of_a_job(live: Live) -> None:
    event, payload = fixture_payload("issue_comment.created")
    delivery = str(uuid.uuid4())
    response = post(live, event, json.dumps(payload).encode(), **{"X-GitHub-Delivery": delivery})
    assert response.status_code == 202
    engine: Engine = live.app.state.engine
    stored = stored_delivery(engine, delivery)
    assert (stored.id, stored.event_name, stored.payload) == (delivery, event, payload)
    with pytest.raises(UnknownDelivery):
        stored_delivery(engine, "no-such-delivery")
    with pytest.raises(UnknownDelivery):
        stored_delivery(engine, None)


def test_a_malformed_body_is_refused_by_the_event_job_and_recorded(
    tmp_path: Path, database_url: str
) -> None:
    """The real ``event`` job reads the stored body: one that is no JSON object ends the job
    dead at once with the reason, recorded on the delivery too; the loop never sees it."""
    settings = make_settings(tmp_path, database_url, heartbeat_seconds=0.05)
    engine = make_engine(database_url)
    ran: list[EventJob] = []
    handler = event_job(lambda: settings, engine, ran.append)
    app = create_app(settings, engine=engine, handlers={"event": handler}, run_workers=True)
    delivery = str(uuid.uuid4())
    with serve(app, lifespan="on") as url:
        live = Live(app=app, url=url, settings=settings)
        body = b'{"action": "opened", "a": NaN}'
        sent = post(live, "issues", body, **{"X-GitHub-Delivery": delivery})
        assert sent.status_code == 202
        dead = wait_until(engine, "dead", runs=1)
    assert dead.attempts == 1
    assert dead.last_error is not None
    assert "NaN is not JSON" in dead.last_error
    with Session(engine) as session:
        stored = session.exec(select(Delivery)).one()
    assert (stored.id, stored.outcome) == (delivery, "refused")
    why = "body is not a JSON object the bot can store: NaN is not JSON (RFC 8259 section 6)"
    assert stored.detail == why
    assert ran == []
    engine.dispose()
