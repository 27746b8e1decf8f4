"""Workspaces against a real git remote over smart HTTP: branches, commits, pushes,
protected paths, undo, locking, mirror reuse, pruning and eviction."""

from __future__ import annotations

import base64
import fcntl
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from bot.core.branches import task_branch
from bot.core.config import parse_repo_config
from bot.sandbox.bwrap import BwrapSandbox
from bot.workspace.git import (
    GitCredentials,
    Identity,
    ProtectedPathError,
    PushRefused,
    PushRejected,
    UndoRefused,
    WorkspaceBusy,
    WorkspaceCache,
    WorkspaceError,
    protected_paths_hit,
)

from .conftest import ANN, BOT, TOKEN, GitServer, sh_git

CONFIG, _ = parse_repo_config(None)
BRANCH = "vibe/issue-7-add-a-greeting"


def grep_tree(root: Path, needles: list[bytes]) -> list[Path]:
    """Every file under ``root`` that contains one of ``needles``."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            if any(n in data for n in needles):
                hits.append(path)
    return hits


def test_protected_paths() -> None:
    changed = [
        ".github/workflows/ci.yml",
        ".github/dependabot.yml",
        "src/.bashrc",
        ".envrc",
        "src/app.py",
        "docs/secret/key.txt",
    ]
    hits = protected_paths_hit(changed, (*CONFIG.protected_paths, "docs/secret"))
    assert hits == [".github/workflows/ci.yml", "src/.bashrc", ".envrc", "docs/secret/key.txt"]
    allowed = protected_paths_hit(changed, CONFIG.protected_paths, [".github/workflows/*.yml"])
    assert allowed == ["src/.bashrc", ".envrc"]


def test_prepare_commit_push_with_credentials_only_at_push(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials, sandbox: BwrapSandbox
) -> None:
    ws = cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main")
    assert ws.head() == git_server.tip("main")
    result = sandbox.run("echo 'print(\"hi\")' > src/greet.py", workdir=ws.path)
    assert result.ok, result
    sha = ws.commit("Add a greeting", author=BOT, co_authors=[ANN, BOT])
    assert sha is not None
    assert ws.commit("nothing new", author=BOT) is None
    for message in ("", "   ", "x" * 70_000, "nul \0 byte"):
        with pytest.raises(WorkspaceError, match="commit message"):
            ws.commit(message, author=BOT)
    assert ws.changed_paths() == ["src/greet.py"]
    with pytest.raises(PushRejected, match="rejected"):
        ws.push(None, CONFIG)
    assert git_server.tip(BRANCH) is None
    assert ws.push(creds, CONFIG) == sha
    assert git_server.tip(BRANCH) == sha
    message = sh_git("log", "-1", "--format=%an <%ae>%n%B", BRANCH, cwd=git_server.bare())
    assert message.startswith(f"{BOT.name} <{BOT.email}>\nAdd a greeting\n")
    assert message.count("Co-authored-by:") == 1
    assert f"Co-authored-by: {ANN.name} <{ANN.email}>" in message
    # Only the push carried the token; it is nowhere on disk.
    assert any(auth for _, path, auth in git_server.requests if "receive-pack" in path)
    assert not any(auth for _, path, auth in git_server.requests if "upload-pack" in path)
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode())
    assert grep_tree(cache.root, [TOKEN.encode(), basic]) == []
    assert TOKEN not in repr(creds)
    ws.close()


def test_commit_stat_counts_files_and_lines_as_git_does(
    cache: WorkspaceCache, git_server: GitServer
) -> None:
    ws = cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main")
    (ws.path / "README.md").write_text("# r\n\nMore.\nAnd more.\n")  # +3
    (ws.path / "src" / "app.py").unlink()  # -1
    (ws.path / "logo.bin").write_bytes(b"\0\1\2")  # binary: a file, no lines
    (ws.path / "a\tb.txt").write_text("x\n")  # +1, a name git quotes without -z
    sha = ws.commit("Add a logo\n\nWith a body.", author=BOT, co_authors=[ANN])
    assert sha is not None
    stat = ws.commit_stat(sha)
    assert (stat.sha, stat.files, stat.insertions, stat.deletions) == (sha, 4, 4, 1)
    assert stat.subject == "Add a logo"
    shortstat = ws.git("show", "--shortstat", "--format=", sha).strip()
    assert shortstat == "4 files changed, 4 insertions(+), 1 deletion(-)"
    with pytest.raises(WorkspaceError, match="not a commit id"):
        ws.commit_stat("HEAD --output=/tmp/x")
    ws.close()


def test_push_refusals(cache: WorkspaceCache, git_server: GitServer) -> None:
    url = git_server.repo_url()
    with pytest.raises(PushRefused, match="default branch"):
        cache.prepare("o/r", url, branch="main", default_branch="main")
    with pytest.raises(PushRefused, match="vibe/"):
        cache.prepare("o/r", url, branch="feature", default_branch="main")
    with pytest.raises(WorkspaceError, match="credentials"):
        cache.prepare(
            "o/r", f"http://x:{TOKEN}@127.0.0.1/o/r.git", branch=BRANCH, default_branch="main"
        )
    for branch in ("vibe/../x", "--upload-pack=touch /tmp/x", "vibe/a b", "vibe/x.lock"):
        with pytest.raises(WorkspaceError):
            cache.prepare("o/r", url, branch=branch, default_branch="main")
    with pytest.raises(WorkspaceError, match="invalid branch"):  # a person's PR head, too
        cache.prepare("o/r", url, branch="bad..name", default_branch="main", shared_branch=True)
    with pytest.raises(WorkspaceError, match="PR numbers"):
        cache.prepare("o/r", url, branch=BRANCH, default_branch="main", pr_number=-1)
    for repo in ("o", "o/r/x", "../r", "o/..", "o r/x", ""):
        with pytest.raises(WorkspaceError):
            cache.prepare(repo, url, branch=BRANCH, default_branch="main")
    for bad in (("", "a@b"), ("Ann\nEvil", "a@b"), ("Ann", "not-an-email"), ("Ann", "a@b>x")):
        with pytest.raises(WorkspaceError):
            Identity(*bad)
    with pytest.raises(WorkspaceError):
        GitCredentials("tok\nen")


def test_protected_path_refusal(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        (ws.path / ".github" / "workflows").mkdir(parents=True)
        (ws.path / ".github" / "workflows" / "pwn.yml").write_text("on: push\n")
        (ws.path / "ok.txt").write_text("fine\n")
        assert ws.commit("touch a workflow", author=BOT) is not None
        with pytest.raises(ProtectedPathError, match=r"\.github/workflows/pwn\.yml") as info:
            ws.push(creds, CONFIG)
        assert info.value.paths == [".github/workflows/pwn.yml"]
        assert git_server.tip(BRANCH) is None
        allowing, problems = parse_repo_config("paths:\n  allowed: ['.github/workflows/**']\n")
        assert problems == []
        ws.push(creds, allowing)
        assert git_server.tip(BRANCH) == ws.head()


@pytest.mark.parametrize(
    ("link", "target"),
    [
        (".github", "elsewhere"),  # a symlink placed above the protected directory
        (".github/workflows", "../docs"),  # at the protected directory itself
        ("ci", ".github/workflows"),  # an alias elsewhere is not protected: it is a link
    ],
)
def test_a_symlink_at_or_above_a_protected_path_is_refused(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials, link: str, target: str
) -> None:
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        (ws.path / link).parent.mkdir(parents=True, exist_ok=True)
        (ws.path / link).symlink_to(target)
        assert ws.commit("a link", author=BOT) is not None
        if link == "ci":
            # A link's own path decides: ci is not protected, and git stores only its text.
            ws.push(creds, CONFIG)
            assert git_server.tip(BRANCH) == ws.head()
            return
        with pytest.raises(ProtectedPathError) as info:
            ws.push(creds, CONFIG)
        assert info.value.paths == [link]
        assert git_server.tip(BRANCH) is None


def test_protected_path_globs_reach_below_a_directory() -> None:
    assert protected_paths_hit([".github"], [".github/workflows/**"], links=[".github"]) == [
        ".github"
    ]
    # A plain file named .github is not a link: nothing below it can exist.
    assert protected_paths_hit([".github"], [".github/workflows/**"]) == []
    assert protected_paths_hit(["src"], [".github/workflows/**"], links=["src"]) == []
    # A pattern of a name anywhere protects that name, not every directory.
    assert protected_paths_hit(["a/b"], ["**/.bashrc"], links=["a/b"]) == []
    assert protected_paths_hit(["a/.bashrc"], ["**/.bashrc"], links=["a/.bashrc"]) == ["a/.bashrc"]
    assert protected_paths_hit(["deploy"], ["deploy/*/keys"], links=["deploy"]) == ["deploy"]
    allowed = protected_paths_hit([".github"], [".github/**"], [".github"], links=[".github"])
    assert allowed == []


def test_undo_reverts_the_last_iteration(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        (ws.path / "one.txt").write_text("1\n")
        first = ws.commit("iteration 1", author=BOT)
        ws.push(creds, CONFIG)
        assert first is not None
        (ws.path / "two.txt").write_text("2\n")
        ws.commit("iteration 2a", author=BOT)
        (ws.path / "src" / "app.py").write_text("print('changed')\n")
        (ws.path / "one.txt").unlink()
        ws.commit("iteration 2b", author=BOT)
        ws.push(creds, CONFIG)
        undone = ws.undo(first, author=BOT, co_authors=[ANN])
        assert undone is not None
        assert ws.git("rev-parse", "HEAD^{tree}") == ws.git("rev-parse", f"{first}^{{tree}}")
        assert sorted(p.name for p in ws.path.iterdir() if p.name != ".git") == [
            "README.md",
            "one.txt",
            "src",
        ]
        body = ws.git("log", "-1", "--format=%B")
        assert "Reverts:" in body
        assert "Co-authored-by: Ann Writer" in body
        ws.push(creds, CONFIG)  # a plain fast-forward, no force
        assert git_server.tip(BRANCH) == undone
        assert ws.undo(first, author=BOT) is None  # twice changes nothing
        with pytest.raises(UndoRefused):
            ws.undo("0" * 40, author=BOT)


def test_undo_never_touches_a_persons_commits(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        base = ws.head()
        (ws.path / "bot.txt").write_text("bot\n")
        ws.commit("bot work", author=BOT)
        ws.push(creds, CONFIG)
    git_server.commit_on(BRANCH, {"human.txt": "mine\n"})
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        assert (ws.path / "human.txt").exists()
        with pytest.raises(UndoRefused, match="not the bot"):
            ws.undo(base, author=BOT)


def test_undo_by_reset_pushes_with_lease(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    url = git_server.repo_url()
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as ws:
        base = ws.head()
        (ws.path / "bot.txt").write_text("bot\n")
        ws.commit("bot work", author=BOT)
        ws.push(creds, CONFIG)
        assert ws.undo(base, author=BOT, mode="reset") == base
        ws.push(creds, CONFIG)
        assert git_server.tip(BRANCH) == base
        # A plain push after that is a normal fast-forward again.
        (ws.path / "again.txt").write_text("again\n")
        again = ws.commit("again", author=BOT)
        ws.push(creds, CONFIG)
        assert git_server.tip(BRANCH) == again
        (ws.path / "late.txt").write_text("late\n")
        ws.commit("late", author=BOT)
        ws.push(creds, CONFIG)
        assert again is not None
        ws.undo(again, author=BOT, mode="reset")
    # Someone pushes to the branch after our undo: the lease no longer holds.
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as ws:
        (ws.path / "x.txt").write_text("x\n")
        x = ws.commit("x", author=BOT)
        ws.push(creds, CONFIG)
        assert x is not None
        ws.undo(again, author=BOT, mode="reset")
        pushed_by_person = git_server.commit_on(BRANCH, {"person.txt": "p\n"})
        with pytest.raises(PushRejected):
            ws.push(creds, CONFIG)
        assert git_server.tip(BRANCH) == pushed_by_person


def test_same_repository_pr_branch(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    sh_git("branch", "feature/login", "main", cwd=git_server.bare())
    git_server.commit_on("feature/login", {"login.py": "# login\n"})
    ws = cache.prepare(
        "o/r",
        git_server.repo_url(),
        branch="feature/login",
        default_branch="main",
        shared_branch=True,
    )
    with ws:
        assert ws.head() == git_server.tip("feature/login")
        (ws.path / "login.py").write_text("# login, fixed\n")
        sha = ws.commit("fix login", author=BOT, co_authors=[ANN])
        ws.push(creds, CONFIG)
        assert git_server.tip("feature/login") == sha


def test_fork_pr_starts_from_the_pull_ref(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    fork_head = git_server.commit_on("main", {"fork.txt": "from a fork\n"})
    sh_git("update-ref", "refs/pull/5/head", fork_head, cwd=git_server.bare())
    sh_git("update-ref", "refs/heads/main", f"{fork_head}~1", cwd=git_server.bare())
    branch = task_branch(5, "Fork work")
    with cache.prepare(
        "o/r", git_server.repo_url(), branch=branch, default_branch="main", pr_number=5
    ) as ws:
        assert ws.head() == fork_head
        assert (ws.path / "fork.txt").exists()


def test_two_tasks_on_one_repository_in_parallel(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials, sandbox: BwrapSandbox
) -> None:
    url = git_server.repo_url()
    paths: dict[str, Path] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def task(number: int) -> None:
        try:
            branch = task_branch(number, f"task {number}")
            barrier.wait()
            with cache.prepare("o/r", url, branch=branch, default_branch="main") as ws:
                paths[branch] = ws.path
                barrier.wait()  # both worktrees exist at the same time
                result = sandbox.run(f"echo {number} > task.txt; sleep 0.2", workdir=ws.path)
                assert result.ok, result
                ws.commit(f"task {number}", author=BOT)
                ws.push(creds, CONFIG)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(n,)) for n in (11, 12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(set(paths.values())) == 2
    for number in (11, 12):
        branch = task_branch(number, f"task {number}")
        content = sh_git("show", f"{branch}:task.txt", cwd=git_server.bare())
        assert content == f"{number}\n"


def test_one_task_branch_is_never_shared(cache: WorkspaceCache, git_server: GitServer) -> None:
    busy = WorkspaceCache(cache.root, sandbox_uid=cache.sandbox_uid, lock_timeout=0.3)
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main"):
        start = time.monotonic()
        with pytest.raises(WorkspaceBusy):
            busy.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main")
        assert time.monotonic() - start < 3
    with busy.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        assert ws.path.is_dir()


def test_mirror_is_reused_and_updated(cache: WorkspaceCache, git_server: GitServer) -> None:
    url = git_server.repo_url()
    mirror = cache.fetch("o/r", url)
    objects = {p: p.stat().st_ino for p in (mirror / "objects").rglob("*") if p.is_file()}
    assert len(objects) >= 3  # commit, trees, blobs of the first fetch
    new = git_server.commit_on("main", {"news.txt": "new\n"})
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as ws:
        assert ws.mirror == mirror
        assert ws.head() == new
        assert (ws.path / "news.txt").read_text() == "new\n"
    # Not cloned again: every object file of the first fetch is still the same file.
    assert all(path.stat().st_ino == ino for path, ino in objects.items())
    assert sorted(p.name for p in (cache.root / "mirrors").iterdir()) == ["o__r.git"]


def test_crashed_attempt_restarts_from_the_remote(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    url = git_server.repo_url()
    ws = cache.prepare("o/r", url, branch=BRANCH, default_branch="main")
    (ws.path / "pushed.txt").write_text("p\n")
    pushed = ws.commit("pushed", author=BOT)
    ws.push(creds, CONFIG)
    (ws.path / "lost.txt").write_text("l\n")
    ws.commit("never pushed", author=BOT)
    (ws.path / "dirty.txt").write_text("d\n")
    for lock in ws._locks:  # the worker died: its locks went with its process
        lock.release()
    again = cache.prepare("o/r", url, branch=BRANCH, default_branch="main")
    with again:
        assert again.head() == pushed
        assert not (again.path / "lost.txt").exists()
        assert not (again.path / "dirty.txt").exists()
        (again.path / "scratch.txt").write_text("s\n")
        (again.path / "README.md").write_text("changed\n")
        again.discard()
        assert not again.dirty()


def test_idle_worktrees_are_reused_clean(
    cache: WorkspaceCache, git_server: GitServer, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    url = git_server.repo_url()
    outside = tmp_path / "outside"
    outside.mkdir()
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as first:
        dirty = (
            "echo junk > junk.txt && mkdir -p build && echo o > build/out.o"
            " && echo '*.o' > .gitignore && echo changed > README.md"
            f" && rm -rf src && ln -s {outside} src"
        )
        assert sandbox.run(dirty, workdir=first.path).ok
        used = first.path
    other = "vibe/issue-99-other"
    with cache.prepare("o/r", url, branch=other, default_branch="main") as second:
        assert second.path == used  # the idle slot, not a new checkout
        assert not second.dirty()
        assert sorted(p.name for p in second.path.iterdir()) == [".git", "README.md", "src"]
        assert (second.path / "src").is_dir()
        assert not (second.path / "src").is_symlink()
        assert (second.path / "src" / "app.py").read_text() == "print('hello')\n"
        assert list(outside.iterdir()) == []
        assert second.git("symbolic-ref", "HEAD").strip() == f"refs/heads/{other}"
        with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as third:
            assert third.path != used  # the first slot is taken: a second worktree
            assert sandbox.run("echo ok > ok.txt", workdir=third.path).ok


def test_prune_and_evict(tmp_path: Path, git_server: GitServer) -> None:
    cache = WorkspaceCache(tmp_path / "small", max_bytes=1024**2, lock_timeout=5.0)
    url = git_server.repo_url()
    ws = cache.prepare("o/r", url, branch=BRANCH, default_branch="main")
    old = time.time() - 7200
    slot_lock = cache.root / "locks" / "o__r" / f"{ws.path.name}.lock"
    os.utime(slot_lock, (old, old))
    assert cache.prune(older_than=3600) == []  # in use, however old
    ws.close()
    assert cache.prune(older_than=3600) == []  # just used
    os.utime(slot_lock, (old, old))
    assert cache.prune(older_than=3600) == [ws.path]
    assert not ws.path.exists()
    assert len(sh_git("worktree", "list", cwd=ws.mirror).splitlines()) == 1
    # Eviction: a second repository makes the cache too big; the older mirror goes.
    sh_git("clone", "--quiet", "--bare", str(git_server.bare()), str(git_server.bare("o/big")))
    blob = os.urandom(1536 * 1024)
    big = git_server.root.parent / "big-seed"
    sh_git("clone", "--quiet", str(git_server.bare("o/big")), str(big))
    (big / "blob.bin").write_bytes(blob)
    sh_git("add", "blob.bin", cwd=big)
    sh_git("commit", "--quiet", "-m", "blob", cwd=big)
    sh_git("push", "--quiet", "origin", "main", cwd=big)
    os.utime(ws.mirror, (old, old))
    cache.fetch("o/big", git_server.repo_url("o/big"))
    holder = cache.prepare(
        "o/big", git_server.repo_url("o/big"), branch=BRANCH, default_branch="main"
    )
    assert cache.size() > cache.max_bytes
    assert cache.evict() == ["o__r"]  # least recently used; o__big is in use
    assert (cache.root / "mirrors" / "o__big.git").exists()
    holder.close()  # closing evicts again: still too big, and now unused
    assert sorted((cache.root / "mirrors").iterdir()) == []


def test_fetches_into_one_mirror_are_serialised(
    cache: WorkspaceCache, git_server: GitServer
) -> None:
    url = git_server.repo_url()
    quick = WorkspaceCache(cache.root, lock_timeout=0.3)
    lock_file = cache.root / "locks" / "o__r.mirror.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # another worker process is fetching
        with pytest.raises(WorkspaceBusy):
            quick.fetch("o/r", url)
        fcntl.flock(held.fileno(), fcntl.LOCK_UN)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(cache.fetch("o/r", url)))]
    threads.append(threading.Thread(target=lambda: results.append(cache.fetch("o/r", url))))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [cache.mirror_path("o/r")] * 2
    assert sh_git("rev-parse", "refs/remotes/origin/main", cwd=results[0]).strip() == (
        git_server.tip("main")
    )


def test_hostile_file_names_do_not_break_commit_or_checks(
    cache: WorkspaceCache, git_server: GitServer, creds: GitCredentials
) -> None:
    with cache.prepare("o/r", git_server.repo_url(), branch=BRANCH, default_branch="main") as ws:
        names = [b"bad\xff.txt", b"new\nline.txt", b"-rf", b"sp ace.txt", b"\xe2\x80\xaeevil.txt"]
        for name in names:
            with open(bytes(ws.path) + b"/" + name, "wb") as fh:
                fh.write(b"x\n")
        (ws.path / ".github" / "workflows").mkdir(parents=True)
        (ws.path / ".github" / "workflows" / "a\xe9.yml").write_text("on: push\n")
        assert ws.commit("odd names", author=BOT) is not None
        changed = ws.changed_paths()
        assert len(changed) == len(names) + 1
        assert "bad\udcff.txt" in changed
        assert "new\nline.txt" in changed
        with pytest.raises(ProtectedPathError, match="workflows"):
            ws.push(creds, CONFIG)


def test_a_hanging_remote_fails_instead_of_blocking(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    cache = WorkspaceCache(tmp_path / "cache", lock_timeout=5.0, git_timeout=1.5)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/o/r.git"
    start = time.monotonic()
    try:
        with pytest.raises(WorkspaceError, match="did not complete"):
            cache.prepare("o/r", url, branch=BRANCH, default_branch="main")
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert accepted  # git did connect, and then waited for an answer
    assert time.monotonic() - start < 10
    # The locks were released: another attempt is refused for the same reason, not busy.
    with pytest.raises(WorkspaceError, match="fetch failed"):
        cache.prepare("o/r", "http://127.0.0.1:9/o/r.git", branch=BRANCH, default_branch="main")


def test_locks_left_by_a_killed_fetch_are_cleared(
    cache: WorkspaceCache, git_server: GitServer
) -> None:
    url = git_server.repo_url()
    mirror = cache.fetch("o/r", url)
    new = git_server.commit_on("main", {"after.txt": "after\n"})
    stale = [mirror / "refs" / "remotes" / "origin" / "main.lock", mirror / "packed-refs.lock"]
    for lock in stale:
        lock.write_text("")
        os.utime(lock, (time.time() - 3600, time.time() - 3600))
    fresh = mirror / "refs" / "heads" / "vibe" / "held-by-a-commit.lock"
    fresh.parent.mkdir(parents=True, exist_ok=True)
    fresh.write_text("")
    cache.fetch("o/r", url)
    assert sh_git("rev-parse", "refs/remotes/origin/main", cwd=mirror).strip() == new
    assert not any(lock.exists() for lock in stale)
    assert fresh.exists()  # not a fetch's lock: left alone


def test_locks_left_by_a_killed_commit_are_cleared(
    cache: WorkspaceCache, git_server: GitServer
) -> None:
    url = git_server.repo_url()
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as ws:
        gitdir, mirror = ws.gitdir, ws.mirror
    stale = [gitdir / "index.lock", mirror / "refs" / "heads" / f"{BRANCH}.lock"]
    for lock in stale:
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text("")
        os.utime(lock, (time.time() - 3600, time.time() - 3600))
    with cache.prepare("o/r", url, branch=BRANCH, default_branch="main") as ws:
        assert ws.gitdir == gitdir  # the same slot, reused
        (ws.path / "x.txt").write_text("x\n")
        assert ws.commit("after a crash", author=BOT) is not None
    assert not any(lock.exists() for lock in stale)


def test_protected_path_check_is_linear_on_hostile_globs() -> None:
    import time

    from bot.workspace.git import protected_paths_hit

    started = time.monotonic()
    hit = protected_paths_hit(["a" * 200, "x/" + "a" * 60], ["*a" * 9 + "*b"])
    assert hit == []
    assert protected_paths_hit([".github/workflows/ci.yml"], [".github/workflows/"]) == [
        ".github/workflows/ci.yml"
    ]
    assert time.monotonic() - started < 1.0
