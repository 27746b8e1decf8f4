"""What a command may add to the disk, and its memory where no cgroup bounds it (issue 14:
1.5 GB written in seconds across many files; 1 GB of memory against a 200 MB limit)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bot.sandbox import watchdog
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits, outcome_of
from bot.sandbox.watchdog import usage

pytestmark = pytest.mark.bwrap

MiB = 1024**2
# Many 1 MiB files as fast as Python writes them, up to 1 GiB: no single file reaches
# RLIMIT_FSIZE, and without a bound the command simply finishes.
FILLER = (
    "import os, sys\n"
    "target, chunk = sys.argv[1], b'x' * (1024 * 1024)\n"
    "os.makedirs(target, exist_ok=True)\n"
    "for i in range(1024):\n"
    "    with open(f'{target}/f{i}', 'wb') as f:\n"
    "        f.write(chunk)\n"
    "print('wrote 1 GiB')\n"
)
# Empty files: no bytes to speak of, only inodes.
INODES = (
    "import os, sys\n"
    "target = sys.argv[1]\n"
    "os.makedirs(target, exist_ok=True)\n"
    "for i in range(60000):\n"
    "    open(f'{target}/e{i}', 'w').close()\n"
    "print('made 60000 files')\n"
)


def test_bytes_added_to_the_worktree_are_bounded(sandbox: BwrapSandbox, workdir: Path) -> None:
    limits = SandboxLimits(wall_seconds=30, file_bytes=2 * MiB, disk_bytes=100 * MiB)
    before = usage(workdir).bytes
    result = sandbox.run(["python3", "-c", FILLER, "out"], workdir=workdir, limits=limits)
    added = usage(workdir).bytes - before
    assert result.limit == "disk", result
    assert result.exit_code is None
    assert "disk limit hit" in result.describe()
    assert outcome_of(result) == "limit"
    assert re.search(r"added \d+ MiB to the worktree, over the 100 MiB limit", result.stderr)
    # The overshoot is what the filler writes between two walks (about 0.2 s here).
    assert 100 * MiB < added < 600 * MiB, added / MiB


def test_files_added_to_the_worktree_and_tmp_are_bounded(
    sandbox: BwrapSandbox, workdir: Path
) -> None:
    limits = SandboxLimits(wall_seconds=30, disk_inodes=5000)
    for target in ("many", "/tmp/many", "/home/sandbox/many"):
        result = sandbox.run(["python3", "-c", INODES, target], workdir=workdir, limits=limits)
        assert result.limit == "disk", (target, result)
        assert "made 60000 files" not in result.stdout
        assert "files" in result.stderr.splitlines()[-1], result.stderr
    assert 5000 < len(list((workdir / "many").iterdir())) < 60000


def test_a_full_tmp_is_reported_as_the_disk_limit(sandbox: BwrapSandbox, workdir: Path) -> None:
    limits = SandboxLimits(wall_seconds=10, tmp_bytes=2 * MiB)
    result = sandbox.run("head -c 3000000 /dev/zero > /tmp/big", workdir=workdir, limits=limits)
    assert result.exit_code == 1
    assert result.limit == "disk", result


def test_memory_is_bounded_without_a_cgroup(workdir: Path, bwrap_available: None) -> None:
    """Five processes of 100 MB each against 200 MB, the memory cgroup forced off: each
    fits RLIMIT_AS, together they do not.

    The children start a quarter of a second apart, five ticks of the watchdog: started
    back to back, all five touched their pages within one tick whenever the loaded CI
    host left the watchdog's thread waiting for a core (it once saw 427 MiB at its first
    look), and the bound below would measure the host's scheduler, not the sum."""
    sandbox = BwrapSandbox(memory_cgroup=False)
    assert not sandbox.memory_cgroup
    hog = (
        "import os, time\n"
        "for _ in range(5):\n"
        "    if os.fork() == 0:\n"
        "        b = bytearray(100 * 1024 * 1024)\n"
        "        b[::4096] = b'x' * len(b[::4096])\n"
        "        time.sleep(3)\n"
        "        os._exit(0)\n"
        "    time.sleep(0.25)\n"
        "statuses = [os.wait()[1] for _ in range(5)]\n"
        "print(sum(1 for s in statuses if s == 0), 'survived')\n"
    )
    limits = SandboxLimits(wall_seconds=20, memory_bytes=200 * MiB, processes=32)
    result = sandbox.run(["python3", "-c", hog], workdir=workdir, limits=limits)
    assert result.limit == "memory", result
    assert "5 survived" not in result.stdout
    assert result.duration < 10
    used = re.search(r"used (\d+) MiB of memory, over the 200 MiB limit", result.stderr)
    assert used is not None, result.stderr
    assert int(used.group(1)) < 400  # it stopped them well before the 500 MB they asked for


# Memory and disk that no process maps and no name shows: memfd files written with
# write() (not counted by RLIMIT_AS or any RSS) and a worktree file removed while open.
HIDDEN = (
    "import os, sys, time\n"
    "chunk = b'x' * (1024 * 1024)\n"
    "if sys.argv[1] == 'memfd':\n"
    "    fds = [os.memfd_create(f'm{i}') for i in range(8)]\n"
    "else:\n"
    "    fds = [os.open('hidden', os.O_CREAT | os.O_WRONLY, 0o600)]\n"
    "    os.unlink('hidden')\n"
    "for fd in fds:\n"
    "    for _ in range(60):\n"
    "        os.write(fd, chunk)\n"
    "time.sleep(2)\n"
    "print('kept', 60 * len(fds), 'MiB')\n"
)


def test_unnamed_memory_and_disk_are_counted(workdir: Path, bwrap_available: None) -> None:
    sandbox = BwrapSandbox(memory_cgroup=False)
    limits = SandboxLimits(wall_seconds=20, memory_bytes=200 * MiB, file_bytes=100 * MiB)
    memfd = sandbox.run(["python3", "-c", HIDDEN, "memfd"], workdir=workdir, limits=limits)
    assert memfd.limit == "memory", memfd
    assert "kept" not in memfd.stdout
    limits = SandboxLimits(wall_seconds=20, file_bytes=100 * MiB, disk_bytes=30 * MiB)
    unlinked = sandbox.run(["python3", "-c", HIDDEN, "file"], workdir=workdir, limits=limits)
    assert unlinked.limit == "disk", unlinked
    assert "kept" not in unlinked.stdout


def test_tmpfs_counts_as_memory_without_a_cgroup(workdir: Path, bwrap_available: None) -> None:
    sandbox = BwrapSandbox(memory_cgroup=False)
    limits = SandboxLimits(wall_seconds=20, memory_bytes=150 * MiB, tmp_bytes=120 * MiB)
    script = "head -c 100000000 /dev/zero > /tmp/a; head -c 100000000 /dev/zero > ~/b; sleep 2"
    result = sandbox.run(script, workdir=workdir, limits=limits)
    assert result.limit == "memory", result


def test_descendants_agree_with_a_scan_of_proc() -> None:
    tree = subprocess.Popen(["sh", "-c", "sleep 9 & sleep 9 | sleep 9"], start_new_session=True)
    try:
        deadline = time.monotonic() + 3
        while len(watchdog.descendants(tree.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        found = watchdog.descendants(tree.pid)
        assert found[0] == tree.pid
        assert len(found) == 4
        assert sorted(found) == sorted(watchdog._descendants_by_scan(tree.pid))
    finally:
        os.killpg(tree.pid, signal.SIGKILL)  # the group of the shell started above
        tree.wait()


def test_only_processes_inside_the_sandbox_have_their_tmp_measured(
    sandbox: BwrapSandbox, workdir: Path
) -> None:
    """Until bwrap's child has entered the sandbox's mount namespace its ``/tmp`` is the
    host's: the watchdog measured the host's file system then, and killed ``/bin/false`` on
    a loaded machine for "more than 200000 files in /tmp"."""
    assert watchdog._in_sandbox([os.getpid()]) == []
    inside = subprocess.Popen(
        ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "--tmpfs", "/tmp", "sleep", "9"],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 5
        while len(found := watchdog._in_sandbox(watchdog.descendants(inside.pid)[1:])) < 1:
            assert time.monotonic() < deadline, "bwrap's child never left our mount namespace"
            time.sleep(0.02)
        assert Path(f"/proc/{found[0]}/ns/mnt").readlink() != Path("/proc/self/ns/mnt").readlink()
    finally:
        os.killpg(inside.pid, signal.SIGKILL)
        inside.wait()
    for _ in range(3):
        assert sandbox.run(["/bin/false"], workdir=workdir).exit_code == 1
