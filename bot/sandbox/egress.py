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
which also matches ``github.com``) or literal IP addresses. The proxy resolves a host once,
checks every address of the answer and connects to one of exactly those addresses, so a
second, rebinding DNS answer is never asked for. Every address must be public
(:func:`is_public`): loopback, ``0.0.0.0``, private (RFC 1918, ``fc00::/7``), shared
(CGNAT ``100.64.0.0/10``), link-local (cloud metadata ``169.254.169.254``), multicast,
reserved and documentation ranges are refused, also when written as a literal
(``127.0.0.1.``, ``[::1]``, ``::ffff:127.0.0.1``, ``0x7f000001``, ``2130706433``, ``127.1``:
the resolver turns them all into the same address) or embedded in an IPv6 address
(IPv4-mapped, 6to4, Teredo, NAT64). Only the operator opens a non-public destination:
:attr:`EgressProxy.private` (``VIBE_SANDBOX_ALLOW_PRIVATE_HOSTS``) lists the addresses,
networks (CIDR) and host names that may be non-public; a repository's allow-list never can.
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


Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# RFC 6052's well-known NAT64 prefix: the last 32 bits are the IPv4 destination.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 destinations an IPv6 address carries (IPv4-mapped, 6to4, Teredo, NAT64)."""
    out = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        out += list(address.teredo)
    if address in _NAT64:
        out.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return out


def is_public(address: Address) -> bool:
    """Whether ``address`` is a public unicast destination, and so is every IPv4 address it
    embeds. ``is_global`` alone is not enough: Python counts multicast and some reserved
    IPv6 ranges (``::7f00:1``, IPv4-compatible) as global
    (https://docs.python.org/3/library/ipaddress.html, IANA special-purpose registries)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(is_public(a) for a in embedded)
    return address.is_global and not (address.is_multicast or address.is_reserved)


def parse_private(entries: Sequence[str]) -> tuple[list[Network], list[str]]:
    """The operator's non-public destinations: networks (an address is a /32 or /128) and
    exact host names. Raises :class:`EgressError` naming a malformed entry."""
    networks: list[Network] = []
    names: list[str] = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if not entry or len(entry) > 253 or any(c in entry for c in "/:@ *[]\\\0"):
            raise EgressError(f"not a host name, IP address or network: {raw[:100]!r}")
        names.append(entry)
    return networks, names


def _parse_allow(entries: Sequence[str]) -> list[str]:
    out = []
    for raw in entries:
        entry = raw.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
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


def resolve(host: str, port: int) -> list[tuple[int, Address]]:
    """Every (address family, address) ``host`` resolves to, literals included (the system
    resolver reads ``127.1`` and ``0x7f000001`` as 127.0.0.1). The proxy asks once per
    connection and connects only to what this returned."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(int(info[0]), ipaddress.ip_address(str(info[4][0]))) for info in infos]


class EgressProxy:
    """An allow-listing HTTP proxy on a Unix socket, for one sandboxed command.

    ``private`` is the operator's list of non-public destinations that may be reached
    (addresses, CIDR networks, host names); everything else must be public."""

    def __init__(self, allow: Sequence[str], private: Sequence[str] = ()) -> None:
        self.allow = _parse_allow(allow)
        self.private_networks, self.private_names = parse_private(private)
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
            checked = self._check(host, port)
            if isinstance(checked, str):
                self.refused.append(host)
                log.info("sandbox egress refused: %s", checked)
                self._deny(client, 403, checked)
                return
            assert port is not None
            try:
                upstream = _connect(checked, port)
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

    def _check(self, host: str, port: int | None) -> str | list[tuple[int, Address]]:
        """The refusal, or the checked addresses to connect to (resolved once: connecting
        by name would resolve again, and a rebinding answer would then be unchecked)."""
        if port is None or not host:
            return "malformed host or port"
        if not host_allowed(host, self.allow):
            return f"host {host} is not in the repository's network allow-list"
        name = host.strip().lower().rstrip(".").strip("[]")
        try:
            addresses = resolve(name, port)
        except (OSError, UnicodeError, ValueError):
            return f"cannot resolve {host}"
        if not addresses:
            return f"cannot resolve {host}"
        for _, address in addresses:
            if not (is_public(address) or self._operator_allows(name, address)):
                return (
                    f"{host} resolves to the non-public address {address}, which only the "
                    "operator can open (VIBE_SANDBOX_ALLOW_PRIVATE_HOSTS)"
                )
        return addresses

    def _operator_allows(self, name: str, address: Address) -> bool:
        if name in self.private_names:
            return True
        plain: Address = address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            plain = address.ipv4_mapped
        return any(plain.version == n.version and plain in n for n in self.private_networks)

    @staticmethod
    def _deny(client: socket.socket, status: int, reason: str) -> None:
        body = f"vibe sandbox: {reason}\n".encode()
        head = f"HTTP/1.1 {status} Refused\r\nContent-Length: {len(body)}\r\nConnection: close"
        with contextlib.suppress(OSError):
            client.sendall(head.encode() + b"\r\n\r\n" + body)


def _connect(addresses: Sequence[tuple[int, Address]], port: int) -> socket.socket:
    """A connection to the first of the checked ``addresses`` that answers (by address:
    nothing is resolved again)."""
    error: OSError = OSError("no address")
    for family, address in addresses:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT)
        try:
            sock.connect((str(address), port))
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


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
