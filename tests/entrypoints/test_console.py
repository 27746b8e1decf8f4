"""The task console: pages and API over the store, escaped, redacted, access-checked,
with strict parameters, keyset paging and a live stream of a running iteration."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.entrypoints.app import create_app
from bot.entrypoints.console import CSP, make_console_router
from bot.store.console import QueryError, TaskQuery, list_tasks, parse_task_query
from bot.store.engine import init_db, make_engine
from bot.store.tables import Iteration, Task
from tests.support.actions import serve
from tests.support.console import HOSTILE, TOKEN, add_task, seed_story, step
from tests.support.web import make_settings

DASH = "dash-token-0123456789"
AUTH = {"Authorization": f"Bearer {DASH}"}


def _client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, database_url, dashboard_token=DASH)
    app = create_app(settings, handlers={})
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from _client(tmp_path, f"sqlite:///{tmp_path / 'c.db'}")


@pytest.fixture
def any_client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """On SQLite and on PostgreSQL."""
    yield from _client(tmp_path, database_url)


def test_pages_escape_and_redact_hostile_text(any_client: TestClient) -> None:
    client = any_client
    ids = seed_story(client.app.state.engine)  # type: ignore[attr-defined]
    for url in ("/console", f"/console/tasks/{ids['done']}", "/console/jobs"):
        page = client.get(url, headers=AUTH)
        assert page.status_code == 200, url
        assert page.headers["content-security-policy"] == CSP
        assert "<script>alert" not in page.text, url
        assert "<img src=x" not in page.text, url
        assert TOKEN not in page.text, url
        assert '<script src="/console/static/console.js" defer></script>' in page.text
    task = client.get(f"/console/tasks/{ids['done']}", headers=AUTH).text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in task
    assert "Stopped by a limit: steps limit: 30 of 30 steps used" in task
    assert 'class="step failed"' in task  # the failed tool call stands out
    assert "[redacted]" in task
    assert "https://github.com/octo/widgets/pull/8" in task
    assert "https://github.com/octo/widgets/issues/7" in task
    jobs = client.get("/console/jobs", headers=AUTH).text
    assert "worker-a" in jobs
    assert "sender mallory cannot write &lt;script&gt;" in jobs
    api = client.get(f"/api/console/tasks/{ids['done']}", headers=AUTH).json()
    [iteration] = api["iterations"]
    assert iteration["limit"] == "steps limit: 30 of 30 steps used"
    assert iteration["feedback_kinds"] == ["human", "execution"]  # the failed check's too
    assert (iteration["red"]["passed"], iteration["green"]["passed"]) == (False, True)
    assert "Red (the new test fails before the change)" in task
    assert "write the test &lt;script&gt;" in task
    assert iteration["tokens"] == {
        "input": 200,
        "cache_write": 40,
        "cache_read": 600,
        "output": 80,
        "total": 920,
    }
    assert [s["failed"] for s in iteration["agent_steps"]] == [False, True]
    assert TOKEN not in str(api)
    listing = client.get("/api/console/tasks", headers=AUTH).json()
    running = next(t for t in listing["tasks"] if t["id"] == ids["running"])
    # A running iteration's cost so far comes from its recorded steps.
    assert (running["running"], running["cost"], running["tokens"]) == (True, 0.01, 140)
    depth = client.get("/api/console/jobs", headers=AUTH).json()["depth"]
    assert depth == {"dead": 1, "running": 1, "queued": 1, "ready": 1}


def test_the_task_page_and_api_show_each_commit_with_its_diff_stats(client: TestClient) -> None:
    ids = seed_story(client.app.state.engine)  # type: ignore[attr-defined]
    page = client.get(f"/console/tasks/{ids['done']}", headers=AUTH).text
    commits = re.search(r'<ul class="commits">(.*?)</ul>', page, re.S)
    assert commits is not None
    with_stats, bare = re.findall(r'<li class="commit">(.*?)</li>', commits.group(1), re.S)
    text = html.unescape(re.sub(r"<[^>]+>", "", with_stats))
    assert text == "abc1234 fix widget " + HOSTILE + " [redacted] · 2 files +10 −3"
    # A row written before the stats were recorded: its sha, nothing else.
    assert re.sub(r"<[^>]+>", "", bare) == "def5678"
    api = client.get(f"/api/console/tasks/{ids['done']}", headers=AUTH).json()
    [iteration] = api["iterations"]
    assert iteration["commits"] == [
        {
            "sha": "abc1234" + "0" * 33,
            "short": "abc1234",
            "subject": f"fix widget {HOSTILE} [redacted]",
            "files": 2,
            "insertions": 10,
            "deletions": 3,
        },
        {
            "sha": "def5678" + "0" * 33,
            "short": "def5678",
            "subject": None,
            "files": None,
            "insertions": None,
            "deletions": None,
        },
    ]


def test_everything_is_refused_without_the_token(client: TestClient) -> None:
    ids = seed_story(client.app.state.engine)  # type: ignore[attr-defined]
    urls = [
        "/console",
        "/console/jobs",
        f"/console/tasks/{ids['done']}",
        "/api/console/tasks",
        "/api/console/jobs",
        f"/api/console/tasks/{ids['done']}",
        f"/console/tasks/{ids['running']}/iterations/1/events",
    ]
    for url in urls:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": DASH}):
            answer = client.get(url, headers=headers)
            assert answer.status_code == 403, (url, headers)
            assert "fix the widget" not in answer.text
            assert "VIBE_DASHBOARD_TOKEN" in answer.text
    # The script and style hold no data; they are served to anyone.
    assert (
        client.get("/console/static/console.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert client.get("/console/static/..%2Fviews.py").status_code == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("state=bogus", "state must be one of"),
        ("colour=red", "unknown parameter 'colour'"),
        ("limit=0", "limit must be a whole number from 1 to 200"),
        ("limit=abc", "limit must be a whole number"),
        ("limit=10&limit=20", "parameter 'limit' given 2 times"),
        ("since=2026-13-01", "since must be a date as YYYY-MM-DD"),
        ("since=2026-02-02&until=2026-02-01", "since (2026-02-02) is after until"),
        ("repository=not a repo", "repository must be owner/name"),
        ("after=!!!", "after is not a cursor"),
        ("sort=cost&after=" + "A" * 150, "after is not a cursor"),
        ("repository=" + "a" * 3000, "the query is too long"),
        ("model=" + "<script>", "model must be one of"),
    ],
)
def test_bad_parameters_get_a_400_with_one_clear_line(
    client: TestClient, query: str, message: str
) -> None:
    api = client.get(f"/api/console/tasks?{query}", headers=AUTH)
    assert api.status_code == 400
    error = api.json()["error"]
    assert message in error
    assert "\n" not in error
    assert "Traceback" not in error
    page = client.get(f"/console?{query}", headers=AUTH)
    assert page.status_code == 400
    assert "<script>" not in page.text
    assert "Bad request" in page.text


def test_bad_ids_and_missing_tasks(client: TestClient) -> None:
    assert client.get("/console/tasks/abc", headers=AUTH).status_code == 400
    assert client.get("/api/console/tasks/" + "9" * 30, headers=AUTH).status_code == 400
    assert client.get("/api/console/tasks/0", headers=AUTH).status_code == 400
    missing = client.get("/api/console/tasks/12345", headers=AUTH)
    assert (missing.status_code, missing.json()) == (404, {"error": "there is no task 12345"})
    assert client.get("/api/console/jobs?state=lost", headers=AUTH).status_code == 400
    assert client.get("/api/console/jobs?after=x", headers=AUTH).status_code == 400


def _many(engine: Engine, count: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    states = ["working", "failed", "accepted"]
    models = ["plan", "test"]
    with Session(engine) as session:
        for n in range(count):
            add_task(
                session,
                n + 1,
                repository=f"octo/r{n % 4}",
                state=states[n % 3],
                model=models[n % 2],
                created_at=start + timedelta(hours=n),
                updated_at=start + timedelta(hours=n % 7),
                cost=float(n % 5),
            )
        session.commit()


def _walk(engine: Engine, query: TaskQuery) -> list[int]:
    seen: list[int] = []
    params: dict[str, list[str]] = {k: [v] for k, v in query.params().items()}
    for _ in range(100):
        page = list_tasks(engine, parse_task_query(params))
        seen.extend(r.id for r in page.rows)
        if page.next_cursor is None:
            return seen
        params["after"] = [page.next_cursor]
    raise AssertionError("paging did not end")


def test_filters_and_keyset_paging_visit_each_task_once(database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    _many(engine, 120)
    with Session(engine) as session:
        every = list(session.exec(select(Task)).all())
    for sort in ("newest", "oldest", "updated", "cost"):
        ids = _walk(engine, TaskQuery(sort=sort, limit=7))  # type: ignore[arg-type]
        assert sorted(ids) == sorted(t.id for t in every), sort
    newest = _walk(engine, TaskQuery(limit=50))
    assert newest == sorted(newest, reverse=True)
    by_cost = {t.id: t.cost for t in every}
    costs = [by_cost[i] for i in _walk(engine, TaskQuery(sort="cost", limit=9))]
    assert costs == sorted(costs, reverse=True)
    query = TaskQuery(repository="octo/r1", state="working", model="test", limit=3)
    wanted = {
        t.id
        for t in every
        if t.repository == "octo/r1" and t.state == "working" and t.model == "test"
    }
    assert set(_walk(engine, query)) == wanted
    assert wanted
    assert list_tasks(engine, query).total == len(wanted)
    day = TaskQuery(since=date(2026, 1, 2), until=date(2026, 1, 2), limit=200)
    assert len(_walk(engine, day)) == 24  # tasks created hourly: one day's worth
    engine.dispose()


def test_parse_task_query_reads_a_cursor_only_for_its_sort() -> None:
    page_cursor = "WzMuMCw1XQ"  # [3.0, 5]: a cost cursor
    assert parse_task_query({"sort": ["cost"], "after": [page_cursor]}).after == (3.0, 5)
    with pytest.raises(QueryError):
        parse_task_query({"sort": ["updated"], "after": [page_cursor]})


@pytest.fixture
def console_server(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """The console alone on a real port (loopback, no token), polling fast, one stream."""
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    init_db(engine)
    app = FastAPI()
    app.include_router(make_console_router(engine, [TOKEN], None, poll_seconds=0.05, max_streams=1))
    with serve(app) as url:
        yield url, engine
    engine.dispose()


def _finish_later(engine: Engine, iteration_id: int) -> threading.Thread:
    def work() -> None:
        for index in (2, 3):
            time.sleep(0.15)
            with Session(engine) as session:
                session.add(step(iteration_id, index, text=f"live {index} {HOSTILE} {TOKEN}"))
                session.commit()
        time.sleep(0.15)
        with Session(engine) as session:
            row = session.get(Iteration, iteration_id)
            assert row is not None
            row.outcome, row.cost = "succeeded", 0.05
            session.add(row)
            session.commit()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_live_stream_sends_new_steps_then_ends(console_server: tuple[str, Engine]) -> None:
    url, engine = console_server
    ids = seed_story(engine)
    writer = _finish_later(engine, ids["live_iteration"])
    events: list[tuple[str, str]] = []
    with (
        httpx.Client(timeout=10) as http,
        http.stream("GET", f"{url}/console/tasks/{ids['running']}/iterations/1/events") as answer,
    ):
        assert answer.headers["content-type"].startswith("text/event-stream")
        # A second viewer while the one slot is taken is told to come back.
        busy = http.get(f"{url}/console/tasks/{ids['running']}/iterations/1/events")
        assert (busy.status_code, busy.headers["retry-after"]) == (503, "60")
        kind = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, line[6:]))
    writer.join(5)
    steps = [data for kind, data in events if kind == "step"]
    assert len(steps) == 3  # the one recorded before and the two written while watching
    assert "live 3" in steps[-1]
    assert "&lt;script&gt;" in steps[-1]
    assert "<script>" not in "".join(steps)
    assert TOKEN not in "".join(steps)
    assert events[-1] == ("end", '{"outcome":"succeeded"}')
    # The slot is free again once the stream ended.
    again = httpx.get(
        f"{url}/console/tasks/{ids['running']}/iterations/1/events?after=999999", timeout=10
    )
    assert again.status_code == 200
    assert "event: end" in again.text


def test_live_stream_refuses_bad_input(console_server: tuple[str, Engine]) -> None:
    url, engine = console_server
    ids = seed_story(engine)
    base = f"{url}/console/tasks/{ids['running']}/iterations"
    assert httpx.get(f"{base}/1/events?after=-1").status_code == 400
    assert httpx.get(f"{base}/x/events").status_code == 400
    missing = httpx.get(f"{base}/7/events")
    assert missing.status_code == 404
    assert "has no iteration 7" in missing.json()["error"]
    forwarded = httpx.get(f"{base}/1/events", headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403


def test_the_pages_next_link_walks_the_filtered_list(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    _many(engine, 30)
    seen: list[str] = []
    url: str | None = "/console?repository=octo/r2&limit=3"
    while url is not None:
        page = client.get(url, headers=AUTH)
        assert page.status_code == 200
        seen.extend(re.findall(r'<a href="/console/tasks/\d+">(octo/r\d#\d+)</a>', page.text))
        found = re.search(r'<a class="next" href="([^"]+)"', page.text)
        url = html.unescape(found.group(1)) if found else None
        assert len(seen) <= 30
    # Every fourth task is in octo/r2 (numbers 3, 7, ..., 27), newest first, each once.
    assert seen == [f"octo/r2#{n}" for n in range(27, 0, -4)]


def test_a_viewer_who_leaves_frees_the_stream_slot(console_server: tuple[str, Engine]) -> None:
    url, engine = console_server
    ids = seed_story(engine)
    events = f"{url}/console/tasks/{ids['running']}/iterations/1/events"
    with httpx.Client(timeout=10) as http, http.stream("GET", events) as answer:
        assert answer.status_code == 200
        assert http.get(events).status_code == 503
    # The iteration still runs: only the client's leaving can have ended the first stream.
    deadline = time.monotonic() + 5
    with httpx.Client(timeout=10) as http:
        while True:
            with http.stream("GET", events) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the slot was never given back"
            time.sleep(0.05)
