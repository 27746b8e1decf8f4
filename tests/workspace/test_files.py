"""The beneath-the-root primitive (bot.workspace.files) on a real file system, through
``openat2`` and through the portable component-by-component walk alike."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.workspace.files import (
    NotRegularFile,
    OutsideRoot,
    TooLarge,
    makedirs_beneath,
    open_beneath,
    open_beneath_portable,
    openat2_supported,
    read_beneath,
    read_fd,
    read_head_beneath,
    readlink_beneath,
    walk_beneath,
)

SECRET = "secret-outside-the-worktree"
Opener = Callable[..., int]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A worktree with inner links, escapes, a loop and a FIFO; a secret beside it."""
    outside = tmp_path / "home"
    outside.mkdir()
    (outside / "AGENTS.md").write_text(SECRET)
    work = tmp_path / "work"
    (work / "docs").mkdir(parents=True)
    (work / "docs" / "guide.md").write_text("guide\n")
    (work / "docs" / "up").symlink_to("..")
    (work / "inner").symlink_to("docs/guide.md")
    (work / "absolute-inner").symlink_to(work / "docs" / "guide.md")
    (work / "escape").symlink_to(outside)
    (work / "dotdot").symlink_to("../home/AGENTS.md")
    (work / "loop-a").symlink_to("loop-b")
    (work / "loop-b").symlink_to("loop-a")
    os.mkfifo(work / "fifo")
    return work


@pytest.fixture
def root(tree: Path) -> Iterator[int]:
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


@pytest.fixture(params=["openat2", "portable"])
def opener(request: pytest.FixtureRequest) -> Opener:
    if request.param == "openat2":
        if not openat2_supported():
            pytest.skip("openat2(2) is not available on this kernel (Linux < 5.6 or seccomp)")
        return open_beneath
    return open_beneath_portable


def read_with(opener: Opener, root: int, rel: str, *, follow: bool = True) -> bytes:
    fd = opener(root, rel, os.O_RDONLY | os.O_NONBLOCK, follow=follow)
    try:
        return read_fd(fd, rel, 1024)
    finally:
        os.close(fd)


def test_openat2_works_on_this_kernel() -> None:
    """The deployment target (Linux >= 5.6) has it; the fallback is for older kernels."""
    release = tuple(int(p) for p in os.uname().release.split(".")[:2] if p.isdigit())
    if release < (5, 6):
        pytest.skip(f"kernel {os.uname().release} predates openat2")
    assert openat2_supported()


@pytest.mark.parametrize(
    "rel", ["escape/AGENTS.md", "dotdot", "../home/AGENTS.md", "docs/up/..", "/etc/passwd"]
)
def test_every_way_out_is_refused(opener: Opener, root: int, tree: Path, rel: str) -> None:
    with pytest.raises(OutsideRoot) as caught:
        read_with(opener, root, rel)
    assert caught.value.errno == errno.EXDEV
    assert str(tree.parent) not in str(caught.value)  # names the given path, not the target


@pytest.mark.parametrize(
    ("rel", "follow"), [("docs/guide.md", False), ("inner", True), ("docs/up/docs/guide.md", True)]
)
def test_links_that_stay_inside_are_followed(
    opener: Opener, root: int, rel: str, follow: bool
) -> None:
    assert read_with(opener, root, rel, follow=follow) == b"guide\n"


@pytest.mark.parametrize("rel", ["inner", "docs/up/docs/guide.md", "absolute-inner"])
def test_no_follow_refuses_any_symlink(opener: Opener, root: int, rel: str) -> None:
    with pytest.raises(OSError, match=r"symbolic links|outside") as caught:
        read_with(opener, root, rel, follow=False)
    assert caught.value.errno in (errno.ELOOP, errno.EXDEV)


def test_absolute_links_are_refused_even_when_they_point_inside(opener: Opener, root: int) -> None:
    with pytest.raises(OutsideRoot):
        read_with(opener, root, "absolute-inner")


def test_loops_fifos_and_missing_files_are_errors(opener: Opener, root: int) -> None:
    with pytest.raises(OSError, match="symbolic links") as loop:
        read_with(opener, root, "loop-a")
    assert loop.value.errno == errno.ELOOP
    with pytest.raises(NotRegularFile, match="FIFO"):
        read_with(opener, root, "fifo")  # O_NONBLOCK: returns at once, no writer needed
    with pytest.raises(NotRegularFile, match="directory"):
        read_with(opener, root, "docs")
    with pytest.raises(FileNotFoundError):
        read_with(opener, root, "docs/missing")
    with pytest.raises(OSError, match="too long") as too_long:
        read_with(opener, root, "x" * 300)
    assert too_long.value.errno == errno.ENAMETOOLONG


def test_reads_are_capped_before_reading(tree: Path, root: int) -> None:
    (tree / "big").write_bytes(b"a" * 5000)
    assert read_beneath(root, "big", 5000) == b"a" * 5000
    with pytest.raises(TooLarge) as caught:
        read_beneath(root, "big", 4999)
    assert caught.value.size == 5000
    assert read_beneath(tree, "docs/guide.md", 100) == b"guide\n"
    assert read_head_beneath(root, "big", 10) == b"a" * 10
    with pytest.raises(NotRegularFile):
        read_head_beneath(root, "fifo", 10)
    with pytest.raises(OutsideRoot):
        read_head_beneath(root, "escape/AGENTS.md", 10)


def test_readlink_and_makedirs_stay_beneath(tree: Path, root: int, tmp_path: Path) -> None:
    assert readlink_beneath(root, "inner") == "docs/guide.md"
    made: list[str] = []
    makedirs_beneath(root, "new/deeper", on_create=lambda fd, name: made.append(name))
    assert (tree / "new" / "deeper").is_dir()
    assert made == ["new", "deeper"]
    with pytest.raises(OSError, match=r"symbolic links|Not a directory") as caught:
        makedirs_beneath(root, "escape/planted")
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert not (tmp_path / "home" / "planted").exists()
    with pytest.raises(OutsideRoot):
        makedirs_beneath(root, "new/../../out")


def test_walk_reports_links_without_following_them(tree: Path, root: int) -> None:
    (tree / "docs" / "sub").mkdir()
    (tree / "docs" / "sub" / "deep.md").write_text("")
    entries = {(e.path, e.kind) for e in walk_beneath(root)}
    assert ("docs/guide.md", "file") in entries
    assert ("docs/sub/deep.md", "file") in entries
    assert ("escape", "symbolic link") in entries
    assert ("docs/up", "symbolic link") in entries
    assert ("fifo", "FIFO") in entries
    assert not any(path.startswith(("escape/", "docs/up/")) for path, _ in entries)
    with pytest.raises(OSError, match="symbolic links"):
        list(walk_beneath(root, "escape"))


def test_walk_caps_huge_directories(tree: Path, root: int) -> None:
    many = tree / "many"
    many.mkdir()
    for n in range(50):
        (many / f"f{n:02}").write_text("")
    entries = list(walk_beneath(root, "many", max_names_per_dir=10))
    assert len([e for e in entries if e.kind == "file"]) == 10
    assert entries[-1].kind == "cut"
    pruned = list(walk_beneath(root, prune=lambda path, name: name == "docs"))
    assert not any(e.path.startswith("docs/") for e in pruned)
