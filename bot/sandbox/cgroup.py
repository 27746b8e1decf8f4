"""A memory cgroup per sandboxed command, when the host lets the bot make one.

RLIMIT_AS bounds each process; a command that forks many processes which each allocate
up to that limit could still exhaust the host. Where the bot may create child groups with
the memory controller, every command also runs in a child group of the bot's own group
whose limit bounds the whole process tree (page cache and the private tmpfs included), and
the kernel's count of OOM kills says exactly whether the memory limit fired. The group is
removed after the command. :func:`find_memory_cgroup` looks for, in order:

- **cgroup v1**: the memory hierarchy's group of the bot, writable (a root container
  whose cgroupfs is writable): ``memory.limit_in_bytes``
  (https://docs.kernel.org/admin-guide/cgroup-v1/memory.html);
- **cgroup v2**: the bot's own group in the unified hierarchy, writable and with
  ``memory`` in its ``cgroup.controllers``: a delegated subtree (systemd ``Delegate=yes``,
  e.g. the bot started by ``systemd-run --user --scope -p Delegate=yes``, or a container
  whose cgroup namespace is writable). Because of the "no internal processes" rule a group
  with processes cannot enable a controller for its children, so the bot first moves every
  process of its group into a leaf (:data:`LEAF`), then writes ``+memory`` to the group's
  ``cgroup.subtree_control``; each command's group gets ``memory.max`` and
  ``memory.swap.max`` 0, and ``memory.events`` counts its OOM kills
  (https://docs.kernel.org/admin-guide/cgroup-v2.html, "No Internal Process Constraint"
  and "Delegation").

Elsewhere (no delegation, a read-only ``/sys/fs/cgroup`` as Docker and Kubernetes mount
it) it returns None with the reason, which the sandbox logs once at start; the sandbox then
measures memory itself (:mod:`bot.sandbox.watchdog`).
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
LEAF = "vibe-bot-process"


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


def _v2_group(proc_cgroup: Path, mountinfo: Path) -> tuple[Path | None, str]:
    """The bot's own cgroup v2 group and, when it is unusable, why."""
    try:
        lines = proc_cgroup.read_text().splitlines()
        mounts = mountinfo.read_text().splitlines()
    except OSError as exc:
        return None, f"cannot read the process's cgroups ({exc.strerror})"
    path = next((ln[3:] for ln in lines if ln.startswith("0::")), None)
    # mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER"
    mount = next(
        (ln.split()[4] for ln in mounts if " - cgroup2 " in ln and len(ln.split()) > 4), None
    )
    if path is None or mount is None:
        return None, "no cgroup v1 memory controller and no cgroup v2 hierarchy is mounted"
    return Path(mount) / path.lstrip("/"), ""


def find_memory_cgroup(
    proc_cgroup: Path = Path("/proc/self/cgroup"),
    mountinfo: Path = Path("/proc/self/mountinfo"),
) -> tuple[Path | None, str]:
    """Where each command's memory group is made (made ready for it), or None and why."""
    base = memory_cgroup_base(proc_cgroup)
    if base is not None:
        return base, ""
    group, reason = _v2_group(proc_cgroup, mountinfo)
    if group is None:
        return None, reason
    if group.name == LEAF:  # this process moved itself there already
        group = group.parent
    try:
        controllers = (group / "cgroup.controllers").read_text().split()
    except OSError:
        return None, f"{group} is not a cgroup v2 group the bot can read"
    if "memory" not in controllers:
        return None, (
            f"the memory controller is not delegated to the bot's cgroup {group} "
            f"(its cgroup.controllers: {' '.join(controllers) or 'none'})"
        )
    if not os.access(group, os.W_OK):
        return None, f"the bot's cgroup {group} is not writable by it (not delegated)"
    try:
        _enable_memory(group)
    except OSError as exc:
        return None, f"cannot enable the memory controller below {group}: {exc}"
    return group, ""


def _enable_memory(group: Path) -> None:
    """Move the group's processes into a leaf, then give its children the memory
    controller (a group with processes cannot: the "no internal processes" rule)."""
    subtree = group / "cgroup.subtree_control"
    if "memory" in subtree.read_text().split():
        return
    leaf = group / LEAF
    leaf.mkdir(exist_ok=True)
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(ProcessLookupError):
            (leaf / "cgroup.procs").write_text(pid)
    subtree.write_text("+memory")


def is_v2(base: Path) -> bool:
    return (base / "cgroup.controllers").is_file()


class MemoryGroup:
    """One command's memory cgroup (v1 or v2): created, joined by the command, read,
    removed."""

    def __init__(self, base: Path, limit_bytes: int) -> None:
        self.v2 = is_v2(base)
        self.path = base / f"vibe-{uuid.uuid4().hex[:16]}"
        self.path.mkdir()
        try:
            if self.v2:
                (self.path / "memory.max").write_text(str(limit_bytes))
                with contextlib.suppress(OSError):  # no swap accounting: no such file
                    (self.path / "memory.swap.max").write_text("0")
            else:
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
        """OOM kills inside the group (``oom_kill`` in v1's memory.oom_control, kernel
        4.13+, or v2's memory.events)."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / name).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == "oom_kill":
                    return int(value)
        return 0

    def close(self) -> None:
        """Kill whatever is left in the group and remove it."""
        if self.v2:
            with contextlib.suppress(OSError):  # cgroup.kill: kernel 5.14+
                (self.path / "cgroup.kill").write_text("1")
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
