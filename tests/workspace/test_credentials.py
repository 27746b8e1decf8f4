"""Git credentials are taken as each fetch or push starts, and a token the remote refuses is
replaced once: the workspace over the fake GitHub's git smart HTTP, with App installation
tokens that expire on the fake's clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.config import RepoConfig
from bot.github import AppTokens, GitHub, RequestPolicy, RetrySettings
from bot.github.repository import GitHubRepository
from bot.testing.fake_github import FakeClock, FakeGitHub
from bot.workspace.checkout import GitWorkspaces
from bot.workspace.git import AuthenticationFailed, GitCredentials, WorkspaceCache
from tests.github.conftest import app_key

REPO = "acme/widgets"
BRANCH = "vibe/7-add-a-widget"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _fake(clock: FakeClock, token_lifetime: float) -> FakeGitHub:
    fake = FakeGitHub(clock=clock, token_lifetime=token_lifetime)
    fake.start()
    fake.create_repo(REPO, {"README.md": "# widgets\n"}, private=True)
    fake.create_app("vibe-bot", private_key_pem=app_key())
    fake.install_app("acme")
    return fake


def _hub(fake: FakeGitHub, clock: FakeClock) -> GitHub:
    policy = RequestPolicy(clock, RetrySettings(min_write_interval=0.0))
    app = fake.world.app
    assert app is not None
    tokens = AppTokens(app.id, app_key(), fake.api_url, clock=clock, policy=policy, timeout=5)
    return GitHub(
        tokens,
        api_url=fake.api_url,
        bot_login="vibe-bot[bot]",
        timeout=5,
        clock=clock,
        policy=policy,
    )


@pytest.fixture
def short_lived(clock: FakeClock) -> Iterator[FakeGitHub]:
    """Installation tokens handed out with one minute left."""
    fake = _fake(clock, token_lifetime=60.0)
    yield fake
    fake.stop()


@pytest.fixture
def hour_long(clock: FakeClock) -> Iterator[FakeGitHub]:
    fake = _fake(clock, token_lifetime=3600.0)
    yield fake
    fake.stop()


def _workspaces(
    fake: FakeGitHub, clock: FakeClock, tmp_path: Path, asked: list[bool] | None = None
) -> GitWorkspaces:
    """The service's workspaces of ``REPO``; ``asked`` collects each request for git
    credentials (True: a fresh token)."""
    repo = GitHubRepository(_hub(fake, clock).repo(REPO))
    cache = WorkspaceCache(tmp_path / "cache", lock_timeout=5.0)

    def credentials(fresh: bool) -> GitCredentials:
        if asked is not None:
            asked.append(fresh)
        return repo.git_credentials(fresh)

    return GitWorkspaces(cache, REPO, repo.clone_url(), credentials, lambda ref: RepoConfig())


def test_push_after_the_open_token_expired_uses_a_fresh_one(
    short_lived: FakeGitHub, clock: FakeClock, tmp_path: Path
) -> None:
    asked: list[bool] = []
    checkout = _workspaces(short_lived, clock, tmp_path, asked).open(
        BRANCH, "main", shared=False, requester="alice"
    )
    opened_with = short_lived.issued_tokens()[-1].value
    (checkout.path / "widget.py").write_text("WIDGET = 1\n")
    sha = checkout.commit("Add a widget")
    clock.advance(20 * 60)  # the iteration outlives the token the fetch used
    assert short_lived.world.token_valid(opened_with) is None
    checkout.publish()
    checkout.close()
    assert short_lived.branch_sha(REPO, BRANCH) == sha
    assert short_lived.read_file(REPO, BRANCH, "widget.py") == "WIDGET = 1\n"
    assert asked == [False, False]  # credentials at the fetch and at the push, none refused


def test_a_refused_token_is_replaced_once_and_the_push_goes_through(
    hour_long: FakeGitHub, clock: FakeClock, tmp_path: Path
) -> None:
    asked: list[bool] = []
    checkout = _workspaces(hour_long, clock, tmp_path, asked).open(
        BRANCH, "main", shared=False, requester="alice"
    )
    (checkout.path / "widget.py").write_text("WIDGET = 2\n")
    sha = checkout.commit("Add a widget")
    # Still an hour to live in the token cache, but GitHub no longer takes it (revoked, or
    # the clocks disagree): the push gets 401 and asks for a fresh token.
    assert hour_long.revoke_tokens() == 1
    checkout.publish()
    checkout.close()
    assert hour_long.branch_sha(REPO, BRANCH) == sha
    assert len(hour_long.issued_tokens()) == 2
    assert asked == [False, False, True]  # one fresh token after the refusal, no more


def test_a_fetch_refused_at_open_is_retried_with_a_fresh_token(
    hour_long: FakeGitHub, clock: FakeClock, tmp_path: Path
) -> None:
    workspaces = _workspaces(hour_long, clock, tmp_path)  # caches a token for the clone URL
    hour_long.revoke_tokens()
    with workspaces.open(BRANCH, "main", shared=False, requester="alice").ws as ws:
        assert (ws.path / "README.md").read_text() == "# widgets\n"
    assert len(hour_long.issued_tokens()) == 2


def test_a_token_the_remote_refuses_is_an_authentication_failure(
    hour_long: FakeGitHub, tmp_path: Path
) -> None:
    cache = WorkspaceCache(tmp_path / "cache", lock_timeout=5.0)
    with pytest.raises(AuthenticationFailed) as err:
        cache.fetch(REPO, hour_long.clone_url(REPO), credentials=GitCredentials("ghs_" + "0" * 36))
    assert "ghs_" not in str(err.value)
