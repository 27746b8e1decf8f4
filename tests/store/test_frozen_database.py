"""A database that is frozen (it accepts and never answers), locked or down: every request
that needs it answers a JSON 503 with ``Retry-After`` within ``VIBE_DATABASE_WAIT_SECONDS``
(GitHub waits 10 s: https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks),
``/readyz`` says so in time, and the service takes deliveries again once it is back."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from bot.entrypoints.app import create_app
from tests.support.actions import serve
from tests.support.web import fixture_payload, headers_for, make_settings

WAIT = 1.0


class FreezableProxy:
    """A TCP proxy to ``upstream`` on 127.0.0.1 that can stop forwarding while keeping
    every connection open (a frozen server), or drop them all and refuse new ones (down)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.frozen = threading.Event()
        self.down = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                while self.frozen.is_set():  # held, never forwarded, never closed
                    time.sleep(0.02)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def drop_all(self) -> None:
        self.down = True
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets.clear()

    def close(self) -> None:
        self.frozen.clear()
        self.drop_all()
        self.listener.close()


def deliver(url: str) -> httpx.Response:
    body = json.dumps(fixture_payload("issues.opened")[1]).encode()
    return httpx.post(
        f"{url}/webhook", content=body, headers=headers_for("issues", body), timeout=30
    )


def timed(call: object) -> tuple[httpx.Response, float]:
    assert callable(call)
    started = time.monotonic()
    response = call()
    assert isinstance(response, httpx.Response)
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, seconds: float) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["retry-after"]) >= 1
    assert seconds < WAIT + 2.5, f"answered after {seconds:.1f} s"


@contextlib.contextmanager
def service(tmp_path: Path, database_url: str) -> Iterator[str]:
    settings = make_settings(tmp_path, database_url, database_wait_seconds=WAIT)
    app = create_app(settings, handlers={})
    try:
        with serve(app, lifespan="on") as url:
            yield url
    finally:
        app.state.engine.dispose()


def back_again(url: str) -> None:
    """Deliveries are taken (again). The first store of a new service opens the writer's
    connection and compiles its statements; on a loaded machine that can outlast the 1 s
    ``WAIT`` of these tests, so taking deliveries may need a second try, at the start as
    after an outage."""
    deadline = time.monotonic() + 20
    while deliver(url).status_code != 202:
        assert time.monotonic() < deadline, "deliveries were not taken again"
        time.sleep(0.2)
    assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200


def test_a_frozen_postgresql_answers_503_in_time_and_recovers(
    tmp_path: Path, pg_database_url: str
) -> None:
    target = make_url(pg_database_url)
    proxy = FreezableProxy((target.host or "127.0.0.1", target.port or 5432))
    through = target.set(host="127.0.0.1", port=proxy.port)
    try:
        with service(tmp_path, through.render_as_string(hide_password=False)) as url:
            back_again(url)
            proxy.frozen.set()
            for _ in range(2):  # the first waits on the frozen store, the next behind it
                response, seconds = timed(lambda: deliver(url))
                assert_unavailable(response, seconds)
            ready, seconds = timed(lambda: httpx.get(f"{url}/readyz", timeout=30))
            assert ready.status_code == 503
            assert seconds < WAIT + 2.5
            assert any("has not answered" in r for r in ready.json()["reasons"])
            proxy.frozen.clear()
            back_again(url)
            # Down rather than frozen: refused connections are a JSON 503 too, not a 500.
            proxy.drop_all()
            response, seconds = timed(lambda: deliver(url))
            assert_unavailable(response, seconds)
            proxy.down = False
            back_again(url)
    finally:
        proxy.close()


def test_a_locked_sqlite_answers_503_in_time_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "vibe.db"
    with service(tmp_path, f"sqlite:///{path}") as url:
        back_again(url)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            response, seconds = timed(lambda: deliver(url))
            assert_unavailable(response, seconds)
        finally:
            other.execute("COMMIT")
            other.close()
        back_again(url)
