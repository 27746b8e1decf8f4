"""The adapter's Actions calls and issue creation against the fake, over real HTTP: they go
through the same request policy as every other call (backoff, rate limits, write pacing)
and what they post is redacted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.markers import marker
from bot.github import GitHub, RetrySettings, StaticToken
from bot.github.actions import DispatchError, RepoActions
from bot.testing.fake_actions import FakeActions
from bot.testing.fake_github import FakeClock, FakeGitHub
from tests.support.actions import RUNNER_TEMPLATE

REPO = "acme/widgets"
WORKFLOW = "vibe-runner.yml"
DISPATCHES = "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"
SECRET = "configured-secret-value-123"
INPUTS = {"task_id": "1", "credential": "vibetask_x"}


@pytest.fixture
def actions(fake: FakeGitHub) -> FakeActions:
    fake.create_repo(
        REPO,
        {"README.md": "# widgets\n", f".github/workflows/{WORKFLOW}": RUNNER_TEMPLATE},
        collaborators={"alice": "write", "rita": "read"},
    )
    assert fake.app is not None
    return FakeActions.attach(fake, fake.app)


def an_hour_ago(clock: FakeClock) -> datetime:
    """UTC, naive, as the executor asks for runs."""
    return datetime.fromtimestamp(clock.now(), UTC).replace(tzinfo=None) - timedelta(hours=1)


def make_hub(fake: FakeGitHub, clock: FakeClock, login: str, *, pacing: float = 0.0) -> GitHub:
    return GitHub(
        StaticToken(fake.user_token(login)),
        api_url=fake.api_url,
        bot_login=login,
        secrets=[SECRET],
        clock=clock,
        retry=RetrySettings(min_write_interval=pacing),
    )


@pytest.fixture
def hub(fake: FakeGitHub, clock: FakeClock, actions: FakeActions) -> Iterator[GitHub]:
    h = make_hub(fake, clock, "alice")
    yield h
    h.close()


def test_reading_a_run_retries_5xx_with_backoff(
    fake: FakeGitHub, hub: GitHub, clock: FakeClock, actions: FakeActions
) -> None:
    api = RepoActions(hub.repo(REPO))
    run = api.dispatch(WORKFLOW, "main", INPUTS)
    assert run is not None
    fake.inject("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", "502", times=2)
    seen = api.run(run.id)
    assert seen is not None
    assert seen.title == "vibe task 1"
    assert clock.sleeps == [1.0, 2.0]
    assert actions.runs[run.id].reads == 1  # the two failures never reached the run
    fake.inject("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs", "502")
    assert [r.id for r in api.runs(WORKFLOW, an_hour_ago(clock))] == [run.id]
    assert clock.sleeps == [1.0, 2.0, 1.0]


def test_a_dispatch_that_failed_with_5xx_is_not_repeated_blindly(
    fake: FakeGitHub, hub: GitHub, clock: FakeClock, actions: FakeActions
) -> None:
    """A dispatch answered 502 may have started a run: the executor dispatches again with
    a fresh credential instead of repeating this one."""
    fake.inject("POST", DISPATCHES, "502", times=2)
    with pytest.raises(DispatchError) as err:
        RepoActions(hub.repo(REPO)).dispatch(WORKFLOW, "main", INPUTS)
    assert str(err.value) == "GitHub answered 502"
    assert not err.value.permanent
    assert actions.dispatched(REPO) == []
    assert clock.sleeps == []


def test_dispatches_are_paced_writes_and_honour_rate_limits(
    fake: FakeGitHub, clock: FakeClock, actions: FakeActions
) -> None:
    hub = make_hub(fake, clock, "alice", pacing=1.0)
    api = RepoActions(hub.repo(REPO))
    fake.inject("POST", DISPATCHES, "secondary_rate_limit", retry_after=30)
    api.dispatch(WORKFLOW, "main", INPUTS)
    api.dispatch(WORKFLOW, "main", {**INPUTS, "task_id": "2"})
    # 30 s as GitHub asked, then the second write a second after the first.
    assert clock.sleeps == [30.0, pytest.approx(1.0)]
    assert sorted(r.title for r in actions.dispatched(REPO)) == ["vibe task 1", "vibe task 2"]


def test_a_reader_cannot_dispatch_and_is_not_retried(
    fake: FakeGitHub, clock: FakeClock, actions: FakeActions
) -> None:
    api = RepoActions(make_hub(fake, clock, "rita").repo(REPO))
    with pytest.raises(DispatchError) as err:
        api.dispatch(WORKFLOW, "main", INPUTS)
    assert err.value.permanent
    assert str(err.value) == "GitHub answered 403: Resource not accessible by integration"
    assert clock.sleeps == []
    assert actions.dispatched(REPO) == []


def test_a_created_issue_is_redacted_and_found_again_by_its_marker(
    fake: FakeGitHub, hub: GitHub, clock: FakeClock
) -> None:
    pat = "ghp_" + "A1b2C3d4" * 5
    mark = marker("dispatch", run=4242)
    repo = hub.repo(REPO)
    fake.inject("POST", "/repos/{owner}/{repo}/issues", "secondary_rate_limit", retry_after=5)
    number = repo.create_issue(f"Use {pat}", f"Deploy with {pat} and {SECRET}\n" * 5, mark)
    issue = fake.issue(REPO, number)
    assert issue.user == "alice"
    for text in (issue.title, issue.body or ""):
        assert pat not in text
        assert SECRET not in text
    assert "[redacted]" in (issue.body or "")
    assert (issue.body or "").endswith(mark.render())
    assert clock.sleeps == [5.0]  # the rate-limited write waited as GitHub asked
    # Someone else pastes the marker into a newer issue of their own: not the bot's.
    fake.open_issue(REPO, "rita", "Me", mark.render())
    assert repo.find_issue(mark) == number
    assert repo.find_issue(marker("dispatch", run=4243)) is None


def test_a_long_issue_body_keeps_its_marker(fake: FakeGitHub, hub: GitHub) -> None:
    mark = marker("dispatch", run=7)
    number = hub.repo(REPO).create_issue("Long", "x" * 70_000, mark)
    body = fake.issue(REPO, number).body or ""
    assert len(body) <= 65_536
    assert body.endswith(mark.render())
    assert hub.repo(REPO).find_issue(mark) == number
