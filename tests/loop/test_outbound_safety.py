"""Issue 14: what the loop sends off the host: commit messages, branch names, failure reasons.

A commit message is built from the model's summary: every commit of the bot (work, undo)
is redacted where it is made, whoever built the message. A failure posted on the issue says
what the reader needs (a sentence, a reference to the logs), never an exception's text with
host paths, URLs or class names (DESIGN.md section 4 rule 8, section 5).
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from bot.bootstrap import loop_env
from bot.core import policy as pol
from bot.core.config import RepoConfig
from bot.entrypoints.local import TerminalForge
from bot.github.retry import GitHubRequestError, GitHubUnavailable
from bot.loop.errors import AgentUnavailable
from bot.loop.handlers import Context, carry_out
from bot.loop.iteration import SetupFailed, _commit_message, reader_reason
from bot.sandbox.bwrap import BwrapSandbox
from bot.settings import load_settings
from bot.store.engine import init_db, make_engine
from bot.workspace.checkout import GitWorkspaces
from bot.workspace.git import (
    PushRefused,
    PushRejected,
    WorkspaceBusy,
    WorkspaceCache,
    WorkspaceError,
)
from tests.loop.sample import make_repo
from tests.loop.test_status import TASK

SECRET = "hunter2-configured-secret"
PAT = "ghp_" + "Q7w8E9r0" * 5
AWS = "AKIAIOSFODNN7EXAMPLE"
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"
REF = "vibe-3-2"


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    work = tmp_path / "seed"
    work.mkdir()
    (work / "a.txt").write_text("a\n")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "-c", "user.name=Ann", "-c", "user.email=ann@example.com", "commit", "-qm", "x")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return bare


def workspaces(tmp_path: Path, remote: Path) -> GitWorkspaces:
    cache = WorkspaceCache(tmp_path / "cache", lock_timeout=5.0, secrets=[SECRET])
    return GitWorkspaces(
        cache, "acme/widgets", f"file://{remote}", lambda fresh: None, lambda base: RepoConfig()
    )


def test_pushed_commit_messages_carry_no_secret(tmp_path: Path, remote: Path) -> None:
    summary = f"Use {SECRET} as the key {PAT}\n\nAlso {AWS} and\n{PEM}"
    checkout = workspaces(tmp_path, remote).open(
        "vibe/issue-1-fix", "main", shared=False, requester="ann"
    )
    try:
        (checkout.path / "b.txt").write_text("b\n")
        # The message as the loop builds it, and the raw summary as any other caller might.
        assert checkout.commit(_commit_message(TASK, 1, summary, [SECRET])) is not None
        (checkout.path / "c.txt").write_text("c\n")
        assert checkout.commit(summary) is not None
        base = git(remote, "rev-parse", "main").strip()
        assert checkout.revert_since(base, f"vibe: undo {PAT} {SECRET}") is not None
        checkout.publish()
    finally:
        checkout.close()
    messages = git(remote, "log", "--format=%B%n%an%n%ae", "vibe/issue-1-fix")
    assert messages.count("[redacted]") >= 5
    for needle in (SECRET, PAT, AWS, "MIIEowIBAAKCAQEA", "BEGIN RSA"):
        assert needle not in messages


def test_the_subject_is_redacted_before_it_is_cut(tmp_path: Path) -> None:
    # A token cut at 60 characters would no longer match any pattern.
    summary = "x" * 40 + PAT
    subject = _commit_message(TASK, 1, summary, [])
    assert "Q7w8" not in subject
    assert "[redacted]" in subject


def test_a_branch_name_carrying_a_secret_is_never_pushed(tmp_path: Path, remote: Path) -> None:
    checkout = workspaces(tmp_path, remote).open(
        f"vibe/issue-2-{SECRET}", "main", shared=False, requester="ann"
    )
    try:
        (checkout.path / "b.txt").write_text("b\n")
        checkout.commit("add b")
        with pytest.raises(PushRefused, match="carries a secret"):
            checkout.publish()
    finally:
        checkout.close()
    assert SECRET not in git(remote, "branch", "--list")


HOSTILE = (
    RuntimeError("open /root/.local/share/vibe-bot/workspaces/worktrees/a__b/slot-1/x failed"),
    OSError(28, "No space left on device", "/tmp/vibe-123/state.json"),
    KeyError("/home/bot/.config/vibe/secret"),
    WorkspaceError("git fetch failed: fatal: unable to access 'https://x:ghs_abc@github.com/'"),
    PushRejected("the remote rejected the push to vibe/x: ! [rejected] /srv/data/mirrors/a.git"),
    GitHubUnavailable("GET /repos/a/b: 502 from https://api.github.com at /srv/data"),
    GitHubRequestError(422, "Validation Failed: /srv/data/workspaces"),
    AgentUnavailable("model API 529 (/srv/data/agent.log)"),
)


@pytest.mark.parametrize("exc", HOSTILE, ids=lambda e: type(e).__name__)
def test_unknown_failures_show_a_sentence_and_a_reference(exc: Exception) -> None:
    reason = reader_reason(exc, REF)
    assert f"`{REF}`" in reason
    assert "/" not in reason.replace("`", "").replace(REF, "")
    assert type(exc).__name__ not in reason
    assert str(exc) not in reason


def test_a_full_disk_is_said_plainly_wherever_it_is_in_the_chain() -> None:
    direct = OSError(28, "No space left on device", "/srv/data/vibe.db")
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("conclude failed") from inner
    except RuntimeError as wrapped:
        chained = wrapped
    for exc in (direct, chained):
        reason = reader_reason(exc, REF)
        assert reason.startswith("the bot's host ran out of disk space")
        assert "/srv" not in reason
    assert "disk" not in reader_reason(RuntimeError("boom"), REF)


def test_known_failures_are_said_plainly() -> None:
    setup = SetupFailed("repository setup failed: exit code 2 after 1.0 s")
    assert reader_reason(setup, REF) == str(setup)
    refused = PushRefused("refusing to push changes to protected paths: .github/workflows/x.yml")
    assert reader_reason(refused, REF) == str(refused)
    busy = reader_reason(WorkspaceBusy("/srv/data/locks/x is locked by another task"), REF)
    assert "/srv" not in busy
    assert "another job" in busy


def test_a_failed_iteration_posts_no_host_path(tmp_path: Path) -> None:
    """The real loop: the clone fails with git's words (the host path of the remote, the
    data directory); the status comment says what failed and where the details are."""
    missing = tmp_path / "gone" / "calc.git"
    repo = make_repo(tmp_path / "calc")
    forge = TerminalForge("local/calc", repo, "Fix add", "add() subtracts.", lambda _: None)
    settings = load_settings(
        data_dir=tmp_path / "data", anthropic_api_key="sk-test-local-key-0000", max_attempts=1
    )
    settings.data_dir.mkdir(parents=True)
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    try:
        env = loop_env(
            settings,
            engine,
            forge=forge,
            prs=None,
            clone_url=missing.as_uri(),
            credentials=lambda fresh: None,
            run_key="test-1",
            sandbox=BwrapSandbox(),
            attempt=1,
            status_interval=0.0,
        )
        start = pol.StartTask("local/calc", 1, "local-user", settings.default_model, "")
        assert carry_out(start, Context(env, 1, "delivery-1")).endswith("failed")
    finally:
        engine.dispose()
    (status,) = [b for key, b in forge.comments.items() if "status" in key]
    assert "the task's git workspace failed; the operator finds the details in the logs" in status
    assert "`vibe-1-1`" in status
    for leak in (str(tmp_path), "/tmp", "WorkspaceError", "fatal:"):
        assert leak not in status
