"""An HTTP server on loopback for tests that never hangs in ``accept()``.

``serve_forever`` waits for readiness and then calls ``accept()``. Linux may drop the
pending connection in between (accept(2): "the connection might have been removed by an
asynchronous network error ... If this happens, then the call will block"), and then
``accept()`` blocks until the next client, which after the test never comes: its
``shutdown()`` waits for good. A non-blocking listening socket turns that case into an
``OSError`` that ``socketserver`` ignores, and the loop goes on.
"""

from __future__ import annotations

from http.server import ThreadingHTTPServer


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_activate(self) -> None:
        super().server_activate()
        self.socket.setblocking(False)
