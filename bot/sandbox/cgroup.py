"""A memory cgroup per sandboxed command, when the host lets the bot make one.

RLIMIT_AS bounds each process; a command that forks many processes which each allocate
up to that limit could still exhaust the host. Where the cgroup v1 memory controller is
mounted and the bot's own group is writable (a root container, a delegated subtree), every
command also runs in a child group of the bot's own group whose ``memory.limit_in_bytes``
bounds the whole process tree (page cache and the private tmpfs included), and the
kernel's count of OOM kills says exactly whether the memory limit fired. The group is
removed after the command. Elsewhere (cgroup v2 without delegation, no permission) the
sandbox keeps the per-process rlimits only; :func:`memory_cgroup_base` returns None.

https://docs.kernel.org/admin-guide/cgroup-v1/memory.html
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

V1_MOUNT = Path("/sys/fs/cgroup/memory")


def memory_cgroup_base(proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path | None:
    """The bot's own cgroup v1 memory group, if child groups can be made in it."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            base = V1_MOUNT / path.lstrip("/")
            limit = base / "memory.limit_in_bytes"
            if limit.is_file() and os.access(base, os.W_OK):
                return base
    return None


class MemoryGroup:
    """One command's memory cgroup: created, joined by the command, read, removed."""

    def __init__(self, base: Path, limit_bytes: int) -> None:
        self.path = base / f"vibe-{uuid.uuid4().hex[:16]}"
        self.path.mkdir()
        try:
            (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            # With swap accounting, swap counts too; without it the file does not exist.
            with contextlib.suppress(OSError):
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
        except OSError:
            self.path.rmdir()
            raise

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """OOM kills inside the group (``oom_kill`` in memory.oom_control, kernel 4.13+)."""
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / "memory.oom_control").read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
        return 0

    def close(self) -> None:
        """Kill whatever is left in the group and remove it."""
        for _ in range(50):
            try:
                pids = [int(p) for p in self.procs.read_text().split()]
            except OSError:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)
        log.warning("could not remove the memory cgroup %s; the next start sweeps it", self.path)


def sweep_stale(base: Path, older_than: float = 3600.0) -> int:
    """Remove empty groups that a crashed bot left behind (old ones only: a young empty
    group may belong to another worker's command that is about to join it)."""
    removed = 0
    now = time.time()
    for group in base.glob("vibe-*"):
        with contextlib.suppress(OSError):
            if now - group.stat().st_mtime >= older_than:
                group.rmdir()
                removed += 1
    return removed
