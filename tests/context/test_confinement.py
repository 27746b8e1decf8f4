"""The context engine reads only what lies beneath the worktree, in bounded amounts.

A sandboxed setup command may replace any directory of the worktree with a symlink, plant
FIFOs, loops or hundreds of large untracked files before the host builds the context. The
bot's own home stands in as a directory beside the worktree holding a secret."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import cast

import pytest

from bot.context.adapter import ProjectContext
from bot.context.files import (
    MAX_UNTRACKED_BYTES,
    MAX_UNTRACKED_FILES,
    DirectorySnapshot,
    open_snapshot,
)
from bot.context.index import build_index
from tests.support.context import git

SECRET = "bot-home-secret-9d1c0e7a"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """What a bot user's home could hold, with the names the repository uses."""
    outside = tmp_path / "home"
    outside.mkdir()
    for name in ["discounts.md", "AGENTS.md", "README.md", "notes.md", "cart.py"]:
        (outside / name).write_text(f"Discount codes and carts: {SECRET}\n")
    return outside


def build(repo: Path, *, named: tuple[str, ...] = ()) -> str:
    pack = ProjectContext(budget_tokens=50_000).build(
        repo, "discount codes cart total", enhanced=True, named_files=named, knowledge_ref="main"
    )
    return pack.text


def test_a_directory_swapped_for_a_symlink_is_not_read(project: Path, home: Path) -> None:
    shutil.rmtree(project / "docs")
    (project / "docs").symlink_to(home)  # docs/discounts.md is still tracked
    shutil.rmtree(project / "shop")
    (project / "shop").symlink_to(home)  # and so is shop/cart.py
    text = build(project, named=("docs/discounts.md", "docs/notes.md"))
    assert "shop" in text  # the pack was built from the rest
    assert SECRET not in text


def test_knowledge_files_and_named_files_stay_beneath(project: Path, home: Path) -> None:
    (project / "AGENTS.md").unlink()
    (project / "AGENTS.md").symlink_to(home / "AGENTS.md")
    (project / "CLAUDE.md").symlink_to("../home/AGENTS.md")
    (project / "linked").symlink_to(home)
    os.mkfifo(project / "README.md.fifo")
    context = ProjectContext(budget_tokens=50_000)
    started = time.monotonic()
    basic = context._basic(project, ["linked/notes.md", "README.md.fifo", "../home/notes.md"])
    assert SECRET not in basic.text
    assert "README.md" in basic.sources  # the regular knowledge file is still read
    assert time.monotonic() - started < 5
    assert SECRET not in build(project, named=("linked/notes.md",))


def test_a_plain_directory_walk_stays_beneath_and_never_blocks(tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "plain"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "app.py").write_text("def discount():\n    return 1\n")
    (folder / "linked").symlink_to(home)
    (folder / "loop").symlink_to("loop")
    (folder / "src" / "up").symlink_to("..")
    os.mkfifo(folder / ".gitignore")  # read for its patterns: must not block
    os.mkfifo(folder / "src" / "pipe.py")
    started = time.monotonic()
    result: dict[str, object] = {}

    def run() -> None:
        index = build_index(open_snapshot(folder))
        result["files"] = sorted(index.files)
        result["text"] = "".join(index.texts(list(index.files)).values())

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the context build blocked on a FIFO"
    assert result["files"] == ["src/app.py"]
    assert SECRET not in str(result["text"])
    assert time.monotonic() - started < 10


def test_names_that_are_not_utf8_never_reach_the_prompt(project: Path) -> None:
    with open(os.path.join(os.fsencode(project), b"disc\xe9ount.py"), "wb") as fh:
        fh.write(b"def discount_cart_total():\n    return 1\n")
    text = build(project)
    text.encode("utf-8")  # no lone surrogates: the API request can be encoded
    assert "discount_cart_total" not in text


def test_a_file_swapped_after_listing_is_not_read_outside(project: Path, home: Path) -> None:
    snapshot = DirectorySnapshot(project)
    listed = [f.path for f in snapshot.list_files()]
    assert "docs/discounts.md" in listed
    shutil.rmtree(project / "docs")
    (project / "docs").symlink_to(home)
    fresh = DirectorySnapshot(project)
    contents = fresh.read_many(["docs/discounts.md", "shop/cart.py"])
    assert SECRET.encode() not in b"".join(contents.values())
    assert "docs/discounts.md" not in contents


MEASURE = """
import json, resource, sys, time
from pathlib import Path
from bot.context.adapter import ProjectContext
repo = Path(sys.argv[1])
started = time.monotonic()
text = ProjectContext(budget_tokens=50_000).build(
    repo, "discount codes cart total", enhanced=True, named_files=(), knowledge_ref="main"
).text
usage = resource.getrusage(resource.RUSAGE_SELF)
# VmHWM is this image's own peak: ru_maxrss keeps the forking parent's (a test worker's
# hundreds of MiB) across exec.
status = Path("/proc/self/status").read_text()
hwm_kib = int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1])
print(json.dumps({
    "wall": time.monotonic() - started,
    "cpu": usage.ru_utime + usage.ru_stime,
    "peak_mib": hwm_kib / 1024,
    "has_cart": "shop/cart.py" in text,
    "noted": "files were left out of the context" in text,
}))
"""


def measure_build(repo: Path, code_root: Path) -> dict[str, object]:
    """Build the context in a child process and report its own CPU time and peak RSS."""
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, str(repo)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(code_root)},
    )
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_untracked_files_are_read_within_byte_caps(project: Path) -> None:
    """300 untracked files of 1 MB each used to be read and parsed whole: 150 s of CPU and
    a peak of 780 MiB in the bot (measured with this test's child on the code before)."""
    junk = project / "generated"
    junk.mkdir()
    line = b"def f%d(a, b):\n    return a + b  # discount cart total\n"
    body = b"".join(line % n for n in range(18_000))[: 1024 * 1024 - 1]
    count = 300
    for n in range(count):
        (junk / f"mod{n:03}.py").write_bytes(body)
    figures = measure_build(project, Path(__file__).resolve().parents[2])
    print(
        f"\ncontext build with {count} untracked files of 1 MB: wall {figures['wall']:.2f} s, "
        f"cpu {figures['cpu']:.2f} s, peak RSS {figures['peak_mib']:.0f} MiB"
    )
    assert figures["has_cart"]  # tracked files come first and are all there
    assert figures["noted"]
    assert cast(float, figures["peak_mib"]) < 300
    assert cast(float, figures["cpu"]) < 20
    snapshot = DirectorySnapshot(project)
    listed = [f.path for f in snapshot.list_files() if f.path.startswith("generated/")]
    assert 0 < len(listed) <= MAX_UNTRACKED_FILES
    assert len(listed) * len(body) <= MAX_UNTRACKED_BYTES
    assert len(snapshot.skipped) == count - len(listed)
    assert all("cap" in reason for reason in snapshot.skipped.values())


def test_the_committed_tree_is_read_through_git_not_the_file_system(
    project: Path, home: Path
) -> None:
    """Instruction files come from the base commit: a symlinked directory on disk after
    setup changes nothing there."""
    shutil.rmtree(project / "docs")
    (project / "docs").symlink_to(home)
    committed = build_index(open_snapshot(project, commit="main"))
    assert "docs/discounts.md" in committed.files
    texts = committed.texts(["docs/discounts.md"])
    assert SECRET not in texts["docs/discounts.md"]
    assert git(project, "status", "--porcelain")  # the worktree really changed
