"""GET /metrics after real work: the database's numbers at scrape time, the process's events
(GitHub and model calls, rate-limit waits, refused deliveries), the worker's own port, and
what one scrape costs with 10,000 tasks."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from bot.entrypoints.metrics import DatabaseCollector, start_worker_http
from bot.github import GitHub, RetrySettings, StaticToken
from bot.github.retry import GitHubUnavailable
from bot.jobs.queue import JobContext, Queue, Worker, enqueue
from bot.observability import Metrics
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import AgentStep, Iteration, Task, utcnow
from bot.testing.fake_github import FakeClock, FakeGitHub
from tests.support.web import Live, free_port, headers_for, sign

REPO = "acme/widgets"


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def scrape(url: str) -> str:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_refused_deliveries_are_counted_by_reason(live: Live) -> None:
    before = scrape(live.url)
    body = json.dumps({"action": "opened"}).encode()

    def post(headers: dict[str, str], content: bytes = body) -> int:
        return httpx.post(f"{live.url}/webhook", content=content, headers=headers).status_code

    forged = headers_for("issues", body)
    forged["X-Hub-Signature-256"] = sign(body, "not-the-secret")
    assert post(forged) == 401
    unsigned = headers_for("issues", body)
    del unsigned["X-Hub-Signature-256"]
    assert post(unsigned) == 401
    garbled = headers_for("issues", body)
    garbled["X-Hub-Signature-256"] = "sha1=abc"
    assert post(garbled) == 401
    no_event = headers_for("issues", body)
    del no_event["X-GitHub-Event"]
    assert post(no_event) == 400
    not_json = b"[1, 2]"  # stored, and refused by the job that handles it
    assert post(headers_for("issues", not_json), not_json) == 202
    huge = b"x" * (live.settings.max_body_bytes + 1)
    assert post(headers_for("issues", huge), huge) == 413

    after = scrape(live.url)
    name = "vibe_webhook_verification_failures_total"
    for reason in (
        "bad_signature",
        "missing_signature",
        "malformed_signature",
        "missing_headers",
        "malformed_body",
        "oversize",
    ):
        assert sample(after, name, reason=reason) - sample(before, name, reason=reason) == 1
    assert sample(after, name, reason="no_secret") == sample(before, name, reason="no_secret")
    # The standard collectors are served beside the app's own.
    families = {f.name for f in text_string_to_metric_families(after)}
    assert {"python_info", "process_cpu_seconds", "python_gc_collections"} <= families


def test_github_calls_errors_and_rate_limit_waits_are_counted(live: Live) -> None:
    clock = FakeClock()  # the adapter's waits pass on this clock, not in real time
    with FakeGitHub(clock=clock) as fake:
        fake.create_repo(REPO, {"README.md": "# widgets\n"}, collaborators={"alice": "write"})
        hub = GitHub(
            StaticToken(fake.user_token("alice")),
            api_url=fake.api_url,
            bot_login="alice",
            clock=clock,
            retry=RetrySettings(min_write_interval=0.0),
        )
        try:
            before = scrape(live.url)
            fake.inject("GET", "/repos/{owner}/{repo}", "502", times=10)
            with pytest.raises(GitHubUnavailable):
                hub.repo(REPO).default_branch()
            fake.clear_faults()
            reset = int(clock.now() + 30)
            fake.inject("GET", "/repos/{owner}/{repo}", "primary_rate_limit", reset_at=reset)
            assert hub.repo(REPO).default_branch() == "main"
        finally:
            hub.close()
    after = scrape(live.url)

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    attempts = RetrySettings().attempts
    assert delta("vibe_github_requests_total", status="502") == attempts
    assert delta("vibe_github_requests_total", status="403") == 1  # the primary limit
    assert delta("vibe_github_requests_total", status="2xx") == 1
    assert delta("vibe_github_rate_limit_waits_total", kind="primary") == 1
    # Until x-ratelimit-reset, plus the second GitHub's docs advise.
    assert 30 <= delta("vibe_github_rate_limit_wait_seconds_total", kind="primary") <= 32


def test_queue_depth_and_the_oldest_ready_job(live: Live) -> None:
    engine: Engine = live.app.state.engine
    now = utcnow()
    with write_transaction(engine) as conn:
        enqueue(conn, "probe", {}, run_after=now - timedelta(seconds=120))
        enqueue(conn, "probe", {}, run_after=now - timedelta(seconds=5))
        enqueue(conn, "probe", {}, run_after=now + timedelta(hours=1))  # backing off
    text = scrape(live.url)
    assert sample(text, "vibe_jobs", status="queued") == 3
    assert sample(text, "vibe_jobs", status="dead") == 0
    assert sample(text, "vibe_jobs_ready") == 2
    age = sample(text, "vibe_jobs_oldest_ready_age_seconds")
    assert 120 <= age < 180


def _fill(engine: Engine, tasks: int) -> None:
    """``tasks`` tasks, each with an iteration and two agent steps; a few jobs."""
    now = utcnow()
    states = ("working", "awaiting_feedback", "failed", "accepted")
    outcomes = ("succeeded", "failed", "limit", "running")
    with write_transaction(engine) as conn:
        conn.execute(
            Task.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "id": n,
                    "repository": REPO,
                    "number": n,
                    "owns_pr": True,
                    "model": "tdd" if n % 2 else "plan",
                    "state": states[n % 4],
                    "branch": f"vibe/issue-{n}",
                    "base": "main",
                    "requester": "alice",
                    "title": "t",
                    "instruction": "i",
                    "requirements": [],
                    "plan": [],
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost": 0.0,
                    "stop_requested": False,
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(1, tasks + 1)
            ],
        )
        conn.execute(
            Iteration.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "id": n,
                    "task_id": n,
                    "number": 1,
                    "key": f"delivery:{n}",
                    "trigger": "label",
                    "feedback": [],
                    "commits": [],
                    "checks": [],
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cost": 0.0,
                    "duration": 2.0,
                    "outcome": outcomes[n % 4],
                    "checkpoint": "concluded",
                    "summary": "",
                    "started_at": now,
                }
                for n in range(1, tasks + 1)
            ],
        )
        conn.execute(
            AgentStep.__table__.insert(),  # type: ignore[attr-defined]
            [
                {
                    "run_key": f"run-{n // 2}",
                    "iteration_id": n // 2 + 1,
                    "index": n % 2,
                    "started_at": now,
                    "duration": 1.0,
                    "model_duration": 1.0,
                    "model": "claude-sonnet-4-5",
                    "request": {},
                    "text": "",
                    "tool_calls": [],
                    "input_tokens": 100,
                    "output_tokens": 10,
                    "cache_write_tokens": 1000,
                    "cache_read_tokens": 5000,
                    "cost": 0.01,
                }
                for n in range(2 * tasks)
            ],
        )
        for _ in range(3):
            enqueue(conn, "event", {}, run_after=now - timedelta(seconds=30))


def test_a_scrape_with_ten_thousand_tasks_is_cheap(tmp_path: Path, database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    try:
        _fill(engine, 10_000)
        metrics = Metrics(DatabaseCollector(engine))
        started = time.perf_counter()
        text = metrics.render().decode()
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    print(f"one scrape with 10,000 tasks on {engine.dialect.name}: {seconds * 1000:.1f} ms")
    assert seconds < 2.0
    assert sample(text, "vibe_tasks", state="failed") == 2500
    assert sample(text, "vibe_tasks", state="planning") == 0  # every state is served
    # 10,000 iterations: a quarter per outcome, the model of their task (odd numbers: tdd).
    assert sample(text, "vibe_iterations_total", outcome="failed", model="tdd") == 2500
    assert sample(text, "vibe_iterations_total", outcome="succeeded", model="plan") == 2500
    assert sample(text, "vibe_iteration_seconds_total", outcome="limit", model="plan") == 5000
    assert sample(text, "vibe_iterations_running", model="tdd") == 2500
    assert "running" not in {
        s.labels.get("outcome")
        for f in text_string_to_metric_families(text)
        if f.name == "vibe_iterations"
        for s in f.samples
    }
    assert sample(text, "vibe_jobs", status="queued") == 3


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    init_db(engine)
    yield engine
    engine.dispose()


def test_the_worker_port_serves_health_and_metrics(engine: Engine) -> None:
    ran = threading.Event()

    def probe(_ctx: JobContext) -> None:
        ran.set()

    worker = Worker(Queue(engine), {"probe": probe}, concurrency=1, poll_interval=0.05)
    port = free_port()
    stop = start_worker_http("127.0.0.1", port, engine=engine, worker=worker)
    url = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(f"{url}/healthz").status_code == 503  # not started yet
        worker.start()
        assert httpx.get(f"{url}/healthz").status_code == 200
        with write_transaction(engine) as conn:
            enqueue(conn, "probe", {})
        assert ran.wait(10)
        deadline = time.monotonic() + 10
        while sample(scrape(url), "vibe_jobs", status="done") != 1:
            assert time.monotonic() < deadline, "the job never showed as done"
            time.sleep(0.05)
        text = scrape(url)
        assert sample(text, "vibe_tasks", state="working") == 0
        assert "vibe_sandbox_command_seconds_bucket" in text
        assert "python_gc_objects_collected_total" in text
        assert httpx.get(f"{url}/nothing").status_code == 404
        worker.stop(grace=5)
        assert httpx.get(f"{url}/healthz").status_code == 503
    finally:
        worker.stop(grace=1)
        stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/healthz", timeout=2)


def test_a_port_in_use_is_an_error_before_anything_runs(engine: Engine) -> None:
    worker = Worker(Queue(engine), {}, concurrency=1)
    port = free_port()
    stop = start_worker_http("127.0.0.1", port, engine=engine, worker=worker)
    try:
        with pytest.raises(OSError, match="in use"):
            start_worker_http("127.0.0.1", port, engine=engine, worker=worker)
    finally:
        stop()


def test_a_database_that_does_not_answer_does_not_hang_a_scrape(tmp_path: Path) -> None:
    # Every new connection waits until released: a frozen database, as the request path
    # sees it (tests/store/test_frozen_database.py freezes a real PostgreSQL).
    released = threading.Event()
    path = tmp_path / "vibe.db"
    init_db(make_engine(f"sqlite:///{path}"))

    def frozen() -> sqlite3.Connection:
        released.wait(30)
        return sqlite3.connect(path, check_same_thread=False)

    engine = create_engine("sqlite://", creator=frozen)
    try:
        metrics = Metrics(DatabaseCollector(engine, wait=0.5))
        started = time.perf_counter()
        text = metrics.render().decode()
        assert time.perf_counter() - started < 3
        assert sample(text, "vibe_database_scrape_ok") == 0
        assert "vibe_tasks{" not in text
        released.set()
        time.sleep(0.2)
        answered = metrics.render().decode()
        assert sample(answered, "vibe_database_scrape_ok") == 1
        assert sample(answered, "vibe_tasks", state="failed") == 0
    finally:
        released.set()
        engine.dispose()
