"""The dashboard shows tasks, iterations and jobs, redacted, to allowed clients only."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.entrypoints.app import create_app
from bot.store.tables import Iteration, Job, Task
from tests.support.web import Live, make_settings

TOKEN = "ghp_" + "z" * 36


def seed(engine: Engine) -> None:
    with Session(engine) as session:
        task = Task(
            repository="octo/widgets",
            number=7,
            pr_number=8,
            model="conversational",
            state="awaiting_review",
            branch="vibe/issue-7-fix",
            base="main",
            requester="alice",
            title="<script>alert(1)</script> fix it",
            instruction="fix it",
            cost=0.42,
        )
        session.add(task)
        session.commit()
        session.refresh(task)
        assert task.id is not None
        session.add(
            Iteration(
                task_id=task.id,
                number=1,
                key="k1",
                trigger="label",
                feedback=[{"kind": "execution", "text": "tests failed"}],
                outcome="done",
                error=f"push failed with {TOKEN}",
            )
        )
        session.add(Job(kind="event", status="dead", last_error=f"boom {TOKEN}"))
        session.commit()


def test_loopback_client_sees_redacted_escaped_tasks(live: Live) -> None:
    seed(live.app.state.engine)
    data = httpx.get(f"{live.url}/api/tasks").json()
    [task] = data["tasks"]
    assert (task["number"], task["pr"], task["state"]) == (7, 8, "awaiting_review")
    [iteration] = task["iterations"]
    assert iteration["feedback_kinds"] == ["execution"]
    page = httpx.get(f"{live.url}/dashboard").text
    assert "octo/widgets#7" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;" in page
    assert TOKEN not in page
    assert TOKEN not in str(data)
    assert "[redacted]" in page


def test_remote_clients_need_the_token(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'd.db'}", dashboard_token="dash-token-123456"
    )
    app = create_app(settings, handlers={})
    with TestClient(app) as client:
        assert client.get("/dashboard").status_code == 403
        bad = {"Authorization": "Bearer nope"}
        assert client.get("/api/tasks", headers=bad).status_code == 403
        good = {"Authorization": "Bearer dash-token-123456"}
        assert client.get("/api/tasks", headers=good).json() == {"tasks": [], "jobs": []}
    no_token = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'e.db'}"), handlers={})
    with TestClient(no_token) as client:  # TestClient's peer is "testclient", not loopback
        assert client.get("/dashboard").status_code == 403


def test_without_a_token_a_foreign_host_name_is_refused_even_on_loopback(live: Live) -> None:
    """DNS rebinding: a page from evil.example whose name now points at 127.0.0.1."""
    seed(live.app.state.engine)
    for host in ("evil.example", "evil.example:8000", "bot.example.com"):
        response = httpx.get(f"{live.url}/api/tasks", headers={"Host": host})
        assert response.status_code == 403, host
        assert "octo/widgets" not in response.text
    port = live.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]"):
        response = httpx.get(f"{live.url}/api/tasks", headers={"Host": host})
        assert response.status_code == 200, host


def test_a_refusal_says_how_to_get_access_and_not_whether_a_token_is_set(
    tmp_path: Path,
) -> None:
    """A browser gets a readable page naming VIBE_DASHBOARD_TOKEN and the header to send; an
    API client the same words as JSON. The words are the same with and without a token
    configured, so a refusal does not say which set-up is in front of the client."""
    token = "dash-token-123456"
    with_token = create_app(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'f.db'}", dashboard_token=token),
        handlers={},
    )
    without = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'g.db'}"), handlers={})
    pages: list[str] = []
    with TestClient(with_token) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": token}):
            refused = client.get("/dashboard", headers=headers)
            assert refused.status_code == 403
            assert refused.headers["content-type"].startswith("text/html")
            pages.append(refused.text)
        api = client.get("/api/tasks", headers={"Authorization": "Bearer nope"})
    with TestClient(without) as client:  # not loopback: refused
        pages.append(client.get("/dashboard").text)
        assert client.get("/api/tasks").json() == api.json()
    assert len(set(pages)) == 1
    page = pages[0]
    assert "VIBE_DASHBOARD_TOKEN" in page
    assert "Authorization: Bearer &lt;token&gt;" in page
    assert "only loopback clients are served" in page
    assert "http://127.0.0.1:&lt;port&gt;/dashboard" in page
    assert token not in page
    assert api.status_code == 403
    detail = api.json()["detail"]
    assert "send the header 'Authorization: Bearer <token>'" in detail
    assert "VIBE_DASHBOARD_TOKEN" in detail
