"""A repository's ``network.allow`` reaches every sandboxed command of the loop as an
allow-list: setup, checks and the agent's shell all get the egress proxy and no network of
their own (DESIGN.md section 4 rule 5)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from bot.entrypoints.local import run_local
from bot.settings import load_settings
from bot.testing.loopback import LoopbackHTTPServer
from bot.testing.model_server import ScriptedModelServer
from tests.loop.sample import finish, git, make_repo

pytestmark = pytest.mark.usefixtures("bwrap_available")

PROBE = """\
import os, socket, sys, urllib.request
port, name = int(sys.argv[1]), sys.argv[2]
os.environ.pop("no_proxy"), os.environ.pop("NO_PROXY")  # the test host is 127.0.0.1
opener = urllib.request.build_opener(urllib.request.ProxyHandler())
print(opener.open(f"http://127.0.0.1:{port}/{name}", timeout=10).read().decode())
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
except OSError:
    print("no direct network")
else:
    sys.exit("a direct connection reached the host")
"""


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        return


@pytest.fixture
def host() -> Iterator[tuple[int, list[str]]]:
    seen: ClassVar[list[str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    httpd = LoopbackHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


def test_network_allow_list_reaches_setup_checks_and_agent(
    tmp_path: Path, host: tuple[int, list[str]]
) -> None:
    port, seen = host
    config = (
        "network:\n  allow: ['127.0.0.1']\n"
        f"commands:\n  setup: ['python3 probe.py {port} setup']\n"
        f"  test: ['python3 probe.py {port} test']\n"
    )
    repo = make_repo(tmp_path / "calc", config=config)
    (repo / "probe.py").write_text(PROBE)
    git(repo, "add", "probe.py")
    git(repo, "-c", "user.name=Ann", "-c", "user.email=a@example.com", "commit", "-qm", "probe")
    command = {"name": "bash", "input": {"command": f"python3 probe.py {port} agent"}}
    with ScriptedModelServer([]) as server:
        server.add([{"tool_use": [command]}, *finish("Probed.")])
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
            sandbox_allow_network=True,
            # The test's server is on loopback, which only the operator can open.
            sandbox_allow_private_hosts=["127.0.0.1"],
        )
        run = run_local(
            settings,
            repo,
            "probe the network",
            model=None,
            read=lambda: None,
            echo=lambda _: None,
        )
        tool_result = str(server.message_requests[1].body)
    assert [c.passed for c in run.task.iterations[0].checks] == [True]
    assert "exit code 0" in tool_result
    assert "hello /agent" in tool_result
    assert "no direct network" in tool_result
    assert sorted(seen) == ["/agent", "/setup", "/test"]


def test_without_operator_permission_the_allow_list_gives_no_network(
    tmp_path: Path, host: tuple[int, list[str]]
) -> None:
    port, seen = host
    repo = make_repo(tmp_path / "calc", config="network:\n  allow: ['127.0.0.1']\n")
    (repo / "probe.py").write_text(PROBE)
    git(repo, "add", "probe.py")
    git(repo, "-c", "user.name=Ann", "-c", "user.email=a@example.com", "commit", "-qm", "probe")
    command = {"name": "bash", "input": {"command": f"python3 probe.py {port} agent"}}
    with ScriptedModelServer([]) as server:
        server.add([{"tool_use": [command]}, *finish("Probed.")])
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
        )
        run_local(settings, repo, "probe", model=None, read=lambda: None, echo=lambda _: None)
        tool_result = str(server.message_requests[1].body)
    assert "exit code 1" in tool_result
    assert "no_proxy" in tool_result  # KeyError: no proxy was given to the command
    assert seen == []
