"""The repository's MCP servers, started for real: stdio servers inside the bwrap sandbox,
HTTP servers on loopback, all through the ``mcp`` SDK's client (:mod:`bot.agent.mcp`).

The stdio server is ``bot/testing/mcp_server.py`` copied into the worktree and run with the
system ``python3``, as a repository's own server would be."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bot.agent import mcp
from bot.agent.mcp import McpStart, McpTools, start_servers
from bot.core.mcp import McpConfig
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits
from bot.settings import Settings, load_settings
from bot.testing import mcp_server
from bot.testing.loopback import LoopbackHTTPServer
from bot.testing.mcp_server import McpHttpServer
from tests.agent.conftest import CANARY, hand_over

SECRET = "mcp-operator-secret-5b7d1e"
HEADER = "Bearer mcp-operator-credential-93c1"


@pytest.fixture
def worktree(tmp_path: Path, sandbox: BwrapSandbox) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(mcp_server.__file__, work / "server.py")
    hand_over(work, sandbox.uid)
    return work


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "mcp_start_seconds": 5.0,
        "mcp_call_seconds": 5.0,
        "mcp_secrets": {"octo/demo": {"token": SECRET}, "other/repo": {"theirs": CANARY}},
    }
    values.update(overrides)
    return load_settings(**values)


def stdio(name: str, mode: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "command": "python3", "args": ["server.py", "stdio", mode], **extra}


def start(
    servers: list[dict[str, Any]],
    sandbox: BwrapSandbox,
    worktree: Path,
    config: Settings,
    *,
    allow_hosts: tuple[str, ...] = (),
    read_only: bool = False,
) -> McpTools:
    return start_servers(
        McpConfig.model_validate({"servers": servers}),
        config,
        repo="octo/demo",
        start=McpStart(
            sandbox, worktree, bool(allow_hosts), allow_hosts, SandboxLimits(wall_seconds=60)
        ),
        read_only=read_only,
    )


def sandbox_pids(uid: int | None) -> list[int]:
    """Processes of the sandbox uid still alive (none may outlive the run)."""
    if uid is None:
        return []
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and "server.py" in (entry / "cmdline").read_text():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_a_stdio_server_in_the_sandbox_answers_calls_and_sees_only_what_it_is_given(
    tmp_path: Path,
    sandbox: BwrapSandbox,
    worktree: Path,
    canary_env: str,
) -> None:
    literal = stdio("local", "normal", env={"LEVEL": "debug"}, secrets={"TOKEN": "token"})
    with start([literal], sandbox, worktree, settings(tmp_path)) as tools:
        assert tools.problems == []
        assert sorted(tools.tools) == ["mcp__local__add", "mcp__local__echo", "mcp__local__env"]
        assert tools.call("mcp__local__add", {"a": 2, "b": 3}).content.split("\n")[1] == "5.0"
        env = tools.call("mcp__local__env", {}).content
        assert sandbox_pids(sandbox.uid)  # running while the run lasts
    assert "LEVEL=debug" in env
    assert f"TOKEN={SECRET}" in env  # the operator's value for this repository only
    assert canary_env not in env  # nothing of the bot's own environment
    assert "HOME=/home/sandbox" in env
    assert sandbox_pids(sandbox.uid) == []


def test_a_secret_of_another_repository_is_refused(
    tmp_path: Path, sandbox: BwrapSandbox, worktree: Path
) -> None:
    server = stdio("thief", "normal", secrets={"STOLEN": "theirs"})
    with start([server], sandbox, worktree, settings(tmp_path)) as tools:
        assert tools.tools == {}
    assert tools.problems == [
        "thief: the sandbox refused to start it: secret 'theirs' is not among the "
        "operator's VIBE_MCP_SECRETS"
    ]


def test_broken_servers_are_reported_and_the_others_keep_working(
    tmp_path: Path, sandbox: BwrapSandbox, worktree: Path
) -> None:
    servers = [
        stdio("good", "normal"),
        stdio("exits", "exit"),
        stdio("hangs", "hang"),
        stdio("crashes", "crash"),
        stdio("floods", "flood"),
    ]
    config = settings(tmp_path, mcp_start_seconds=1.5)
    with start(servers, sandbox, worktree, config) as tools:
        started = dict(p.split(": ", 1) for p in tools.problems)
        crashed = tools.call("mcp__crashes__echo", {"text": "hi"})
        flooded = tools.call("mcp__floods__echo", {"text": "hi"})
        again = tools.call("mcp__crashes__add", {"a": 1, "b": 1})
        good = tools.call("mcp__good__echo", {"text": "still here"})
    assert started["exits"].startswith("failed to start: MCPError: Connection closed")
    assert "stderr: test server: exiting at start as asked" in started["exits"]
    assert started["hangs"] == "did not start in time"
    assert "mcp__exits__echo" not in tools.tools
    assert crashed.is_error
    assert "test server: crashing as asked" in crashed.content
    assert flooded.is_error
    assert "over 4194304 bytes on stdout" in flooded.content
    assert again.is_error
    assert "unavailable" in again.content
    assert not good.is_error
    assert "still here" in good.content
    assert sandbox_pids(sandbox.uid) == []


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, fmt: str, *args: object) -> None:
        return


@pytest.fixture
def outside() -> Iterator[tuple[int, list[str]]]:
    seen: list[str] = []
    httpd = LoopbackHTTPServer(("127.0.0.1", 0), type("H", (_Recorder,), {"seen": seen}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


def test_a_stdio_server_reaches_only_the_allow_list(
    tmp_path: Path, worktree: Path, outside: tuple[int, list[str]]
) -> None:
    port, seen = outside
    # The operator lets loopback be allow-listed; the repository allows 127.0.0.1 only, so
    # 127.0.0.2 (the same loopback, another host) is outside its list.
    loopback = BwrapSandbox(allow_private_hosts=["127.0.0.0/8"])
    servers = [stdio("net", "network")]
    config = settings(tmp_path)
    with start(servers, loopback, worktree, config, allow_hosts=("127.0.0.1",)) as tools:
        allowed = tools.call("mcp__net__fetch", {"url": f"http://127.0.0.1:{port}/allowed"})
        refused = tools.call("mcp__net__fetch", {"url": f"http://127.0.0.2:{port}/leak"})
    assert "direct: ConnectionRefusedError" in allowed.content  # its own network is empty
    assert "proxy: 200 ok" in allowed.content
    assert "direct: ConnectionRefusedError" in refused.content
    assert "proxy: HTTPError: HTTP Error 403: Refused" in refused.content  # by the allow-list
    assert seen == ["/allowed"]


def test_an_http_server_needs_the_operators_host_and_gets_the_operators_headers(
    tmp_path: Path, sandbox: BwrapSandbox, worktree: Path
) -> None:
    with McpHttpServer() as server:
        refused = start([{"name": "web", "url": server.url}], sandbox, worktree, settings(tmp_path))
        refused.close()
        config = settings(
            tmp_path,
            mcp_http_hosts=["127.0.0.1"],
            mcp_http_headers={"127.0.0.1": {"Authorization": HEADER}},
        )
        with start([{"name": "web", "url": server.url}], sandbox, worktree, config) as tools:
            answer = tools.call("mcp__web__echo", {"text": f"the header is {HEADER}"})
    assert refused.tools == {}
    assert refused.problems == ["web: host 127.0.0.1 is not in the operator's VIBE_MCP_HTTP_HOSTS"]
    assert server.headers
    assert {h.get("authorization") for h in server.headers} == {HEADER}
    assert not answer.is_error
    assert "the header is" in answer.content


def test_the_planning_set_gets_only_read_only_tools_and_servers_without_any_stay_off(
    tmp_path: Path, sandbox: BwrapSandbox, worktree: Path
) -> None:
    servers = [stdio("docs", "normal", read_only=["echo"]), stdio("other", "normal")]
    with start(servers, sandbox, worktree, settings(tmp_path), read_only=True) as tools:
        names = [d["name"] for d in tools.definitions(read_only=True)]
        offered = tools.offers("mcp__docs__add", read_only=True)
        running = sandbox_pids(sandbox.uid)
    assert names == ["mcp__docs__echo"]
    assert not offered
    if sandbox.uid is not None:
        assert len(running) == 1  # "other" has no read-only tool: not started at all


def test_closing_an_http_session_that_never_answers_is_bounded(
    tmp_path: Path, sandbox: BwrapSandbox, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp, "CLOSE_SECONDS", 0.5)
    config = settings(tmp_path, mcp_http_hosts=["127.0.0.1"])
    with McpHttpServer("stuck_close") as server:
        tools = start([{"name": "web", "url": server.url}], sandbox, worktree, config)
        answer = tools.call("mcp__web__echo", {"text": "hi"})
        begun = time.monotonic()
        tools.close()
        took = time.monotonic() - begun
        asked_to_close = any(h for h in server.headers if "mcp-session-id" in h)
    assert not answer.is_error
    assert asked_to_close
    assert took < 3
