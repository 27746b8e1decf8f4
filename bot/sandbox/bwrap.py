"""Run commands in a task's worktree under bubblewrap, with hard limits (DESIGN.md section 4).

Public API (the agent's shell tool and the loop's setup step code against this)::

    sandbox = make_sandbox(settings)              # BwrapSandbox, or the loud dev-only NoSandbox
    result = sandbox.run("pytest -q", workdir=ws.path, limits=SandboxLimits(wall_seconds=120),
                         network=False, cancel=ctx.cancel)
    result = sandbox.run("pip install -e .", workdir=ws.path, network=True,
                         allow_hosts=repo_config.network.allow)     # allow-listed egress
    result.exit_code, result.duration, result.stdout, result.stderr, result.truncated, result.limit
    run_setup(sandbox, commands, workdir=..., network=..., allow_hosts=..., cancel=...)
    network_permitted(repo_config, settings) -> bool

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
- an unprivileged uid: when the bot runs as root, commands run as ``settings.sandbox_uid``
  (default 65534, ``nobody``) through ``setpriv`` with an empty capability bounding set and
  ``no_new_privs`` (RLIMIT_NPROC does not apply to root, so this is what makes the process
  limit real); the worktree must be owned by that uid (:mod:`bot.workspace` does it). When
  the bot is not root, bwrap adds a user namespace and commands keep the bot's own uid.

Limits (:class:`SandboxLimits`): wall clock (the whole process group is killed with SIGKILL,
which takes the PID namespace and every grandchild with it), RLIMIT_AS, RLIMIT_FSIZE,
RLIMIT_NOFILE, RLIMIT_NPROC (set by ``prlimit`` inside the sandbox), where the host allows
it a memory cgroup bounding the whole process tree to ``memory_bytes`` (:mod:`bot.sandbox.cgroup`),
the size of the private tmpfs mounts, and captured output: each stream keeps its first
and last ``output_bytes / 2`` bytes with a visible marker in between, read incrementally
so an output flood never accumulates in memory. ``cancel`` (a :class:`threading.Event`,
e.g. ``/vibe stop``) kills the command within about 50 ms.

Which limit fired (:attr:`CommandResult.limit`): ``timeout``, ``cancelled``, ``output``,
``file_size`` (death by SIGXFSZ) and ``memory`` through the cgroup (an OOM kill) are exact;
otherwise ``memory``, ``processes`` and ``open_files`` are recognised from the messages that
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
install it. ``VIBE_SANDBOX=none`` selects :class:`NoSandbox`, for development only: it keeps
the limits and the cleared environment but has no isolation, and logs a loud warning on
every command.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.sandbox.cgroup import MemoryGroup, memory_cgroup_base, sweep_stale
from bot.sandbox.egress import EgressProxy, proxy_env, relay_command

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
)


class SandboxError(Exception):
    """A command was refused before it ran (bad command, workdir, or environment)."""


class SandboxUnavailable(SandboxError):
    """The configured sandbox cannot run here (bubblewrap missing)."""


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

    def __post_init__(self) -> None:
        if not 0 < self.wall_seconds <= 24 * 3600:
            raise SandboxError("wall_seconds must be in (0, 86400]")
        for name in ("memory_bytes", "file_bytes", "open_files", "processes", "tmp_bytes"):
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
) -> CommandResult:
    """Start ``argv`` in its own process group and collect it under the limits."""
    start = time.monotonic()
    deadline = start + limits.wall_seconds
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
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
                if cancel is not None and cancel.is_set():
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
            if killed is None and (
                (cancel is not None and cancel.is_set()) or time.monotonic() >= deadline
            ):
                cancelled = cancel is not None and cancel.is_set()
                killed = LIMIT_CANCELLED if cancelled else LIMIT_TIMEOUT
                _kill_group(proc)
    duration = time.monotonic() - start
    exit_code = None if killed else (128 - status if status < 0 else status)
    return CommandResult(
        exit_code=exit_code,
        duration=duration,
        stdout=out.text(),
        stderr=err.text(),
        truncated=bool(out.dropped or err.dropped),
        limit=_which_limit(killed, exit_code, out, err),
    )


def _which_limit(killed: str | None, exit_code: int | None, *caps: _Capture) -> str | None:
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


class BwrapSandbox:
    """The real sandbox: bubblewrap plus ``prlimit`` and, as root, ``setpriv``."""

    def __init__(
        self, *, uid: int | None = None, bwrap: str | None = None, memory_cgroup: bool = True
    ) -> None:
        self._bwrap = bwrap if bwrap is not None else shutil.which("bwrap")
        self._root = os.geteuid() == 0
        self._uid = (uid if uid is not None else NOBODY_UID) if self._root else None
        if self._uid == 0:
            raise SandboxError("the sandbox uid must not be 0")
        self._memory_base = memory_cgroup_base() if memory_cgroup else None
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
            raise SandboxUnavailable(INSTALL_HINT)
        cmd = _prepare(command, workdir=workdir, limits=limits, env=env, cwd=cwd, home=SANDBOX_HOME)
        if not (network and allow_hosts):
            if network:
                log.warning("sandbox command with the host's network: no allow-list was given")
            return self._run(cmd, cmd.argv, network, cmd.environment, cancel, [])
        if shutil.which("python3", path=SAFE_ENV["PATH"]) is None:
            raise SandboxError("allow-listed network needs python3 under /usr for its relay")
        with EgressProxy(allow_hosts) as proxy:
            proxy.open_to(self._uid)
            mounts = ["--perms", "0755", "--dir", "/run", "--ro-bind"]
            mounts += [str(proxy.directory), EGRESS_MOUNT]
            environment = {**cmd.environment, **proxy_env()}
            wrapped = relay_command(EGRESS_MOUNT, cmd.argv)
            return self._run(cmd, wrapped, False, environment, cancel, mounts)

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
        full = [
            *self._bwrap_argv(cmd.workdir, limits, network, environment, cmd.cwd),
            *mounts,
            "--",
            *_rlimit_argv(limits),
            *self._drop_privileges(),
            *argv,
        ]
        group = self._memory_group(limits)
        if group is not None:
            # The shell joins the group and becomes bwrap, so nothing starts outside it.
            full = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(group.procs), *full]
        try:
            # bwrap stays in the namespace as its init; give it nothing worth reading either.
            result = _execute(
                full, env={"PATH": SAFE_ENV["PATH"]}, cwd=None, limits=limits, cancel=cancel
            )
            if group is not None and group.oom_kills() > 0:
                result = replace(result, limit=LIMIT_MEMORY)
            return result
        finally:
            if group is not None:
                group.close()

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


class NoSandbox:
    """Development only: limits and a cleared environment, but no isolation at all."""

    uid: int | None = None

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
        return _execute(
            [*_rlimit_argv(cmd.limits), *cmd.argv],
            env=cmd.environment,
            cwd=str(cmd.workdir / cmd.cwd),
            limits=cmd.limits,
            cancel=cancel,
        )


def make_sandbox(settings: Settings) -> Sandbox:
    """The sandbox the settings ask for (``VIBE_SANDBOX``: ``bwrap`` or ``none``)."""
    if settings.sandbox == "none":
        log.warning("VIBE_SANDBOX=none: commands will run WITHOUT ISOLATION (development only)")
        return NoSandbox()
    return BwrapSandbox(uid=settings.sandbox_uid, memory_cgroup=settings.sandbox_memory_cgroup)


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
