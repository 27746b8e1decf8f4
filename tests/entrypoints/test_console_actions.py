"""The console's actions (retry, stop, requeue): refused without access, from another
site, or without the form's CSRF token; carried out and recorded with them."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.entrypoints.app import create_app
from bot.entrypoints.console import CSRF_COOKIE, make_console_router
from bot.loop.console import CONSOLE_JOB
from bot.loop.handlers import EventJob, handle_console
from bot.store.engine import init_db, make_engine
from bot.store.tables import ConsoleAction, Iteration, Job, Task
from tests.support.actions import serve
from tests.support.console import TOKEN, seed_story
from tests.support.web import make_settings

DASH = "dash-token-0123456789"
AUTH = {"Authorization": f"Bearer {DASH}"}
SAME = {**AUTH, "Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", dashboard_token=DASH)
    app = create_app(settings, handlers={})
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def _engine(client: TestClient) -> Engine:
    engine: Engine = client.app.state.engine  # type: ignore[attr-defined]
    return engine


def _form_token(client: TestClient, url: str) -> str:
    """Open a page as the browser would: it sets the cookie and carries the form's token."""
    page = client.get(url, headers=AUTH)
    assert page.status_code == 200
    found = _CSRF.search(page.text)
    assert found is not None, "the page has no action form"
    return found.group(1)


def _audit(engine: Engine) -> list[ConsoleAction]:
    with Session(engine) as session:
        return list(session.exec(select(ConsoleAction).order_by(ConsoleAction.id)).all())  # type: ignore[arg-type]


def _task(engine: Engine, task_id: int) -> Task:
    with Session(engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task


def _dead_job(engine: Engine) -> Job:
    with Session(engine) as session:
        return session.exec(select(Job).where(Job.status == "dead")).one()


def test_refused_without_token_other_origin_or_csrf_token(client: TestClient) -> None:
    engine = _engine(client)
    ids = seed_story(engine)
    csrf = _form_token(client, f"/console/tasks/{ids['running']}")
    url = f"/console/tasks/{ids['running']}/stop"
    refusals = {
        "no token": client.post(url, data={"csrf": csrf}, headers={"Origin": "http://testserver"}),
        "wrong token": client.post(
            url, data={"csrf": csrf}, headers={**SAME, "Authorization": "Bearer nope"}
        ),
        "other origin": client.post(
            url, data={"csrf": csrf}, headers={**AUTH, "Origin": "http://evil.example"}
        ),
        "cross-site fetch": client.post(
            url, data={"csrf": csrf}, headers={**SAME, "Sec-Fetch-Site": "cross-site"}
        ),
        "no origin at all": client.post(url, data={"csrf": csrf}, headers=AUTH),
        "null origin": client.post(url, data={"csrf": csrf}, headers={**AUTH, "Origin": "null"}),
        "no csrf token": client.post(url, data={}, headers=SAME),
        "a wrong csrf token": client.post(url, data={"csrf": "0" * 64}, headers=SAME),
        "two csrf tokens": client.post(
            url,
            content=f"csrf={csrf}&csrf={csrf}",
            headers={**SAME, "content-type": "application/x-www-form-urlencoded"},
        ),
    }
    for why, answer in refusals.items():
        assert answer.status_code == 403, why
    assert "CSRF token" in refusals["no csrf token"].text
    assert "another site" in refusals["other origin"].text
    # The token without the cookie it was made from is refused too (double submit).
    client.cookies.clear()
    assert client.post(url, data={"csrf": csrf}, headers=SAME).status_code == 403
    # Nothing happened, and nothing let in was recorded.
    assert _task(engine, ids["running"]).stop_requested is False
    assert _audit(engine) == []
    # A GET does not act.
    assert client.get(url, headers=AUTH).status_code == 405


def test_stop_a_running_task_is_done_and_recorded(client: TestClient) -> None:
    engine = _engine(client)
    ids = seed_story(engine)
    page = f"/console/tasks/{ids['running']}"
    csrf = _form_token(client, page)
    assert client.cookies.get(CSRF_COOKIE) is not None
    answer = client.post(f"{page}/stop", data={"csrf": csrf}, headers=SAME)
    assert answer.status_code == 200, answer.text
    assert "the running iteration was asked to stop" in answer.text
    task = _task(engine, ids["running"])
    assert (task.stop_requested, task.state) == (True, "working")
    [row] = _audit(engine)
    assert (row.actor, row.action, row.target, row.target_id, row.outcome) == (
        "dashboard token",
        "stop",
        "task",
        ids["running"],
        "done",
    )
    assert row.remote == "testclient"
    shown = client.get(page, headers=AUTH).text
    assert "Actions taken here" in shown
    assert "asked to stop" in shown


def test_retry_queues_a_console_job_in_the_task_lane_once(client: TestClient) -> None:
    engine = _engine(client)
    ids = seed_story(engine)
    page = f"/console/tasks/{ids['done']}"  # its iteration 1 ended at a limit
    csrf = _form_token(client, page)
    assert 'action="/console/tasks/' in client.get(page, headers=AUTH).text
    answer = client.post(f"{page}/retry", data={"csrf": csrf}, headers=SAME)
    assert answer.status_code == 200, answer.text
    with Session(engine) as session:
        [job] = session.exec(select(Job).where(Job.kind == CONSOLE_JOB)).all()
    assert job.status == "queued"
    assert job.serial_key == "octo/widgets#7"  # the lane of the task's other work
    assert job.payload == {
        "action": "retry",
        "task_id": ids["done"],
        "repository": "octo/widgets",
        "number": 7,
        "repo_id": None,
        "by": "dashboard token",
    }
    again = client.post(f"{page}/retry", data={"csrf": csrf}, headers=SAME)
    assert again.status_code == 409
    assert "already queued" in again.text
    # A running task is not retried: it is stopped first.
    running = f"/console/tasks/{ids['running']}/retry"
    busy = client.post(running, data={"csrf": csrf}, headers=SAME)
    assert busy.status_code == 409
    assert "stop it first" in busy.text
    assert [(r.action, r.outcome) for r in _audit(engine)] == [
        ("retry", "done"),
        ("retry", "refused"),
        ("retry", "refused"),
    ]


def test_requeue_a_dead_job(client: TestClient) -> None:
    engine = _engine(client)
    seed_story(engine)
    dead = _dead_job(engine)
    csrf = _form_token(client, "/console/jobs")
    assert (
        f'action="/console/jobs/{dead.id}/requeue"'
        in client.get("/console/jobs", headers=AUTH).text
    )
    answer = client.post(f"/console/jobs/{dead.id}/requeue", data={"csrf": csrf}, headers=SAME)
    assert answer.status_code == 200, answer.text
    with Session(engine) as session:
        job = session.get(Job, dead.id)
        assert job is not None
        assert (job.status, job.attempts, job.finished_at) == ("queued", 0, None)
    # It is not dead any more: a second requeue is refused, and says why.
    again = client.post(f"/console/jobs/{dead.id}/requeue", data={"csrf": csrf}, headers=SAME)
    assert again.status_code == 409
    assert "only a dead job" in again.text
    assert [(r.action, r.target_id, r.outcome) for r in _audit(engine)] == [
        ("requeue", dead.id, "done"),
        ("requeue", dead.id, "refused"),
    ]
    # The detail shown is redacted like everything else.
    assert TOKEN not in answer.text


@pytest.fixture
def loopback(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """The console on a real port without a dashboard token: loopback only."""
    engine = make_engine(f"sqlite:///{tmp_path / 'l.db'}")
    init_db(engine)
    app = FastAPI()
    app.include_router(make_console_router(engine, [TOKEN], None))
    with serve(app) as url:
        yield url, engine
    engine.dispose()


def test_loopback_mode_refuses_a_post_from_another_site(loopback: tuple[str, Engine]) -> None:
    """Without a token, a page on any site can make the browser POST to 127.0.0.1: the
    origin check and the CSRF token are what stop it."""
    url, engine = loopback
    ids = seed_story(engine)
    with httpx.Client(timeout=10) as http:
        page = http.get(f"{url}/console/tasks/{ids['running']}")
        found = _CSRF.search(page.text)
        assert page.status_code == 200
        assert found is not None
        stop = f"{url}/console/tasks/{ids['running']}/stop"
        # What a hostile page's form sends: its own origin, no cookie of ours it could read.
        forged = httpx.post(
            stop,
            data={"csrf": "f" * 64},
            headers={"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        )
        assert forged.status_code == 403
        assert _task(engine, ids["running"]).stop_requested is False
        done = http.post(
            stop,
            data={"csrf": found.group(1)},
            headers={"Origin": url, "Sec-Fetch-Site": "same-origin"},
        )
        assert done.status_code == 200, done.text
    assert _task(engine, ids["running"]).stop_requested is True
    [row] = _audit(engine)
    assert (row.actor, row.remote, row.outcome) == ("loopback", "127.0.0.1", "done")


def test_task_page_shows_the_context_manifest_collapsed_and_escaped(client: TestClient) -> None:
    engine = _engine(client)
    ids = seed_story(engine)
    manifest = {
        "budget": 1000,
        "total_tokens": 900,
        "kinds": [{"kind": "instr", "tokens": 100}, {"kind": "code", "tokens": 800}],
        "items": [
            {"kind": "instr", "source": "instructions", "tokens": 100, "truncated": False},
            {"kind": "code", "source": "src/<b>x</b>.py", "tokens": 800, "truncated": True},
        ],
        "files": [
            {
                "rank": 1,
                "path": "src/<b>x</b>.py",
                "score": 0.9,
                "included": True,
                "signals": {"bm25": 0.8, "named": 1.0},
            }
        ],
        "left_out": [{"kind": "mem", "source": "memory-1", "tokens": 400}],
        "skipped_files": [{"path": f"big-{TOKEN}.bin", "reason": "too large"}],
    }
    with Session(engine) as session:
        row = session.exec(select(Iteration).where(Iteration.task_id == ids["done"])).one()
        row.context = manifest
        session.add(row)
        session.commit()
    page = client.get(f"/console/tasks/{ids['done']}", headers=AUTH).text
    assert '<details class="manifest"><summary>Context: 900 of 1000 tokens (L_max)' in page
    assert '<td>code</td><td class="num">800</td><td class="num">80%</td>' in page
    assert "src/&lt;b&gt;x&lt;/b&gt;.py" in page
    assert "<b>x</b>" not in page
    assert "bm25 0.8, named 1.0" in page
    assert "mem: <code>memory-1</code> (400 tokens)" in page
    assert TOKEN not in page
    api = client.get(f"/api/console/tasks/{ids['done']}", headers=AUTH).json()
    [it] = api["iterations"]
    assert it["context"]["left_out"] == [{"kind": "mem", "source": "memory-1", "tokens": 400}]


@pytest.mark.parametrize(
    ("payload", "said"),
    [
        ({"action": "undo", "task_id": 1, "repository": "o/r"}, "without a retry"),
        ({"action": "retry", "task_id": "1", "repository": "o/r"}, "without a retry"),
        ({"action": "retry", "task_id": 1, "repository": "no-slash"}, "without a repository"),
    ],
)
def test_a_console_job_that_is_not_a_retry_of_a_task_is_ignored(
    tmp_path: Path, payload: dict[str, object], said: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'j.db'}")
    job = EventJob(CONSOLE_JOB, payload, None, 1, 1, threading.Event(), settings, cast(Any, None))
    # The wiring is never reached: a malformed job asks nothing of GitHub.
    assert handle_console(job, cast(Any, None)) == f"ignored: a console job {said}" + (
        " of a task" if said == "without a retry" else ""
    )
