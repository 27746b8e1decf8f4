"""``mcp.servers`` of ``.github/vibe.yml``: the Model Context Protocol servers a repository
brings for its agent, validated; and the rules that turn their tools into model tools.

Pure values, no I/O (:mod:`bot.agent.mcp` starts the servers). A server is either a stdio
``command`` (run inside the task's sandbox) or a streamable-HTTP ``url`` (reached from the
host, only at hosts the operator allow-lists). A stdio server's environment holds only the
literals written here and, under ``secrets``, values the operator provides for this
repository (``VIBE_MCP_SECRETS``): the repository names them, it never holds them.

Every field is bounded and unknown keys are refused, so a hostile file costs a one-line
problem (:func:`bot.core.config.parse_repo_config`), never a crash or an unbounded list.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

# Anthropic's tool name pattern (Messages API ``tools[].name``: ^[a-zA-Z0-9_-]{1,128}$).
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
TOOL_PREFIX = "mcp__"
MAX_SERVERS = 8
MAX_SERVER_NAME = 32
MAX_TOOLS_LISTED = 50  # per list in the config (allow, deny, read_only)

# Lower-case words joined by single "-" or "_": no "__", so ``mcp__<server>__<tool>`` has
# one reading.
_SERVER_NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


def _server_name(value: str) -> str:
    if len(value) > MAX_SERVER_NAME or not _SERVER_NAME.fullmatch(value):
        raise ValueError(
            "a server name is lower-case letters and digits, words joined by one - or _, "
            f"at most {MAX_SERVER_NAME} characters"
        )
    return value


ServerName = Annotated[str, AfterValidator(_server_name)]
ToolRef = Annotated[str, StringConstraints(min_length=1, max_length=128)]
EnvName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", min_length=1, max_length=128)
]
SecretName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=128)
]
Arg = Annotated[str, StringConstraints(max_length=4096)]
EnvValue = Annotated[str, StringConstraints(max_length=4096)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolFilter(_Strict):
    """Which of a server's tools the agent gets: ``allow`` (empty: all) minus ``deny``."""

    allow: list[ToolRef] = Field(default_factory=list, max_length=MAX_TOOLS_LISTED)
    deny: list[ToolRef] = Field(default_factory=list, max_length=MAX_TOOLS_LISTED)


class McpServer(_Strict):
    name: ServerName
    command: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    args: list[Arg] = Field(default_factory=list, max_length=64)
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=32)
    secrets: dict[EnvName, SecretName] = Field(default_factory=dict, max_length=16)
    url: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = None
    tools: ToolFilter = Field(default_factory=ToolFilter)
    read_only: list[ToolRef] = Field(default_factory=list, max_length=MAX_TOOLS_LISTED)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServer:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (stdio) or url (streamable HTTP), not both")
        if self.url is not None:
            if self.args or self.env or self.secrets:
                raise ValueError("args, env and secrets apply to a stdio command, not to a url")
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("url must be an http(s) URL with a host")
            if parts.username or parts.password:
                raise ValueError("url must not carry credentials; the operator configures them")
        if "\0" in (self.command or "") or any("\0" in a for a in self.args):
            raise ValueError("command and args must not contain NUL")
        both = set(self.env) & set(self.secrets)
        if both:
            raise ValueError(f"{sorted(both)[0]} is set in both env and secrets")
        return self

    @property
    def host(self) -> str | None:
        """The URL's host name (lower case), for the operator's allow-list."""
        return urlsplit(self.url).hostname if self.url is not None else None

    def offers(self, tool: str) -> bool:
        """Whether the config lets the agent have ``tool`` (allow list, then deny list)."""
        if self.tools.allow and tool not in self.tools.allow:
            return False
        return tool not in self.tools.deny


class McpConfig(_Strict):
    servers: list[McpServer] = Field(default_factory=list, max_length=MAX_SERVERS)

    @model_validator(mode="after")
    def _unique(self) -> McpConfig:
        seen: set[str] = set()
        for server in self.servers:
            if server.name in seen:
                raise ValueError(f"server name {server.name!r} is used twice")
            seen.add(server.name)
        return self


def tool_name(server: str, tool: str) -> str:
    """The model's name for ``tool`` of ``server``: ``mcp__<server>__<tool>`` with every
    character Anthropic's pattern refuses replaced by ``_``, cut to 128 characters (callers
    drop a tool whose name collides with another's)."""
    safe = re.sub(r"[^a-zA-Z0-9_-]", "_", tool)
    return f"{TOOL_PREFIX}{server}__{safe}"[:128]


def server_refusal(
    server: McpServer, *, enabled: bool, allowed: frozenset[str], http_hosts: frozenset[str]
) -> str | None:
    """Why the operator's settings refuse ``server`` (None: it may start). ``allowed`` empty
    means every name; an HTTP server needs its host in ``http_hosts``."""
    if not enabled:
        return "MCP servers are switched off by the operator (VIBE_MCP_ENABLED)"
    if allowed and server.name not in allowed:
        return "not in the operator's list of allowed servers (VIBE_MCP_ALLOWED_SERVERS)"
    if server.host is not None and server.host not in http_hosts:
        return f"host {server.host} is not in the operator's VIBE_MCP_HTTP_HOSTS"
    return None
