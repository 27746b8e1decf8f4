"""The adapter's CI methods against the fake's CI over real HTTP: ``head_checks`` (check
runs, annotations, attempts, commit statuses), ``job_log_tail`` (redirect, tail, redaction,
logs gone), ``rerun_job`` (needs Actions: write) and ``mark_ready_for_review``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.github import AppTokens, GitHub, RequestPolicy, RetrySettings
from bot.github.checks import log_tail
from bot.github.client import RepoClient
from bot.testing.fake_github import FakeClock, FakeGitHub
from bot.testing.fake_github.ci import CiJob
from tests.github.conftest import app_key

REPO = "acme/widgets"
SECRET = "configured-secret-value-123"
ALL_WRITE = {
    "metadata": "read",
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "checks": "write",
    "actions": "write",
    "statuses": "read",
}


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def _hub(fake: FakeGitHub, clock: FakeClock) -> GitHub:
    creds = fake.create_app(private_key_pem=app_key())
    policy = RequestPolicy(clock, RetrySettings(min_write_interval=0.0))
    tokens = AppTokens(
        creds.app_id, creds.private_key_pem, fake.api_url, clock=clock, policy=policy, timeout=5
    )
    return GitHub(
        tokens,
        api_url=fake.api_url,
        bot_login=creds.bot_login,
        secrets=[SECRET],
        timeout=5,
        clock=clock,
        policy=policy,
    )


@pytest.fixture
def hub(fake: FakeGitHub, clock: FakeClock) -> Iterator[GitHub]:
    fake.create_repo(REPO, {"a.py": "x = 1\n"}, collaborators={"alice": "write"})
    made = _hub(fake, clock)
    fake.install_app("acme", permissions=ALL_WRITE)
    yield made
    made.close()


def _pull(fake: FakeGitHub, repo: RepoClient) -> tuple[int, str]:
    fake.commit(REPO, "vibe/1", {"a.py": "x = 2\n"})
    pr = repo.find_or_create_pull("vibe/1", "main", "Change a", "body")
    fake.ci.wait(20)
    return pr.number, pr.head_sha


def test_head_checks_reads_runs_annotations_and_statuses(fake: FakeGitHub, hub: GitHub) -> None:
    fake.set_ci(
        REPO,
        [
            CiJob("lint", sh("echo 'a.py:1: error: x is 2'; exit 1")),
            CiJob("tests", ["true"]),
            CiJob(
                "codecheck", sh("echo 'a.py:1:1: warning: meh'; echo summary; exit 3"), via="app"
            ),
            CiJob("deploy", ["false"], via="status"),
        ],
    )
    repo = hub.repo(REPO)
    _, sha = _pull(fake, repo)
    own = repo.create_check_run(sha, "vibe", title="working", summary="plan")
    assert own is not None
    checks = repo.head_checks(sha)
    assert checks.sha == sha
    assert checks.complete is False  # the bot's own check run is still in progress
    by_name = {c.name: c for c in checks.checks}
    assert set(by_name) == {"lint", "tests", "codecheck", "deploy", "vibe"}
    lint = by_name["lint"]
    assert (lint.source, lint.status, lint.conclusion, lint.app_slug) == (
        "check_run",
        "completed",
        "failure",
        "github-actions",
    )
    assert [(a.path, a.start_line, a.end_line, a.level, a.message) for a in lint.annotations] == [
        ("a.py", 1, 1, "failure", "x is 2"),
        (".github", 1, 1, "failure", "Process completed with exit code 1."),
    ]
    assert lint.job_id is not None
    assert lint.details_url is not None
    assert lint.details_url.endswith(f"/job/{lint.job_id}")
    assert lint.run_attempt == 1
    tests = by_name["tests"]
    # a job of a workflow run with a failing job: its attempt is known too
    assert (tests.conclusion, tests.annotations, tests.run_attempt) == ("success", (), 1)
    code = by_name["codecheck"]
    assert (code.app_slug, code.conclusion, code.job_id) == ("fake-ci", "failure", None)
    assert code.title == "codecheck: failure (0 problem(s))"
    assert "summary" in code.text
    assert [a.level for a in code.annotations] == ["warning"]
    deploy = by_name["deploy"]
    assert (deploy.source, deploy.status, deploy.conclusion, deploy.job_id) == (
        "status",
        "completed",
        "failure",
        None,
    )
    assert by_name["vibe"].app_slug == "vibe-bot"
    assert by_name["vibe"].status == "in_progress"
    repo.update_check_run(own, title="done", summary="ok", conclusion="success")
    assert repo.head_checks(sha).complete is True


def test_a_head_without_checks_is_not_complete_and_a_pending_status_waits(
    fake: FakeGitHub, hub: GitHub
) -> None:
    fake.set_ci(REPO, [CiJob("tests", ["true"])], hold=True)
    repo = hub.repo(REPO)
    _, sha = _pull(fake, repo)
    empty = repo.head_checks(sha)
    assert (empty.checks, empty.complete) == ((), False)
    fake.ci.set_status(REPO, sha, "pending", "external")
    [pending] = repo.head_checks(sha).checks
    assert (pending.source, pending.status, pending.conclusion) == ("status", "in_progress", None)
    fake.ci.release()
    fake.ci.wait(20)
    fake.ci.set_status(REPO, sha, "success", "external")
    done = repo.head_checks(sha)
    assert done.complete
    assert {(c.name, c.conclusion) for c in done.checks} == {
        ("tests", "success"),
        ("external", "success"),
    }
    with pytest.raises(ValueError, match="not a commit sha"):
        repo.head_checks("main/../../x")


def test_job_log_tail_is_the_redacted_end_or_none(fake: FakeGitHub, hub: GitHub) -> None:
    fake.set_ci(
        REPO,
        [
            CiJob(
                "tests",
                sh(
                    "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; "
                    f"echo {SECRET}; exit 1"
                ),
            ),
            CiJob("old", ["false"], fault="logs_gone"),
        ],
    )
    repo = hub.repo(REPO)
    _, sha = _pull(fake, repo)
    jobs = {c.name: c.job_id for c in repo.head_checks(sha).checks}
    assert jobs["tests"] is not None
    assert jobs["old"] is not None
    tail = repo.job_log_tail(jobs["tests"], 300)
    assert tail is not None
    assert len(tail.encode()) <= 300
    assert SECRET not in tail
    assert "##[error]Process completed with exit code 1." in tail
    assert "line 199\n" in tail
    assert "line 0\n" not in tail
    assert "Z line" not in tail  # Actions' timestamps are dropped
    assert tail.startswith("line ")  # from a whole line
    whole = repo.job_log_tail(jobs["tests"], 1_000_000)
    assert whole is not None
    assert whole.startswith("Requested labels")
    assert repo.job_log_tail(jobs["old"], 300) is None  # 410 Gone
    assert repo.job_log_tail(jobs["tests"] + 10**6, 300) is None  # 404


def test_rerun_job_needs_actions_write_and_a_flaky_job_then_passes(
    fake: FakeGitHub, clock: FakeClock
) -> None:
    fake.create_repo(REPO, {"a.py": "x = 1\n"}, collaborators={"alice": "write"})
    made = _hub(fake, clock)
    inst = fake.install_app("acme")  # the default App: Actions read
    try:
        fake.set_ci(REPO, [CiJob("tests", ["true"], fault="flaky")])
        repo = made.repo(REPO)
        _, sha = _pull(fake, repo)
        [failed] = repo.head_checks(sha).checks
        assert failed.conclusion == "failure"
        assert failed.job_id is not None
        assert repo.rerun_job(failed.job_id) is False  # 403: Actions is read-only
        fake.world.installations[inst].permissions["actions"] = "write"
        made.tokens.invalidate(REPO)
        assert repo.rerun_job(failed.job_id) is True
        fake.ci.wait(20)
        [passed] = repo.head_checks(sha).checks
        assert (passed.conclusion, passed.job_id != failed.job_id) == ("success", True)
        assert repo.rerun_job(10**12) is False  # 404
    finally:
        made.close()


def test_mark_ready_for_review_turns_the_draft_ready_once(fake: FakeGitHub, hub: GitHub) -> None:
    fake.echo_api_events = True
    repo = hub.repo(REPO)
    number, _ = _pull(fake, repo)
    assert fake.issue(REPO, number).pull.draft  # type: ignore[union-attr]
    repo.mark_ready_for_review(number)
    assert not fake.issue(REPO, number).pull.draft  # type: ignore[union-attr]
    repo.mark_ready_for_review(number)  # not a draft any more: nothing sent
    ready = [
        d
        for d in fake.deliveries
        if d.event == "pull_request" and d.payload["action"] == "ready_for_review"
    ]
    assert len(ready) == 1
    assert ready[0].payload["sender"]["login"] == "vibe-bot[bot]"
    mutations = [r for r in fake.responses if r.template == "/graphql"]
    assert len(mutations) == 1


def test_log_tail_cuts_at_a_line_and_keeps_a_whole_log() -> None:
    data = b"2026-01-01T00:00:00.0000000Z first\n2026-01-01T00:00:00.1Z second\nthird\n"
    assert log_tail(data, 10_000, whole=True) == "first\nsecond\nthird\n"
    assert log_tail(data, 20, whole=False) == "third\n"
    one_line = log_tail("é".encode() * 10, 5, whole=False)  # a cut mid-character
    assert one_line == "\ufffdéé"
