"""The agent's tools and self-review read and write only beneath the worktree, bounded, and
answer every file-system failure as a tool result.

The sandbox may replace any directory of the worktree with a symlink, plant loops, FIFOs,
hard links, huge or oddly named files, at any time. A directory beside the worktree holds
a secret, standing in for the bot user's home. No command runs here, so the sandbox object
is never started and bubblewrap need not be installed."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.agent import ToolSet, worktree_review
from bot.agent.tool_loop import MAX_REVIEW_FILE_BYTES, MAX_REVIEW_NEW_BYTES
from bot.sandbox.bwrap import BwrapSandbox
from tests.agent.conftest import git

SECRET = "bot-home-secret-4be2a61f"
EDITOR = "str_replace_based_edit_tool"
PROTECTED = [".github/workflows/**", ".git/**", "**/.envrc"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    outside = tmp_path / "home"
    outside.mkdir()
    for name in ["notes.md", "calc.py", "ci.yml", "README.md"]:
        (outside / name).write_text(f"{SECRET}\n")
    return outside


@pytest.fixture
def tools(repo: Path) -> ToolSet:
    return ToolSet.full(repo, BwrapSandbox(bwrap="/nonexistent/bwrap"), protected_paths=PROTECTED)


def everything(tools: ToolSet, path: str) -> Iterator[tuple[str, object]]:
    """Every file tool (each editor command) called on ``path``."""
    calls: list[tuple[str, dict[str, object]]] = [
        (EDITOR, {"command": "view", "path": path}),
        (EDITOR, {"command": "view", "path": path, "view_range": [1, -1]}),
        ("search", {"pattern": "secret", "path": path}),
        (EDITOR, {"command": "str_replace", "path": path, "old_str": "a", "new_str": "b"}),
        (EDITOR, {"command": "insert", "path": path, "insert_line": 0, "insert_text": "b"}),
        (EDITOR, {"command": "create", "path": path, "file_text": "x"}),
        (EDITOR, {"command": "create", "path": f"{path}/new.txt", "file_text": "x"}),
    ]
    for name, args in calls:
        yield f"{name} {args}", tools.execute(name, args)


def test_a_directory_swapped_for_a_symlink_mid_read_never_leaks(
    tools: ToolSet, repo: Path, home: Path
) -> None:
    """Between the policy's check and the read, a sandboxed process swaps a directory of
    the worktree for a symlink out of it, over and over."""
    real = repo / "pkg"
    real.mkdir()
    (real / "notes.md").write_text("inside\n")
    parked = repo / "pkg.parked"
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            os.rename(real, parked)
            os.symlink(home, real)
            os.unlink(real)
            os.rename(parked, real)

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    seen: set[str] = set()
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            for name, args in [
                (EDITOR, {"command": "view", "path": "pkg/notes.md"}),
                (EDITOR, {"command": "view", "path": "pkg"}),
                ("search", {"pattern": "secret|inside", "path": "pkg"}),
            ]:
                result = tools.execute(name, args)
                seen.add(result.content.split("\n")[0][:60])
                assert SECRET not in result.content, (name, result.content)
                assert "pkg/calc.py" not in result.content, (name, result.content)
    finally:
        stop.set()
        thread.join()
    assert any("inside" in line for line in seen)  # the race really ran both ways


def test_writes_never_follow_a_swapped_parent_out(tools: ToolSet, repo: Path, home: Path) -> None:
    real = repo / "out"
    real.mkdir()
    parked = repo / "out.parked"
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            try:
                os.rename(real, parked)
                os.symlink(home, real)
                os.unlink(real)
                os.rename(parked, real)
            except OSError:  # create made "out" while it was parked: start again
                while parked.exists():
                    try:
                        if real.is_symlink():
                            real.unlink()
                        else:
                            shutil.rmtree(real, ignore_errors=True)
                        os.rename(parked, real)
                    except OSError:
                        continue

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 2
        n = 0
        while time.monotonic() < deadline:
            tools.execute(EDITOR, {"command": "create", "path": f"out/f{n}.txt", "file_text": "x"})
            tools.execute(
                EDITOR, {"command": "create", "path": f"out/d{n}/g.txt", "file_text": "x"}
            )
            n += 1
    finally:
        stop.set()
        thread.join()
    assert sorted(p.name for p in home.iterdir()) == ["README.md", "calc.py", "ci.yml", "notes.md"]


def test_symlink_loops_and_odd_files_are_tool_errors(tools: ToolSet, repo: Path) -> None:
    (repo / "loop-a").symlink_to("loop-b")
    (repo / "loop-b").symlink_to("loop-a")
    (repo / "self").symlink_to("self")
    (repo / "sub").mkdir()
    (repo / "sub" / "up").symlink_to("..")  # a directory loop for walks
    os.mkfifo(repo / "fifo")
    long_name = "n" * 300
    started = time.monotonic()
    for path in ["loop-a", "loop-a/x", "self/x", "fifo", long_name, f"sub/{long_name}/x"]:
        for label, result in everything(tools, path):
            assert getattr(result, "is_error", False), label
    walked = tools.execute(EDITOR, {"command": "view", "path": "."})
    assert not walked.is_error
    assert "sub/up\n" in walked.content + "\n"  # listed as a name, not entered
    assert "sub/up/" not in walked.content
    assert tools.execute("search", {"pattern": "def add"}).content.startswith("calc.py")
    assert time.monotonic() - started < 20


def test_protected_paths_hold_through_symlinks_and_hard_links(
    tools: ToolSet, repo: Path, home: Path
) -> None:
    (repo / "ci").symlink_to(".github/workflows")
    denied = tools.execute(
        EDITOR, {"command": "create", "path": "ci/evil.yml", "file_text": "on: push"}
    )
    assert "protected path" in denied.content
    # A symlink placed at the protected directory itself: the name written through is
    # protected even though the real target is not.
    shutil.move(repo / ".github", repo / "gh")
    (repo / ".github").symlink_to("gh")
    for path in [".github/workflows/new.yml", ".github/workflows/ci.yml"]:
        result = tools.execute(EDITOR, {"command": "create", "path": path, "file_text": "x"})
        assert "protected path" in result.content, path
    edit = tools.execute(
        EDITOR,
        {
            "command": "str_replace",
            "path": ".github/workflows/ci.yml",
            "old_str": "push",
            "new_str": "x",
        },
    )
    assert "protected path" in edit.content
    inserted = tools.execute(
        EDITOR,
        {
            "command": "insert",
            "path": ".github/workflows/ci.yml",
            "insert_line": 0,
            "insert_text": "x",
        },
    )
    assert "protected path" in inserted.content
    assert not (repo / "gh" / "workflows" / "new.yml").exists()
    # A hard link names a protected file under another path.
    (repo / ".github").unlink()
    shutil.move(repo / "gh", repo / ".github")
    os.link(repo / ".github" / "workflows" / "ci.yml", repo / "innocent.yml")
    linked = tools.execute(
        EDITOR,
        {
            "command": "str_replace",
            "path": "innocent.yml",
            "old_str": "push",
            "new_str": "pull_request",
        },
    )
    assert linked.is_error
    assert "hard link" in linked.content
    linked_insert = tools.execute(
        EDITOR, {"command": "insert", "path": "innocent.yml", "insert_line": 0, "insert_text": "x"}
    )
    assert "hard link" in linked_insert.content
    assert (repo / ".github" / "workflows" / "ci.yml").read_text() == "on: push\n"


def test_names_that_are_not_utf8_are_listed_readably(tools: ToolSet, repo: Path) -> None:
    raw = os.path.join(os.fsencode(repo), b"caf\xe9.txt")
    with open(raw, "wb") as fh:
        fh.write(b"hello\n")
    listing = tools.execute(EDITOR, {"command": "view", "path": "."})
    assert not listing.is_error
    assert "caf\\xe9.txt" in listing.content
    listing.content.encode("utf-8")  # no lone surrogates reach the model


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_files_are_tool_errors(tools: ToolSet, repo: Path) -> None:
    locked = repo / "locked"
    locked.mkdir()
    (locked / "f.txt").write_text("x")
    locked.chmod(0)
    try:
        for label, result in everything(tools, "locked"):
            assert getattr(result, "is_error", False) or "(no entries)" in str(result), label
        assert tools.execute(EDITOR, {"command": "view", "path": "locked/f.txt"}).is_error
    finally:
        locked.chmod(0o755)


def test_review_reads_untracked_files_within_caps(tools: ToolSet, repo: Path, home: Path) -> None:
    (repo / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (repo / "small.py").write_text("print('new')\n")
    (repo / "leak").symlink_to(home / "notes.md")
    (repo / "leakdir").symlink_to(home)
    os.mkfifo(repo / "pipe")
    size = 64 * 1024 * 1024
    with open(repo / "huge.txt", "wb") as fh:
        line = b"a line of a huge generated file\n"
        for _ in range(size // len(line)):
            fh.write(line)
    (repo / "many").mkdir()
    for n in range(40):
        (repo / "many" / f"f{n:02}.txt").write_bytes(b"x\n" * (MAX_REVIEW_FILE_BYTES // 4))
    review = worktree_review(tools, git(repo, "rev-parse", "HEAD").strip())
    tracemalloc.start()
    started = time.monotonic()
    try:
        text = review()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    wall = time.monotonic() - started
    print(
        f"\nself-review with one {size >> 20} MiB untracked file and 40 more: "
        f"{wall:.2f} s, peak traced memory {peak / 2**20:.1f} MiB"
    )
    assert SECRET not in text
    assert "+    return a + b" in text
    assert "+print('new')" in text
    assert "huge.txt (67108864 bytes, over the per-file cap)" in text
    assert "new files not shown" in text
    assert "many/f39.txt" in text  # named as skipped, not shown
    assert text.count("a line of a huge generated file") == 0
    assert len(text.encode()) < 2 * MAX_REVIEW_NEW_BYTES + 40_000
    assert peak < 8 * 1024 * 1024
    assert wall < 10


def test_review_of_a_huge_tracked_change_is_bounded(tools: ToolSet, repo: Path) -> None:
    with open(repo / "calc.py", "wb") as fh:
        for n in range(400_000):
            fh.write(b"x%d = %d\n" % (n, n))
    tracemalloc.start()
    try:
        text = worktree_review(tools, git(repo, "rev-parse", "HEAD").strip())()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "+x0 = 0" in text
    assert peak < 8 * 1024 * 1024


def test_a_file_removed_after_listing_is_a_tool_error(tools: ToolSet, repo: Path) -> None:
    (repo / "gone.txt").write_text("x")
    os.unlink(repo / "gone.txt")
    result = tools.execute(
        EDITOR, {"command": "str_replace", "path": "gone.txt", "old_str": "x", "new_str": "y"}
    )
    assert result.is_error
    os.makedirs(repo / "deep" / "er")
    denied = tools.execute(
        EDITOR, {"command": "str_replace", "path": "deep/er", "old_str": "x", "new_str": "y"}
    )
    assert denied.is_error
    assert "is a directory" in denied.content
    assert errno.errorcode  # errno names are what the kernel said
