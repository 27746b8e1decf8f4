"""Ready means able (DESIGN.md section 5): ``GET /`` lists each gap of the set-up as one line
of "missing" beside every check, and ``/readyz`` answers 503 with the reasons when something
configured does not work: GitHub credentials, the model key, the sandbox, the database's
schema, the data directory."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from bot.entrypoints.app import create_app
from bot.entrypoints.readiness import Check, Readiness
from bot.settings import Settings
from bot.store.engine import init_db, make_engine
from bot.testing.fake_github import FakeGitHub, InlineComment
from bot.testing.fake_github.server import DEFAULT_APP_EVENTS
from bot.testing.model_server import ScriptedModelServer
from tests.github.conftest import app_key
from tests.support.web import free_port

MODEL_KEY = "sk-ant-test-0000000000"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        yield gh


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    """The scripted Messages API, knowing the one key it accepts."""
    with ScriptedModelServer(api_key=MODEL_KEY) as server:
        yield server


def service(
    tmp_path: Path,
    fake: FakeGitHub,
    model: ScriptedModelServer | None = None,
    runs_jobs: bool = True,
    **extra: Any,
) -> TestClient:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    settings = Settings(
        **{
            "data_dir": tmp_path / "data",
            "webhook_secret": "test-webhook-secret-0123456789",
            "anthropic_api_key": MODEL_KEY,
            "anthropic_base_url": model.base_url if model else f"http://127.0.0.1:{free_port()}",
            "sandbox": "none",
            "github_api_url": fake.api_url,
            **extra,
        }
    )
    return TestClient(create_app(settings, runs_jobs=runs_jobs))


def check(client: TestClient, name: str) -> dict[str, Any]:
    checks: list[dict[str, Any]] = client.get("/").json()["checks"]
    [found] = [c for c in checks if c["name"] == name]
    return found


def github_lines(client: TestClient) -> list[str]:
    missing: list[str] = client.get("/").json()["missing"]
    return [m for m in missing if "GitHub" in m]


@pytest.mark.parametrize("given_as", ["VIBE_GITHUB_PRIVATE_KEY", "VIBE_GITHUB_PRIVATE_KEY_PATH"])
def test_an_app_key_with_literal_newlines_is_ready(
    tmp_path: Path, fake: FakeGitHub, given_as: str
) -> None:
    creds = fake.create_app("my-vibe", private_key_pem=app_key())
    one_line = app_key().strip().replace("\n", "\\n")
    key: dict[str, Any] = {"github_private_key": one_line}
    if given_as.endswith("_PATH"):
        (tmp_path / "app.pem").write_text(one_line)
        key = {"github_private_key_path": tmp_path / "app.pem"}
    client = service(tmp_path, fake, github_app_id=creds.app_id, **key)
    index = client.get("/").json()
    assert (index["missing"], index["ready_for_tasks"]) == ([], True)
    assert client.get("/readyz").json() == {"status": "ready"}
    assert "event" in client.app.state.worker.handlers  # type: ignore[attr-defined]


def test_a_garbage_key_is_one_missing_line_and_not_ready(tmp_path: Path, fake: FakeGitHub) -> None:
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN RSA PRIVATE KEY-----\nnot really\n-----END RSA PRIVATE KEY-----\n")
    client = service(tmp_path, fake, github_app_id=1, github_private_key_path=key)
    line = "GitHub credentials: the GitHub App private key does not parse as a PEM private key"
    assert client.get("/").json()["missing"] == [line]
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "not ready", "reasons": [line]})
    # No worker takes event jobs it could only fail: they wait, stored, for a fixed key.
    assert "event" not in client.app.state.worker.handlers  # type: ignore[attr-defined]


def test_an_app_lacking_pull_requests_write_is_named(tmp_path: Path, fake: FakeGitHub) -> None:
    creds = fake.create_app(
        "my-vibe",
        private_key_pem=app_key(),
        permissions={
            "contents": "write",
            "issues": "write",
            "pull_requests": "read",
            "metadata": "read",
            "checks": "write",
            "actions": "read",
            "statuses": "read",
        },
    )
    client = service(tmp_path, fake, github_app_id=creds.app_id, github_private_key=app_key())
    [line] = client.get("/").json()["missing"]
    assert line.startswith("GitHub App permission Pull requests: read, needs write")
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()["reasons"]) == (503, [line])


def test_an_app_not_subscribed_to_reviews_gets_none_and_the_event_is_named(
    tmp_path: Path, fake: FakeGitHub
) -> None:
    creds = fake.create_app(
        "my-vibe",
        private_key_pem=app_key(),
        events=tuple(e for e in DEFAULT_APP_EVENTS if e != "pull_request_review"),
    )
    fake.create_repo("acme/app", {"f.txt": "one\ntwo\n"})
    fake.install_app("acme")
    fake.commit("acme/app", "vibe/1", {"f.txt": "one\n2\n"})
    pr = fake.open_pull("acme/app", "rita", "vibe/1", "Change f")
    fake.review("acme/app", pr, "rita", body="Better.", comments=[InlineComment("f.txt", 2, "ok")])
    # GitHub sends an App only the events it subscribed to: the inline comment, no review.
    assert [d.event for d in fake.deliveries] == ["pull_request", "pull_request_review_comment"]
    client = service(tmp_path, fake, github_app_id=creds.app_id, github_private_key=app_key())
    [line] = client.get("/").json()["missing"]
    assert line.startswith("GitHub App event pull_request_review: not subscribed (")
    assert client.get("/readyz").status_code == 503


def test_the_console_start_up_lists_githubs_findings_beside_the_settings(
    tmp_path: Path, fake: FakeGitHub
) -> None:
    creds = fake.create_app("my-vibe", private_key_pem=app_key(), events=("issues",))
    settings = Settings(
        data_dir=tmp_path,
        github_api_url=fake.api_url,
        github_app_id=creds.app_id,
        github_private_key=app_key(),
    )
    engine = make_engine(settings.effective_database_url)
    checks = {c.name: c for c in Readiness(settings, engine).run()}
    engine.dispose()
    assert checks["settings"].lines == tuple(settings.missing())
    github = checks["GitHub"]
    assert (github.status, github.lasting) == ("failed", False)
    assert [line.split(":")[0] for line in github.lines] == [
        "GitHub App event check_run",
        "GitHub App event check_suite",
        "GitHub App event issue_comment",
        "GitHub App event pull_request",
        "GitHub App event pull_request_review",
        "GitHub App event pull_request_review_comment",
        "GitHub App event pull_request_review_thread",
        "GitHub App event status",
        "GitHub App event workflow_run",
    ]


def test_readyz_asks_github_once_a_minute(tmp_path: Path, fake: FakeGitHub) -> None:
    creds = fake.create_app("my-vibe", private_key_pem=app_key())
    client = service(tmp_path, fake, github_app_id=creds.app_id, github_private_key=app_key())
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    assert sum(1 for r in fake.responses if (r.method, r.template) == ("GET", "/app")) == 1


def test_a_token_is_ready_when_get_user_answers(tmp_path: Path, fake: FakeGitHub) -> None:
    good = service(tmp_path, fake, github_token=fake.user_token("rita"))
    assert good.get("/readyz").status_code == 200
    bad = service(tmp_path / "bad", fake, github_token="ghp_" + "x" * 36)
    [line] = github_lines(bad)
    assert line.startswith("GET /user failed: GitHub answered 401")
    assert bad.get("/readyz").status_code == 503


def test_without_credentials_readyz_stays_a_database_check(
    tmp_path: Path, fake: FakeGitHub
) -> None:
    client = service(tmp_path, fake)
    assert client.get("/readyz").json() == {"status": "ready"}
    [line] = github_lines(client)
    assert line.startswith("GitHub credentials: set VIBE_GITHUB_APP_ID")


def test_a_rejected_model_key_is_named_and_not_ready_and_asked_once_a_minute(
    tmp_path: Path, fake: FakeGitHub, model: ScriptedModelServer
) -> None:
    client = service(tmp_path, fake, model, anthropic_api_key="sk-ant-wrong-000000000")
    line = (
        f"VIBE_ANTHROPIC_API_KEY was rejected by {model.base_url} (401: invalid x-api-key): "
        "set a valid key (https://console.anthropic.com/settings/keys)"
    )
    for _ in range(3):
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()["reasons"]) == (503, [line])
    assert check(client, "model key") == {
        "name": "model key",
        "status": "failed",
        "details": [line],
    }
    assert line in client.get("/").json()["missing"]
    asked = [(r.method, r.path, r.status) for r in model.requests]
    assert asked == [("GET", "/v1/models", 401)]


def test_an_accepted_model_key_is_ok(
    tmp_path: Path, fake: FakeGitHub, model: ScriptedModelServer
) -> None:
    client = service(tmp_path, fake, model, github_token=fake.user_token("rita"))
    assert client.get("/readyz").json() == {"status": "ready"}
    index = client.get("/").json()
    assert (index["ready_for_tasks"], index["missing"]) == (True, [])
    assert {c["name"]: c["status"] for c in index["checks"]} == {
        "settings": "ok",
        "GitHub": "ok",
        "sandbox": "ok",
        "data directory": "ok",
        "database": "ok",
        "model key": "ok",
    }
    assert check(client, "model key")["details"] == [f"accepted by {model.base_url}"]


def test_an_unreachable_model_api_is_not_checked_and_stays_ready(
    tmp_path: Path, fake: FakeGitHub
) -> None:
    client = service(tmp_path, fake)  # the base URL is a closed port
    assert client.get("/readyz").status_code == 200
    found = check(client, "model key")
    assert found["status"] == "not checked"
    assert found["details"][0].startswith("cannot reach http://127.0.0.1:")


def test_a_database_behind_the_latest_migration_is_not_ready(
    tmp_path: Path, fake: FakeGitHub
) -> None:
    client = service(tmp_path, fake)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    assert client.get("/readyz").status_code == 200
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    [reason] = ready.json()["reasons"]
    assert "the database is at revision 0001, not at the latest" in reason
    assert reason.endswith(
        "restart `vibe serve` or `vibe worker`: they migrate the database at start"
    )
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    [reason] = client.get("/readyz").json()["reasons"]
    assert "revision f00d, which this version does not know" in reason


def test_an_unwritable_data_directory_is_named(tmp_path: Path, fake: FakeGitHub) -> None:
    # We run as root, whom permissions do not stop: a directory under a regular file
    # cannot be created by anyone.
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data"
    engine = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    settings = Settings(
        data_dir=data, webhook_secret="test-webhook-secret-0123456789", sandbox="none"
    )
    client = TestClient(create_app(settings, engine=engine))
    ready = client.get("/readyz")
    assert (ready.status_code, ready.json()["reasons"]) == (
        503,
        [
            f"the data directory {data} is not writable (Not a directory): set VIBE_DATA_DIR "
            "to a writable directory or make this one writable"
        ],
    )


def test_a_sandbox_that_cannot_start_is_not_ready_with_bwraps_line_and_the_fix(
    tmp_path: Path, fake: FakeGitHub, bwrap_available: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    setpriv, bwrap = shutil.which("setpriv"), shutil.which("bwrap")
    if os.geteuid() != 0 or setpriv is None or bwrap is None:
        pytest.skip("a container without CAP_SYS_ADMIN is reproduced as root with setpriv")
    # bwrap under a bounding set without CAP_SYS_ADMIN fails as in such a container
    # (tests/sandbox/test_start_failure.py).
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "bwrap").write_text(
        f'#!/bin/sh\nexec {setpriv} --bounding-set=-sys_admin,-net_admin -- {bwrap} "$@"\n'
    )
    (folder / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    client = service(tmp_path, fake, sandbox="bwrap")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    [reason] = ready.json()["reasons"]
    assert reason.startswith(
        "the sandbox cannot start: bwrap: Creating new namespace failed: Operation not "
        "permitted. Fix: "
    )
    assert "CAP_SYS_ADMIN" in reason
    assert check(client, "sandbox")["status"] == "failed"
    # A web process that runs no jobs (`vibe serve --workers 0`, the Kubernetes web pod)
    # never uses the sandbox: it is ready, and says the sandbox was not checked.
    web = service(tmp_path, fake, sandbox="bwrap", runs_jobs=False)
    assert web.get("/readyz").status_code == 200
    assert check(web, "sandbox") == {
        "name": "sandbox",
        "status": "not checked",
        "details": ["this process runs no jobs (--workers 0)"],
    }


@pytest.mark.parametrize("enabled", [False, True])
def test_the_api_description_is_served_only_when_enabled(
    tmp_path: Path, fake: FakeGitHub, enabled: bool
) -> None:
    client = service(tmp_path, fake, api_docs=enabled)
    expected = 200 if enabled else 404
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == expected, path


def test_readiness_bounds_a_slow_check(tmp_path: Path) -> None:
    # A GitHub that takes the connection and never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        settings = Settings(
            data_dir=tmp_path,
            github_token="ghp_" + "x" * 36,
            github_api_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
            github_timeout=5.0,
            sandbox="none",
        )
        engine = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
        init_db(engine)
        checks = {c.name: c for c in Readiness(settings, engine, wait=0.5).run()}
        engine.dispose()
    assert checks["GitHub"] == Check(
        "GitHub", "not checked", ("no answer within 0.5 s",), lasting=False
    )
    assert checks["database"].status == "ok"
