"""A sandboxed process that keeps running and talks through its stdin and stdout.

A command (:meth:`bot.sandbox.bwrap.BwrapSandbox.run`) runs to its end and hands back its
output; a Model Context Protocol server started over stdio (:mod:`bot.agent.mcp`) stays up for
the agent's run and exchanges messages on its stdin and stdout. :meth:`BwrapSandbox.spawn`
starts one with the same isolation and limits as a command and returns a
:class:`SandboxProcess`: the host's ends of the two pipes, and a supervisor thread that

- reads stderr into a bounded tail (a server that floods stderr never fills the pipe, and
  never fills the host's memory);
- kills the whole process group (and with it the sandbox's PID namespace) when the wall clock
  runs out, when ``cancel`` is set, or when the watchdog measured too much disk or memory.

:meth:`SandboxProcess.close` kills the group, reaps it and releases what the sandbox set up
for it (egress proxy, memory cgroup, watchdog, descriptors): nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from bot.sandbox.watchdog import Watchdog

STDERR_TAIL_BYTES = 16 * 1024
_POLL_SECONDS = 0.05
_REAP_SECONDS = 5.0


class SandboxProcess:
    """A running sandboxed process. ``stdin`` and ``stdout`` are the host's ends of its
    pipes (raw descriptors, blocking; the caller may make them non-blocking). ``limit``
    says why the supervisor killed it (``timeout``, ``cancelled``, ``memory``, ``disk``),
    None while it runs or when it ended by itself."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        *,
        stdin: int,
        stdout: int,
        wall_seconds: float,
        cancel: threading.Event | None,
        watchdog: Watchdog | None,
        release: Callable[[], None],
    ) -> None:
        assert proc.stderr is not None
        self.stdin = stdin
        self.stdout = stdout
        self.limit: str | None = None
        self._proc = proc
        self._deadline = time.monotonic() + wall_seconds
        self._cancel = cancel
        self._watchdog = watchdog
        self._release = release
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._supervise, name="sandbox-process", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def running(self) -> bool:
        return self._proc.poll() is None

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the process to end by itself; True when it has. Within
        the same time, its last words on stderr are read too: the supervising thread ends
        once the process has ended and stderr reached its end, and what it had not yet read
        when the process died would be missing from :meth:`stderr`."""
        until = time.monotonic() + seconds
        try:
            self._proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return False
        self._thread.join(max(0.0, until - time.monotonic()))
        return True

    def stderr(self) -> str:
        """The last :data:`STDERR_TAIL_BYTES` the process wrote to stderr."""
        with self._lock:
            return self._tail.decode("utf-8", "replace")

    def close(self) -> None:
        """Kill the process group, reap it and release the sandbox's resources; idempotent."""
        if self._closed:
            return
        self._closed = True
        _kill_group(self._proc)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=_REAP_SECONDS)
        self._thread.join(timeout=_REAP_SECONDS)
        for fd in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._release()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _verdict(self) -> str | None:
        if self._watchdog is not None and self._watchdog.verdict is not None:
            return self._watchdog.verdict.limit
        if self._cancel is not None and self._cancel.is_set():
            return "cancelled"
        if time.monotonic() >= self._deadline:
            return "timeout"
        return None

    def _supervise(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        fd = stream.fileno()
        os.set_blocking(fd, False)
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            open_ = True
            while open_ or self._proc.poll() is None:
                if self.limit is None and (verdict := self._verdict()) is not None:
                    self.limit = verdict
                    _kill_group(self._proc)
                if not open_:
                    time.sleep(_POLL_SECONDS)
                    continue
                for _ in sel.select(timeout=_POLL_SECONDS):
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        open_ = False
                        sel.unregister(fd)
                        break
                    with self._lock:
                        self._tail += chunk
                        del self._tail[:-STDERR_TAIL_BYTES]
        stream.close()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
