"""Fixtures for the GitHub adapter and fake: a running fake, a shared fake clock, a
webhook receiver on loopback that keeps what it got."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.testing.fake_github import FakeClock, FakeGitHub
from bot.testing.loopback import LoopbackHTTPServer

WEBHOOK_SECRET = "webhook-secret-for-tests"


@functools.cache
def app_key() -> str:
    """One real RS256 App key for the session (generating one per test is slow)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    got: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            got.append(
                Received({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
            )
            self.send_response(202)
            self.end_headers()

        def log_message(self, fmt: str, *args: object) -> None:
            return

    server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/webhook", got)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake(clock: FakeClock, receiver: Receiver) -> Iterator[FakeGitHub]:
    with FakeGitHub(
        clock=clock, webhook_url=receiver.url, webhook_secret=WEBHOOK_SECRET, fault_delay=1.6
    ) as gh:
        yield gh
