"""Run commands in a task's worktree under bubblewrap, with hard limits (DESIGN.md section 4).

Public API (the agent's shell tool and the loop's setup step code against this)::

    sandbox = make_sandbox(settings)              # BwrapSandbox, or the loud dev-only NoSandbox
    result = sandbox.run("pytest -q", workdir=ws.path, limits=SandboxLimits(wall_seconds=120),
                         network=False, cancel=ctx.cancel)
    result = sandbox.run("pip install -e .", workdir=ws.path, network=True,
                         allow_hosts=repo_config.network.allow)     # allow-listed egress
    result.exit_code, result.duration, result.stdout, result.stderr, result.truncated, result.limit
    with sandbox.spawn(["python3", "server.py"], workdir=ws.path, env=...) as process:
        ...   # a long-lived process: process.stdin / process.stdout pipes (bot/sandbox/process.py)
    run_setup(sandbox, commands, workdir=..., network=..., allow_hosts=..., cancel=...)
    network_permitted(repo_config, settings) -> bool
    check_sandbox(settings) -> SandboxCheck(ok, detail, fix, seconds)   # start-up, /readyz

What a sandboxed command sees (:class:`BwrapSandbox`):

- its worktree read-write at ``/workspace`` (the working directory), with the worktree's
  ``.git`` file, the worktree's gitdir and the mirror's object store mounted read-only at
  their host paths, so ``git log``/``git diff`` work but hooks, config and refs cannot be
  changed (the host makes the commits);
- ``/usr`` and a short list of ``/etc`` files read-only; a private ``/tmp``, ``/dev/shm``
  and a fresh ``HOME`` (size-capped tmpfs); ``/proc`` of its own PID namespace; a minimal
  ``/dev``;
- a cleared environment holding only :data:`SAFE_ENV` plus what the caller passes in ``env``
  (bwrap itself is started with a minimal environment too, so no secret of the bot reaches
  even the namespace's init process);
- no network unless ``network=True`` (see below);
- new PID, IPC, UTS and cgroup namespaces, a new session (no terminal injection),
  ``--die-with-parent``;
- a seccomp filter (:mod:`bot.sandbox.seccomp`): no new namespaces of any kind (so no user
  namespace with its capabilities), no ``setns``, keyring, ``bpf``, ``perf_event_open``,
  ``userfaultfd`` or io_uring;
- an unprivileged uid: when the bot runs as root, commands run as ``settings.sandbox_uid``
  (default 65534, ``nobody``) through ``setpriv`` with an empty capability bounding set and
  ``no_new_privs`` (RLIMIT_NPROC does not apply to root, so this is what makes the process
  limit real); the worktree must be owned by that uid (:mod:`bot.workspace` does it). When
  the bot is not root, bwrap adds a user namespace and commands keep the bot's own uid.

Limits (:class:`SandboxLimits`): wall clock (the whole process group is killed with SIGKILL,
which takes the PID namespace and every grandchild with it), RLIMIT_AS, RLIMIT_FSIZE,
RLIMIT_NOFILE, RLIMIT_NPROC (set by ``prlimit`` inside the sandbox), where the host allows
it a memory cgroup bounding the whole process tree to ``memory_bytes`` (:mod:`bot.sandbox.cgroup`)
and elsewhere the watchdog's measured sum (:mod:`bot.sandbox.watchdog`), the size of the
private tmpfs mounts, the bytes and files a command adds to the worktree and the files it
makes in the tmpfs mounts (``disk_bytes``, ``disk_inodes``, measured by the watchdog), and
captured output: each stream keeps its first
and last ``output_bytes / 2`` bytes with a visible marker in between, read incrementally
so an output flood never accumulates in memory. ``cancel`` (a :class:`threading.Event`,
e.g. ``/vibe stop``) kills the command within about 50 ms.

Which limit fired (:attr:`CommandResult.limit`): ``timeout``, ``cancelled``, ``output``,
``file_size`` (death by SIGXFSZ), ``memory`` through the cgroup (an OOM kill) and ``disk``
and ``memory`` from the watchdog (it killed the command and says what it measured on
stderr) are exact; otherwise ``memory``, ``processes``, ``open_files`` and ``disk`` (a full
tmpfs) are recognised from the messages that
allocation, fork and open failures print (glibc, Python, shells), because the kernel does
not report which rlimit refused a call. RLIMIT_NPROC counts every process of the sandbox
uid on the host, so concurrent commands share that budget.

Network: off by default (``--unshare-net``: not even the host's loopback is reachable).
With ``network=True`` and ``allow_hosts`` (the repository's ``network.allow``), the command
keeps its empty network namespace and reaches only the listed hosts through an HTTP proxy
the host runs for it (:mod:`bot.sandbox.egress`). ``network=True`` without ``allow_hosts`` shares
the host's network, so callers should always pass the list. The repository's list counts
only when the operator set ``VIBE_SANDBOX_ALLOW_NETWORK=true`` (:func:`network_permitted`).

Without bubblewrap :meth:`BwrapSandbox.run` raises :class:`SandboxUnavailable` saying how to
install it. When bwrap cannot set the sandbox up (a container without the capabilities it
needs, user namespaces disabled, a masked ``/proc``) or ``prlimit``/``setpriv`` fail before the
command runs, it raises :class:`SandboxStartFailed` with the failing tool's own line and the
fix (:func:`diagnose`), never a :class:`CommandResult`: the loop treats both as an
infrastructure error, not as the repository's failing command. :func:`check_sandbox` runs a
real command the same way, for start-up and ``/readyz``. Every command is counted by outcome
(``ok``, ``failed``, ``limit``, ``timeout``, ``cancelled``, ``start_failed``) through the
``observe`` callback :func:`make_sandbox` wires to :mod:`bot.observability`.

``VIBE_SANDBOX=none`` selects :class:`NoSandbox`, for development only: it keeps
the limits and the cleared environment but has no isolation, and logs a loud warning on
every command.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import re
import secrets
import select
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.sandbox.cgroup import MemoryGroup, find_memory_cgroup, sweep_stale
from bot.sandbox.egress import PROXY_PORT, EgressProxy, parse_private, proxy_env, relay_command
from bot.sandbox.process import SandboxProcess
from bot.sandbox.seccomp import program, program_fd
from bot.sandbox.watchdog import Watchdog

if TYPE_CHECKING:
    from bot.core.config import RepoConfig
    from bot.settings import Settings

log = logging.getLogger(__name__)

SANDBOX_WORKDIR = "/workspace"
EGRESS_MOUNT = "/run/vibe-egress"
SANDBOX_HOME = "/home/sandbox"
SANDBOX_TMP = "/tmp"  # noqa: S108 (a private, size-capped tmpfs inside the sandbox)
SANDBOX_SHM = "/dev/shm"  # noqa: S108 (likewise; POSIX semaphores and shared memory)
NOBODY_UID = 65534
INSTALL_HINT = (
    "bubblewrap is not installed, so the bot refuses to run commands: install it "
    "(Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap; "
    "Alpine: apk add bubblewrap). VIBE_SANDBOX=none runs commands without isolation and is "
    "meant for development only."
)
SAFE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": SANDBOX_HOME,
    "TMPDIR": SANDBOX_TMP,
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TERM": "dumb",
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "SHELL": "/bin/sh",
    "CI": "true",
    "NO_COLOR": "1",
    "PAGER": "cat",
    "GIT_PAGER": "cat",
    "GIT_TERMINAL_PROMPT": "0",
    # Checks that import the repository's Python would leave __pycache__/*.pyc in the
    # worktree, and the commit takes every file the repository does not ignore.
    "PYTHONDONTWRITEBYTECODE": "1",
    # The worktree and the mirror belong to another uid than the sandbox user; git would
    # refuse to read them ("dubious ownership"). Command-scope config is honoured for this.
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.directory",
    "GIT_CONFIG_VALUE_0": "*",
}
# /etc entries a build or test usually needs; the rest of /etc (the bot's own config,
# credentials of other services) stays invisible.
ETC_ENTRIES: tuple[str, ...] = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "group",
    "host.conf",
    "hostname",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_COMMAND_BYTES = 256 * 1024
_POLL_SECONDS = 0.05
_DRAIN_SECONDS = 2.0
_SIGXFSZ_STATUS = 128 + signal.SIGXFSZ

LIMIT_TIMEOUT = "timeout"
LIMIT_CANCELLED = "cancelled"
LIMIT_OUTPUT = "output"
LIMIT_MEMORY = "memory"
LIMIT_PROCESSES = "processes"
LIMIT_FILE_SIZE = "file_size"
LIMIT_OPEN_FILES = "open_files"
LIMIT_DISK = "disk"
# Limits the watchdog measures (bot/sandbox/watchdog.py) rather than infers.
_WATCHED = frozenset({LIMIT_MEMORY, LIMIT_DISK})

# Messages printed when an rlimit refuses a call, lower-cased (glibc strerror, Python,
# dash/bash, coreutils). Order matters: the first match wins.
_LIMIT_MESSAGES: tuple[tuple[str, tuple[bytes, ...]], ...] = (
    (
        LIMIT_PROCESSES,
        (
            b"fork: retry",
            b"fork: resource temporarily unavailable",
            b"cannot fork",
            b"can't fork",
            b"fork failed",
            b"blockingioerror: [errno 11]",
        ),
    ),
    (
        LIMIT_MEMORY,
        (
            b"memoryerror",
            b"cannot allocate memory",
            b"out of memory",
            b"memory exhausted",
            b"std::bad_alloc",
        ),
    ),
    (LIMIT_OPEN_FILES, (b"too many open files",)),
    (LIMIT_FILE_SIZE, (b"file too large", b"file size limit exceeded")),
    # A full private tmpfs (its --size) says ENOSPC; a quota says EDQUOT.
    (LIMIT_DISK, (b"no space left on device", b"disk quota exceeded")),
)


class SandboxError(Exception):
    """A command was refused before it ran (bad command, workdir, or environment)."""


class SandboxUnavailable(SandboxError):
    """The configured sandbox cannot run here (bubblewrap missing, or it cannot start). An
    infrastructure error: the loop retries the job and never reports it as a failing check."""


class SandboxStartFailed(SandboxUnavailable):
    """bwrap, or a wrapper step inside the sandbox (``prlimit``, ``setpriv``), failed before
    the command ran. ``detail`` is the failing tool's own line, ``fix`` what the operator
    changes (:func:`diagnose`)."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(f"the sandbox could not start: {detail}. Fix: {fix}")
        self.detail = detail
        self.fix = fix


_README = "see infra/README.md (Sandbox)"
_CONTAINER_FIX = (
    "bubblewrap may not create namespaces here. In a container running as root, grant "
    "CAP_SYS_ADMIN and CAP_NET_ADMIN and an AppArmor profile that allows mount (docker: "
    "--cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt apparmor=unconfined; Kubernetes: "
    "securityContext.capabilities.add [SYS_ADMIN, NET_ADMIN] and appArmorProfile type "
    "Unconfined); or run the bot as a non-root user on a host with unprivileged user "
    f"namespaces enabled; {_README}"
)
_USERNS_FIX = (
    "unprivileged user namespaces are disabled on this host: enable them "
    "(sysctl kernel.unprivileged_userns_clone=1 on Debian kernels; user.max_user_namespaces "
    "above 0; on Ubuntu 23.10+ kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor "
    "profile for bwrap, which the distribution's bubblewrap package ships), or run the bot as "
    f"root with CAP_SYS_ADMIN and CAP_NET_ADMIN; {_README}"
)
# What bubblewrap, setpriv and prlimit print when the sandbox cannot be set up, lower-cased,
# with the fix; the first match wins. The texts are bubblewrap's own (containers/bubblewrap
# bubblewrap.c: main() dies with "Creating new namespace failed" when clone() fails, and for
# --unshare-user with "No permissions to creating new namespace" (worded "to create a new
# namespace" since 0.11.1, "to create new namespace" by Debian's 0.8) or "...likely because
# the kernel does not support user namespaces"; "setting up uid map" from
# write_uid_gid_map(), "Failed to make / slave" on the first mount(); setup_newroot() "Can't
# mount proc on %s"; network.c loopback_setup() "loopback: Failed RTM_NEWADDR"), checked
# against the strings of the installed bwrap 0.8, and util-linux's setpriv ("setresuid
# failed", "setresgid failed", "setgroups failed") and prlimit ("failed to set the NPROC
# resource limit").
_DIAGNOSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("no permissions to creat",), _USERNS_FIX),
    (
        ("kernel does not support user namespaces",),
        "the kernel has no user namespaces: run the bot as root with CAP_SYS_ADMIN and "
        f"CAP_NET_ADMIN instead; {_README}",
    ),
    (
        ("max_*_namespaces exceeded", "creating new namespace failed: no space left"),
        "the namespace limit is reached: raise user.max_user_namespaces (and the other "
        f"user.max_*_namespaces sysctls) above 0; {_README}",
    ),
    (("creating new namespace failed",), _CONTAINER_FIX),
    (
        ("setting up uid map", "setting up gid map"),
        "the kernel refused the user namespace's uid map; on Ubuntu 23.10+ unprivileged user "
        "namespaces are restricted: set kernel.apparmor_restrict_unprivileged_userns=0 or "
        "install the distribution's bubblewrap package (it ships an AppArmor profile), or "
        f"run the bot as root with CAP_SYS_ADMIN and CAP_NET_ADMIN; {_README}",
    ),
    (
        ("failed to make / slave", "failed to mount tmpfs", "setting up newroot bind"),
        "AppArmor (or SELinux) refuses mount inside the container: use an AppArmor profile that "
        "allows mount (docker: --security-opt apparmor=unconfined; Kubernetes: "
        f"securityContext.appArmorProfile type Unconfined); {_README}",
    ),
    (
        ("can't mount proc on",),
        "the container's /proc is masked, so a new /proc cannot be mounted: docker "
        "--security-opt systempaths=unconfined; Kubernetes securityContext.procMount: "
        f"Unmasked; {_README}",
    ),
    (
        ("loopback:",),
        "bubblewrap cannot set up the sandbox's loopback interface: grant CAP_NET_ADMIN "
        f"(docker --cap-add NET_ADMIN; Kubernetes capabilities.add NET_ADMIN); {_README}",
    ),
    (
        ("setpriv: setresuid", "setpriv: setresgid", "setpriv: setgroups"),
        "the bot cannot switch commands to the sandbox uid: grant CAP_SETUID and CAP_SETGID "
        f"(they are in docker's default set unless dropped); {_README}",
    ),
    (
        ("prlimit: failed to set",),
        "the bot cannot set the sandbox's resource limits: grant CAP_SYS_RESOURCE or raise the "
        f"container's hard limits (ulimit) above the sandbox limits; {_README}",
    ),
    (
        ("unknown option --json-status-fd",),
        "this bubblewrap is too old for --json-status-fd: install a current bubblewrap "
        "(0.8 or newer)",
    ),
)


def diagnose(stderr: str) -> str:
    """The fix for a sandbox that could not start, from what bwrap or a wrapper step printed."""
    text = stderr.lower()
    for needles, fix in _DIAGNOSES:
        if any(n in text for n in needles):
            return fix
    last = _last_line(stderr) or "(nothing printed)"
    return f"unrecognised sandbox failure {last[:300]!r}; {_README} for what bubblewrap needs"


def _last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")


@dataclass(frozen=True)
class SandboxLimits:
    """Hard limits for one command. Sizes in bytes; ``output_bytes`` applies per stream."""

    wall_seconds: float = 600.0
    memory_bytes: int = 4 * 1024**3
    file_bytes: int = 1024**3
    open_files: int = 1024
    processes: int = 256
    output_bytes: int = 64 * 1024
    tmp_bytes: int = 512 * 1024**2
    disk_bytes: int = 2 * 1024**3
    disk_inodes: int = 200_000

    def __post_init__(self) -> None:
        if not 0 < self.wall_seconds <= 24 * 3600:
            raise SandboxError("wall_seconds must be in (0, 86400]")
        for name in (
            "memory_bytes",
            "file_bytes",
            "open_files",
            "processes",
            "tmp_bytes",
            "disk_bytes",
            "disk_inodes",
        ):
            if getattr(self, name) < 1:
                raise SandboxError(f"{name} must be at least 1")
        if self.output_bytes < 64:
            raise SandboxError("output_bytes must be at least 64")


DEFAULT_LIMITS = SandboxLimits()
SETUP_LIMITS = SandboxLimits(
    wall_seconds=1800.0,
    memory_bytes=8 * 1024**3,
    file_bytes=4 * 1024**3,
    processes=512,
    tmp_bytes=2 * 1024**3,
    disk_bytes=8 * 1024**3,
    disk_inodes=1_000_000,
)


@dataclass(frozen=True)
class CommandResult:
    """What a command did. ``exit_code`` is None when the sandbox killed it (timeout or
    cancel); a death by signal N is reported as 128 + N, as shells do."""

    exit_code: int | None
    duration: float
    stdout: str
    stderr: str
    truncated: bool
    limit: str | None

    @property
    def ok(self) -> bool:
        """The command exited 0 (a limit may still have refused something along the way)."""
        return self.exit_code == 0

    def describe(self) -> str:
        """One line for people and the model: how the command ended and why."""
        if self.limit == LIMIT_TIMEOUT:
            end = "killed: wall clock limit reached"
        elif self.limit == LIMIT_CANCELLED:
            end = "killed: cancelled"
        elif self.exit_code is None:
            end = "killed"
        else:
            end = f"exit code {self.exit_code}"
        note = ""
        if self.limit not in (None, LIMIT_TIMEOUT, LIMIT_CANCELLED):
            note = f"; {self.limit.replace('_', ' ')} limit hit"
        elif self.limit is not None and self.truncated:
            note = "; output truncated"
        return f"{end} after {self.duration:.1f} s{note}"


class Sandbox(Protocol):
    """Runs one command in a worktree. ``uid`` is the uid commands run as when it differs
    from the bot's (the worktree must be writable by it), else None."""

    @property
    def uid(self) -> int | None: ...

    def run(
        self,
        command: str | Sequence[str],
        *,
        workdir: Path,
        limits: SandboxLimits | None = None,
        network: bool = False,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        allow_hosts: Sequence[str] = (),
    ) -> CommandResult: ...

    def spawn(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: SandboxLimits | None = None,
        network: bool = False,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        allow_hosts: Sequence[str] = (),
    ) -> SandboxProcess:
        """Start a long-lived process with pipes to its stdin and stdout, isolated and
        limited like :meth:`run` (:mod:`bot.sandbox.process`)."""
        ...


@dataclass
class _Capture:
    """Head and tail of one stream, bounded however much is read."""

    limit: int
    head: bytearray = field(default_factory=bytearray)
    tail: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    hits: set[str] = field(default_factory=set)
    _carry: bytes = b""

    def feed(self, chunk: bytes) -> None:
        self._scan(chunk)
        head_room = self.limit // 2 - len(self.head)
        if head_room > 0:
            self.head += chunk[:head_room]
            chunk = chunk[head_room:]
        if not chunk:
            return
        keep = self.limit - self.limit // 2
        self.tail += chunk
        if len(self.tail) > keep:
            excess = len(self.tail) - keep
            self.dropped += excess
            del self.tail[:excess]

    def _scan(self, chunk: bytes) -> None:
        window = (self._carry + chunk).lower()
        self._carry = window[-64:]
        for name, needles in _LIMIT_MESSAGES:
            if name not in self.hits and any(n in window for n in needles):
                self.hits.add(name)

    def text(self) -> str:
        data = bytes(self.head)
        if self.dropped:
            data += f"\n[... {self.dropped} bytes truncated by the sandbox ...]\n".encode()
        data += bytes(self.tail)
        return data.decode("utf-8", errors="replace")


def _argv(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        argv = ["/bin/sh", "-c", command]
        if not command.strip():
            raise SandboxError("the command is empty")
    else:
        argv = list(command)
        if not argv or not argv[0]:
            raise SandboxError("the command is empty")
        if not all(isinstance(a, str) for a in argv):
            raise SandboxError("every argument must be a string")
    if any("\0" in a for a in argv):
        raise SandboxError("the command contains a NUL byte")
    if sum(len(a.encode("utf-8", "surrogateescape")) for a in argv) > MAX_COMMAND_BYTES:
        raise SandboxError(f"the command is longer than {MAX_COMMAND_BYTES} bytes")
    return argv


def _environment(extra: Mapping[str, str] | None, home: str) -> dict[str, str]:
    env = dict(SAFE_ENV)
    env["HOME"] = home
    for name, value in (extra or {}).items():
        if not _ENV_NAME.fullmatch(name):
            raise SandboxError(f"invalid environment variable name: {name[:80]!r}")
        if "\0" in value or len(value) > 64 * 1024:
            raise SandboxError(f"invalid value for environment variable {name}")
        env[name] = value
    return env


def _cwd_inside(workdir: Path, cwd: str) -> str:
    if not cwd:
        return ""
    rel = Path(cwd)
    if rel.is_absolute() or ".." in rel.parts or "\0" in cwd:
        raise SandboxError(f"cwd must be a relative path inside the worktree: {cwd[:200]!r}")
    if not (workdir / rel).is_dir():
        raise SandboxError(f"cwd is not a directory in the worktree: {cwd[:200]!r}")
    return rel.as_posix()


@dataclass(frozen=True)
class _Prepared:
    """A command checked and ready to run: what every sandbox's ``run`` starts from."""

    argv: list[str]
    workdir: Path  # resolved
    cwd: str  # relative to ``workdir``; "" for ``workdir`` itself
    limits: SandboxLimits
    environment: dict[str, str]


def _prepare(
    command: str | Sequence[str],
    *,
    workdir: Path,
    limits: SandboxLimits | None,
    env: Mapping[str, str] | None,
    cwd: str,
    home: str | None,
) -> _Prepared:
    """Check the command, its environment and its working directory. ``home`` is the
    command's ``HOME``; ``None`` makes it the workdir."""
    argv = _argv(command)
    if workdir.is_symlink() or not workdir.is_dir():
        raise SandboxError(f"workdir is not a directory: {workdir}")
    workdir = workdir.resolve()
    return _Prepared(
        argv=argv,
        workdir=workdir,
        cwd=_cwd_inside(workdir, cwd),
        limits=limits or DEFAULT_LIMITS,
        environment=_environment(env, home if home is not None else str(workdir)),
    )


def _rlimit_argv(limits: SandboxLimits) -> list[str]:
    return [
        "prlimit",
        f"--as={limits.memory_bytes}",
        f"--fsize={limits.file_bytes}",
        f"--nofile={limits.open_files}",
        f"--nproc={limits.processes}",
        "--core=0",
        "--",
    ]


def _execute(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    limits: SandboxLimits,
    cancel: threading.Event | None,
    stdin: int | None = None,
    pass_fds: Sequence[int] = (),
    watchdog: Watchdog | None = None,
) -> CommandResult:
    """Start ``argv`` in its own process group and collect it under the limits. ``stdin``
    (default ``/dev/null``) and ``pass_fds`` are file descriptors the process inherits;
    ``watchdog`` kills the group past its disk and memory limits."""
    start = time.monotonic()
    deadline = start + limits.wall_seconds
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL if stdin is None else stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
        pass_fds=tuple(pass_fds),
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    if watchdog is not None:
        watchdog.start(proc.pid)
    try:
        return _collect(proc, start, deadline, limits, cancel, watchdog)
    finally:
        if watchdog is not None:
            watchdog.stop()


def _collect(
    proc: subprocess.Popen[bytes],
    start: float,
    deadline: float,
    limits: SandboxLimits,
    cancel: threading.Event | None,
    watchdog: Watchdog | None,
) -> CommandResult:
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = _Capture(limits.output_bytes), _Capture(limits.output_bytes)
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    killed: str | None = None
    with selectors.DefaultSelector() as sel:
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            if killed is None:
                if watchdog is not None and watchdog.verdict is not None:
                    killed = watchdog.verdict.limit
                elif cancel is not None and cancel.is_set():
                    killed = LIMIT_CANCELLED
                elif time.monotonic() >= deadline:
                    killed = LIMIT_TIMEOUT
                if killed is not None:
                    _kill_group(proc)
                    deadline = time.monotonic() + _DRAIN_SECONDS
            elif time.monotonic() >= deadline:
                break  # a process that left the group still holds the pipes (NoSandbox)
            for key, _ in sel.select(timeout=_POLL_SECONDS):
                fd = int(key.fd)
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if chunk:
                    streams[fd].feed(chunk)
                else:
                    sel.unregister(fd)
    proc.stdout.close()
    proc.stderr.close()
    while True:
        try:
            status = proc.wait(timeout=_POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if killed is None and watchdog is not None and watchdog.verdict is not None:
                killed = watchdog.verdict.limit
                _kill_group(proc)
            elif killed is None and (
                (cancel is not None and cancel.is_set()) or time.monotonic() >= deadline
            ):
                cancelled = cancel is not None and cancel.is_set()
                killed = LIMIT_CANCELLED if cancelled else LIMIT_TIMEOUT
                _kill_group(proc)
    duration = time.monotonic() - start
    if killed is None and watchdog is not None and watchdog.verdict is not None:
        killed = watchdog.verdict.limit  # it killed the command between two polls
    exit_code = None if killed else (128 - status if status < 0 else status)
    stderr = err.text()
    if watchdog is not None and watchdog.verdict is not None:
        stderr += f"\n[vibe sandbox: killed: {watchdog.verdict.detail}]\n"
    return CommandResult(
        exit_code=exit_code,
        duration=duration,
        stdout=out.text(),
        stderr=stderr,
        truncated=bool(out.dropped or err.dropped),
        limit=_which_limit(killed, exit_code, out, err),
    )


def _which_limit(killed: str | None, exit_code: int | None, *caps: _Capture) -> str | None:
    if killed in _WATCHED:
        return killed  # measured, not guessed from what the command printed
    hits = set().union(*(c.hits for c in caps))
    if exit_code == _SIGXFSZ_STATUS:
        hits.add(LIMIT_FILE_SIZE)
    for name, _ in _LIMIT_MESSAGES:
        if name in hits:
            return name
    if killed is not None:
        return killed
    if any(c.dropped for c in caps):
        return LIMIT_OUTPUT
    return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _gitdir_mounts(workdir: Path) -> list[Path]:
    """Host directories git needs read-only inside: the mirror behind a worktree.

    The ``.git`` file is only trusted when the gitdir it names links back to this worktree
    (git writes that link inside the mirror, where no sandboxed command can write), so a
    planted ``.git`` file cannot expose another repository.
    """
    dot_git = workdir / ".git"
    if dot_git.is_symlink():
        raise SandboxError("the worktree's .git is a symlink; refusing to mount it")
    if dot_git.is_dir() or not dot_git.exists():
        return []
    text = dot_git.read_text(errors="replace").strip()
    if not text.startswith("gitdir: "):
        raise SandboxError("the worktree's .git file does not name a gitdir")
    gitdir = Path(text.removeprefix("gitdir: ")).resolve()
    backlink = gitdir / "gitdir"
    if not backlink.is_file() or Path(backlink.read_text().strip()).resolve() != dot_git:
        raise SandboxError("the worktree's .git file names a gitdir that is not its own")
    commondir = gitdir / "commondir"
    if not commondir.is_file():
        return [gitdir]
    common = (gitdir / commondir.read_text().strip()).resolve()
    return [common] if gitdir.is_relative_to(common) else [gitdir, common]


START_BYTE = b"S"
# The last step before the command, inside the sandbox and as the sandbox user: one byte to
# its stdin (the write end of a pipe the host reads) says bwrap, prlimit and setpriv all
# succeeded; the command then gets /dev/null as stdin, so it never holds that pipe.
START_WRAPPER = ("/bin/sh", "-c", 'printf S >&0 && exec "$@" </dev/null', "vibe-sandbox")


def _read_available(fd: int) -> bytes:
    """What a pipe holds now, without waiting for its writers to close it."""
    os.set_blocking(fd, False)
    data = b""
    while len(data) < 65536:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    return data


class _StartWatch:
    """Tells "the sandbox never started" apart from "the command ran and failed".

    Neither the exit code (bwrap, setpriv and a failing test all exit non-zero) nor stderr
    (the command writes there too) can. Two pipes can, and no command can forge either:

    - bwrap writes ``{ "child-pid": N, ... }`` to ``--json-status-fd`` once clone() has made
      the namespaces (containers/bubblewrap ``bubblewrap.c``, ``main()``); bwrap closes that
      descriptor inside the sandbox. Without it bwrap died before, as with the EPERM a
      container without CAP_SYS_ADMIN gives.
    - :data:`START_WRAPPER` writes :data:`START_BYTE` after every wrapper step succeeded and
      before the command runs, so a command can neither write nor withhold it.
    """

    def __init__(self) -> None:
        self._status_read, self.status_fd = os.pipe()
        self._marker_read, self.marker_fd = os.pipe()

    def namespaces_created(self) -> bool:
        return b'"child-pid"' in _read_available(self._status_read)

    def command_started(self) -> bool:
        return _read_available(self._marker_read) == START_BYTE

    def close(self) -> None:
        for fd in (self._status_read, self.status_fd, self._marker_read, self.marker_fd):
            os.close(fd)


def _start_failure(result: CommandResult, namespaces: bool) -> SandboxStartFailed:
    stage = "set-up inside the sandbox failed" if namespaces else "bwrap made no namespaces"
    line = _last_line(result.stderr)[:500] or (
        f"bwrap exited with code {result.exit_code} before the command ran ({stage}) "
        "and printed nothing"
    )
    log.error("the sandbox could not start (%s): %s", stage, line)
    return SandboxStartFailed(line, diagnose(result.stderr))


_HARD_LIMITS = frozenset(
    {LIMIT_MEMORY, LIMIT_PROCESSES, LIMIT_FILE_SIZE, LIMIT_OPEN_FILES, LIMIT_DISK}
)
# Told each command's outcome ("ok", "failed", "limit", "timeout", "cancelled",
# "start_failed") and its seconds; make_sandbox passes bot.observability's counter.
Observer = Callable[[str, float], None]


def _ignore(outcome: str, seconds: float) -> None:
    del outcome, seconds


def outcome_of(result: CommandResult) -> str:
    """How a command that ran ended, as ``vibe_sandbox_command_seconds`` counts it (truncated
    output is no limit hit: the command still ended as it ended)."""
    if result.limit in (LIMIT_TIMEOUT, LIMIT_CANCELLED):
        return result.limit
    if result.limit in _HARD_LIMITS:
        return "limit"
    return "ok" if result.ok else "failed"


@functools.cache
def _warn_no_cgroup(reason: str) -> None:
    """Said once per process and reason, at start: what memory bound remains and how to
    get the exact one."""
    log.warning(
        "no memory cgroup for sandboxed commands: %s. Each command's memory is measured "
        "instead (the sum of its processes' anonymous memory, checked every 50 ms, with "
        "RLIMIT_AS per process at the memory limit): a fast allocator can overshoot briefly "
        "and kernel memory is not counted. For an exact bound give the bot a delegated "
        "cgroup: cgroup v2 with the memory controller (systemd Delegate=yes, e.g. "
        "systemd-run --user --scope -p Delegate=yes vibe worker) or a writable cgroup v1 "
        "memory hierarchy; see infra/README.md (Sandbox)",
        reason,
    )


def _joining(group: MemoryGroup | None, full: list[str]) -> list[str]:
    """``full`` started by a shell that joins the memory cgroup and becomes bwrap, so
    nothing starts outside the group."""
    if group is None:
        return full
    return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group.procs), *full]


def _watchdog(cmd: _Prepared, group: MemoryGroup | None) -> Watchdog:
    """What watches a sandboxed process from outside: its disk use in the worktree and its
    tmpfs mounts, and its memory when no cgroup bounds it."""
    limits = cmd.limits
    return Watchdog(
        cmd.workdir,
        disk_bytes=limits.disk_bytes,
        disk_inodes=limits.disk_inodes,
        tmpfs=(SANDBOX_TMP, SANDBOX_HOME, SANDBOX_SHM),
        memory_bytes=None if group is not None else limits.memory_bytes,
    )


class BwrapSandbox:
    """The real sandbox: bubblewrap plus ``prlimit`` and, as root, ``setpriv``."""

    def __init__(
        self,
        *,
        uid: int | None = None,
        bwrap: str | None = None,
        memory_cgroup: bool = True,
        observe: Observer = _ignore,
        allow_private_hosts: Sequence[str] = (),
    ) -> None:
        self._bwrap = bwrap if bwrap is not None else shutil.which("bwrap")
        self._observe = observe
        parse_private(allow_private_hosts)  # a malformed entry fails here, not per command
        self._allow_private = tuple(allow_private_hosts)
        self._seccomp = program()
        if self._seccomp is None:
            log.warning(
                "no seccomp filter for %s: sandboxed commands can create user namespaces "
                "(bot/sandbox/seccomp.py knows x86_64 and aarch64)",
                platform.machine(),
            )
        self._root = os.geteuid() == 0
        self._uid = (uid if uid is not None else NOBODY_UID) if self._root else None
        if self._uid == 0:
            raise SandboxError("the sandbox uid must not be 0")
        self._memory_base: Path | None = None
        if memory_cgroup:
            self._memory_base, reason = find_memory_cgroup()
            if self._memory_base is None:
                _warn_no_cgroup(reason)
        if self._memory_base is not None:
            sweep_stale(self._memory_base)

    @property
    def memory_cgroup(self) -> bool:
        """Whether each command also gets a memory cgroup bounding its whole process tree."""
        return self._memory_base is not None

    @property
    def uid(self) -> int | None:
        return self._uid

    def run(
        self,
        command: str | Sequence[str],
        *,
        workdir: Path,
        limits: SandboxLimits | None = None,
        network: bool = False,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        allow_hosts: Sequence[str] = (),
    ) -> CommandResult:
        if self._bwrap is None or not Path(self._bwrap).is_file():
            self._observe("start_failed", 0.0)
            raise SandboxUnavailable(INSTALL_HINT)
        cmd = _prepare(command, workdir=workdir, limits=limits, env=env, cwd=cwd, home=SANDBOX_HOME)
        if not (network and allow_hosts):
            if network:
                log.warning("sandbox command with the host's network: no allow-list was given")
            return self._run(cmd, cmd.argv, network, cmd.environment, cancel, [])
        with self._egress(allow_hosts) as proxy:
            wrapped, environment, mounts = self._through(proxy, cmd)
            return self._run(cmd, wrapped, False, environment, cancel, mounts)

    def _egress(self, allow_hosts: Sequence[str]) -> EgressProxy:
        """The egress proxy for an allow-listed command; its relay inside needs python3."""
        if shutil.which("python3", path=SAFE_ENV["PATH"]) is None:
            raise SandboxError("allow-listed network needs python3 under /usr for its relay")
        return EgressProxy(allow_hosts, self._allow_private)

    def _through(
        self, proxy: EgressProxy, cmd: _Prepared
    ) -> tuple[list[str], dict[str, str], list[str]]:
        """``cmd`` behind the running ``proxy``: its argv under the relay, its environment
        with the proxy's variables, and the mounts that show the proxy's socket."""
        proxy.open_to(self._uid)
        mounts = ["--perms", "0755", "--dir", "/run", "--ro-bind"]
        mounts += [str(proxy.directory), EGRESS_MOUNT]
        environment = {**cmd.environment, **proxy_env()}
        return relay_command(EGRESS_MOUNT, cmd.argv), environment, mounts

    def _command_line(
        self,
        cmd: _Prepared,
        argv: list[str],
        network: bool,
        environment: dict[str, str],
        mounts: list[str],
        watch: _StartWatch,
        filter_fds: list[int],
        wrapper: Sequence[str],
    ) -> list[str]:
        """bwrap's whole command line for ``argv``: the sandbox, the start watch, the
        seccomp filter, the rlimits and the uid drop (it may refuse what it is given: build
        it before anything that must be released, such as a memory cgroup)."""
        return [
            *self._bwrap_argv(cmd.workdir, cmd.limits, network, environment, cmd.cwd),
            "--json-status-fd",
            str(watch.status_fd),
            *(arg for fd in filter_fds for arg in ("--seccomp", str(fd))),
            *mounts,
            "--",
            *_rlimit_argv(cmd.limits),
            *self._drop_privileges(),
            *wrapper,
            *argv,
        ]

    def _run(
        self,
        cmd: _Prepared,
        argv: list[str],
        network: bool,
        environment: dict[str, str],
        cancel: threading.Event | None,
        mounts: list[str],
    ) -> CommandResult:
        limits = cmd.limits
        watch = _StartWatch()
        filter_fds = [program_fd(self._seccomp)] if self._seccomp is not None else []
        try:
            full = self._command_line(
                cmd, argv, network, environment, mounts, watch, filter_fds, START_WRAPPER
            )
            group = self._memory_group(limits)
            full = _joining(group, full)
            watchdog = _watchdog(cmd, group)
            try:
                # bwrap stays in the namespace as its init; give it nothing worth reading either.
                result = _execute(
                    full,
                    env={"PATH": SAFE_ENV["PATH"]},
                    cwd=None,
                    limits=limits,
                    cancel=cancel,
                    stdin=watch.marker_fd,
                    pass_fds=(watch.status_fd, *filter_fds),
                    watchdog=watchdog,
                )
                if group is not None and group.oom_kills() > 0:
                    result = replace(result, limit=LIMIT_MEMORY)
            finally:
                if group is not None:
                    group.close()
            started = watch.command_started()
            namespaces = watch.namespaces_created()
        finally:
            watch.close()
            for fd in filter_fds:
                os.close(fd)
        # Killed (timeout, cancel) before it started: that is how it ended, not a failure
        # to start.
        if not started and result.exit_code is not None:
            self._observe("start_failed", result.duration)
            raise _start_failure(result, namespaces)
        self._observe(outcome_of(result), result.duration)
        return result

    def spawn(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: SandboxLimits | None = None,
        network: bool = False,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        allow_hosts: Sequence[str] = (),
    ) -> SandboxProcess:
        """Like :meth:`run` (same mounts, namespaces, seccomp filter, uid, rlimits, memory
        cgroup or watchdog, egress proxy), but the process keeps running: its stdin and
        stdout are pipes to the host instead of ``/dev/null`` and a captured stream. It
        returns once the command has started (:data:`SPAWN_START_SECONDS` at most);
        ``limits.wall_seconds`` bounds its whole life."""
        if self._bwrap is None or not Path(self._bwrap).is_file():
            raise SandboxUnavailable(INSTALL_HINT)
        cmd = _prepare(argv, workdir=workdir, limits=limits, env=env, cwd="", home=SANDBOX_HOME)
        with contextlib.ExitStack() as stack:
            command, environment = cmd.argv, cmd.environment
            mounts: list[str] = []
            if network and allow_hosts:
                proxy = stack.enter_context(self._egress(allow_hosts))
                command, environment, mounts = self._through(proxy, cmd)
                network = False
            elif network:
                log.warning("sandbox process with the host's network: no allow-list was given")
            process = self._spawn(cmd, command, network, environment, cancel, mounts, stack)
            stack.pop_all()
            return process

    def _spawn(
        self,
        cmd: _Prepared,
        argv: list[str],
        network: bool,
        environment: dict[str, str],
        cancel: threading.Event | None,
        mounts: list[str],
        stack: contextlib.ExitStack,
    ) -> SandboxProcess:
        limits = cmd.limits
        watch = _StartWatch()
        stack.callback(watch.close)
        filter_fds = [program_fd(self._seccomp)] if self._seccomp is not None else []
        for fd in filter_fds:
            stack.callback(os.close, fd)
        to_child, to_server = os.pipe()
        from_server, from_child = os.pipe()
        full = self._command_line(
            cmd, argv, network, environment, mounts, watch, filter_fds, SPAWN_WRAPPER
        )
        group = self._memory_group(limits)
        if group is not None:
            stack.callback(group.close)
        full = _joining(group, full)
        watchdog = _watchdog(cmd, group)
        try:
            proc = subprocess.Popen(
                full,
                stdin=to_child,
                stdout=from_child,
                stderr=subprocess.PIPE,
                env={"PATH": SAFE_ENV["PATH"]},
                start_new_session=True,
                close_fds=True,
                pass_fds=(watch.status_fd, *filter_fds),
            )
        except BaseException:
            for fd in (to_child, to_server, from_server, from_child):
                os.close(fd)
            raise
        os.close(to_child)
        os.close(from_child)
        watchdog.start(proc.pid)
        stack.callback(watchdog.stop)
        process = SandboxProcess(
            proc,
            stdin=to_server,
            stdout=from_server,
            wall_seconds=limits.wall_seconds,
            cancel=cancel,
            watchdog=watchdog,
            release=stack.pop_all().close,
        )
        started = _wait_started(process)
        if not started:
            namespaces = watch.namespaces_created()
            process.close()
            failed = CommandResult(proc.returncode, 0.0, "", process.stderr(), False, None)
            raise _start_failure(failed, namespaces)
        return process

    def _memory_group(self, limits: SandboxLimits) -> MemoryGroup | None:
        if self._memory_base is None:
            return None
        try:
            return MemoryGroup(self._memory_base, limits.memory_bytes)
        except OSError as exc:
            log.warning("no memory cgroup for this command (%s); rlimits only", exc)
            return None

    def _bwrap_argv(
        self,
        workdir: Path,
        limits: SandboxLimits,
        network: bool,
        env: Mapping[str, str],
        cwd: str,
    ) -> list[str]:
        assert self._bwrap is not None
        args = [
            self._bwrap,
            "--ro-bind",
            "/usr",
            "/usr",
        ]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            target = Path("/") / name
            if target.is_symlink():
                args += ["--symlink", str(target.readlink()), f"/{name}"]
            elif target.is_dir():
                args += ["--ro-bind", f"/{name}", f"/{name}"]
        args += ["--perms", "0755", "--dir", "/etc"]
        for entry in ETC_ENTRIES:
            args += ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "01777",
            "--size",
            str(limits.tmp_bytes),
            "--tmpfs",
            SANDBOX_SHM,
            "--perms",
            "01777",
            "--size",
            str(limits.tmp_bytes),
            "--tmpfs",
            SANDBOX_TMP,
            "--perms",
            "0755",
            "--dir",
            "/var",
            "--symlink",
            SANDBOX_TMP,
            "/var/tmp",  # noqa: S108 (points at the private /tmp)
            "--perms",
            "0777",
            "--size",
            str(limits.tmp_bytes),
            "--tmpfs",
            SANDBOX_HOME,
            "--bind",
            str(workdir),
            SANDBOX_WORKDIR,
        ]
        dot_git = workdir / ".git"
        if dot_git.exists():
            args += ["--ro-bind", str(dot_git), f"{SANDBOX_WORKDIR}/.git"]
        for path in _gitdir_mounts(workdir):
            # bwrap would create the missing parents with the host parents' modes, which
            # may lock the sandbox user out (a 0700 data directory); create them 0755.
            for parent in reversed(path.parents[:-1]):
                args += ["--perms", "0755", "--dir", str(parent)]
            args += ["--ro-bind", str(path), str(path)]
        args += [
            "--chdir",
            f"{SANDBOX_WORKDIR}/{cwd}" if cwd else SANDBOX_WORKDIR,
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--hostname",
            "sandbox",
            "--new-session",
            "--die-with-parent",
            "--clearenv",
        ]
        if not self._root:
            args.append("--unshare-user")
        if not network:
            args.append("--unshare-net")
        for name, value in env.items():
            args += ["--setenv", name, value]
        return args

    def _drop_privileges(self) -> list[str]:
        if self._uid is None:
            return []
        return [
            "setpriv",
            f"--reuid={self._uid}",
            f"--regid={self._uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--",
        ]


SPAWN_START_SECONDS = 30.0
# For a spawned process the start byte is the first byte of its stdout, written by the last
# step before the command (so, as with START_WRAPPER, no command can write or withhold it):
# its stdin is the host's pipe, which a one-digit-only ``>&N`` of dash could not move aside.
SPAWN_WRAPPER = ("/bin/sh", "-c", 'printf S && exec "$@"', "vibe-sandbox")


def _wait_started(process: SandboxProcess) -> bool:
    """Read the start byte off a spawned process's stdout: True once it came, False when
    stdout ended or :data:`SPAWN_START_SECONDS` passed first."""
    ready, _, _ = select.select([process.stdout], [], [], SPAWN_START_SECONDS)
    return bool(ready) and os.read(process.stdout, 1) == START_BYTE


class NoSandbox:
    """Development only: limits and a cleared environment, but no isolation at all."""

    uid: int | None = None

    def __init__(self, *, observe: Observer = _ignore) -> None:
        self._observe = observe

    def run(
        self,
        command: str | Sequence[str],
        *,
        workdir: Path,
        limits: SandboxLimits | None = None,
        network: bool = False,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str = "",
        allow_hosts: Sequence[str] = (),
    ) -> CommandResult:
        cmd = _prepare(command, workdir=workdir, limits=limits, env=env, cwd=cwd, home=None)
        log.warning(
            "VIBE_SANDBOX=none: running %r WITHOUT ISOLATION (network, files and processes "
            "of the host are reachable); use this for development only",
            cmd.argv[:3],
        )
        result = _execute(
            [*_rlimit_argv(cmd.limits), *cmd.argv],
            env=cmd.environment,
            cwd=str(cmd.workdir / cmd.cwd),
            limits=cmd.limits,
            cancel=cancel,
        )
        self._observe(outcome_of(result), result.duration)
        return result

    def spawn(
        self,
        argv: Sequence[str],
        *,
        workdir: Path,
        limits: SandboxLimits | None = None,
        network: bool = False,
        cancel: threading.Event | None = None,
        env: Mapping[str, str] | None = None,
        allow_hosts: Sequence[str] = (),
    ) -> SandboxProcess:
        cmd = _prepare(argv, workdir=workdir, limits=limits, env=env, cwd="", home=None)
        log.warning(
            "VIBE_SANDBOX=none: starting %r WITHOUT ISOLATION; use this for development only",
            cmd.argv[:3],
        )
        to_child, to_server = os.pipe()
        from_server, from_child = os.pipe()
        try:
            proc = subprocess.Popen(
                [*_rlimit_argv(cmd.limits), *cmd.argv],
                stdin=to_child,
                stdout=from_child,
                stderr=subprocess.PIPE,
                env=cmd.environment,
                cwd=str(cmd.workdir),
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(to_server)
            os.close(from_server)
            raise
        finally:
            os.close(to_child)
            os.close(from_child)
        return SandboxProcess(
            proc,
            stdin=to_server,
            stdout=from_server,
            wall_seconds=cmd.limits.wall_seconds,
            cancel=cancel,
            watchdog=None,
            release=lambda: None,
        )


def make_sandbox(settings: Settings) -> Sandbox:
    """The sandbox the settings ask for (``VIBE_SANDBOX``: ``bwrap`` or ``none``), counting
    every command in ``vibe_sandbox_command_seconds``."""
    # Imported here: the sandbox classes need only the standard library, so a bare python3
    # can drive them (tests/sandbox/test_sandbox.py runs them as an unprivileged user so).
    from bot.observability import sandbox_command

    if settings.sandbox == "none":
        log.warning("VIBE_SANDBOX=none: commands will run WITHOUT ISOLATION (development only)")
        return NoSandbox(observe=sandbox_command)
    return BwrapSandbox(
        uid=settings.sandbox_uid,
        memory_cgroup=settings.sandbox_memory_cgroup,
        observe=sandbox_command,
        allow_private_hosts=settings.sandbox_allow_private_hosts,
    )


@dataclass(frozen=True)
class SandboxCheck:
    """What :func:`check_sandbox` found: ``fix`` says what to change when ``ok`` is False."""

    ok: bool
    detail: str
    fix: str | None
    seconds: float


PROBE_LIMITS = replace(DEFAULT_LIMITS, wall_seconds=30.0)
PROBE_REFUSED_HOST = "probe.invalid"
# Through the relay to the host's egress proxy, which must refuse a host off the list: the
# whole allow-listed path answers without any traffic leaving the machine.
_EGRESS_PROBE = (
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[2])), timeout=10)\n"
    "s.sendall(b'CONNECT ' + sys.argv[3].encode() + b':443 HTTP/1.1\\r\\n\\r\\n')\n"
    "print(sys.argv[1], s.recv(200).decode('latin-1').splitlines()[0])\n"
)


def check_sandbox(settings: Settings) -> SandboxCheck:
    """Run a real command through the configured sandbox, as a job would: start-up,
    ``vibe check`` and ``/readyz`` report what this finds (DESIGN.md section 5: ready means
    able). The command runs under the default limits with no network, and, when
    ``VIBE_SANDBOX_ALLOW_NETWORK`` is on, once more through the allow-listed egress relay.
    It must print a fresh nonce. Never raises."""
    started = time.monotonic()
    if settings.sandbox == "none":
        return SandboxCheck(
            True,
            "VIBE_SANDBOX=none: commands run WITHOUT ISOLATION (development only)",
            None,
            0.0,
        )
    try:
        detail, fix = _probe(settings)
    except SandboxStartFailed as exc:
        detail, fix = exc.detail, exc.fix
    except SandboxUnavailable as exc:
        detail, fix = "bubblewrap (bwrap) is not installed", str(exc)
    except Exception as exc:  # noqa: BLE001 - a probe reports what failed; it never raises
        # One line, not a traceback: the detail below is what the operator acts on.
        log.warning("sandbox probe failed: %s: %s", type(exc).__name__, exc)
        detail = f"the sandbox probe failed: {type(exc).__name__}: {exc}"
        fix = _README
    return SandboxCheck(fix is None, detail, fix, time.monotonic() - started)


def _probe(settings: Settings) -> tuple[str, str | None]:
    """(what the probe saw, the fix or None when the sandbox works)."""
    sandbox = make_sandbox(settings)
    with tempfile.TemporaryDirectory(prefix="vibe-probe-") as tmp:
        workdir = Path(tmp)
        if sandbox.uid is not None:
            os.chown(workdir, sandbox.uid, sandbox.uid)
        nonce = secrets.token_hex(8)
        # Writing into the workdir proves the sandbox uid can, as a worktree needs.
        write = f"printf %s {nonce} > probe && cat probe"
        result = sandbox.run(write, workdir=workdir, limits=PROBE_LIMITS)
        problem = _probe_problem(result, nonce)
        if problem is not None:
            return problem, _README
        done = f"a sandboxed command ran in {result.duration:.2f} s (no network)"
        if not settings.sandbox_allow_network:
            return done, None
        nonce = secrets.token_hex(8)
        argv = ["python3", "-c", _EGRESS_PROBE, nonce, str(PROXY_PORT), PROBE_REFUSED_HOST]
        result = sandbox.run(
            argv,
            workdir=workdir,
            limits=PROBE_LIMITS,
            network=True,
            allow_hosts=("allowed.invalid",),
        )
        problem = _probe_problem(result, f"{nonce} HTTP/1.1 403")
        if problem is not None:
            return f"allow-listed egress: {problem}", _README
        return f"{done} and through the allow-listed egress proxy", None


def _probe_problem(result: CommandResult, expected: str) -> str | None:
    if result.ok and expected in result.stdout:
        return None
    said = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
    return f"the probe command did not print its nonce ({result.describe()}): {said[:300]}"


def network_permitted(repo_config: RepoConfig, settings: Settings) -> bool:
    """Network for a repository's commands: asked by the repo and permitted by the operator.

    When True, pass ``allow_hosts=repo_config.network.allow`` to :meth:`Sandbox.run` so
    that only those hosts are reachable.
    """
    if not repo_config.network.allow:
        return False
    if not settings.sandbox_allow_network:
        log.info("repository asks for network; VIBE_SANDBOX_ALLOW_NETWORK is off, so no network")
        return False
    log.info("sandbox egress allowed to %s", ", ".join(repo_config.network.allow[:10]))
    return True


def run_setup(
    sandbox: Sandbox,
    commands: Sequence[str],
    *,
    workdir: Path,
    network: bool,
    limits: SandboxLimits = SETUP_LIMITS,
    cancel: threading.Event | None = None,
    allow_hosts: Sequence[str] = (),
) -> list[CommandResult]:
    """Run the repository's ``commands.setup`` in order, stopping at the first failure."""
    results: list[CommandResult] = []
    for command in commands:
        result = sandbox.run(
            command,
            workdir=workdir,
            limits=limits,
            network=network,
            cancel=cancel,
            allow_hosts=allow_hosts,
        )
        results.append(result)
        if not result.ok:
            break
    return results
