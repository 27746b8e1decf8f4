"""Missed deliveries: the fake GitHub sends webhooks while the service is down, then the
catch-up reads the App's delivery log and asks for each missed GUID once; the real ingest
(under uvicorn, SQLite and PostgreSQL) stores the redeliveries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from bot.bootstrap import build_queue, build_worker
from bot.github import AppTokens, RequestPolicy, RetrySettings
from bot.github.hook_deliveries import AppHookDeliveries
from bot.ingest.catch_up import KIND, catch_up, schedule
from bot.jobs.queue import JobContext
from bot.store.tables import Delivery, Job
from bot.testing.fake_github import FakeClock, FakeGitHub
from tests.github.conftest import app_key
from tests.support.web import SECRET, Live, free_port

REPO = "acme/widgets"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock) -> Iterator[FakeGitHub]:
    down = f"http://127.0.0.1:{free_port()}/webhook"  # nothing listens: the service is down
    with FakeGitHub(clock=clock, webhook_url=down, webhook_secret=SECRET) as gh:
        gh.create_repo(REPO, {"README.md": "# widgets\n"}, collaborators={"alice": "write"})
        gh.create_app("vibe-bot", private_key_pem=app_key())
        gh.install_app("acme")
        yield gh


@pytest.fixture
def log(fake: FakeGitHub, clock: FakeClock) -> Iterator[AppHookDeliveries]:
    app = fake.world.app
    assert app is not None
    policy = RequestPolicy(clock, RetrySettings(min_write_interval=0.0))
    tokens = AppTokens(app.id, app_key(), fake.api_url, clock=clock, policy=policy, timeout=5)
    yield AppHookDeliveries(tokens)
    tokens.close()


def stored(live: Live) -> set[str]:
    with Session(live.app.state.engine) as session:
        return {d.id for d in session.exec(select(Delivery))}


def test_deliveries_missed_while_down_are_asked_for_once_and_stored(
    live: Live, fake: FakeGitHub, clock: FakeClock, log: AppHookDeliveries
) -> None:
    number = fake.open_issue(REPO, "alice", "Add a widget", "please")
    fake.comment(REPO, number, "alice", "/vibe go")
    missed = {d.id for d in fake.deliveries}
    assert len(missed) == 2
    assert not any(d.ok for d in fake.deliveries)
    fake.webhook_url = f"{live.url}/webhook"  # the service is back
    fake.comment(REPO, number, "alice", "thanks")
    assert fake.deliveries[-1].ok
    engine = live.app.state.engine

    first = catch_up(engine, log, clock.now())

    assert set(first.asked) == missed
    assert stored(live) == {d.id for d in fake.deliveries}  # every event, each stored once
    redelivered = [d.id for d in fake.deliveries if d.redelivery]
    assert sorted(redelivered) == sorted(missed)
    assert catch_up(engine, log, clock.now()).asked == ()
    assert [d.id for d in fake.deliveries if d.redelivery] == redelivered


def test_a_guid_whose_redelivery_failed_too_is_not_asked_for_again(
    live: Live, fake: FakeGitHub, clock: FakeClock, log: AppHookDeliveries
) -> None:
    fake.open_issue(REPO, "alice", "Add a widget", "please")
    engine = live.app.state.engine
    assert len(catch_up(engine, log, clock.now()).asked) == 1  # still down: it fails again
    clock.advance(600)
    fake.webhook_url = f"{live.url}/webhook"
    assert catch_up(engine, log, clock.now()).asked == ()
    assert len(fake.deliveries) == 2  # the first attempt and one redelivery, no more
    assert stored(live) == set()


def test_the_log_is_read_across_pages_and_older_deliveries_are_left(
    live: Live, fake: FakeGitHub, clock: FakeClock, log: AppHookDeliveries
) -> None:
    fake.open_issue(REPO, "alice", "Long ago")
    clock.advance(4 * 24 * 3600)  # beyond the 3 days GitHub keeps
    for n in range(105):
        fake.open_issue(REPO, "alice", f"Issue {n}")
    fake.webhook_url = f"{live.url}/webhook"
    recent = log.recent(clock.now() - 3600)
    assert len(recent) == 105  # more than one page of 100
    asked = catch_up(live.app.state.engine, log, clock.now()).asked
    assert set(asked) == {d.id for d in fake.deliveries[1:106]}
    assert len(stored(live)) == 105


def test_the_next_catch_up_is_queued_once(live: Live) -> None:
    engine = live.app.state.engine
    assert schedule(engine, delay=0.0)
    assert not schedule(engine)  # one is waiting: processes that start together make one
    with Session(engine) as session:
        queued = list(session.exec(select(Job).where(Job.kind == KIND)))
    assert [(j.status, j.max_attempts, j.serial_key) for j in queued] == [
        ("queued", 1, "app:catch-up")
    ]


def test_a_service_with_app_credentials_runs_the_catch_up_from_its_start(
    live: Live, fake: FakeGitHub, clock: FakeClock
) -> None:
    fake.open_issue(REPO, "alice", "Add a widget", "please")
    fake.webhook_url = f"{live.url}/webhook"
    app = fake.world.app
    assert app is not None
    settings = live.settings.model_copy(
        update={
            "github_app_id": app.id,
            "github_private_key": SecretStr(app_key()),
            "github_api_url": fake.api_url,
        }
    )
    engine = live.app.state.engine
    queue = build_queue(settings, engine)
    worker = build_worker(settings, queue)
    [first] = queued(live)
    job = queue.claim("test-worker", [KIND])
    assert job is not None
    assert job.id == first.id
    worker.handlers[KIND](JobContext(job.id, KIND, job.payload, job.attempt, threading.Event()))
    assert stored(live) == {fake.deliveries[0].id}
    [after] = queued(live)  # the next run, five minutes on
    assert after.run_after > first.run_after + timedelta(minutes=4)


def queued(live: Live) -> list[Job]:
    with Session(live.app.state.engine) as session:
        statement = select(Job).where(Job.kind == KIND, Job.status == "queued")
        return list(session.exec(statement))
