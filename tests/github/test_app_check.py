"""The App's set-up as GitHub reports it: the private key parses (a ``.env`` one-liner with
literal ``\\n`` too), ``GET /app`` names the bot and its owner, and the App's permissions and
events cover what the enabled features need; a token's ``GET /user`` names its user."""

from __future__ import annotations

import pytest

from bot.github import GitHub
from bot.github.access import needs
from bot.github.auth import parse_private_key
from bot.settings import load_settings
from bot.testing.fake_github import FakeClock, FakeGitHub
from tests.github.conftest import app_key

LOCAL = needs("local")


def app_hub(fake: FakeGitHub, key: str) -> GitHub:
    creds = fake.create_app("my-vibe", owner="octo-org", private_key_pem=app_key())
    return GitHub.from_settings(
        load_settings(
            github_api_url=fake.api_url, github_app_id=creds.app_id, github_private_key=key
        )
    )


def test_a_key_written_on_one_line_with_literal_newlines_is_accepted(fake: FakeGitHub) -> None:
    one_line = app_key().strip().replace("\n", "\\n")
    assert "\n" not in one_line
    assert parse_private_key(f'"{one_line}"') == app_key().strip() + "\n"
    check = app_hub(fake, one_line).app_check(LOCAL)
    assert (check.kind, check.login, check.owner, check.findings) == (
        "app",
        "my-vibe[bot]",
        "octo-org",
        (),
    )


@pytest.mark.parametrize("garbage", ["not a key", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n"])
def test_a_garbage_key_is_refused_without_quoting_it(garbage: str) -> None:
    with pytest.raises(ValueError, match="private key") as refused:
        parse_private_key(garbage)
    assert "AAAA" not in str(refused.value)


def test_an_app_lacking_pull_requests_write_gets_one_line_naming_it(fake: FakeGitHub) -> None:
    creds = fake.create_app(
        "my-vibe",
        private_key_pem=app_key(),
        permissions={"contents": "write", "issues": "write", "pull_requests": "read"},
    )
    hub = GitHub.from_settings(
        load_settings(
            github_api_url=fake.api_url, github_app_id=creds.app_id, github_private_key=app_key()
        )
    )
    findings = hub.app_check(LOCAL).findings
    # metadata, checks, actions and commit statuses are not granted either: five gaps, one
    # line each
    assert len(findings) == 5
    pulls = [f for f in findings if f.startswith("GitHub App permission Pull requests")]
    assert pulls == [
        "GitHub App permission Pull requests: read, needs write (open and update the task's "
        "pull request; reviews, review comments and resolved threads are feedback; a merge "
        "or close ends the task); change it in the App's settings, then accept it on each "
        "installation"
    ]
    assert any(f.startswith("GitHub App permission Metadata: none, needs read") for f in findings)
    assert any(f.startswith("GitHub App permission Checks: none, needs write") for f in findings)
    assert any(f.startswith("GitHub App permission Actions: none, needs read") for f in findings)
    assert any(
        f.startswith("GitHub App permission Commit statuses: none, needs read") for f in findings
    )


def test_the_actions_executor_needs_actions_write_and_ci_needs_its_events(
    fake: FakeGitHub,
) -> None:
    creds = fake.create_app(
        "my-vibe", private_key_pem=app_key(), events=("issues", "issue_comment", "pull_request")
    )
    hub = GitHub.from_settings(
        load_settings(
            github_api_url=fake.api_url, github_app_id=creds.app_id, github_private_key=app_key()
        )
    )
    events = [
        "GitHub App event check_run",
        "GitHub App event check_suite",
        "GitHub App event pull_request_review",
        "GitHub App event pull_request_review_comment",
        "GitHub App event pull_request_review_thread",
        "GitHub App event status",
        "GitHub App event workflow_run",
    ]
    local = hub.app_check(LOCAL).findings
    assert [f.split(":")[0] for f in local] == events
    on_actions = hub.app_check(needs("actions")).findings
    assert [f.split(":")[0] for f in on_actions] == ["GitHub App permission Actions", *events]


def test_an_app_id_the_key_does_not_sign_for_is_one_line(fake: FakeGitHub) -> None:
    creds = fake.create_app("my-vibe", private_key_pem=app_key())
    hub = GitHub.from_settings(
        load_settings(
            github_api_url=fake.api_url,
            github_app_id=creds.app_id + 1,
            github_private_key=app_key(),
        )
    )
    check = hub.app_check(LOCAL)
    assert check.login is None
    [line] = check.findings
    assert line.startswith("the GitHub App (GET /app) failed: GitHub answered 401")
    assert line.endswith("check VIBE_GITHUB_APP_ID and the private key")


def test_githubs_answer_is_reused_for_a_minute(fake: FakeGitHub, clock: FakeClock) -> None:
    creds = fake.create_app("my-vibe", private_key_pem=app_key())
    settings = load_settings(
        github_api_url=fake.api_url, github_app_id=creds.app_id, github_private_key=app_key()
    )
    hub = GitHub.from_settings(settings, clock=clock)

    def asked() -> int:
        return sum(1 for r in fake.responses if (r.method, r.template) == ("GET", "/app"))

    hub.app_check(LOCAL)
    hub.app_check(LOCAL)
    assert hub.bot_login == "my-vibe[bot]"
    assert asked() == 1
    clock.advance(61)
    hub.app_check(LOCAL)
    assert asked() == 2


def test_a_token_is_checked_with_get_user(fake: FakeGitHub) -> None:
    good = GitHub.from_settings(
        load_settings(github_api_url=fake.api_url, github_token=fake.user_token("rita"))
    )
    assert good.app_check(LOCAL) == good.app_check(LOCAL)
    check = good.app_check(LOCAL)
    assert (check.kind, check.login, check.owner, check.findings) == ("token", "rita", "rita", ())
    bad = GitHub.from_settings(
        load_settings(github_api_url=fake.api_url, github_token="ghp_" + "x" * 36)
    )
    [line] = bad.app_check(LOCAL).findings
    assert line.startswith("GET /user failed: GitHub answered 401")
    assert "ghp_" not in line
