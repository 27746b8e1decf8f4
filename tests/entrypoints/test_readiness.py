"""Ready means able (DESIGN.md section 5): ``GET /`` lists each gap of the GitHub set-up as
one line of "missing", and ``/readyz`` answers 503 with the reasons when GitHub credentials
are configured but unusable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bot.entrypoints.app import create_app
from bot.entrypoints.cli import startup_missing
from bot.settings import Settings
from bot.testing.fake_github import FakeGitHub, InlineComment
from bot.testing.fake_github.server import DEFAULT_APP_EVENTS
from tests.github.conftest import app_key


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        yield gh


def service(tmp_path: Path, fake: FakeGitHub, **github: Any) -> TestClient:
    (tmp_path / "data").mkdir(parents=True)
    settings = Settings(
        data_dir=tmp_path / "data",
        webhook_secret="test-webhook-secret-0123456789",
        anthropic_api_key="sk-ant-test-0000000000",
        sandbox="none",
        github_api_url=fake.api_url,
        **github,
    )
    return TestClient(create_app(settings))


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
    assert (ready.status_code, ready.json()) == (
        503,
        {"status": "GitHub credentials unusable", "reasons": [line]},
    )
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
    missing = startup_missing(settings)
    assert missing[: len(settings.missing())] == settings.missing()
    github = missing[len(settings.missing()) :]
    assert [line.split(":")[0] for line in github] == [
        "GitHub App event issue_comment",
        "GitHub App event pull_request",
        "GitHub App event pull_request_review",
        "GitHub App event pull_request_review_comment",
        "GitHub App event pull_request_review_thread",
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
