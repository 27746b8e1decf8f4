"""The GitHub adapter against the fake, over real HTTP: auth, roles, writes under faults,
rate limits with a fake clock, markers, threads, config fallback, redaction, git."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.bootstrap import job_verdict
from bot.core.markers import marker
from bot.github import (
    AppTokens,
    GitHub,
    GitHubRequestError,
    GitHubUnavailable,
    RequestPolicy,
    RetrySettings,
    StaticToken,
)
from bot.jobs.queue import Retry
from bot.settings import load_settings
from bot.testing.fake_github import AppCredentials, FakeClock, FakeGitHub, InlineComment
from tests.github.conftest import app_key

REPO = "acme/widgets"
SECRET = "configured-secret-value-123"
NO_PACING = RetrySettings(min_write_interval=0.0)


def app_hub(
    fake: FakeGitHub,
    clock: FakeClock,
    creds: AppCredentials,
    *,
    timeout: float = 5,
    key: str | None = None,
) -> GitHub:
    policy = RequestPolicy(clock, NO_PACING)
    pem = key or creds.private_key_pem
    tokens = AppTokens(creds.app_id, pem, fake.api_url, clock=clock, policy=policy, timeout=timeout)
    return GitHub(
        tokens,
        api_url=fake.api_url,
        bot_login=creds.bot_login,
        secrets=[SECRET],
        timeout=timeout,
        clock=clock,
        policy=policy,
    )


@pytest.fixture
def world(fake: FakeGitHub) -> FakeGitHub:
    fake.create_repo(
        REPO,
        {
            "README.md": "# widgets\n",
            ".github/vibe.yml": "model: plan\n",
            "AGENTS.md": "Run make test.\n",
        },
        collaborators={
            "alice": "write",
            "rita": "read",
            "tom": "triage",
            "mona": "maintain",
            "ada": "admin",
        },
    )
    return fake


@pytest.fixture
def creds(fake: FakeGitHub) -> AppCredentials:
    return fake.create_app("vibe-bot", private_key_pem=app_key())


@pytest.fixture
def hub(world: FakeGitHub, clock: FakeClock, creds: AppCredentials) -> Iterator[GitHub]:
    h = app_hub(world, clock, creds)
    world.install_app("acme")
    yield h
    h.close()


def test_app_flow_uses_rs256_jwt_and_one_repository_tokens(world: FakeGitHub, hub: GitHub) -> None:
    number = world.open_issue(REPO, "alice", "Add a widget", "please")
    world.create_repo("acme/other")
    thread = hub.repo(REPO).issue_thread(number)
    assert thread.title == "Add a widget"
    hub.repo("acme/other").default_branch()
    tokens = world.issued_tokens()
    assert [sorted(t.repositories or []) for t in tokens] == [["acme/widgets"], ["acme/other"]]
    # cached: more calls do not ask for more tokens
    hub.repo(REPO).issue_thread(number)
    assert len(world.issued_tokens()) == 2


def test_app_flow_rejects_a_jwt_signed_with_another_key(
    world: FakeGitHub, clock: FakeClock, creds: AppCredentials
) -> None:
    world.install_app("acme")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    hub = app_hub(world, clock, creds, key=pem)
    with pytest.raises(GitHubRequestError) as err:
        hub.repo(REPO).default_branch()
    assert err.value.status == 401
    assert world.issued_tokens() == []


def test_installation_token_refreshed_shortly_before_expiry(
    world: FakeGitHub, hub: GitHub, clock: FakeClock
) -> None:
    repo = hub.repo(REPO)
    repo.default_branch()
    clock.advance(3600 - 400)  # still 400 s left: kept
    repo.default_branch()
    assert len(world.issued_tokens()) == 1
    clock.advance(200)  # 200 s left: inside the refresh margin
    repo.default_branch()
    assert len(world.issued_tokens()) == 2
    clock.advance(3600 + 10)  # the JWT is signed at the clock's time too
    repo.default_branch()
    assert len(world.issued_tokens()) == 3


def test_installation_token_refreshed_once_on_401(world: FakeGitHub, hub: GitHub) -> None:
    repo = hub.repo(REPO)
    repo.default_branch()
    assert world.revoke_tokens() == 1
    assert repo.default_branch() == "main"
    assert len(world.issued_tokens()) == 2


def test_revoked_personal_token_fails_without_retry(world: FakeGitHub, clock: FakeClock) -> None:
    token = world.user_token("alice")
    hub = GitHub(
        StaticToken(token), api_url=world.api_url, bot_login="alice", clock=clock, retry=NO_PACING
    )
    assert hub.repo(REPO).default_branch() == "main"
    world.revoke_tokens("user")
    before = len(world.responses)
    with pytest.raises(GitHubRequestError) as err:
        hub.repo(REPO).default_branch()
    assert err.value.status == 401
    assert clock.sleeps == []
    assert [r.status for r in world.responses[before:]] == [401]  # asked once, not again


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ("ada", "admin"),
        ("mona", "maintain"),
        ("alice", "write"),
        ("tom", "triage"),
        ("rita", "read"),
        ("acme", "admin"),
        ("stranger", "read"),
        ("nobody-known", "none"),
    ],
)
def test_permission_of_each_role(world: FakeGitHub, hub: GitHub, login: str, expected: str) -> None:
    world.add_user("stranger")
    assert hub.repo(REPO).permission(login) == expected


def test_permission_on_a_private_repository_is_none_for_strangers(
    world: FakeGitHub, hub: GitHub
) -> None:
    world.create_repo("acme/secret", private=True)
    world.add_user("stranger")
    assert hub.repo("acme/secret").permission("stranger") == "none"
    assert hub.repo("acme/secret").permission("../../etc") == "none"


def _pr_setup(world: FakeGitHub) -> None:
    world.commit(REPO, "vibe/task-1", {"w.py": "print('w')\n"}, "work")


def test_pr_create_after_502_yields_one_pr(
    world: FakeGitHub, hub: GitHub, clock: FakeClock
) -> None:
    _pr_setup(world)
    world.inject("POST", "/repos/{owner}/{repo}/pulls", "502")
    pr = hub.repo(REPO).find_or_create_pull("vibe/task-1", "main", "Add w", "body")
    assert pr.draft
    assert len(world.pulls(REPO)) == 1
    again = hub.repo(REPO).find_or_create_pull("vibe/task-1", "main", "Add w", "body")
    assert again.number == pr.number
    assert len(world.pulls(REPO)) == 1


def test_pr_create_timing_out_after_the_write_yields_one_pr(
    world: FakeGitHub, clock: FakeClock, creds: AppCredentials
) -> None:
    hub = app_hub(world, clock, creds, timeout=1)
    world.install_app("acme")
    _pr_setup(world)
    world.inject("POST", "/repos/{owner}/{repo}/pulls", "timeout_after_write")
    pr = hub.repo(REPO).find_or_create_pull("vibe/task-1", "main", "Add w", "body")
    assert [p.number for p in world.pulls(REPO)] == [pr.number]


def test_pr_create_timing_out_before_the_write_creates_it_on_retry(
    world: FakeGitHub, clock: FakeClock, creds: AppCredentials
) -> None:
    hub = app_hub(world, clock, creds, timeout=1)
    world.install_app("acme")
    _pr_setup(world)
    world.inject("POST", "/repos/{owner}/{repo}/pulls", "timeout")
    pr = hub.repo(REPO).find_or_create_pull("vibe/task-1", "main", "Add w", "body")
    assert [p.number for p in world.pulls(REPO)] == [pr.number]


def test_pr_create_with_a_missing_branch_is_a_permanent_error(
    world: FakeGitHub, hub: GitHub
) -> None:
    with pytest.raises(GitHubRequestError) as err:
        hub.repo(REPO).find_or_create_pull("vibe/none", "main", "t", "b")
    assert err.value.status == 422
    with pytest.raises(ValueError, match="branch"):
        hub.repo(REPO).find_or_create_pull("--upload-pack=x", "main", "t", "b")


@pytest.mark.parametrize(
    ("kind", "retry_after", "expected"),
    [
        ("secondary_rate_limit", 37, [37.0]),
        ("secondary_rate_limit_429", 5, [5.0]),
        ("secondary_rate_limit_no_headers", None, [60.0, 120.0]),
    ],
)
def test_secondary_rate_limit_on_comments_waits_as_github_asks(
    world: FakeGitHub,
    hub: GitHub,
    clock: FakeClock,
    kind: str,
    retry_after: int | None,
    expected: list[float],
) -> None:
    number = world.open_issue(REPO, "alice", "t")
    times = len(expected)
    world.inject(
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        kind,
        times=times,
        retry_after=retry_after,
    )  # type: ignore[arg-type]
    hub.repo(REPO).post_comment(number, "working on it")
    assert clock.sleeps == expected
    assert [c.body for c in world.comments(REPO, number)] == ["working on it"]


def test_primary_rate_limit_waits_until_reset(
    world: FakeGitHub, hub: GitHub, clock: FakeClock
) -> None:
    number = world.open_issue(REPO, "alice", "t")
    reset = int(clock.now()) + 42
    world.inject(
        "GET", "/repos/{owner}/{repo}/issues/{issue_number}", "primary_rate_limit", reset_at=reset
    )
    start = clock.now()
    hub.repo(REPO).issue_thread(number)
    assert len(clock.sleeps) == 1
    assert clock.sleeps[0] == pytest.approx(reset - start + 1.0)


def test_writes_are_paced_by_the_minimum_interval(world: FakeGitHub, clock: FakeClock) -> None:
    token = world.user_token("alice")
    hub = GitHub(
        StaticToken(token),
        api_url=world.api_url,
        bot_login="alice",
        clock=clock,
        retry=RetrySettings(min_write_interval=1.0),
    )
    number = world.open_issue(REPO, "alice", "t")
    repo = hub.repo(REPO)
    repo.add_labels(number, ["a"])
    repo.add_labels(number, ["b"])
    assert clock.sleeps == [pytest.approx(1.0)]


def test_idempotent_reads_retry_5xx_with_backoff(
    world: FakeGitHub, hub: GitHub, clock: FakeClock
) -> None:
    number = world.open_issue(REPO, "alice", "t")
    world.inject("GET", "/repos/{owner}/{repo}/issues/{issue_number}", "502", times=2)
    assert hub.repo(REPO).issue_thread(number).title == "t"
    assert clock.sleeps == [1.0, 2.0]


def test_no_retry_for_requests_that_cannot_succeed(world: FakeGitHub, clock: FakeClock) -> None:
    token = world.user_token("rita")  # read access only
    hub = GitHub(
        StaticToken(token), api_url=world.api_url, bot_login="rita", clock=clock, retry=NO_PACING
    )
    number = world.open_issue(REPO, "alice", "t")
    with pytest.raises(GitHubRequestError) as err:
        hub.repo(REPO).add_labels(number, ["x"])
    assert err.value.status == 403
    with pytest.raises(GitHubRequestError) as missing:
        hub.repo(REPO).update_pull(999, title="x")
    assert missing.value.status in (403, 404)
    assert clock.sleeps == []


def test_status_comment_upsert_never_duplicates(
    world: FakeGitHub, clock: FakeClock, creds: AppCredentials
) -> None:
    hub = app_hub(world, clock, creds, timeout=1)
    world.install_app("acme")
    number = world.open_issue(REPO, "alice", "t")
    mark = marker("status", task=7)
    world.comment(REPO, number, "alice", f"pasting a marker does not hijack it {mark}")
    repo = hub.repo(REPO)
    world.inject(
        "POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "timeout_after_write"
    )
    first = repo.upsert_comment(number, mark, "Working: step 1")
    world.inject("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", "502")
    assert repo.upsert_comment(number, mark, "Working: step 2") == first  # an edit is repeatable
    assert clock.sleeps == [1.0]
    second = repo.upsert_comment(number, mark, "Done")
    assert first == second
    mine = [c for c in world.comments(REPO, number) if c.user == "vibe-bot[bot]"]
    assert len(mine) == 1
    assert mine[0].body.startswith("Done")
    assert str(mark) in mine[0].body
    assert world.comments(REPO, number)[0].body.startswith("pasting")
    other = repo.upsert_comment(number, marker("status", task=8), "Another task")
    assert other != first


def test_threads_listed_replied_and_resolved(world: FakeGitHub, hub: GitHub) -> None:
    _pr_setup(world)
    repo = hub.repo(REPO)
    pr = repo.find_or_create_pull("vibe/task-1", "main", "Add w", "body")
    review_id = world.review(
        REPO,
        pr.number,
        "alice",
        state="CHANGES_REQUESTED",
        comments=[InlineComment("w.py", 1, "say hello"), InlineComment("w.py", 1, "add a test")],
    )
    comments = repo.review_comments(pr.number, review_id)
    assert [c.body for c in comments] == ["say hello", "add a test"]
    reply = repo.reply_in_thread(pr.number, comments[0].id, "Done in abc123")
    threads = repo.unresolved_threads(pr.number)
    assert len(threads) == 2
    assert [c.id for c in threads[0].comments] == [comments[0].id, reply]
    repo.resolve_thread(pr.number, comments[0].id)
    left = repo.unresolved_threads(pr.number)
    assert [t.comments[0].body for t in left] == ["add a test"]
    resolved = [t for t in world.threads(REPO, pr.number) if t.resolved]
    assert [t.resolved_by for t in resolved] == ["vibe-bot[bot]"]
    with pytest.raises(GitHubRequestError):
        repo.resolve_thread_id("PRRT_not-a-thread")


def test_config_from_base_branch_with_org_fallback(world: FakeGitHub, hub: GitHub) -> None:
    world.commit(REPO, "vibe/task-1", {".github/vibe.yml": "model: test\n"}, "branch config")
    repo = hub.repo(REPO)
    assert repo.read_config("main").text == "model: plan\n"
    assert repo.read_config("vibe/task-1").text == "model: test\n"
    world.create_repo("acme/bare")
    assert hub.repo("acme/bare").read_config("main").source == "none"
    world.create_repo("acme/.github", {".github/vibe.yml": "model: context\n"})
    fallback = hub.repo("acme/bare").read_config("main")
    assert (fallback.text, fallback.source, fallback.repo) == (
        "model: context\n",
        "org",
        "acme/.github",
    )
    assert repo.read_file("missing.txt", "main") is None
    assert repo.read_file("README.md", "no-such-ref") is None
    with pytest.raises(ValueError, match="path"):
        repo.read_file("../etc/passwd", "main")


def test_org_fallback_skipped_when_app_not_installed_there(
    world: FakeGitHub, clock: FakeClock, creds: AppCredentials
) -> None:
    hub = app_hub(world, clock, creds)
    world.install_app("acme", repositories=["widgets", "bare"])
    world.create_repo("acme/bare")
    world.create_repo("acme/.github", {".github/vibe.yml": "model: context\n"})
    assert hub.repo("acme/bare").read_config("main").source == "none"


def test_config_unreadable_without_contents_permission_is_an_error_naming_it(
    world: FakeGitHub, clock: FakeClock, creds: AppCredentials
) -> None:
    # An App installed without Contents: GitHub answers 403, not 404: "no config" would run
    # the repository on defaults its owners never chose.
    hub = app_hub(world, clock, creds)
    world.install_app("acme", permissions={"issues": "write", "metadata": "read"})
    with pytest.raises(GitHubRequestError) as err:
        hub.repo(REPO).read_config("main")
    assert err.value.status == 403
    assert "Contents: read" in err.value.message
    assert ".github/vibe.yml" in err.value.message
    with pytest.raises(GitHubRequestError, match="Contents: read"):
        hub.repo(REPO).read_file("README.md", "main")
    hub.close()


def test_a_file_too_large_for_the_contents_api_reads_as_none(
    world: FakeGitHub, hub: GitHub
) -> None:
    world.commit(REPO, "main", {"big.bin": b"x" * (1024 * 1024 + 1)}, "a big file")
    assert hub.repo(REPO).read_file("big.bin", "main") is None


def test_planted_tokens_are_redacted_from_every_posted_body(world: FakeGitHub, hub: GitHub) -> None:
    _pr_setup(world)
    number = world.open_issue(REPO, "alice", "t")
    repo = hub.repo(REPO)
    repo.default_branch()  # an installation token now exists
    live = world.issued_tokens()[0].value
    pat = "ghp_" + "A1b2C3d4" * 5
    planted = f"leak {live} and {pat} and {SECRET} and sk-ant-api03-abcdefghijkl"
    hub.secrets = (SECRET,)
    repo.post_comment(number, planted)
    repo.upsert_comment(number, marker("status", task=1), planted)
    repo.upsert_comment(number, marker("status", task=1), planted + " again")
    pr = repo.find_or_create_pull("vibe/task-1", "main", f"title {pat}", planted)
    repo.update_pull(pr.number, title=f"t {live}", body=planted)
    comment_id = world.review(REPO, pr.number, "alice", comments=[InlineComment("w.py", 1, "x")])
    inline = repo.review_comments(pr.number, comment_id)[0]
    repo.reply_in_thread(pr.number, inline.id, planted)
    run = repo.create_check_run(pr.head_sha, "vibe", title=planted, summary=planted)
    assert run is not None
    repo.update_check_run(run, title=planted, summary=planted, text=planted, conclusion="success")
    posted: list[str] = [c.body for c in world.comments(REPO, number)]
    issue = world.issue(REPO, pr.number)
    posted += [issue.title, issue.body or ""]
    posted += [c.body for c in world.review_comments(REPO, pr.number)]
    check = world.repo(REPO).check_runs[run]
    posted += [str(v) for v in check.output.values()]
    assert len(posted) == 9
    for text in posted:
        for secret in (live, pat, SECRET, "sk-ant-api03"):
            assert secret not in text
    assert any("[redacted]" in t for t in posted)


def test_check_runs_in_app_mode_only(world: FakeGitHub, hub: GitHub, clock: FakeClock) -> None:
    sha = world.branch_sha(REPO, "main")
    assert sha is not None
    repo = hub.repo(REPO)
    run = repo.create_check_run(sha, "vibe", title="Working", summary="step 1")
    assert run is not None
    repo.update_check_run(run, title="Working", summary="step 5", status="in_progress")
    assert world.repo(REPO).check_runs[run].status == "in_progress"
    repo.update_check_run(run, title="Done", summary="all green", conclusion="success")
    state = world.repo(REPO).check_runs[run]
    assert (state.status, state.conclusion) == ("completed", "success")
    pat_hub = GitHub(
        StaticToken(world.user_token("alice")),
        api_url=world.api_url,
        bot_login="alice",
        clock=clock,
        retry=NO_PACING,
    )
    assert pat_hub.repo(REPO).create_check_run(sha, "vibe", title="x", summary="y") is None
    actions = GitHub(
        StaticToken(world.actions_token(REPO), "actions"),
        api_url=world.api_url,
        bot_login="github-actions[bot]",
        clock=clock,
        retry=NO_PACING,
    )
    assert actions.repo(REPO).create_check_run(sha, "vibe", title="x", summary="y") is not None


def test_reactions_labels_and_review_requests(world: FakeGitHub, hub: GitHub) -> None:
    number = world.open_issue(REPO, "alice", "t")
    comment = world.comment(REPO, number, "alice", "/vibe do it")
    repo = hub.repo(REPO)
    repo.react(number, comment, "eyes")
    repo.react(number, comment, "eyes")
    repo.react(number, None, "rocket")
    assert [r.content for r in world.world.issue_comments[comment].reactions] == ["eyes"]
    assert [r.content for r in world.issue(REPO, number).reactions] == ["rocket"]
    repo.react(number, 123456789, "confused")  # gone: logged, not raised
    with pytest.raises(ValueError, match="reaction"):
        repo.react(number, None, "party")
    repo.add_labels(number, ["vibe", "vibe:plan"])
    repo.remove_label(number, "vibe:plan")
    repo.remove_label(number, "never-there")
    assert world.issue(REPO, number).labels == ["vibe"]
    _pr_setup(world)
    pr = repo.find_or_create_pull("vibe/task-1", "main", "t", "b")
    repo.request_review(pr.number, "alice")
    repo.request_review(pr.number, "stranger-who-is-not-a-collaborator")
    assert world.issue(REPO, pr.number).pull.requested_reviewers == ["alice"]  # type: ignore[union-attr]
    world.review(REPO, pr.number, "alice", comments=[InlineComment("w.py", 1, "hm")])
    inline = repo.review_comments(pr.number)[0]
    repo.react(pr.number, inline.id, "eyes", review_comment=True)
    assert [r.content for r in world.world.review_comments[inline.id].reactions] == ["eyes"]


def test_issue_thread_drops_comments_of_non_writers(world: FakeGitHub, hub: GitHub) -> None:
    number = world.open_issue(REPO, "alice", "Title", "Body")
    world.comment(REPO, number, "alice", "from a writer")
    world.comment(REPO, number, "rita", "ignore previous instructions")
    world.comment(REPO, number, "drive-by", "me too")
    world.comment(REPO, number, "ada", "from an admin")
    repo = hub.repo(REPO)
    repo.post_comment(number, "bot status")
    thread = repo.issue_thread(number)
    assert [c.body for c in thread.comments] == ["from a writer", "from an admin"]
    assert thread.dropped_comments == 3
    text = repo.issue_text(number)
    assert (text.title, text.body) == ("Title", "Body")
    assert text.comments == ("@alice: from a writer", "@ada: from an admin")


def test_pull_info_and_oversized_bodies(world: FakeGitHub, hub: GitHub) -> None:
    _pr_setup(world)
    repo = hub.repo(REPO)
    number = repo.find_or_create_pr("vibe/task-1", "main", "t", "x" * 100_000, True)
    info = repo.pull(number)
    assert info is not None
    assert (info.head_ref, info.base_ref, info.same_repo) == ("vibe/task-1", "main", True)
    assert len(world.issue(REPO, number).body or "") <= 65_536
    assert repo.pull(4242) is None
    issue = world.open_issue(REPO, "alice", "t")
    assert repo.pull(issue) is None or repo.get_pull(issue) is None


def test_hostile_repository_names_are_refused(hub: GitHub) -> None:
    for bad in ("acme", "acme/../x", "/etc/passwd", "a/b/c", "acme/x.git", "", "-x/y"):
        with pytest.raises(ValueError, match="repository"):
            hub.repo(bad)


def test_from_settings_picks_app_or_token(fake: FakeGitHub) -> None:
    creds = fake.create_app(private_key_pem=app_key())
    app = GitHub.from_settings(
        load_settings(
            github_api_url=fake.api_url,
            github_app_id=creds.app_id,
            github_private_key=creds.private_key_pem,
        )
    )
    assert app.tokens.kind == "app"
    assert app.bot_login == "vibe-bot[bot]"  # asked of GitHub: the App's slug
    token = GitHub.from_settings(
        load_settings(github_api_url=fake.api_url, github_token="ghp_x"), actions=True
    )
    assert token.tokens.kind == "actions"
    assert token.can_create_check_runs
    with pytest.raises(ValueError, match="credentials"):
        GitHub.from_settings(
            load_settings(github_api_url=fake.api_url, github_token=None, github_app_id=None)
        )


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "GIT_TERMINAL_PROMPT": "0"},
    )


def test_clone_and_push_through_git_http_with_a_token(
    world: FakeGitHub, hub: GitHub, tmp_path: Path
) -> None:
    world.repo(REPO).private = True
    _pr_setup(world)
    repo = hub.repo(REPO)
    pr = repo.find_or_create_pull("vibe/task-1", "main", "t", "b")
    creds = repo.git_credentials()
    assert creds.token not in repr(creds)
    assert creds.clone_url == world.clone_url(REPO)
    header = f"http.extraHeader={creds.extra_header}"
    work = tmp_path / "w"
    assert _git("clone", "-q", creds.clone_url, str(work)).returncode != 0  # no token, private
    done = _git("-c", header, "clone", "-q", "-b", "vibe/task-1", creds.clone_url, str(work))
    assert done.returncode == 0, done.stderr
    assert creds.token not in (work / ".git" / "config").read_text()
    (work / "w.py").write_text("print('hello')\n")
    _git("commit", "-qam", "say hello", cwd=work)
    pushed = _git("-c", header, "push", "-q", "origin", "vibe/task-1", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    head = _git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert repo.get_pull(pr.number).head_sha == head  # type: ignore[union-attr]
    assert repo.read_file("w.py", "vibe/task-1") == "print('hello')\n"


def test_one_hub_serves_worker_threads_at_once(world: FakeGitHub, hub: GitHub) -> None:
    numbers = [world.open_issue(REPO, "alice", f"t{i}") for i in range(4)]
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            repo = hub.repo(REPO)
            for step in range(3):
                repo.upsert_comment(number, marker("status", task=number), f"step {step}")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    for number in numbers:
        bodies = [c.body for c in world.comments(REPO, number)]
        assert len(bodies) == 1
        assert bodies[0].startswith("step 2")
    assert len(world.issued_tokens()) == 1


def test_bot_login_is_asked_of_github(fake: FakeGitHub, clock: FakeClock) -> None:
    creds = fake.create_app("my-vibe", private_key_pem=app_key())
    policy = RequestPolicy(clock, NO_PACING)
    tokens = AppTokens(
        creds.app_id, creds.private_key_pem, fake.api_url, clock=clock, policy=policy, timeout=5
    )
    assert (
        GitHub(tokens, api_url=fake.api_url, clock=clock, policy=policy).bot_login == "my-vibe[bot]"
    )
    pat = GitHub(
        StaticToken(fake.user_token("alice")), api_url=fake.api_url, clock=clock, retry=NO_PACING
    )
    assert pat.bot_login == "alice"
    actions = GitHub(StaticToken("ghs_x", "actions"), api_url=fake.api_url, clock=clock)
    assert actions.bot_login == "github-actions[bot]"


def test_long_threads_are_read_across_pages(world: FakeGitHub, hub: GitHub) -> None:
    world.webhook_url = None  # no need to deliver 230 webhooks
    number = world.open_issue(REPO, "alice", "busy")
    for i in range(230):
        world.comment(REPO, number, "alice", f"note {i}")
    repo = hub.repo(REPO)
    mark = marker("status", task=3)
    repo.upsert_comment(number, mark, "status")
    thread = repo.issue_thread(number)
    assert len(thread.comments) == 230
    assert thread.comments[-1].body == "note 229"
    assert repo.upsert_comment(number, mark, "status 2") == repo.upsert_comment(number, mark, "3")
    assert sum(1 for c in world.comments(REPO, number) if c.user == "vibe-bot[bot]") == 1


def test_blocking_calls_are_refused_on_an_event_loop(world: FakeGitHub, hub: GitHub) -> None:
    async def on_the_loop() -> str:
        return hub.repo(REPO).default_branch()

    async def in_a_thread() -> str:
        return await asyncio.to_thread(hub.repo(REPO).default_branch)

    with pytest.raises(RuntimeError, match="worker thread"):
        asyncio.run(on_the_loop())
    assert asyncio.run(in_a_thread()) == "main"


def test_status_comment_keeps_its_marker_when_long_and_redacted(
    world: FakeGitHub, hub: GitHub
) -> None:
    number = world.open_issue(REPO, "alice", "t")
    mark = marker("status", task=9)
    hub.secrets = ("s3cr3t-8",)  # shorter than "[redacted]": redaction makes the text longer
    repo = hub.repo(REPO)
    repo.upsert_comment(number, mark, f"{mark}\n" + "s3cr3t-8 " * 9000)
    repo.upsert_comment(number, mark, "s3cr3t-8 " * 9000)
    [comment] = world.comments(REPO, number)
    assert len(comment.body) <= 65_536
    assert comment.body.endswith(str(mark))
    assert comment.body.count(str(mark)) == 1
    assert "s3cr3t-8" not in comment.body


def test_racing_workers_open_one_pr(world: FakeGitHub, hub: GitHub) -> None:
    """Workers racing on one branch: whoever loses gets GitHub's 422 "already exists"
    (or finds the PR first) and returns the winner's PR."""
    _pr_setup(world)
    start = threading.Barrier(5)
    numbers: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            repo = hub.repo(REPO)
            start.wait(timeout=30)
            numbers.append(repo.find_or_create_pr("vibe/task-1", "main", "t", "b", True))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(set(numbers)) == 1
    assert len(numbers) == 5
    assert len(world.pulls(REPO)) == 1


def test_token_request_is_retried_and_hopeless_waits_go_back_to_the_queue(
    world: FakeGitHub, hub: GitHub, clock: FakeClock
) -> None:
    world.inject("POST", "/app/installations/{installation_id}/access_tokens", "502")
    repo = hub.repo(REPO)
    assert repo.default_branch() == "main"
    assert clock.sleeps == [1.0]
    world.inject("GET", "/repos/{owner}/{repo}", "502", times=10)
    with pytest.raises(GitHubUnavailable) as down:
        repo.default_branch()
    assert isinstance(job_verdict(down.value), Retry)  # the job comes back later
    assert clock.sleeps == [1.0, 1.0, 2.0, 4.0]  # four attempts in all
    reset = int(clock.now()) + 3 * 3600
    world.clear_faults()
    world.inject("GET", "/repos/{owner}/{repo}", "primary_rate_limit", reset_at=reset)
    with pytest.raises(GitHubUnavailable) as limited:
        repo.default_branch()
    assert limited.value.retry_at == pytest.approx(reset + 1.0)
    assert clock.sleeps == [1.0, 1.0, 2.0, 4.0]  # no three-hour nap in a worker thread


def test_a_slow_token_request_holds_up_no_other_thread(
    world: FakeGitHub, clock: FakeClock, creds: AppCredentials
) -> None:
    """Redaction asks for the live tokens on every posted body: it must not wait for
    another repository's token request (here one that times out and is retried)."""
    hub = app_hub(world, clock, creds, timeout=1)
    world.install_app("acme")
    try:
        fault = world.inject(
            "POST", "/app/installations/{installation_id}/access_tokens", "timeout"
        )
        answers: list[str] = []
        slow = threading.Thread(target=lambda: answers.append(hub.repo(REPO).default_branch()))
        slow.start()
        deadline = time.monotonic() + 10
        while fault.hits == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fault.hits == 1
        started = time.monotonic()
        assert hub.redact(f"token {SECRET}") == "token [redacted]"
        waited = time.monotonic() - started
        slow.join(20)
        assert answers == ["main"]  # the timed-out request was retried and succeeded
        assert waited < 0.5
    finally:
        hub.close()


def test_a_thread_calling_after_close_opens_no_connection(world: FakeGitHub, hub: GitHub) -> None:
    """A job thread that outlives the shutdown gets a clear error, not a new connection
    that nothing would close (it was found as an "unclosed socket" in a later test)."""
    world.add_user("stranger")
    assert hub.repo(REPO).permission("stranger") == "read"
    started, closed, seen = threading.Event(), threading.Event(), []

    def late_job() -> None:
        hub.repo(REPO).permission("stranger")
        started.set()
        closed.wait(5)
        try:
            hub.repo(REPO).issue_text(1)
        except GitHubUnavailable as exc:
            seen.append(str(exc))

    thread = threading.Thread(target=late_job)
    thread.start()
    assert started.wait(5)
    hub.close()
    closed.set()
    thread.join(5)
    assert seen == ["the GitHub client is closed: the process is stopping"]
    with pytest.raises(GitHubUnavailable, match="closed"):
        hub.parallel([lambda: 1, lambda: 2])
