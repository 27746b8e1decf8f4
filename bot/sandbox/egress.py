"""Allow-listed network access for sandboxed commands (DESIGN.md section 4 rule 5).

A sandboxed command never gets the host's network for an allow-list. Instead:

- the host runs an :class:`EgressProxy` for the command: an HTTP proxy (``CONNECT`` for
  HTTPS and git, absolute-URI requests for plain HTTP) listening on a Unix socket in a
  private directory, which connects out only to hosts on the allow-list;
- the sandbox keeps its own empty network namespace (``--unshare-net``); the directory
  with the socket is mounted inside, and :data:`RELAY` (started before the command, one
  thread, no dependencies but ``python3``) listens on ``127.0.0.1:3128`` there and
  forwards each connection to the socket. ``HTTP(S)_PROXY`` point at it, which pip, npm,
  git, curl and most HTTP clients honour. Anything that ignores the proxy finds no route.

Allow-list entries are host names (``pypi.org``), wildcard suffixes (``*.github.com``,
which also matches ``github.com``) or literal IP addresses. A name that resolves to a
loopback, private, link-local or otherwise non-global address is refused (no reaching the
host's own services or a cloud metadata endpoint through DNS), unless the entry is that
literal address.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import selectors
import shutil
import socket
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PROXY_PORT = 3128
SOCKET_NAME = "proxy.sock"
RELAY_NAME = "relay.py"
READY_FILE = "/tmp/.vibe-egress-ready"  # noqa: S108 (inside the sandbox's private /tmp)
MAX_HEADER_BYTES = 16 * 1024
CONNECT_TIMEOUT = 10.0

# Runs inside the sandbox as the sandbox user: 127.0.0.1:3128 -> the host's Unix socket.
RELAY = r"""
import os, selectors, socket, sys
sock_path, ready = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[3])))
srv.listen(64)
srv.setblocking(False)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ, None)
open(ready, "w").close()
peers = {}
def close(s):
    for x in (s, peers.pop(s, None)):
        if x is not None:
            peers.pop(x, None)
            try:
                sel.unregister(x)
            except (KeyError, ValueError):
                pass
            x.close()
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is srv:
            try:
                client, _ = srv.accept()
                up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                up.connect(sock_path)
            except OSError:
                continue
            for x in (client, up):
                x.setblocking(True)
                sel.register(x, selectors.EVENT_READ, None)
            peers[client], peers[up] = up, client
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        other = peers.get(s)
        if not data or other is None:
            close(s)
            continue
        try:
            other.sendall(data)
        except OSError:
            close(s)
"""


class EgressError(Exception):
    """The allow-list is malformed."""


def _parse_allow(entries: Sequence[str]) -> list[str]:
    out = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".")
        body = entry.removeprefix("*.")
        if not body or len(entry) > 253 or any(c in body for c in "/:@ *\\\0"):
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(entry)
                out.append(entry)
                continue
            raise EgressError(f"not a host name or IP address: {raw[:100]!r}")
        out.append(entry)
    return out


def host_allowed(host: str, allow: Sequence[str]) -> bool:
    host = host.strip().lower().rstrip(".").strip("[]")
    for entry in allow:
        if entry.startswith("*."):
            if host == entry[2:] or host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class EgressProxy:
    """An allow-listing HTTP proxy on a Unix socket, for one sandboxed command."""

    def __init__(self, allow: Sequence[str]) -> None:
        self.allow = _parse_allow(allow)
        self.directory = Path(tempfile.mkdtemp(prefix="vibe-egress-"))
        self.socket_path = self.directory / SOCKET_NAME
        (self.directory / RELAY_NAME).write_text(RELAY)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.socket_path))
        self._server.listen(64)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="vibe-egress", daemon=True)
        self.refused: list[str] = []

    def open_to(self, uid: int | None) -> None:
        """Let the sandbox uid (None: the bot's own) and nobody else use the socket."""
        self.directory.chmod(0o755)
        (self.directory / RELAY_NAME).chmod(0o644)
        if uid is not None:
            os.chown(self.socket_path, uid, uid)
        self.socket_path.chmod(0o600)

    def __enter__(self) -> EgressProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            client.settimeout(CONNECT_TIMEOUT)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk or len(head) > MAX_HEADER_BYTES:
                    return
                head += chunk
            header, _, rest = head.partition(b"\r\n\r\n")
            lines = header.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            if len(parts) != 3:
                self._deny(client, 400, "malformed request")
                return
            method, target, version = parts
            if method == "CONNECT":
                host, port = _split_host_port(target, 443)
                first = b""
            elif target.startswith("http://"):
                authority, _, path = target[len("http://") :].partition("/")
                host, port = _split_host_port(authority, 80)
                kept = [
                    ln for ln in lines[1:] if not ln.lower().startswith(("proxy-", "connection"))
                ]
                request = [f"{method} /{path} {version}", *kept, "Connection: close", "", ""]
                first = "\r\n".join(request).encode("latin-1") + rest
            else:
                self._deny(client, 400, "only CONNECT and http:// requests go through this proxy")
                return
            reason = self._refusal(host, port)
            if reason is not None:
                self.refused.append(host)
                log.info("sandbox egress refused: %s", reason)
                self._deny(client, 403, reason)
                return
            try:
                upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
            except OSError as exc:
                self._deny(client, 502, f"cannot connect to {host}:{port}: {exc.strerror or exc}")
                return
            stack.enter_context(upstream)
            if method == "CONNECT":
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
            else:
                upstream.sendall(first)
            _pipe(client, upstream)

    def _refusal(self, host: str, port: int | None) -> str | None:
        if port is None or not host:
            return "malformed host or port"
        if not host_allowed(host, self.allow):
            return f"host {host} is not in the repository's network allow-list"
        if _is_literal(host):
            return None
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return f"cannot resolve {host}"
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if not address.is_global:
                return f"{host} resolves to the non-public address {address}"
        return None

    @staticmethod
    def _deny(client: socket.socket, status: int, reason: str) -> None:
        body = f"vibe sandbox: {reason}\n".encode()
        head = f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\nConnection: close"
        with contextlib.suppress(OSError):
            client.sendall(head.encode() + b"\r\n\r\n" + body)


def _split_host_port(authority: str, default: int) -> tuple[str, int | None]:
    if authority.startswith("["):
        host, _, tail = authority[1:].partition("]")
        port_text = tail.removeprefix(":")
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return host, None
    return host, int(port_text)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    a.settimeout(None)
    b.settimeout(None)
    peers = {a: b, b: a}
    with selectors.DefaultSelector() as sel:
        sel.register(a, selectors.EVENT_READ)
        sel.register(b, selectors.EVENT_READ)
        while True:
            events = sel.select(timeout=300)
            if not events:
                return  # idle for five minutes
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
                except OSError:
                    return


def relay_command(mount: str, argv: Sequence[str]) -> list[str]:
    """Wrap ``argv`` so the relay is listening before the command starts."""
    script = (
        f"python3 {mount}/{RELAY_NAME} {mount}/{SOCKET_NAME} {READY_FILE} {PROXY_PORT} & "
        f"i=0; while [ ! -e {READY_FILE} ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done; "
        'exec "$@"'
    )
    return ["/bin/sh", "-c", script, "sh", *argv]


def proxy_env() -> dict[str, str]:
    url = f"http://127.0.0.1:{PROXY_PORT}"
    no_proxy = "localhost,127.0.0.1,::1"
    return {
        "HTTP_PROXY": url,
        "HTTPS_PROXY": url,
        "http_proxy": url,
        "https_proxy": url,
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
    }
