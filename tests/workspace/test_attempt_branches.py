"""Best-of-N attempts in the workspace: an attempt's branch starts at the task branch's
head whatever the remote has under its name; the task branch fast-forwards to the chosen
attempt and never drops a commit; a pick is one new commit with the attempt's files; the
attempt branches are deleted with a lease, and only the bot's own."""

from __future__ import annotations

import pytest

from bot.core.attempts import attempt_branch
from bot.core.config import parse_repo_config
from bot.workspace.git import GitCredentials, PushRefused, WorkspaceCache, WorkspaceError

from .conftest import ANN, BOT, GitServer, sh_git

CONFIG, _ = parse_repo_config(None)
BRANCH = "vibe/issue-7-add-a-greeting"


def test_attempts_start_at_the_task_head_and_the_chosen_one_is_fast_forwarded(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    url = git_server.repo_url()
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as task:
        (task.path / "one.txt").write_text("1\n")
        start = task.commit("iteration 1", author=BOT)
        task.push(creds, CONFIG)
        assert start is not None
        # A stale attempt branch from another iteration: the attempt starts at ``start``.
        sh_git("branch", attempt_branch(BRANCH, 2), "main", cwd=git_server.bare())
        two = attempt_branch(BRANCH, 2)
        with cache.prepare("o/r", url, branch=two, default_branch="main", start=start) as att:
            assert att.head() == start
            assert att.path != task.path
            (att.path / "two.txt").write_text("2\n")
            chosen = att.commit("attempt 2", author=BOT)
            assert chosen is not None
            assert att.changed_paths(start) == ["two.txt"]
        assert task.adopt(chosen) == chosen
        assert (task.path / "two.txt").read_text() == "2\n"
        task.push(creds, CONFIG)  # a plain fast-forward
        assert git_server.tip(BRANCH) == chosen
        # Adopting a commit that does not follow the head would drop commits: refused.
        with pytest.raises(PushRefused, match="does not follow"):
            task.adopt(start)
        with pytest.raises(WorkspaceError):
            task.adopt("not-a-commit")


def test_pick_is_one_new_commit_with_the_attempts_files(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    url = git_server.repo_url()
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as task:
        start = task.head()
        other = attempt_branch(BRANCH, 3)
        with cache.prepare("o/r", url, branch=other, default_branch="main", start=start) as att:
            (att.path / "three.txt").write_text("3\n")
            (att.path / "README.md").unlink()
            three = att.commit("attempt 3", author=BOT)
            assert three is not None
            att.push(creds, CONFIG)
        (task.path / "two.txt").write_text("2\n")
        two = task.commit("attempt 2", author=BOT)
        task.push(creds, CONFIG)
        picked = task.take_tree(three, "vibe: pick attempt 3", author=BOT, co_authors=[ANN])
        assert picked is not None
        assert task.git("rev-parse", f"{picked}^").strip() == two  # history kept
        assert task.git("rev-parse", "HEAD^{tree}") == task.git("rev-parse", f"{three}^{{tree}}")
        assert "Co-authored-by: Ann Writer" in task.git("log", "-1", "--format=%B")
        assert task.take_tree(three, "again", author=BOT) is None  # same files: no commit
        task.push(creds, CONFIG)
        assert git_server.tip(BRANCH) == picked


def test_attempt_branches_are_deleted_unless_a_person_built_on_them(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    url = git_server.repo_url()
    names = [attempt_branch(BRANCH, k) for k in (1, 2, 3)]
    for name in names[:2]:
        with cache.prepare("o/r", url, branch=name, default_branch="main") as att:
            (att.path / "a.txt").write_text(name)
            att.commit(name, author=BOT)
            att.push(creds, CONFIG)
    pushed = git_server.commit_on(names[1], {"mine.txt": "mine\n"})
    deleted = cache.delete_branches(
        "o/r", url, names, credentials=creds, default_branch="main", author=BOT
    )
    assert deleted == [names[0]]  # attempt 3 never existed
    assert git_server.tip(names[0]) is None
    assert git_server.tip(names[1]) == pushed  # a person's commit on top: kept
    assert cache.delete_branches("o/r", url, names[:1], credentials=creds, author=BOT) == []
    for refused in ("main", "feature/x", "vibe/../main", "vibe/"):
        with pytest.raises(PushRefused):
            cache.delete_branches("o/r", url, [refused], credentials=creds, default_branch="main")
    assert git_server.tip("main") is not None
