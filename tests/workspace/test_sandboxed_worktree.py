"""A task's worktree inside the real sandbox: history readable, git metadata immutable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.sandbox.bwrap import BwrapSandbox, SandboxError
from bot.workspace.git import WorkspaceCache

from .conftest import BOT, GitServer

BRANCH = "vibe/issue-8-sandboxed"


def test_git_metadata_is_read_only_inside(
    cache: WorkspaceCache, git_server: GitServer, sandbox: BwrapSandbox
) -> None:
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        common = ws.mirror
        config_before = (common / "config").read_bytes()
        dot_git_before = (ws.path / ".git").read_bytes()
        history = sandbox.run("git log --format=%s -1 && git status --short", workdir=ws.path)
        assert history.ok, history
        assert history.stdout.startswith("initial\n")
        attacks = {
            "hook": f"echo 'touch /tmp/pwned' > {common}/hooks/pre-commit",
            "hooks dir": f"mkdir -p {common}/hooks/x",
            "config": f"echo '[core]\n\tfsmonitor = touch /tmp/pwned' >> {common}/config",
            "git config": "git config core.hooksPath /workspace/hooks",
            "worktree config": f"echo x > {ws.gitdir}/config.worktree",
            "ref": "git update-ref refs/heads/main HEAD~0",
            "commit": "git -c user.name=a -c user.email=a@b commit --allow-empty -m x",
            "dot git file": "echo 'gitdir: /tmp' > .git",
            "dot git remove": "rm -f .git",
            "dot git rename": "mv .git moved",
        }
        for name, command in attacks.items():
            result = sandbox.run(command, workdir=ws.path)
            assert result.exit_code != 0, (name, result)
        assert (common / "config").read_bytes() == config_before
        assert (ws.path / ".git").read_bytes() == dot_git_before
        assert sorted(p.name for p in (common / "hooks").iterdir() if p.name == "pre-commit") == []
        assert ws.head() == git_server.tip("main")
        # The host still commits normally afterwards.
        (ws.path / "after.txt").write_text("ok\n")
        assert ws.commit("after the attacks", author=BOT) is not None


def test_worktree_belongs_to_the_sandbox_user(
    cache: WorkspaceCache, git_server: GitServer, sandbox: BwrapSandbox
) -> None:
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        result = sandbox.run(
            "echo more >> README.md && mkdir -p new/dir && echo x > new/dir/f && rm src/app.py",
            workdir=ws.path,
        )
        assert result.ok, result
        assert sorted(ws.changed_paths(ws.head())) == []
        assert ws.commit("sandbox edits", author=BOT) is not None
        assert sorted(ws.changed_paths(ws.base_sha)) == ["README.md", "new/dir/f", "src/app.py"]
        if sandbox.uid is not None:
            assert (ws.path / "README.md").stat().st_uid == sandbox.uid
            assert (ws.path / ".git").stat().st_uid != sandbox.uid


def test_a_planted_git_pointer_exposes_nothing(
    cache: WorkspaceCache, git_server: GitServer, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    other = WorkspaceCache(tmp_path / "other-cache", sandbox_uid=sandbox.uid)
    with (
        cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws,
        other.prepare(
            "o/r", git_server.repo_url(), branch="vibe/issue-9-x", default_branch="main"
        ) as victim,
    ):
        plain = tmp_path / "plain"
        plain.mkdir()
        (plain / ".git").write_text(f"gitdir: {victim.gitdir}\n")
        with pytest.raises(SandboxError, match="not its own"):
            sandbox.run("true", workdir=plain)
        assert sandbox.run("true", workdir=ws.path).ok
