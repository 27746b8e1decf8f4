"""Unauthenticated bodies are bounded: a body that stalls times out (408), bodies past the
process-wide byte budget or past the number read at once answer 503 with ``Retry-After`` at
once, and the budget comes back when those clients go away.

GitHub caps payloads at 25 MB
(https://docs.github.com/en/webhooks/webhook-events-and-payloads#payload-cap) and waits 10 s
for an answer (https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks),
so a sender slower than that is not GitHub.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.entrypoints.app import create_app
from tests.support.actions import serve
from tests.support.web import fixture_payload, headers_for, make_settings

KIB = 1024


@contextlib.contextmanager
def service(tmp_path: Path, **extra: Any) -> Iterator[str]:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'vibe.db'}", **extra)
    app = create_app(settings, handlers={})
    try:
        with serve(app, lifespan="on") as url:
            yield url
    finally:
        app.state.engine.dispose()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def open_upload(url: str, length: int | None, first: bytes) -> socket.socket:
    """A delivery whose sender sends its headers and ``first`` bytes of body, then stalls.
    ``length=None``: chunked, ``first`` is sent as one chunk."""
    sock = socket.create_connection(("127.0.0.1", _port(url)), timeout=10)
    framing = (
        b"Transfer-Encoding: chunked\r\n" if length is None else b"Content-Length: %d\r\n" % length
    )
    sock.sendall(
        b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: issues\r\n"
        b"X-GitHub-Delivery: slow\r\nX-Hub-Signature-256: sha256="
        + b"0" * 64
        + b"\r\n"
        + framing
        + b"\r\n"
    )
    if first:
        sock.sendall(first if length is not None else b"%x\r\n%s\r\n" % (len(first), first))
    return sock


def answer(sock: socket.socket, wait: float) -> tuple[int, dict[str, str]]:
    """The status and headers the server sent on ``sock`` within ``wait`` seconds."""
    sock.settimeout(wait)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(4096)
        if not part:
            break
        data += part
    head, _, _ = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines if ": " in line)
    return int(status_line.split(" ")[1]), {k.lower(): v for k, v in headers.items()}


def signed_delivery(url: str) -> int:
    body = json.dumps(fixture_payload("issues.opened")[1]).encode()
    response = httpx.post(f"{url}/webhook", content=body, headers=headers_for("issues", body))
    return response.status_code


def test_a_body_that_stalls_answers_408_at_the_deadline(tmp_path: Path) -> None:
    with service(tmp_path, webhook_body_timeout=1.0) as url:
        for length in (4 * KIB, None):
            with open_upload(url, length, b"{" * 100) as sock:
                started = time.monotonic()
                status, headers = answer(sock, wait=10)
                elapsed = time.monotonic() - started
            assert status == 408
            assert headers["connection"] == "close"
            assert elapsed < 5, f"answered after {elapsed:.1f} s"
        with open_upload(url, 4 * KIB, b"") as sock:  # not one byte of body
            assert answer(sock, wait=10)[0] == 408
        assert signed_delivery(url) == 202


@pytest.mark.parametrize("chunked", [False, True])
def test_bodies_past_the_byte_budget_answer_503_at_once(tmp_path: Path, chunked: bool) -> None:
    cap, budget = 64 * KIB, 128 * KIB
    with (
        service(
            tmp_path, max_body_bytes=cap, webhook_body_budget_bytes=budget, webhook_body_timeout=30
        ) as url,
        contextlib.ExitStack() as held,
    ):
        # Two stalled senders hold 120 KiB of the 128 KiB budget, sent and not finished.
        length = None if chunked else cap
        first = b"x" * 60 * KIB
        for _ in range(2):
            held.enter_context(open_upload(url, length, first))
        time.sleep(0.3)
        with open_upload(url, length, b"x" * 30 * KIB) as third:
            started = time.monotonic()
            status, headers = answer(third, wait=5)
            assert time.monotonic() - started < 2
        assert status == 503
        assert int(headers["retry-after"]) >= 1
        held.close()
        # The budget comes back with the clients gone: a real delivery goes through.
        deadline = time.monotonic() + 5
        while signed_delivery(url) != 202:
            assert time.monotonic() < deadline, "the budget was not given back"
            time.sleep(0.1)


def test_bodies_past_the_number_read_at_once_answer_503(tmp_path: Path) -> None:
    with (
        service(tmp_path, webhook_max_bodies=2, webhook_body_timeout=30) as url,
        contextlib.ExitStack() as held,
    ):
        for _ in range(2):
            held.enter_context(open_upload(url, 4 * KIB, b"{"))
        time.sleep(0.3)
        with open_upload(url, 4 * KIB, b"{") as third:
            status, headers = answer(third, wait=5)
        assert status == 503
        assert "retry-after" in headers
        held.close()
        deadline = time.monotonic() + 5
        while signed_delivery(url) != 202:
            assert time.monotonic() < deadline, "the slots were not given back"
            time.sleep(0.1)


def test_the_runner_api_bodies_share_the_bounds(tmp_path: Path) -> None:
    """The runner API reads its body before it checks the credential: the same deadline and
    budget hold there."""
    cap = 64 * KIB
    with (
        service(
            tmp_path, max_body_bytes=cap, webhook_body_budget_bytes=cap, webhook_body_timeout=4
        ) as url,
        socket.create_connection(("127.0.0.1", _port(url)), timeout=10) as sock,
    ):
        head = (
            b"POST /api/runner/tasks/1/result HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer forged\r\nContent-Length: %d\r\n\r\n"
        )
        sock.sendall(head % cap + b"x" * 60 * KIB)  # stalls holding most of the budget
        # Until the service has read those 60 KiB, a second body still fits (and is handed
        # on, 422): on a loaded machine that can take longer than any fixed sleep. Once
        # they are held, and long before the held body's 4 s deadline, it answers 503.
        deadline = time.monotonic() + 3
        while True:
            response = httpx.post(
                f"{url}/api/runner/tasks/1/claim",
                content=b"x" * 30 * KIB,
                headers={"Authorization": "Bearer forged"},
            )
            if response.status_code == 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert response.status_code == 503
        assert "retry-after" in response.headers
        assert answer(sock, wait=10)[0] == 408  # the held one reaches its deadline
        # A complete small body is handed on to the route, which refuses the credential.
        refused = httpx.post(
            f"{url}/api/runner/tasks/1/claim",
            json={"run_id": 1},
            headers={"Authorization": "Bearer forged"},
        )
        assert refused.status_code in (403, 422), refused.text
