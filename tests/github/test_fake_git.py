"""The fake's git smart HTTP and webhooks, driven by real git and a real HTTP receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import pytest

from bot.testing.fake_github import FakeGitHub, InlineComment
from bot.testing.fake_github.gitrepo import GitError
from tests.github.conftest import WEBHOOK_SECRET, Receiver


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd or "/tmp"), "GIT_TERMINAL_PROMPT": "0"},
    )


def _authed(url: str, token: str) -> str:
    return url.replace("http://", f"http://x-access-token:{token}@")


def test_clone_push_and_pull_request_head_moves(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.create_repo(
        "acme/widgets", {"README.md": "hello\n"}, private=True, collaborators={"alice": "write"}
    )
    fake.commit("acme/widgets", "vibe/1", {"a.txt": "one\n"}, "start")
    number = fake.open_pull("acme/widgets", "alice", "vibe/1", "Start")
    token = fake.user_token("alice")
    work = tmp_path / "w"
    # a private repository refuses an anonymous clone, accepts the token
    assert _git("clone", fake.clone_url("acme/widgets"), str(tmp_path / "anon")).returncode != 0
    done = _git(
        "clone", "-q", "-b", "vibe/1", _authed(fake.clone_url("acme/widgets"), token), str(work)
    )
    assert done.returncode == 0, done.stderr
    (work / "a.txt").write_text("two\n")
    _git("commit", "-qam", "change", cwd=work)
    pushed = _git("push", "-q", "origin", "vibe/1", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    head = _git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert fake.issue("acme/widgets", number).pull is not None
    assert fake.issue("acme/widgets", number).pull.head_sha == head  # type: ignore[union-attr]
    assert fake.read_file("acme/widgets", "vibe/1", "a.txt") == "two\n"
    assert [d.payload["action"] for d in fake.deliveries][-1] == "synchronize"


def test_push_needs_write_access(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.create_repo("acme/widgets", collaborators={"rita": "read"})
    token = fake.user_token("rita")
    work = tmp_path / "w"
    assert (
        _git("clone", "-q", _authed(fake.clone_url("acme/widgets"), token), str(work)).returncode
        == 0
    )
    (work / "x.txt").write_text("x\n")
    _git("add", "x.txt", cwd=work)
    _git("commit", "-qm", "x", cwd=work)
    refused = _git("push", "origin", "HEAD:refs/heads/vibe/x", cwd=work)
    assert refused.returncode != 0
    assert "403" in refused.stderr or "denied" in refused.stderr
    assert fake.branch_sha("acme/widgets", "vibe/x") is None
    bogus = _authed(fake.clone_url("acme/widgets"), "ghp_" + "0" * 36)
    assert _git("push", bogus, "HEAD:refs/heads/vibe/x", cwd=work).returncode != 0
    assert fake.branch_sha("acme/widgets", "vibe/x") is None


def test_review_sends_signed_review_and_comment_webhooks(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    fake.create_repo("acme/widgets", collaborators={"alice": "write", "bob": "write"})
    fake.commit("acme/widgets", "feature", {"f.py": "x = 1\n"})
    number = fake.open_pull("acme/widgets", "alice", "feature", "Feature")
    fake.review(
        "acme/widgets",
        number,
        "bob",
        state="CHANGES_REQUESTED",
        body="see inline",
        comments=[InlineComment("f.py", 1, "rename x"), InlineComment("f.py", 1, "add a test")],
    )
    events = [r.headers["x-github-event"] for r in receiver.got]
    assert events == [
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_comment",
    ]
    for r in receiver.got:
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(r.headers["x-hub-signature-256"], expected)
        assert r.headers["x-github-delivery"]
    review = json.loads(receiver.got[1].body)
    assert review["review"]["state"] == "changes_requested"
    assert review["sender"]["login"] == "bob"
    assert len(fake.threads("acme/widgets", number)) == 2


def test_merge_and_close_change_git_and_send_closed(fake: FakeGitHub, receiver: Receiver) -> None:
    fake.create_repo("acme/widgets", collaborators={"alice": "write"})
    fake.commit("acme/widgets", "feature", {"f.py": "f\n"})
    fake.commit("acme/widgets", "main", {"m.py": "m\n"})  # base moved: a real merge commit
    number = fake.open_pull("acme/widgets", "alice", "feature", "Feature")
    sha = fake.merge("acme/widgets", number, "alice")
    assert fake.branch_sha("acme/widgets", "main") == sha
    assert fake.read_file("acme/widgets", "main", "f.py") == "f\n"
    assert fake.read_file("acme/widgets", "main", "m.py") == "m\n"
    closed = json.loads(receiver.got[-1].body)
    assert (closed["action"], closed["pull_request"]["merged"]) == ("closed", True)
    assert closed["pull_request"]["merge_commit_sha"] == sha
    issue = fake.open_issue("acme/widgets", "alice", "Done already")
    fake.close("acme/widgets", issue, "alice")
    last = json.loads(receiver.got[-1].body)
    assert (receiver.got[-1].headers["x-github-event"], last["action"]) == ("issues", "closed")
    assert fake.issue("acme/widgets", issue).state == "closed"


def test_merge_with_conflicts_is_refused_and_changes_nothing(fake: FakeGitHub) -> None:
    fake.create_repo("acme/widgets", {"a.txt": "base\n"}, collaborators={"alice": "write"})
    fake.commit("acme/widgets", "feature", {"a.txt": "feature\n"})
    fake.commit("acme/widgets", "main", {"a.txt": "main\n"})
    number = fake.open_pull("acme/widgets", "alice", "feature", "Feature")
    before = fake.branch_sha("acme/widgets", "main")
    with pytest.raises(GitError, match="conflict"):
        fake.merge("acme/widgets", number, "alice")
    assert fake.branch_sha("acme/widgets", "main") == before
    assert fake.issue("acme/widgets", number).state == "open"


def _clone(fake: FakeGitHub, token: str, work: Path) -> None:
    done = _git("clone", "-q", _authed(fake.clone_url("acme/widgets"), token), str(work))
    assert done.returncode == 0, done.stderr


def _commit_all(work: Path, message: str) -> None:
    _git("add", "--all", cwd=work)
    done = _git("commit", "-qm", message, cwd=work)
    assert done.returncode == 0, done.stderr


def test_push_to_a_protected_branch_is_refused(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.create_repo("acme/widgets", {"README.md": "hello\n"})
    fake.protect_branch("acme/widgets", "main")
    work = tmp_path / "w"
    _clone(fake, fake.actions_token("acme/widgets"), work)
    (work / "README.md").write_text("changed\n")
    _commit_all(work, "straight to main")
    refused = _git("push", "origin", "HEAD:main", cwd=work)
    assert refused.returncode != 0
    assert "GH006: Protected branch update failed for refs/heads/main." in refused.stderr
    assert fake.read_file("acme/widgets", "main", "README.md") == "hello\n"
    pushed = _git("push", "-q", "origin", "HEAD:vibe/1", cwd=work)  # its own branch is fine
    assert pushed.returncode == 0, pushed.stderr


def test_workflow_files_need_the_workflows_permission(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.create_repo("acme/widgets", {"README.md": "hello\n"}, collaborators={"alice": "write"})
    token = fake.actions_token("acme/widgets")  # contents: write, no workflows
    work = tmp_path / "w"
    _clone(fake, token, work)
    (work / ".github" / "workflows").mkdir(parents=True)
    (work / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    _commit_all(work, "add CI")
    refused = _git("push", "origin", "HEAD:vibe/ci", cwd=work)
    assert refused.returncode != 0
    assert (
        "refusing to allow a GitHub App to create or update workflow `.github/workflows/ci.yml` "
        "without `workflows` permission" in refused.stderr
    )
    assert fake.branch_sha("acme/widgets", "vibe/ci") is None
    fake.world.tokens[token].permissions["workflows"] = "write"
    pushed = _git("push", "-q", "origin", "HEAD:vibe/ci", cwd=work)
    assert pushed.returncode == 0, pushed.stderr


@pytest.mark.slow
def test_a_file_over_100_mib_is_refused(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.create_repo("acme/widgets", {"README.md": "hello\n"})
    work = tmp_path / "w"
    _clone(fake, fake.actions_token("acme/widgets"), work)
    with (work / "big.bin").open("wb") as fh:
        fh.truncate(100 * 1024 * 1024 + 1)  # zeros: small on the wire, too big for GitHub
    _commit_all(work, "a big file")
    refused = _git("push", "origin", "HEAD:vibe/big", cwd=work)
    assert refused.returncode != 0
    assert "File big.bin is 100.00 MB; this exceeds GitHub's file size limit" in refused.stderr
    assert "GH001: Large files detected." in refused.stderr
    assert fake.branch_sha("acme/widgets", "vibe/big") is None
