"""Allow-listed egress: the sandbox keeps no network of its own and reaches only listed
hosts through the host's proxy."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox.bwrap import BwrapSandbox
from bot.sandbox.egress import EgressError, EgressProxy, host_allowed
from bot.testing.loopback import LoopbackHTTPServer

pytestmark = pytest.mark.bwrap

PROBE = """
import json, os, socket, sys, urllib.error, urllib.request
port = int(sys.argv[1])
out = {"proxy": os.environ.get("HTTPS_PROXY")}
os.environ.pop("no_proxy"), os.environ.pop("NO_PROXY")  # the test server is on 127.0.0.1
opener = urllib.request.build_opener(urllib.request.ProxyHandler())
try:
    out["via_proxy"] = opener.open(f"http://127.0.0.1:{port}/hello", timeout=5).read().decode()
except urllib.error.HTTPError as exc:
    out["via_proxy"] = f"{exc.code} {exc.read().decode().strip()}"
tunnel = socket.create_connection(("127.0.0.1", 3128), timeout=5)
tunnel.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n".encode())
answer = tunnel.recv(4096).decode()
out["connect"] = answer.split("\\r\\n")[0]
if " 200 " in answer:
    tunnel.sendall(b"GET /tunnel HTTP/1.0\\r\\n\\r\\n")
    data = b""
    while chunk := tunnel.recv(4096):
        data += chunk
    out["tunnel"] = data.decode().split("\\r\\n\\r\\n", 1)[-1]
try:
    socket.create_connection(("127.0.0.1", port), timeout=2)
    out["direct"] = "connected"
except OSError as exc:
    out["direct"] = type(exc).__name__
print(json.dumps(out))
"""


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[int]:
    httpd = LoopbackHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def probe(sandbox: BwrapSandbox, workdir: Path, port: int, allow: list[str]) -> dict[str, str]:
    result = sandbox.run(
        ["python3", "-c", PROBE, str(port)], workdir=workdir, network=True, allow_hosts=allow
    )
    assert result.ok, result
    report: dict[str, str] = json.loads(result.stdout)
    return report


def test_listed_host_is_reachable_only_through_the_proxy(
    sandbox: BwrapSandbox, workdir: Path, server: int
) -> None:
    # The test server is on loopback, which only the operator can open (issue 14).
    opened = BwrapSandbox(allow_private_hosts=["127.0.0.1"])
    report = probe(opened, workdir, server, ["127.0.0.1"])
    assert report["proxy"] == "http://127.0.0.1:3128"
    assert report["via_proxy"] == "hello from /hello"
    assert report["connect"] == "HTTP/1.1 200 Connection established"
    assert report["tunnel"] == "hello from /tunnel"
    assert report["direct"] != "connected"  # still no network of its own


def test_unlisted_host_is_refused(sandbox: BwrapSandbox, workdir: Path, server: int) -> None:
    report = probe(sandbox, workdir, server, ["pypi.org", "*.github.com"])
    assert report["via_proxy"].startswith("403 vibe sandbox: host 127.0.0.1 is not in")
    assert report["connect"].startswith("HTTP/1.1 403")
    assert "tunnel" not in report
    assert report["direct"] != "connected"


def test_names_resolving_to_private_addresses_are_refused(
    sandbox: BwrapSandbox, workdir: Path
) -> None:
    script = (
        "import os, urllib.request, urllib.error\n"
        "os.environ.pop('no_proxy'), os.environ.pop('NO_PROXY')\n"
        "h = urllib.request.ProxyHandler()\n"
        "try:\n"
        "    urllib.request.build_opener(h).open('http://localhost:9/', timeout=5)\n"
        "except urllib.error.HTTPError as exc:\n"
        "    print(exc.code, exc.read().decode().strip())\n"
    )
    result = sandbox.run(
        ["python3", "-c", script], workdir=workdir, network=True, allow_hosts=["localhost"]
    )
    assert result.ok, result
    assert result.stdout.startswith("403 vibe sandbox: localhost resolves to the non-public")


def test_allow_list_matching() -> None:
    allow = ["pypi.org", "*.github.com", "10.1.2.3"]
    assert host_allowed("pypi.org", allow)
    assert host_allowed("PyPI.org.", allow)
    assert host_allowed("github.com", allow)
    assert host_allowed("codeload.github.com", allow)
    assert host_allowed("10.1.2.3", allow)
    assert not host_allowed("evilgithub.com", allow)
    assert not host_allowed("pypi.org.evil.com", allow)
    assert not host_allowed("files.pythonhosted.org", allow)
    for bad in (["http://x.org"], ["a b"], [""], ["x.org/path"], ["*"], ["user@x.org"]):
        with pytest.raises(EgressError):
            EgressProxy(bad)


def test_proxy_directory_is_removed(tmp_path: Path) -> None:
    with EgressProxy(["pypi.org"]) as proxy:
        assert proxy.socket_path.exists()
        directory = proxy.directory
    assert not directory.exists()
