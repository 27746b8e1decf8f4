"""The egress proxy connects only to addresses it checked, and only to public ones unless
the operator opened a private destination (issue 14: DNS rebinding, loopback allow-list
entries)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bot.sandbox import egress
from bot.sandbox.egress import EgressError, EgressProxy, is_public, parse_private
from bot.settings import Settings

REAL_GETADDRINFO = socket.getaddrinfo
# A public address that nothing answers on here; connecting to it fails within the
# shortened timeout below, which is what the fixed proxy does.
PUBLIC = "203.0.114.9"


class Listener:
    """A real loopback listener that records whether anything reached it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reached = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        self.reached.set()
        conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def ask(proxy: EgressProxy, request: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(proxy.socket_path))
        client.sendall(request.encode())
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        return answer.decode("latin-1").split("\r\n")[0]


def rebinding(answers: list[list[str]]) -> Any:
    """A resolver for ``rebind.test`` that gives each answer in turn (a rebinding DNS
    server); every other name resolves normally."""
    calls = iter(answers)

    def fake(host: str, port: object, *args: object, **kwargs: object) -> Any:
        if host != "rebind.test":
            return REAL_GETADDRINFO(host, port, *args, **kwargs)  # type: ignore[arg-type]
        addresses = next(calls, answers[-1])
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(str(port)))) for a in addresses]

    return fake


@pytest.mark.parametrize("method", ["CONNECT", "GET"])
def test_a_rebinding_answer_never_reaches_loopback(
    monkeypatch: pytest.MonkeyPatch, listener: Listener, method: str
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", rebinding([[PUBLIC], ["127.0.0.1"]]))
    monkeypatch.setattr(egress, "CONNECT_TIMEOUT", 0.5)
    target = f"rebind.test:{listener.port}"
    line = f"{method} {target if method == 'CONNECT' else 'http://' + target + '/'} HTTP/1.1"
    with EgressProxy(["rebind.test"]) as proxy:
        status = ask(proxy, f"{line}\r\nHost: rebind.test\r\n\r\n")
    assert not listener.reached.wait(0.3), "the proxy connected to 127.0.0.1"
    assert status.startswith("HTTP/1.1 502"), status  # it tried the checked address only


def test_an_answer_mixing_public_and_loopback_is_refused(
    monkeypatch: pytest.MonkeyPatch, listener: Listener
) -> None:
    monkeypatch.setattr(socket, "getaddrinfo", rebinding([[PUBLIC, "127.0.0.1"]]))
    with EgressProxy(["rebind.test"]) as proxy:
        status = ask(proxy, f"CONNECT rebind.test:{listener.port} HTTP/1.1\r\n\r\n")
    assert status.startswith("HTTP/1.1 403"), status
    assert not listener.reached.wait(0.3)


LOOPBACK_FORMS = [
    "127.0.0.1",
    "127.0.0.1.",
    "localhost",
    "0.0.0.0",  # noqa: S104 (a destination here, not a bind address)
    "[::1]",
    "::1",
    "::ffff:127.0.0.1",
    "0x7f000001",
    "2130706433",
    "127.1",
    "0177.0.0.1",
]


@pytest.mark.parametrize("entry", LOOPBACK_FORMS)
def test_a_loopback_allow_list_entry_is_refused(listener: Listener, entry: str) -> None:
    host = entry if not (":" in entry and not entry.startswith("[")) else f"[{entry}]"
    with EgressProxy([entry]) as proxy:
        status = ask(proxy, f"CONNECT {host}:{listener.port} HTTP/1.1\r\n\r\n")
    assert status.startswith("HTTP/1.1 403"), (entry, status)
    assert not listener.reached.wait(0.1), entry


def test_the_operator_can_open_a_private_destination(listener: Listener) -> None:
    for private in (["127.0.0.1"], ["127.0.0.0/8"], ["localhost"]):
        listener.reached.clear()
        with EgressProxy(["localhost", "127.0.0.1"], private) as proxy:
            host = "localhost" if private == ["localhost"] else "127.0.0.1"
            status = ask(proxy, f"CONNECT {host}:{listener.port} HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 200 Connection established", (private, status)
        assert listener.reached.wait(2)
        listener.thread = threading.Thread(target=listener._accept, daemon=True)
        listener.thread.start()
    # The operator's list opens only what it names.
    with EgressProxy(["127.0.0.1"], ["10.0.0.0/8", "mirror.internal"]) as proxy:
        status = ask(proxy, f"CONNECT 127.0.0.1:{listener.port} HTTP/1.1\r\n\r\n")
    assert status.startswith("HTTP/1.1 403")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "0.0.0.0",  # noqa: S104 (a destination here, not a bind address)
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "192.0.2.1",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::7f00:1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "2002:7f00:1::",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "64:ff9b::a00:1",
        "2001:db8::1",
    ],
)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address)), address


def test_public_addresses() -> None:
    for address in ("8.8.8.8", "151.101.0.223", "2606:4700::1111", "64:ff9b::808:808"):
        assert is_public(ipaddress.ip_address(address)), address


def test_the_operator_setting_is_checked() -> None:
    settings = Settings(sandbox_allow_private_hosts="10.0.0.0/8, mirror.internal ,[::1]")
    assert settings.sandbox_allow_private_hosts == ["10.0.0.0/8", "mirror.internal", "[::1]"]
    networks, names = parse_private(settings.sandbox_allow_private_hosts)
    assert [str(n) for n in networks] == ["10.0.0.0/8", "::1/128"]
    assert names == ["mirror.internal"]
    with pytest.raises(ValueError, match="is not an IP address, CIDR network or host name"):
        Settings(sandbox_allow_private_hosts="a b")
    with pytest.raises(EgressError):
        parse_private(["*.internal"])
