"""The console shows an iteration's best-of-N attempts as stored: each attempt with its
branch, checks, diff and cost, the choice and its reasons, escaped and redacted; a stored
value that does not parse shows as no attempts rather than an error."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from bot.core.attempts import Attempt, AttemptSet
from bot.entrypoints.app import create_app
from bot.store.tables import Iteration
from tests.support.console import HOSTILE, TOKEN, add_task
from tests.support.web import make_settings

DASH = "dash-token-0123456789"
AUTH = {"Authorization": f"Bearer {DASH}"}
BRANCH = "vibe/issue-7-fix--attempt-1"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", dashboard_token=DASH)
    app = create_app(settings, handlers={})
    with TestClient(app) as c:
        yield c
    app.state.engine.dispose()


def seed(client: TestClient, attempts: object) -> int:
    with Session(client.app.state.engine) as session:  # type: ignore[attr-defined]
        task = add_task(session, 7, pr_number=8)
        assert task.id is not None
        session.add(
            Iteration(task_id=task.id, number=1, key="k", trigger="comment", attempts=attempts)  # type: ignore[arg-type]
        )
        session.commit()
        return task.id


def test_the_task_page_and_api_show_the_attempts_and_the_choice(client: TestClient) -> None:
    value = AttemptSet(
        attempts=(
            Attempt(
                1,
                "succeeded",
                "failed",
                "tests failed (1)",
                sha="a" * 40,
                branch=BRANCH,
                files=1,
                insertions=1,
                deletions=1,
                cost=0.054,
            ),
            Attempt(
                2,
                "succeeded",
                "passed",
                "tests passed",
                sha="b" * 40,
                files=1,
                insertions=1,
                deletions=1,
                cost=0.027,
            ),
            Attempt(3, "failed", "none", "not run", note=HOSTILE),
        ),
        chosen=2,
        first=2,
        reasons=("attempt 2 is chosen: its checks pass", f"attempt 1's checks fail {TOKEN}"),
        note=f"2 of 3 attempts run {HOSTILE}",
    )
    task_id = seed(client, value.to_json())
    page = client.get(f"/console/tasks/{task_id}", headers=AUTH).text
    table = re.search(r'<table class="attempts">(.*?)</table>', page, re.S)
    assert table is not None
    rows = [
        html.unescape(re.sub(r"<[^>]+>", " ", r)).split()
        for r in re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.S)[1:]
    ]
    assert rows[0] == [
        "1",
        BRANCH,
        "tests",
        "failed",
        "(1)",
        "0",
        "1",
        "file",
        "+1",
        "−1",
        "$0.0540",
        "succeeded",
    ]
    assert rows[1][:2] == ["2", "(chosen)"]
    assert rows[2] == ["3", "not", "run", "0", "no", "change", "$0.0000", "failed"]
    assert "Attempts: 3, attempt 2 chosen" in page
    assert "<script>alert" not in page
    assert TOKEN not in page
    assert "[redacted]" in page
    api = client.get(f"/api/console/tasks/{task_id}", headers=AUTH).json()
    [iteration] = api["iterations"]
    shown = iteration["attempts"]
    assert shown["chosen"] == 2
    assert [a["number"] for a in shown["attempts"]] == [1, 2, 3]
    assert shown["attempts"][0]["branch"] == BRANCH
    assert shown["reasons"][1] == "attempt 1's checks fail [redacted]"
    assert TOKEN not in str(api)


@pytest.mark.parametrize("stored", [None, {"attempts": "x"}, {"attempts": [{"no": 1}]}, [1, 2]])
def test_a_missing_or_malformed_value_shows_no_attempts(client: TestClient, stored: object) -> None:
    task_id = seed(client, stored)
    page = client.get(f"/console/tasks/{task_id}", headers=AUTH)
    assert page.status_code == 200
    assert 'class="attempts"' not in page.text
    api = client.get(f"/api/console/tasks/{task_id}", headers=AUTH).json()
    assert api["iterations"][0]["attempts"] is None
