"""A scripted Anthropic Messages API server on loopback, for tests, benchmarks and ``vibe demo``.

It speaks enough of the real API for the ``anthropic`` SDK to use it unchanged through
``base_url``: ``POST /v1/messages`` (JSON and SSE streaming with the real event sequence),
``POST /v1/messages/count_tokens``, ``GET /v1/models`` (what a key check asks) and the API's
error shapes. With an ``api_key``, any other key is answered 401 ``authentication_error``.
Each request to ``/v1/messages`` consumes the next step of a *script* and every request is
recorded (headers without credentials, parsed body) so a test asserts on what the bot really
sent. Nothing is patched: the bot's own client, retries and streaming code run for real.

Usage::

    with ScriptedModelServer(load_script(path_or_list)) as server:
        settings = load_settings(anthropic_base_url=server.base_url, ...)
        ...
        assert server.requests[0].body["tools"]

Script format (a JSON or YAML list; each item is one response)::

    - text: "I will read the file first."        # optional text block (comes first)
      tool_use:                                  # optional tool_use blocks, in order
        - name: str_replace_based_edit_tool
          input: {command: view, path: src/app.py}
          id: toolu_custom                       # optional; generated when absent
      stop_reason: tool_use                      # default: tool_use if any, else end_turn
      usage:                                     # optional; any field left out is computed
        input_tokens: 1200
        output_tokens: 80
        cache_creation_input_tokens: 0
        cache_read_input_tokens: 0
      delay: 0.05                                # optional seconds before answering
    - error:                                     # an HTTP error instead of a message
        status: 529                              # 429, 500, 529, 400, 402, 413 ...
        type: overloaded_error                   # the API's error.type
        message: Overloaded                      # optional
        retry_after: 0.01                        # optional; sent as retry-after (seconds)
        error_code: enforced_spend_limit_reached # optional; error.details.error_code
    - text: "partial answer"                     # a reply whose stream breaks part-way:
      tool_use: [{name: bash, input: {command: "python -m pytest -q"}}]
      break_stream:
        after_events: 4                          # SSE events sent before the break
        kind: error                              # "error": an `event: error` is sent;
        type: overloaded_error                   # "disconnect": the connection is cut
      repeat: 3                                  # any step may be repeated N times

A step with ``break_stream`` answered to a non-streaming request fails with the HTTP error
of the same type (the real API cannot break a JSON body mid-way).

Computed usage follows how the real API bills prompt caching
(https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching): the request is
flattened in the API's order (tools, system, messages) into blocks of about
``len(canonical JSON) / 4`` tokens; blocks carrying ``cache_control`` are breakpoints. A
prefix is written to the server's cache at each breakpoint whose prefix holds at least
``min_cache_tokens``; a later request reads from cache the longest previously written prefix
found at a breakpoint or up to 20 blocks before one. Tokens up to the last breakpoint that
were not read are billed as cache writes, the rest as plain input. An Anthropic-defined tool
(``{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}``, ``bash_20250124``)
is billed the input tokens its documentation states rather than its short JSON
(:data:`BUILTIN_TOOL_TOKENS`). Requests are checked the way the API checks them (roles
alternate, every ``tool_use`` answered by a ``tool_result`` with its id, each tool a custom
tool with an ``input_schema`` or an Anthropic-defined ``type`` with the one ``name`` it
requires, at most 4 breakpoints, prompt within ``context_window``) and refused with a 400
``invalid_request_error`` otherwise. When the script is exhausted the server answers
500 with ``x-should-retry: false`` and a message saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import socket
import sys
import threading
import time
import typing
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import yaml
from anthropic.types import ToolUnionParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.testing.loopback import LoopbackHTTPServer

MAX_BODY_BYTES = 32 * 1024 * 1024  # the API's request size limit
MAX_BREAKPOINTS = 4
CACHE_LOOKBACK_BLOCKS = 20
_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})
_STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


# The Anthropic-defined tools the API accepts: each ``type`` with the ``name`` it requires
# (``None``: any name), read from the SDK's request types, which are generated from the API's
# own schema (``anthropic.types.ToolUnionParam``: ``ToolTextEditor20250728Param`` requires
# ``name: Literal["str_replace_based_edit_tool"]``, ``ToolBash20250124Param`` ``"bash"``).
# ``"custom"`` (or no ``type``) is a tool defined by its ``input_schema``.
def _defined_tools() -> dict[str, str | None]:
    def literals(hint: Any) -> list[str]:
        options = typing.get_args(hint) if typing.get_origin(hint) is not Literal else (hint,)
        found: list[str] = []
        for option in options:
            if typing.get_origin(option) is Literal:
                found += [str(value) for value in typing.get_args(option)]
        return found

    table: dict[str, str | None] = {}
    for member in typing.get_args(ToolUnionParam):
        hints = typing.get_type_hints(member)
        names = literals(hints.get("name"))
        for tool_type in literals(hints.get("type")):
            table[tool_type] = names[0] if len(names) == 1 else None
    return table


DEFINED_TOOLS = _defined_tools()
# The input tokens an Anthropic-defined client tool adds to a request, as documented: the
# text editor 700 (https://docs.claude.com/en/docs/agents-and-tools/tool-use/text-editor-tool,
# "Pricing and token usage": 700 for text_editor_20250429 and text_editor_20250124;
# text_editor_20250728 "is otherwise identical to text_editor_20250429"), bash 245
# (https://docs.claude.com/en/docs/agents-and-tools/tool-use/bash-tool, "Pricing").
BUILTIN_TOOL_TOKENS: dict[str, int] = {
    "text_editor_20250728": 700,
    "text_editor_20250429": 700,
    "text_editor_20250124": 700,
    "bash_20250124": 245,
}


# What ``GET /v1/models`` lists, newest first as the API orders them
# (https://docs.anthropic.com/en/api/models-list).
MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-opus-4-6", "Claude Opus 4.6", "2026-02-05T00:00:00Z"),
    ("claude-sonnet-4-6", "Claude Sonnet 4.6", "2026-02-05T00:00:00Z"),
    ("claude-haiku-4-5", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
)


class ScriptError(ValueError):
    """The script is malformed; the message names the step and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolUseSpec(_Strict):
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class UsageSpec(_Strict):
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cache_creation_input_tokens: int | None = Field(default=None, ge=0)
    cache_read_input_tokens: int | None = Field(default=None, ge=0)


class ErrorSpec(_Strict):
    status: int = Field(ge=400, le=599)
    type: str = "api_error"
    message: str | None = None
    retry_after: float | None = Field(default=None, ge=0)
    error_code: str | None = None


class BreakSpec(_Strict):
    after_events: int = Field(default=3, ge=0)
    kind: Literal["error", "disconnect"] = "error"
    type: str = "overloaded_error"
    message: str = "Overloaded"


class Step(_Strict):
    """One scripted response (see the module docstring for the file format)."""

    text: str | None = None
    tool_use: list[ToolUseSpec] = Field(default_factory=list)
    stop_reason: (
        Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "pause_turn"]
        | None
    ) = None
    usage: UsageSpec | None = None
    error: ErrorSpec | None = None
    break_stream: BreakSpec | None = None
    delay: float = Field(default=0.0, ge=0, le=600)

    @model_validator(mode="after")
    def _consistent(self) -> Step:
        reply = self.text is not None or bool(self.tool_use)
        if self.error is not None and (reply or self.break_stream or self.usage):
            raise ValueError(
                "an error step cannot also carry text, tool_use, usage or break_stream"
            )
        if self.error is None and not reply:
            raise ValueError("a step needs text, tool_use or error")
        return self

    @property
    def effective_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if self.tool_use else "end_turn"


Responder = Callable[["RecordedRequest"], Step]


def load_script(source: str | Path | Sequence[Any]) -> list[Step]:
    """Parse a script from a path (JSON or YAML), a YAML/JSON string, or a list of dicts/Steps.

    ``repeat: N`` on an item expands it N times. Raises :class:`ScriptError` naming the step.
    """
    raw: Any
    if isinstance(source, Path):
        try:
            raw = yaml.safe_load(source.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ScriptError(f"cannot read script {source}: {exc}") from exc
    elif isinstance(source, str):
        try:
            raw = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ScriptError(f"script is not valid YAML or JSON: {exc}") from exc
    else:
        raw = list(source)
    if not isinstance(raw, list):
        raise ScriptError("a script is a list of steps")
    steps: list[Step] = []
    for index, item in enumerate(raw):
        if isinstance(item, Step):
            steps.append(item)
            continue
        if not isinstance(item, dict):
            raise ScriptError(f"step {index}: expected a mapping, got {type(item).__name__}")
        data = dict(item)
        repeat = data.pop("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= 100_000:
            raise ScriptError(f"step {index}: repeat must be an integer from 1 to 100000")
        try:
            step = Step.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'step'}: {e['msg']}" for e in exc.errors()
            )
            raise ScriptError(f"step {index}: {problems}") from None
        steps.extend([step] * repeat)
    return steps


@dataclass
class RecordedRequest:
    """One request as the server received it; credentials are left out of ``headers``.

    ``handled_seconds`` is the server's own time on it (scripted delay included), so a
    benchmark can tell the client's time from the model's."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: str
    received_at: float
    status: int = 0
    step: int | None = None
    usage: dict[str, int] | None = None
    retry_count: int = 0
    handled_seconds: float = 0.0

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


@dataclass(frozen=True)
class PromptBlock:
    """One block of a request as the cache sees it (``cache_control`` left out)."""

    text: str
    tokens: int
    breakpoint: bool


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _canonical(value: Any) -> str:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "cache_control"}
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _has_breakpoint(value: Any) -> bool:
    return isinstance(value, dict) and value.get("cache_control") is not None


def flatten_request(body: dict[str, Any]) -> list[PromptBlock]:
    """The request as the API's cache sees it: tools, then system, then message blocks."""
    blocks: list[PromptBlock] = []
    for tool in body.get("tools") or []:
        text = _canonical(tool)
        builtin = BUILTIN_TOOL_TOKENS.get(tool.get("type", "")) if isinstance(tool, dict) else None
        blocks.append(PromptBlock(text, builtin or _tokens(text), _has_breakpoint(tool)))
    system = body.get("system")
    if isinstance(system, str) and system:
        blocks.append(PromptBlock(system, _tokens(system), False))
    elif isinstance(system, list):
        for part in system:
            text = _canonical(part)
            blocks.append(PromptBlock(text, _tokens(text), _has_breakpoint(part)))
    for message in body.get("messages") or []:
        role = str(message.get("role", ""))
        content = message.get("content")
        if isinstance(content, str):
            text = role + ":" + content
            blocks.append(PromptBlock(text, _tokens(text), False))
        elif isinstance(content, list):
            for part in content:
                text = role + ":" + _canonical(part)
                blocks.append(PromptBlock(text, _tokens(text), _has_breakpoint(part)))
    return blocks


class PromptCache:
    """The API's prompt cache as billing sees it: prefixes written at breakpoints."""

    def __init__(self, min_cache_tokens: int = 1024) -> None:
        self.min_cache_tokens = min_cache_tokens
        self._written: set[bytes] = set()
        self._lock = threading.Lock()

    def bill(self, model: str, blocks: Sequence[PromptBlock]) -> tuple[int, int, int]:
        """Return (input_tokens, cache_creation_input_tokens, cache_read_input_tokens)."""
        digests: list[bytes] = []
        cumulative: list[int] = []
        running = hashlib.blake2b(model.encode(), digest_size=16).digest()
        total = 0
        for block in blocks:
            running = hashlib.blake2b(running + block.text.encode(), digest_size=16).digest()
            total += block.tokens
            digests.append(running)
            cumulative.append(total)
        breakpoints = [i for i, b in enumerate(blocks) if b.breakpoint]
        if not breakpoints:
            return total, 0, 0
        last = breakpoints[-1]
        with self._lock:
            hit = -1
            for bp in breakpoints:
                for i in range(bp, max(-1, bp - CACHE_LOOKBACK_BLOCKS - 1), -1):
                    if digests[i] in self._written:
                        hit = max(hit, i)
                        break
            for bp in breakpoints:
                if bp > hit and cumulative[bp] >= self.min_cache_tokens:
                    self._written.add(digests[bp])
        read = cumulative[hit] if hit >= 0 else 0
        cacheable = cumulative[last] if cumulative[last] >= self.min_cache_tokens else read
        written = max(0, cacheable - read)
        return total - read - written, written, read


class _Server(LoopbackHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: ScriptedModelServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", owner.port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (the SDK closing a broken stream) are expected, not errors;
        anything else (a responder that raised) is printed as the stdlib does."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Small SSE chunks would otherwise wait on Nagle's algorithm plus the client's
        # delayed ACK (about 40 ms per response on Linux loopback).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib's per-request stderr line."""

    def _authorized(self) -> bool:
        """The key as ``x-api-key`` or, as the SDK sends it, ``Authorization: Bearer``."""
        expected = self.server.owner.api_key
        if expected is None:
            return True
        bearer = self.headers.get("authorization", "").removeprefix("Bearer ")
        return expected in (self.headers.get("x-api-key"), bearer)

    def do_GET(self) -> None:
        owner = self.server.owner
        path, _, query = self.path.partition("?")
        headers = {
            k.lower(): v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS
        }
        record = RecordedRequest("GET", path, headers, {}, "", time.monotonic())
        owner._record(record)
        if not self._authorized():
            record.status = 401
            self._send_error(401, "authentication_error", "invalid x-api-key", None)
        elif path == "/v1/models":
            self._models(record, urllib.parse.parse_qs(query))
        else:
            record.status = 404
            self._send_error(404, "not_found_error", f"no route for GET {path}", None)

    def do_POST(self) -> None:
        owner = self.server.owner
        length_header = self.headers.get("content-length")
        try:
            length = int(length_header or "0")
        except ValueError:
            length = -1
        if length < 0:
            # A negative length would make rfile.read() read until the client hangs up.
            self._send_error(400, "invalid_request_error", "invalid content-length", None)
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send_error(413, "request_too_large", "Request exceeds the maximum size", None)
            return
        raw = self.rfile.read(length).decode("utf-8", errors="replace")
        headers = {
            k.lower(): v for k, v in self.headers.items() if k.lower() not in _SECRET_HEADERS
        }
        problem: str | None = None
        body: Any = None
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError as exc:
            problem = f"request body is not valid JSON: {exc}"
        if problem is None and not isinstance(body, dict):
            problem = "request body must be a JSON object"
        record = RecordedRequest(
            method="POST",
            path=self.path.split("?", 1)[0],
            headers=headers,
            body=body if isinstance(body, dict) else {},
            raw=raw,
            received_at=time.monotonic(),
            retry_count=int(headers.get("x-stainless-retry-count", "0") or 0),
        )
        owner._record(record)
        if problem is not None:
            record.status = 400
            self._send_error(400, "invalid_request_error", problem, None)
            return
        if not self._authorized():
            record.status = 401
            self._send_error(401, "authentication_error", "invalid x-api-key", None)
            return
        if record.path == "/v1/messages/count_tokens":
            self._count_tokens(record)
        elif record.path == "/v1/messages":
            self._messages(record)
        else:
            record.status = 404
            self._send_error(404, "not_found_error", f"no route for POST {record.path}", None)
        record.handled_seconds = time.monotonic() - record.received_at

    # -- endpoints -------------------------------------------------------------------------

    def _models(self, record: RecordedRequest, query: dict[str, list[str]]) -> None:
        """A page of models with the API's cursor fields: ``limit`` (1 to 1000, default
        20), ``after_id`` and ``before_id``."""
        try:
            limit = int(query.get("limit", ["20"])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 1000:
            record.status = 400
            self._send_error(400, "invalid_request_error", "limit: must be 1 to 1000", None)
            return
        ids = [m[0] for m in MODELS]
        start, end = 0, len(MODELS)
        if "after_id" in query and query["after_id"][0] in ids:
            start = ids.index(query["after_id"][0]) + 1
        if "before_id" in query and query["before_id"][0] in ids:
            end = ids.index(query["before_id"][0])
            start = max(start, end - limit)
        page = MODELS[start:end][:limit]
        data = [
            {
                "type": "model",
                "id": model_id,
                "display_name": name,
                "created_at": created,
                "lifecycle": "active",
            }
            for model_id, name, created in page
        ]
        record.status = 200
        self._send_json(
            200,
            {
                "data": data,
                "has_more": start + len(page) < end,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            },
        )

    def _count_tokens(self, record: RecordedRequest) -> None:
        problem = validate_request(record.body, require_max_tokens=False)
        if problem:
            record.status = 400
            self._send_error(400, "invalid_request_error", problem, None)
            return
        total = sum(b.tokens for b in flatten_request(record.body))
        record.status = 200
        self._send_json(200, {"input_tokens": total})

    def _messages(self, record: RecordedRequest) -> None:
        owner = self.server.owner
        problem = validate_request(record.body, require_max_tokens=True)
        if problem:
            record.status = 400
            self._send_error(400, "invalid_request_error", problem, None)
            return
        blocks = flatten_request(record.body)
        total = sum(b.tokens for b in blocks)
        if total > owner.context_window:
            record.status = 400
            too_long = f"prompt is too long: {total} tokens > {owner.context_window} maximum"
            self._send_error(400, "invalid_request_error", too_long, None)
            return
        step_index, step = owner._next_step(record)
        record.step = step_index
        if step is None:
            record.status = 500
            self._send_error(
                500,
                "api_error",
                f"scripted model server: script exhausted after {step_index} steps",
                None,
                extra_headers={"x-should-retry": "false"},
            )
            return
        if step.delay:
            time.sleep(step.delay)
        if step.error is not None:
            err = step.error
            record.status = err.status
            self._send_error(err.status, err.type, err.message, err.retry_after, err.error_code)
            return
        if step.break_stream is not None and not record.stream:
            brk = step.break_stream
            status = _STATUS_BY_TYPE.get(brk.type, 500)
            record.status = status
            self._send_error(status, brk.type, brk.message, None)
            return
        model = str(record.body.get("model", ""))
        uncached, written, read = owner.cache.bill(model, blocks)
        message = owner._message(step, model, (uncached, written, read))
        record.usage = dict(message["usage"])
        record.status = 200
        if record.stream:
            self._stream(message, step.break_stream)
        else:
            self._send_json(200, message)

    # -- responses -------------------------------------------------------------------------

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_{hashlib.sha1(data).hexdigest()[:20]}")  # noqa: S324
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(data)

    def _send_error(
        self,
        status: int,
        error_type: str,
        message: str | None,
        retry_after: float | None,
        error_code: str | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        error: dict[str, Any] = {"type": error_type, "message": message or error_type}
        if error_code is not None:
            error["details"] = {"error_code": error_code}
        headers = dict(extra_headers or {})
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        self._send_json(status, {"type": "error", "error": error}, headers)

    def _stream(self, message: dict[str, Any], brk: BreakSpec | None) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("request-id", "req_" + str(message["id"]).removeprefix("msg_")[-20:])
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            for name, data in _sse_events(message):
                if brk is not None and sent >= brk.after_events:
                    if brk.kind == "disconnect":
                        self.close_connection = True
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    error = {"type": "error", "error": {"type": brk.type, "message": brk.message}}
                    self._chunk("error", error)
                    break
                self._chunk(name, data)
                sent += 1
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _chunk(self, name: str, data: dict[str, Any]) -> None:
        payload = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")


def _sse_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The Messages API streaming event sequence for a complete message.

    https://docs.anthropic.com/en/docs/build-with-claude/streaming#event-types
    """
    usage = message["usage"]
    start = dict(message, content=[], stop_reason=None, stop_sequence=None)
    start["usage"] = dict(usage, output_tokens=1)
    yield "message_start", {"type": "message_start", "message": start}
    yield "ping", {"type": "ping"}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            text = block["text"]
            for offset in range(0, max(len(text), 1), 64):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "text_delta", "text": text[offset : offset + 64]},
                    },
                )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {
                        "type": "tool_use",
                        "id": block["id"],
                        "name": block["name"],
                        "input": {},
                    },
                },
            )
            encoded = json.dumps(block["input"])
            for offset in range(0, len(encoded), 64):
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": encoded[offset : offset + 64],
                        },
                    },
                )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": usage,
        },
    )
    yield "message_stop", {"type": "message_stop"}


def validate_request(body: dict[str, Any], *, require_max_tokens: bool) -> str | None:
    """What the real API would refuse in this request body, or None."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if require_max_tokens and not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    for index, tool in enumerate(tools):
        problem = _tool_problem(index, tool)
        if problem:
            return problem
    names = [t.get("name") for t in tools if isinstance(t, dict)]
    if len(names) != len(set(names)):
        return "tools: Tool names must be unique"
    breakpoints = sum(1 for b in _all_blocks(body) if _has_breakpoint(b))
    if breakpoints > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    expected_role = "user"
    pending: set[str] = set()
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{index}: role must be 'user' or 'assistant'"
        if message["role"] != expected_role:
            return f"messages.{index}: roles must alternate between 'user' and 'assistant'"
        content = message.get("content")
        if isinstance(content, str) and content:
            parts: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            parts = content
        else:
            return f"messages.{index}: all messages must have non-empty content"
        if any(
            isinstance(p, dict) and p.get("type") == "text" and not p.get("text") for p in parts
        ):
            return f"messages.{index}: text content blocks must be non-empty"
        results = {
            p.get("tool_use_id")
            for p in parts
            if isinstance(p, dict) and p.get("type") == "tool_result"
        }
        if pending and not pending <= results:
            missing = ", ".join(sorted(pending - results))
            return (
                f"messages.{index}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {missing}"
            )
        unexpected = results - pending
        if unexpected:
            listed = ", ".join(sorted(map(str, unexpected)))
            return f"messages.{index}: unexpected `tool_use_id` in `tool_result` blocks: {listed}"
        pending = {
            str(p.get("id")) for p in parts if isinstance(p, dict) and p.get("type") == "tool_use"
        }
        if message["role"] == "user" and pending:
            return f"messages.{index}: a user message cannot contain tool_use blocks"
        expected_role = "assistant" if expected_role == "user" else "user"
    return None


def _tool_problem(index: int, tool: Any) -> str | None:
    """What the API says of one entry of ``tools``, or None. A ``type`` the API does not
    know is refused with the tagged-union message the API answers (quoted in
    anthropics/claude-quickstarts#275: "tools.1: Input tag 'str_replace_based_edit_tool'
    found using 'type' does not match any of the expected tags: ..."); a known type with
    another name, or a custom tool without ``input_schema``, with that validator's message
    for the field (``tools.N.<tag>.<field>``)."""
    if not isinstance(tool, dict):
        return f"tools.{index}: Input should be a valid dictionary"
    tool_type = tool.get("type", "custom")
    if tool_type is None:
        tool_type = "custom"
    if tool_type not in DEFINED_TOOLS:
        expected = ", ".join(f"'{t}'" for t in sorted(DEFINED_TOOLS))
        return (
            f"tools.{index}: Input tag '{tool_type}' found using 'type' does not match any of "
            f"the expected tags: {expected}"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        return f"tools.{index}.{tool_type}.name: Field required"
    required = DEFINED_TOOLS[tool_type]
    if required is not None and name != required:
        return f"tools.{index}.{tool_type}.name: Input should be '{required}'"
    if tool_type == "custom" and not isinstance(tool.get("input_schema"), dict):
        return f"tools.{index}.custom.input_schema: Field required"
    return None


def _all_blocks(body: dict[str, Any]) -> Iterator[Any]:
    yield from body.get("tools") or []
    system = body.get("system")
    if isinstance(system, list):
        yield from system
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            yield from message["content"]


class ScriptedModelServer:
    """A loopback Messages API that replays a script and records every request.

    ``script`` is a list of :class:`Step` (see :func:`load_script`) or a ``responder``
    callable that picks the step for each request (for open-ended demos and benchmarks).
    Use as a context manager; ``base_url`` is what the SDK's ``base_url`` should be.
    """

    def __init__(
        self,
        script: Sequence[Step] | Responder = (),
        *,
        api_key: str | None = None,
        min_cache_tokens: int = 1024,
        context_window: int = 200_000,
        port: int = 0,
    ) -> None:
        self.port = port
        self._steps: list[Step] = [] if callable(script) else list(script)
        self._responder: Responder | None = script if callable(script) else None
        self._cursor = 0
        self._lock = threading.Lock()
        self.api_key = api_key
        self.context_window = context_window
        self.cache = PromptCache(min_cache_tokens)
        self.requests: list[RecordedRequest] = []
        self._ids = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("server already started")
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> ScriptedModelServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- script ----------------------------------------------------------------------------

    def add(self, steps: Sequence[Step] | Sequence[dict[str, Any]]) -> None:
        """Append steps to the script (a test may extend it between runs)."""
        parsed = load_script(list(steps))
        with self._lock:
            self._steps.extend(parsed)

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._steps) - self._cursor

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Recorded ``POST /v1/messages`` requests, in order."""
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/messages"]

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(record)

    def _next_step(self, record: RecordedRequest) -> tuple[int, Step | None]:
        if self._responder is not None:
            with self._lock:
                index = self._cursor
                self._cursor += 1
            return index, self._responder(record)
        with self._lock:
            index = self._cursor
            if index >= len(self._steps):
                return index, None
            self._cursor += 1
            return index, self._steps[index]

    def _message(self, step: Step, model: str, billed: tuple[int, int, int]) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if step.text is not None:
            content.append({"type": "text", "text": step.text})
        for tool in step.tool_use:
            with self._lock:
                self._ids += 1
                generated = f"toolu_{self._ids:024d}"
            content.append(
                {
                    "type": "tool_use",
                    "id": tool.id or generated,
                    "name": tool.name,
                    "input": tool.input,
                }
            )
        uncached, written, read = billed
        spec = step.usage or UsageSpec()
        output = sum(_tokens(_canonical(block)) for block in content)
        usage = {
            "input_tokens": uncached if spec.input_tokens is None else spec.input_tokens,
            "output_tokens": output if spec.output_tokens is None else spec.output_tokens,
            "cache_creation_input_tokens": (
                written
                if spec.cache_creation_input_tokens is None
                else spec.cache_creation_input_tokens
            ),
            "cache_read_input_tokens": (
                read if spec.cache_read_input_tokens is None else spec.cache_read_input_tokens
            ),
        }
        with self._lock:
            self._ids += 1
            message_id = f"msg_{self._ids:024d}"
        return {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": step.effective_stop_reason,
            "stop_sequence": None,
            "usage": usage,
        }


@contextlib.contextmanager
def scripted_model_server(
    source: str | Path | Sequence[Any] | Responder, **kwargs: Any
) -> Iterator[ScriptedModelServer]:
    """Start a :class:`ScriptedModelServer` from any script source; yield it running."""
    script: Sequence[Step] | Responder = source if callable(source) else load_script(source)
    server = ScriptedModelServer(script, **kwargs)
    with server:
        yield server


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bot.testing.model_server SCRIPT [--port N]``: serve a script until Ctrl-C
    (point ``VIBE_ANTHROPIC_BASE_URL`` at the printed URL)."""
    parser = argparse.ArgumentParser(prog="python -m bot.testing.model_server")
    parser.add_argument("script", type=Path, help="a JSON or YAML script (see the module doc)")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any)")
    args = parser.parse_args(argv)
    try:
        steps = load_script(args.script)
    except ScriptError as exc:
        parser.exit(2, f"error: {exc}\n")
    server = ScriptedModelServer(steps, port=args.port)
    with server:
        print(f"scripted model server on {server.base_url} ({len(steps)} steps)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
