"""Measure what a running command adds to the disk, and its memory where no cgroup does,
and kill its process group past a limit (issue 14: a command wrote 1.5 GB in seconds; one
reached 1 GB of memory against 200 MB on a host without a memory cgroup).

- **Worktree**: the worktree is a bind mount of a host directory, so neither a tmpfs size
  nor RLIMIT_FSIZE (one file) bounds it. The watchdog walks it (without following
  symlinks) and compares allocated bytes (``st_blocks``, so sparse files count what they
  use) and directory entries (inodes and hard links alike) with the walk made before the
  command started. A walk costs time in proportion to the files, so the next one waits
  four times as long as the last took (at least :data:`WALK_EVERY` seconds): the overshoot
  is what the command writes in that time. Project quotas or a loop-mounted filesystem
  per worktree would be exact, but need a filesystem mounted with ``prjquota`` or loop
  devices, which the shipped containers do not have.
- **Private tmpfs mounts** (``/tmp``, ``HOME``, ``/dev/shm``): bubblewrap's ``--size``
  caps their bytes but not their inodes (``nr_inodes``), and empty files cost kernel
  memory. ``statvfs`` through ``/proc/PID/root`` of a process inside the sandbox reads
  each mount's inode count in constant time.
- **Memory without a cgroup**: the anonymous resident memory (``RssAnon``: statm's
  resident minus shared pages) of every process descending from bwrap, summed. Orphans
  are re-parented to the sandbox's own init inside its PID namespace, so none escapes the
  sum. File-backed and tmpfs pages are not counted (the tmpfs mounts have their own size).
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

WALK_EVERY = 0.2
POLL_SECONDS = 0.05
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """Allocated bytes and directory entries under a directory."""

    bytes: int
    entries: int


def usage(root: Path) -> Usage:
    """What ``root`` holds, counted without following symlinks. A directory the walk
    cannot read is made readable first: it belongs to the bot or the sandbox uid, and a
    command must not hide what it wrote behind ``chmod 000``."""
    total, entries = 0, 0
    seen: set[tuple[int, int]] = set()
    pending = [str(root)]
    while pending:
        directory = pending.pop()
        try:
            scan = os.scandir(directory)
        except PermissionError:
            with contextlib.suppress(OSError):
                Path(directory).chmod(0o700)
            try:
                scan = os.scandir(directory)
            except OSError:
                continue
        except OSError:
            continue
        with scan:
            for entry in scan:
                entries += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
    return Usage(total, entries)


# CONFIG_PROC_CHILDREN (Debian, Ubuntu and Fedora kernels have it): each thread's direct
# children, so the walk costs in proportion to the command's processes, not the host's.
# https://docs.kernel.org/filesystems/proc.html ("/proc/<pid>/task/<tid>/children")
_CHILDREN_FILES = Path(f"/proc/self/task/{os.getpid()}/children").exists()


def descendants(root_pid: int) -> list[int]:
    """``root_pid`` and every process below it, ``root_pid``'s children first."""
    if not _CHILDREN_FILES:
        return _descendants_by_scan(root_pid)
    found, pending = [], [root_pid]
    while pending:
        pid = pending.pop(0)
        found.append(pid)
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError):
                pending.extend(int(c) for c in (task / "children").read_bytes().split())
    return found


def _descendants_by_scan(root_pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = text[text.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [root_pid]
    while pending:
        pid = pending.pop(0)
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def anonymous_bytes(pids: list[int]) -> int:
    """Summed ``RssAnon`` of ``pids`` (``/proc/PID/statm``: resident minus shared pages)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/statm").read_bytes().split()
        except OSError:
            continue
        total += max(0, int(fields[1]) - int(fields[2])) * PAGE_BYTES
    return total


@dataclass(frozen=True)
class Verdict:
    """The limit that stopped the command and what was measured."""

    limit: str
    detail: str


class Watchdog:
    """Watches one command from a thread; kills its process group past a limit.

    ``tmpfs`` are the private mounts' paths inside the sandbox; ``memory_bytes`` is None
    when a cgroup bounds memory already."""

    def __init__(
        self,
        workdir: Path,
        *,
        disk_bytes: int,
        disk_inodes: int,
        tmpfs: tuple[str, ...],
        memory_bytes: int | None,
    ) -> None:
        self._workdir = workdir
        self._disk_bytes = disk_bytes
        self._disk_inodes = disk_inodes
        self._tmpfs = tmpfs
        self._memory_bytes = memory_bytes
        self._baseline = usage(workdir)
        self._workdir_device = workdir.stat().st_dev
        # The worktree's file system as a whole, read at each walk: statvfs costs a system
        # call, so a fast writer is caught between walks by how much the file system grew.
        self._fs_at_walk = _fs_used(workdir)
        self._room = (disk_bytes, disk_inodes)
        self._unlinked = Unlinked()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.verdict: Verdict | None = None
        self.peak_memory = 0

    def start(self, pid: int) -> None:
        self._thread = threading.Thread(
            target=self._watch, args=(pid,), name="vibe-sandbox-watchdog", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self, pid: int) -> None:
        next_walk = time.monotonic() + WALK_EVERY
        # A walk brought forward by the file system's growth waits at least twice the last
        # walk's time, so other writers on a shared file system cannot make walks constant.
        earliest = time.monotonic()
        while not self._stop.wait(POLL_SECONDS):
            pids = descendants(pid)
            now = time.monotonic()
            walk = now >= next_walk or (now >= earliest and self._grew_past_room())
            if walk:
                counted = self._tmpfs_devices(_in_sandbox(pids[1:2]))
                self._unlinked = unlinked_bytes(pids, self._workdir_device, counted)
            verdict = self._fast_checks(pids)
            if verdict is None and walk:
                started = time.monotonic()
                verdict = self._worktree()
                took = time.monotonic() - started
                next_walk = time.monotonic() + max(WALK_EVERY, 4 * took)
                earliest = time.monotonic() + 2 * took
            if verdict is not None:
                self.verdict = verdict
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                return

    def _tmpfs_devices(self, inside: list[int]) -> set[int]:
        devices = set()
        for mount in self._tmpfs if inside else ():
            with contextlib.suppress(OSError):
                devices.add(Path(f"/proc/{inside[0]}/root{mount}").stat().st_dev)
        return devices

    def _fast_checks(self, pids: list[int]) -> Verdict | None:
        in_tmpfs = 0
        inside = _in_sandbox(pids[1:2])  # bwrap's child, once in the sandbox's namespace
        for mount in self._tmpfs if inside else ():
            try:
                info = os.statvfs(f"/proc/{inside[0]}/root{mount}")
            except OSError:
                continue
            in_tmpfs += (info.f_blocks - info.f_bfree) * info.f_frsize
            if info.f_files - info.f_ffree > self._disk_inodes:
                return Verdict(
                    "disk",
                    f"the command created more than {self._disk_inodes} files in {mount}",
                )
        if self._memory_bytes is not None:
            # tmpfs and memfd pages are memory too, as a cgroup would charge them.
            used = anonymous_bytes(pids) + in_tmpfs + self._unlinked.memory
            self.peak_memory = max(self.peak_memory, used)
            if used > self._memory_bytes:
                return Verdict(
                    "memory",
                    f"the command's processes used {_mib(used)} of memory, over the "
                    f"{_mib(self._memory_bytes)} limit",
                )
        return None

    def _grew_past_room(self) -> bool:
        """The worktree's file system grew, since the last walk, by more than the command
        still had room for: walk now rather than at the next interval (other writers on the
        same file system only bring a walk forward; the walk decides)."""
        grown = [
            now - then for now, then in zip(_fs_used(self._workdir), self._fs_at_walk, strict=True)
        ]
        return grown[0] > self._room[0] or grown[1] > self._room[1]

    def _worktree(self) -> Verdict | None:
        self._fs_at_walk = _fs_used(self._workdir)
        now = usage(self._workdir)
        added = now.bytes + self._unlinked.disk - self._baseline.bytes
        entries = now.entries - self._baseline.entries
        self._room = (self._disk_bytes - added, self._disk_inodes - entries)
        if added > self._disk_bytes:
            return Verdict(
                "disk",
                f"the command added {_mib(added)} to the worktree, over the "
                f"{_mib(self._disk_bytes)} limit",
            )
        if now.entries - self._baseline.entries > self._disk_inodes:
            return Verdict(
                "disk",
                f"the command added {now.entries - self._baseline.entries} files to the "
                f"worktree, over the {self._disk_inodes} limit",
            )
        return None


@dataclass(frozen=True)
class Unlinked:
    """Bytes of files the command holds open after removing their last name (invisible to
    a walk): on the worktree's file system (``disk``) or in memory (``memory``: memfd,
    ``O_TMPFILE`` and removed files on a tmpfs outside the private mounts)."""

    disk: int = 0
    memory: int = 0


def _in_sandbox(pids: list[int]) -> list[int]:
    """Those of ``pids`` whose mount namespace is not ours. bwrap's child enters the
    sandbox's namespace only after it started: before that (and on a loaded machine that can
    last a watchdog tick) ``/proc/PID/root/tmp`` is the host's ``/tmp``, whose use is not the
    command's."""
    try:
        ours = Path("/proc/self/ns/mnt").readlink()
    except OSError:
        return []
    inside = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/ns/mnt").readlink() != ours:
                inside.append(pid)
    return inside


def unlinked_bytes(pids: list[int], workdir_device: int, counted: set[int]) -> Unlinked:
    """What ``pids`` hold in open, unlinked regular files (``/proc/PID/fd``), except on
    the devices in ``counted`` (the private tmpfs mounts, whose use statvfs reports)."""
    seen: set[tuple[int, int]] = set()
    disk = memory = 0
    for pid in pids:
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    info = fd.stat()
                except OSError:
                    continue
                key = (info.st_dev, info.st_ino)
                if info.st_nlink or not stat.S_ISREG(info.st_mode) or key in seen:
                    continue
                if info.st_dev in counted:
                    continue
                seen.add(key)
                if info.st_dev == workdir_device:
                    disk += info.st_blocks * 512
                else:
                    memory += info.st_blocks * 512
    return Unlinked(disk, memory)


def _fs_used(path: Path) -> tuple[int, int]:
    """Bytes and inodes in use on the file system holding ``path`` (0, 0 when unreadable)."""
    try:
        info = os.statvfs(path)
    except OSError:
        return (0, 0)
    return ((info.f_blocks - info.f_bfree) * info.f_frsize, info.f_files - info.f_ffree)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.0f} MiB"
