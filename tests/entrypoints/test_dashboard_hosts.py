"""The dashboard's loopback rule against hostile requests on a real uvicorn server.

Without ``VIBE_DASHBOARD_TOKEN``, only a client whose socket peer is loopback and whose one
raw ``Host`` header names a loopback host is served (DNS rebinding sends the attacker's own
name). The requests here are written byte by byte on a socket, so the server sees exactly
what an attacker would send, including what an HTTP client library refuses to send.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from bot.entrypoints.app import create_app
from bot.entrypoints.dashboard import parse_host
from tests.entrypoints.test_dashboard import seed
from tests.support.actions import serve
from tests.support.web import make_settings

SECRET_REPO = b"octo/widgets"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One real server (no token, SQLite, a seeded task) for every request of this module."""
    tmp = Path(tmp_path_factory.mktemp("dash"))
    app = create_app(make_settings(tmp, f"sqlite:///{tmp / 'd.db'}"), handlers={})
    with serve(app, lifespan="on") as url:
        seed(app.state.engine)
        yield int(url.rsplit(":", 1)[1])
    app.state.engine.dispose()


def send(port: int, head: bytes, address: str = "127.0.0.1") -> tuple[int, bytes]:
    """Send ``head`` (request line and headers, without the blank line) from ``address``
    and return the status code and the whole response."""
    with socket.create_connection((address, port), timeout=5) as sock:
        sock.sendall(head + b"\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    return int(response.split(b" ", 2)[1]), response


def get(port: int, path: str, *headers: bytes, target: bytes | None = None) -> tuple[int, bytes]:
    line = b"GET " + (target or path.encode()) + b" HTTP/1.1"
    return send(port, b"\r\n".join((line, *headers)))


ROUTES = ("/dashboard", "/api/tasks")


def test_loopback_names_are_served(port: int) -> None:
    for host in (
        f"127.0.0.1:{port}",
        "127.0.0.1",
        f"localhost:{port}",
        "LOCALHOST",
        f"LocalHost:{port}",
        f"[::1]:{port}",
        "[0:0:0:0:0:0:0:1]",
        "127.0.0.2",
        # Whitespace around a field value is not part of it (RFC 9112 section 5.1): the
        # server's parser strips it before the application sees the value.
        "localhost\t",
        "\tlocalhost",
    ):
        for route in ROUTES:
            status, body = get(port, route, b"Host: " + host.encode())
            assert status == 200, (host, route, body[:300])
            assert SECRET_REPO in body


HOSTILE = [
    b"Host: ",
    b"Host:",
    b"Host: localhost:80@evil.com",
    b"Host: evil.com@localhost",
    b"Host: evil.com#@localhost",
    b"Host: localhost#@evil.com",
    b"Host: localhost/evil",
    b"Host: localhost?x",
    b"Host: localhost\\evil.com",
    b"Host: local host",
    b"Host: localhost\t.evil.com",
    b"Host: [::1",
    b"Host: ::1",
    b"Host: [::1]x",
    b"Host: [::1]:",
    b"Host: [fe80::1%25lo]",
    b"Host: [v1.fe80::1]",
    b"Host: 127.0.0.1:99999",
    b"Host: 127.0.0.1:0",
    b"Host: 127.0.0.1:-1",
    b"Host: 127.0.0.1:80:80",
    b"Host: 127.0.0.1:8o",
    b"Host: 127.0.0.1:",
    b"Host: localhost.",
    b"Host: localhost.evil.com",
    b"Host: evil.localhost",
    b"Host: 127.1",
    b"Host: 0x7f.1",
    b"Host: 0x7f000001",
    b"Host: 2130706433",
    b"Host: 0177.0.0.1",
    b"Host: 127.000.000.001",
    b"Host: 127.0.0.1.",
    b"Host: 127.0.0.256",
    b"Host: [::ffff:127.0.0.1]",
    b"Host: [::ffff:7f00:1]",
    b"Host: 0.0.0.0",
    b"Host: [::]",
    b"Host: l%6Fcalhost",
    b"Host: " + b"a." * 200 + b"localhost",
    b"Host: " + b"x" * 64 + b".localhost",
    b"Host: localhost\xc2\xa0",
    b"Host: local\x00host",
    b"Host: localhost\x7f",
    b"Host: localhost\x0b",
    b"Host: localhost\r\n .evil.com",
    b"Host: evil.com",
    b"Host: evil.com:8000",
]


@pytest.mark.parametrize("header", HOSTILE, ids=lambda h: repr(h)[:40])
def test_a_malformed_or_foreign_host_is_refused(port: int, header: bytes) -> None:
    for route in ROUTES:
        status, body = get(port, route, header)
        assert status in (400, 403, 404), (route, body[:300])
        assert SECRET_REPO not in body


def test_a_missing_or_repeated_host_is_refused(port: int) -> None:
    http10 = send(port, b"GET /api/tasks HTTP/1.0")
    missing = get(port, "/api/tasks")
    two = get(port, "/api/tasks", b"Host: 127.0.0.1", b"Host: evil.com")
    two_loopback = get(port, "/api/tasks", b"Host: 127.0.0.1", b"Host: localhost")
    for status, body in (http10, missing, two, two_loopback):
        assert status in (400, 403), body[:300]
        assert SECRET_REPO not in body


def test_an_absolute_form_target_does_not_stand_in_for_the_host(port: int) -> None:
    """RFC 9112 section 3.2.2: the target's authority, not Host, is the host; either way a
    foreign name is not served."""
    for target, host in (
        (b"http://localhost/api/tasks", b"Host: evil.com"),
        (b"http://evil.com/api/tasks", b"Host: localhost"),
        (b"http://127.0.0.1/dashboard", b"Host: evil.com"),
    ):
        status, body = get(port, "", host, target=target)
        assert status in (400, 403, 404), (target, body[:300])
        assert SECRET_REPO not in body


def test_forwarding_headers_never_make_a_request_local(port: int) -> None:
    """A same-host reverse proxy connects from loopback and often sets Host to the upstream
    address (Apache's ``ProxyPass``; nginx's default ``proxy_set_header Host $proxy_host``)
    while adding X-Forwarded-* (https://httpd.apache.org/docs/2.4/mod/mod_proxy.html#x-headers)
    or Forwarded (RFC 7239): such a request comes from someone else's machine. Forwarded
    names are never taken as the host or the client either."""
    loopback = f"Host: 127.0.0.1:{port}".encode()
    for extra in (
        b"X-Forwarded-For: 203.0.113.9",
        b"X-Forwarded-For: 127.0.0.1",
        b"X-Forwarded-Host: evil.com",
        b"X-Forwarded-Proto: https",
        b"X-Forwarded-Server: proxy.example",
        b"X-Real-IP: 203.0.113.9",
        b"Forwarded: for=203.0.113.9;host=evil.com",
        b"Forwarded: for=127.0.0.1;host=localhost",
        b"Via: 1.1 proxy.example",
    ):
        status, body = get(port, "/api/tasks", loopback, extra)
        assert status == 403, (extra, body[:300])
        assert SECRET_REPO not in body
    for extra in (
        b"X-Forwarded-Host: localhost",
        b"Forwarded: host=localhost;for=127.0.0.1",
        b"X-Forwarded-For: 127.0.0.1",
    ):
        status, body = get(port, "/api/tasks", b"Host: evil.com", extra)
        assert status == 403, (extra, body[:300])
        assert SECRET_REPO not in body


def test_the_peer_is_loopback_over_ipv6_and_dual_stack(tmp_path: Path) -> None:
    """Bound to ``::``, Linux reports an IPv4 client as ``::ffff:127.0.0.1`` (RFC 4291
    section 2.5.5.2) and an IPv6 one as ``::1``: both are this machine."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'd.db'}"), handlers={})
    # asyncio sets IPV6_V6ONLY on the sockets it binds itself: bind a dual-stack one here.
    sock = socket.socket(socket.AF_INET6)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        for address in ("127.0.0.1", "::1"):
            status, body = send(port, b"GET /api/tasks HTTP/1.1\r\nHost: localhost", address)
            assert status == 200, (address, body[:300])
            status, _ = send(port, b"GET /api/tasks HTTP/1.1\r\nHost: evil.com", address)
            assert status == 403, address
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        app.state.engine.dispose()


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost:8000", ("localhost", 8000)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
        ("[::1]:1", ("::1", 1)),
        ("[0:0::1]", ("::1", None)),
        ("bot.example.com", ("bot.example.com", None)),
        ("a-b.c", ("a-b.c", None)),
    ],
)
def test_parse_host_reads_rfc_3986_hosts(raw: str, parsed: tuple[str, int | None]) -> None:
    host = parse_host(raw)
    assert host is not None
    assert (host.name, host.port) == parsed


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " localhost",
        "localhost ",
        "-a.b",
        "a-.b",
        "a..b",
        ".a",
        "a_b",
        "[::1]:65536",
        "[127.0.0.1]",
        "localhost:08000",
        "localhost\t",
        "local\x00host",
        "x" * 64 + ".b",
        "é.example",
    ],
)
def test_parse_host_refuses_what_is_not_a_host(raw: str) -> None:
    assert parse_host(raw) is None
