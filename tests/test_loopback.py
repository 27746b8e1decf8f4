"""The tests' loopback HTTP server returns to its loop when a readiness has no connection
left to take (the case that once held a fixture's ``shutdown()`` for good)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from bot.testing.loopback import LoopbackHTTPServer


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    def log_message(self, fmt: str, *args: object) -> None:
        return


def _returns(server: ThreadingHTTPServer) -> bool:
    """Whether taking a request with none pending (readiness seen, connection gone) comes
    back within two seconds."""
    thread = threading.Thread(target=server._handle_request_noblock, daemon=True)
    thread.start()
    thread.join(2.0)
    return not thread.is_alive()


def test_a_readiness_without_a_connection_does_not_block_accept() -> None:
    blocking = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    loopback = LoopbackHTTPServer(("127.0.0.1", 0), _Hello)
    try:
        # The stdlib server is the baseline: it would wait in accept() for the next client.
        assert not _returns(blocking)
        assert _returns(loopback)
    finally:
        with httpx.Client() as client:
            # Releases the baseline's accept() so its thread ends with the test.
            client.get(f"http://127.0.0.1:{blocking.server_address[1]}/", timeout=5)
        blocking.server_close()
        loopback.server_close()


def test_the_loopback_server_still_serves() -> None:
    server = LoopbackHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with httpx.Client() as client:
            for _ in range(3):
                response = client.get(f"http://127.0.0.1:{server.server_address[1]}/", timeout=5)
                assert (response.status_code, response.text) == (200, "hi")
    finally:
        server.shutdown()
        server.server_close()
