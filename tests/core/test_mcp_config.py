"""``mcp.servers`` in ``.github/vibe.yml``: strict, bounded, one clear line per problem; and
the naming and permission rules of :mod:`bot.core.mcp`."""

from __future__ import annotations

import pytest

from bot.core.config import RepoConfig, parse_repo_config
from bot.core.mcp import TOOL_NAME, McpServer, server_refusal, tool_name

GOOD = """\
mcp:
  servers:
    - name: docs
      command: python3
      args: [-m, docs_server]
      env: {LEVEL: debug}
      secrets: {DOCS_TOKEN: docs_token}
      tools: {allow: [search, read], deny: [read]}
      read_only: [search]
    - name: tracker-2
      url: https://mcp.example.com/mcp
"""


def test_a_valid_config_is_read() -> None:
    config, problems = parse_repo_config(GOOD)
    assert problems == []
    docs, tracker = config.mcp.servers
    assert docs.command == "python3"
    assert docs.args == ["-m", "docs_server"]
    assert docs.secrets == {"DOCS_TOKEN": "docs_token"}
    assert [docs.offers(t) for t in ("search", "read", "write")] == [True, False, False]
    assert tracker.host == "mcp.example.com"
    assert tracker.offers("anything")
    assert RepoConfig().mcp.servers == []


def server(body: str) -> str:
    return f"mcp:\n  servers:\n    - {body}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            server("name: Docs\n      command: x"),
            "line 3: mcp.servers.0.name: Value error, a server name is lower-case",
        ),
        (server("name: a__b\n      command: x"), "a server name is lower-case letters"),
        (server("name: ''\n      command: x"), "a server name is lower-case letters"),
        (
            server(f"name: {'a' * 33}\n      command: x"),
            "at most 32 characters",
        ),
        (server("name: a b\n      command: x"), "a server name is lower-case letters"),
        (server("name: x"), "give either command (stdio) or url (streamable HTTP), not both"),
        (
            server("name: x\n      command: y\n      url: https://h/mcp"),
            "give either command (stdio) or url",
        ),
        (server("name: x\n      url: ftp://h/mcp"), "url must be an http(s) URL with a host"),
        (server("name: x\n      url: https://u:p@h/mcp"), "url must not carry credentials"),
        (
            server("name: x\n      url: https://h/mcp\n      env: {A: b}"),
            "args, env and secrets apply to a stdio command",
        ),
        (
            server("name: x\n      command: y\n      env: {A: b}\n      secrets: {A: c}"),
            "A is set in both env and secrets",
        ),
        (server("name: x\n      command: y\n      env: {1A: b}"), "mcp.servers.0.env.1A.[key]"),
        (server("name: x\n      command: y\n      secrets: {A: 'a/b'}"), "secrets.A: String"),
        (server("name: x\n      command: y\n      tools: {only: [a]}"), "Extra inputs"),
        (server("name: x\n      command: y\n      shell: true"), "mcp.servers.0.shell: Extra"),
        (
            "mcp:\n  servers:\n    - {name: x, command: y}\n    - {name: x, command: z}\n",
            "server name 'x' is used twice",
        ),
        ("mcp:\n  servers: {name: x}\n", "mcp.servers: Input should be a valid list"),
        ("mcp: [1]\n", "mcp: Input should be a valid dictionary"),
    ],
)
def test_a_bad_server_is_one_clear_line_and_the_defaults_stay(text: str, expected: str) -> None:
    config, problems = parse_repo_config(text)
    assert config == RepoConfig()
    assert len(problems) == 1, problems
    assert expected in str(problems[0])
    assert "\n" not in str(problems[0])


@pytest.mark.parametrize(
    ("field", "count", "limit"),
    [("servers", 9, 8), ("args", 65, 64), ("env", 33, 32), ("read_only", 51, 50)],
)
def test_oversized_lists_are_refused(field: str, count: int, limit: int) -> None:
    if field == "servers":
        body = "".join(f"    - {{name: s{i}, command: y}}\n" for i in range(count))
        text = f"mcp:\n  servers:\n{body}"
    elif field == "env":
        entries = ", ".join(f"V{i}: x" for i in range(count))
        text = server(f"name: x\n      command: y\n      env: {{{entries}}}")
    else:
        items = ", ".join(f"a{i}" for i in range(count))
        text = server(f"name: x\n      command: y\n      {field}: [{items}]")
    config, problems = parse_repo_config(text)
    assert config == RepoConfig()
    assert len(problems) == 1
    assert str(limit) in str(problems[0])


def test_hostile_values_are_bounded() -> None:
    huge = "a" * 5000
    _, problems = parse_repo_config(server(f"name: x\n      command: y\n      args: ['{huge}']"))
    assert "at most 4096 characters" in str(problems[0])
    _, problems = parse_repo_config(server('name: x\n      command: "y\\0z"'))
    assert "must not contain NUL" in str(problems[0])
    _, problems = parse_repo_config(server(f"name: x\n      url: https://{'h' * 3000}/"))
    assert "at most 2048 characters" in str(problems[0])


@pytest.mark.parametrize(
    ("server_name", "tool", "expected"),
    [
        ("docs", "search", "mcp__docs__search"),
        ("docs", "read.file/v2", "mcp__docs__read_file_v2"),
        ("docs", "résumé", "mcp__docs__r_sum_"),
        ("docs", "x" * 300, "mcp__docs__" + "x" * 117),
    ],
)
def test_tool_names_fit_anthropics_pattern(server_name: str, tool: str, expected: str) -> None:
    name = tool_name(server_name, tool)
    assert name == expected
    assert TOOL_NAME.fullmatch(name)


def test_the_operator_decides_which_servers_start() -> None:
    stdio = McpServer(name="docs", command="python3")
    http = McpServer(name="web", url="https://MCP.example.com/mcp")
    hosts = frozenset({"mcp.example.com"})
    assert server_refusal(stdio, enabled=True, allowed=frozenset(), http_hosts=frozenset()) is None
    assert server_refusal(http, enabled=True, allowed=frozenset(), http_hosts=hosts) is None
    off = server_refusal(stdio, enabled=False, allowed=frozenset(), http_hosts=hosts)
    assert off is not None
    assert "switched off" in off
    listed = server_refusal(stdio, enabled=True, allowed=frozenset({"web"}), http_hosts=hosts)
    assert listed is not None
    assert "allowed servers" in listed
    no_host = server_refusal(http, enabled=True, allowed=frozenset(), http_hosts=frozenset())
    assert no_host == "host mcp.example.com is not in the operator's VIBE_MCP_HTTP_HOSTS"
