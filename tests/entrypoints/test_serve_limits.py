"""``vibe serve`` under unauthenticated load, as a real process: 200 slow uploads hold no
more of its memory than the body budget, and connections past ``VIBE_HTTP_MAX_CONNECTIONS``
are answered 503."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.entrypoints.test_processes import env_for, spawn, wait_http
from tests.support.web import free_port

MIB = 1024 * 1024
UPLOADS = 200
SENT_EACH = 3 * MIB  # of 4 MiB declared: 600 MiB in all, were every body buffered
BUDGET = 16 * MIB


@pytest.fixture
def served() -> Iterator[list[subprocess.Popen[str]]]:
    """The ``vibe serve`` processes a test started, killed at its end."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.communicate(timeout=10)


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def slow_upload(port: int, opened: list[socket.socket], lock: threading.Lock) -> None:
    """Declare 4 MiB, send ``SENT_EACH`` bytes, then stall (the socket stays open)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    with lock:
        opened.append(sock)
    with contextlib.suppress(OSError):  # refused uploads are answered and closed
        sock.sendall(
            b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: issues\r\n"
            b"X-GitHub-Delivery: slow\r\nX-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n"
            b"Content-Length: %d\r\n\r\n" % (4 * MIB)
        )
        piece = b"x" * 65536
        for _ in range(SENT_EACH // len(piece)):
            sock.sendall(piece)


def test_two_hundred_slow_uploads_hold_no_more_than_the_budget(
    tmp_path: Path, served: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    env = env_for(
        tmp_path,
        VIBE_WEBHOOK_BODY_TIMEOUT="30",
        VIBE_MAX_BODY_BYTES=str(4 * MIB),
        VIBE_WEBHOOK_BODY_BUDGET_BYTES=str(BUDGET),
    )
    proc = spawn(served, ["serve", "--port", str(port), "--workers", "0"], env)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    before = rss(proc.pid)
    opened: list[socket.socket] = []
    lock = threading.Lock()
    threads = [
        threading.Thread(target=slow_upload, args=(port, opened, lock)) for _ in range(UPLOADS)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        time.sleep(0.5)
        held = rss(proc.pid)
        # The service still answers while the uploads stall.
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        for sock in opened:
            sock.close()
    grown = held - before
    print(
        f"RSS before {before / MIB:.0f} MiB, with {UPLOADS} slow uploads of "
        f"{SENT_EACH / MIB:.0f} MiB each {held / MIB:.0f} MiB (+{grown / MIB:.0f} MiB)"
    )
    # The budget, plus the connections and the allocator's slack.
    assert grown < BUDGET + 48 * MIB


def test_connections_past_the_limit_are_answered_503(
    tmp_path: Path, served: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    env = env_for(tmp_path, VIBE_HTTP_MAX_CONNECTIONS="20")
    proc = spawn(served, ["serve", "--port", str(port), "--workers", "0"], env)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    with contextlib.ExitStack() as stack:
        for _ in range(20):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(0.2)
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert response.status_code == 503
    deadline = time.monotonic() + 10
    while httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
