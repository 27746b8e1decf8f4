"""The scripted model server on its own: script format, the wire format the SDK expects,
request validation as the real API does it, cache billing, and hostile input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.testing.model_server import (
    PromptCache,
    ScriptedModelServer,
    ScriptError,
    Step,
    flatten_request,
    load_script,
    scripted_model_server,
)
from bot.testing.model_server import main as model_server_main

from .conftest import API_KEY

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "hello"}]
OBJECT = {"type": "object", "properties": {}}


_clients: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def client(server: ScriptedModelServer) -> anthropic.Anthropic:
    made = anthropic.Anthropic(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    _clients.append(made)
    return made


def sse_events(
    server: ScriptedModelServer, body: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    events = []
    with httpx.stream(
        "POST", server.base_url + "/v1/messages", json={**body, "stream": True}, timeout=10
    ) as response:
        name = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def test_script_formats_and_errors(tmp_path: Path) -> None:
    yaml_text = """
- text: hi
  tool_use: [{name: read_file, input: {path: a.py}}]
- error: {status: 529, type: overloaded_error}
  repeat: 2
"""
    steps = load_script(yaml_text)
    assert len(steps) == 3
    assert steps[0].effective_stop_reason == "tool_use"
    assert steps[1] == steps[2]
    path = tmp_path / "script.json"
    path.write_text(json.dumps([{"text": "done"}]))
    assert load_script(path)[0].effective_stop_reason == "end_turn"
    for bad, message in [
        ("{a: 1}", "a script is a list of steps"),
        ("- 3", "step 0: expected a mapping"),
        ("- {}", "step 0"),
        ("- {text: hi, error: {status: 500}}", "an error step cannot also carry"),
        ("- {text: hi, colour: red}", "colour"),
        ("- {text: hi, repeat: 0}", "repeat must be an integer"),
        ("- {error: {status: 200}}", "status"),
        ("- {text: hi, stop_reason: nonsense}", "stop_reason"),
        ("- [unclosed", "not valid YAML"),
    ]:
        with pytest.raises(ScriptError, match=message):
            load_script(bad)
    with pytest.raises(ScriptError, match="cannot read script"):
        load_script(tmp_path / "missing.yaml")


def test_json_reply_shape_and_recording() -> None:
    script = [{"text": "hi", "tool_use": [{"name": "t", "input": {"x": 1}, "id": "toolu_1"}]}]
    with scripted_model_server(script) as server:
        message = client(server).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        assert message.stop_reason == "tool_use"
        assert message.content[0].type == "text"
        assert message.content[1].type == "tool_use"
        assert message.content[1].id == "toolu_1"
        assert message.usage.input_tokens > 0
        assert message.usage.output_tokens > 0
        (request,) = server.requests
        assert request.body["messages"] == HELLO
        assert "x-api-key" not in request.headers
        assert API_KEY not in json.dumps(request.headers)
        assert request.status == 200
        assert request.usage == message.usage.model_dump(
            include={
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
            }
        )


def test_stream_has_the_real_event_sequence() -> None:
    long_input = {"command": "view", "path": "x" * 150}
    call = {"name": "str_replace_based_edit_tool", "input": long_input}
    with scripted_model_server([{"text": "a" * 100, "tool_use": [call]}]) as server:
        events = sse_events(server, {"model": MODEL, "max_tokens": 10, "messages": HELLO})
    names = [n for n, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 2
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    text = "".join(d["text"] for d in deltas if d["type"] == "text_delta")
    partial = "".join(d["partial_json"] for d in deltas if d["type"] == "input_json_delta")
    assert text == "a" * 100
    assert json.loads(partial) == long_input
    assert sum(d["type"] == "input_json_delta" for d in deltas) > 1  # really partial
    assert events[0][1]["message"]["content"] == []
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_mid_stream_error_event_and_http_errors() -> None:
    script = [
        {"text": "partial", "break_stream": {"after_events": 3}},
        {"text": "x", "break_stream": {"after_events": 3, "type": "api_error"}},
        {"error": {"status": 429, "type": "rate_limit_error", "retry_after": 7}},
    ]
    with scripted_model_server(script) as server:
        events = sse_events(server, {"model": MODEL, "max_tokens": 10, "messages": HELLO})
        assert [n for n, _ in events] == ["message_start", "ping", "content_block_start", "error"]
        assert events[-1][1]["error"]["type"] == "overloaded_error"
        # The same step answered without streaming is an HTTP error of that type.
        plain = httpx.post(
            server.base_url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
        )
        assert plain.status_code == 500
        limited = httpx.post(
            server.base_url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
        )
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "7"
        assert limited.json()["error"]["type"] == "rate_limit_error"
        exhausted = httpx.post(
            server.base_url + "/v1/messages",
            json={"model": MODEL, "max_tokens": 10, "messages": HELLO},
        )
        assert exhausted.status_code == 500
        assert exhausted.headers["x-should-retry"] == "false"
        assert "script exhausted after 3 steps" in exhausted.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 5, "messages": HELLO}, "model: Field required"),
        ({"model": MODEL, "messages": HELLO}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, "at least one message"),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "assistant", "content": "x"}]},
            "roles must alternate",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": ""}]},
            "non-empty content",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
            },
            "text content blocks must be non-empty",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    *HELLO,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t1", "name": "n", "input": {}}],
                    },
                    {"role": "user", "content": "no result"},
                ],
            },
            "without `tool_result` blocks",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "zz", "content": "x"}],
                    }
                ],
            },
            "unexpected `tool_use_id`",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "system": [
                    {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}}
                    for i in range(5)
                ],
                "messages": HELLO,
            },
            "maximum of 4 blocks with cache_control",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": HELLO,
                "tools": [
                    {"name": "a", "input_schema": OBJECT},
                    {"name": "a", "input_schema": OBJECT},
                ],
            },
            "Tool names must be unique",
        ),
        (
            {"model": MODEL, "max_tokens": 5, "messages": HELLO, "tools": [{"name": "a"}]},
            "tools.0.custom.input_schema: Field required",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": HELLO,
                "tools": [{"type": "text_editor_20250728", "name": "str_replace_editor"}],
            },
            "tools.0.text_editor_20250728.name: Input should be 'str_replace_based_edit_tool'",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": HELLO,
                "tools": [
                    {"type": "bash_20250124", "name": "bash"},
                    {"type": "bash_20250124", "name": "shell"},
                ],
            },
            "tools.1.bash_20250124.name: Input should be 'bash'",
        ),
        (
            {
                "model": MODEL,
                "max_tokens": 5,
                "messages": HELLO,
                "tools": [{"type": "str_replace_based_edit_tool", "name": "x"}],
            },
            "tools.0: Input tag 'str_replace_based_edit_tool' found using 'type' does not match "
            "any of the expected tags: ",
        ),
    ],
)
def test_invalid_requests_get_the_apis_400(body: dict[str, Any], message: str) -> None:
    with scripted_model_server([{"text": "never sent"}]) as server:
        response = httpx.post(server.base_url + "/v1/messages", json=body)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert message in response.json()["error"]["message"]
        assert server.remaining == 1


def test_hostile_input_is_answered_not_crashed() -> None:
    with scripted_model_server([{"text": "ok"}]) as server:
        url = server.base_url
        assert httpx.post(url + "/v1/messages", content=b"{not json").status_code == 400
        assert httpx.post(url + "/v1/messages", content=b"[1, 2]").status_code == 400
        assert httpx.post(url + "/v1/other", json={}).status_code == 404
        assert httpx.get(url + "/v1/messages").status_code == 404
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(
                b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 67108864\r\n\r\n{"
            )
            assert conn.recv(100).startswith(b"HTTP/1.1 413")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            conn.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            assert conn.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection((host, int(port)), timeout=5) as conn:
            # A negative length must not mean "read until the client hangs up".
            conn.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{")
            assert conn.recv(100).startswith(b"HTTP/1.1 400")
        # Still serving after all that.
        ok = client(server).messages.create(model=MODEL, max_tokens=5, messages=HELLO)
        assert ok.content[0].type == "text"


def test_count_tokens_and_context_window() -> None:
    with scripted_model_server([{"text": "ok"}], context_window=50) as server:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "y" * 400}]}
        counted = client(server).messages.count_tokens(**body)
        assert counted.input_tokens == sum(b.tokens for b in flatten_request(body))
        with pytest.raises(anthropic.BadRequestError, match="prompt is too long"):
            client(server).messages.create(max_tokens=5, **body)


def test_prompt_cache_billing_follows_breakpoints() -> None:
    cache = PromptCache(min_cache_tokens=100)
    mark = {"type": "ephemeral"}
    system = [{"type": "text", "text": "s" * 800, "cache_control": mark}]

    def body(n: int) -> dict[str, Any]:
        messages = []
        for i in range(n):
            messages.append({"role": "user", "content": [{"type": "text", "text": f"u{i} " * 50}]})
            messages.append({"role": "assistant", "content": [{"type": "text", "text": f"a{i}"}]})
        messages.append(
            {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": mark}]}
        )
        return {"system": system, "messages": messages}

    first = cache.bill(MODEL, flatten_request(body(1)))
    total = sum(b.tokens for b in flatten_request(body(1)))
    assert first == (0, total, 0)  # everything up to the last breakpoint is written
    second = cache.bill(MODEL, flatten_request(body(1)))
    assert second == (0, 0, total)  # an identical request is read entirely
    system_tokens = flatten_request(body(0))[0].tokens
    third = cache.bill(MODEL, flatten_request(body(2)))
    assert third[2] == system_tokens  # the old last block changed position: only system hits
    other_model = cache.bill("claude-haiku-4-5", flatten_request(body(1)))
    assert other_model[2] == 0  # caches are per model
    tiny = PromptCache(min_cache_tokens=10_000)
    assert tiny.bill(MODEL, flatten_request(body(1))) == (total, 0, 0)


def test_responder_scripts_and_usage_overrides() -> None:
    def respond(request: Any) -> Step:
        return Step(text=f"you sent {len(request.body['messages'])} messages")

    with ScriptedModelServer(respond) as server:
        message = client(server).messages.create(model=MODEL, max_tokens=5, messages=HELLO)
        assert message.content[0].type == "text"
        assert message.content[0].text == "you sent 1 messages"
    with scripted_model_server(
        [{"text": "x", "usage": {"input_tokens": 7, "output_tokens": 3}}]
    ) as server:
        usage = client(server).messages.create(model=MODEL, max_tokens=5, messages=HELLO).usage
        assert (usage.input_tokens, usage.output_tokens) == (7, 3)
        assert usage.cache_read_input_tokens == 0


def test_wrong_api_key_is_refused_and_server_restarts_cleanly() -> None:
    server = ScriptedModelServer([{"text": "x"}], api_key="sk-ant-right-key-0000000000")
    with server, pytest.raises(anthropic.AuthenticationError):
        client(server).messages.create(model=MODEL, max_tokens=5, messages=HELLO)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.base_url


def test_command_line_serves_a_script_file(tmp_path: Path) -> None:
    script = tmp_path / "demo.yaml"
    script.write_text("- text: from the command line\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.testing.model_server", str(script)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split(" ", 1)[0]
        reply = httpx.post(
            url + "/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": HELLO}
        )
        assert reply.json()["content"][0]["text"] == "from the command line"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {nonsense: 1}\n")
    with pytest.raises(SystemExit) as exited:
        model_server_main([str(bad)])
    assert exited.value.code == 2


@settings(max_examples=100, deadline=None)
@given(
    data=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "text",
                        "tool_use",
                        "error",
                        "usage",
                        "repeat",
                        "status",
                        "name",
                        "input",
                        "break_stream",
                        "delay",
                        "x",
                    ]
                ),
                c,
                max_size=4,
            )
        ),
        max_leaves=10,
    )
)
def test_any_script_parses_or_fails_with_a_script_error(data: Any) -> None:
    source = data if isinstance(data, list) else [data]
    try:
        steps = load_script(source)
    except ScriptError as exc:
        problem = str(exc)
        assert problem.startswith("step ")
    else:
        assert all(isinstance(s, Step) for s in steps)


def test_anthropic_defined_tools_are_accepted_recorded_and_billed_as_documented() -> None:
    """The built-in tools go through the SDK's own request types, are recorded as sent, a
    scripted turn calls them by name, and the prompt is billed their documented tokens
    (700 for the text editor, 245 for bash) rather than the length of their short JSON."""
    from anthropic.types import ToolBash20250124Param, ToolTextEditor20250728Param

    editor = ToolTextEditor20250728Param(
        type="text_editor_20250728", name="str_replace_based_edit_tool", max_characters=1000
    )
    bash = ToolBash20250124Param(type="bash_20250124", name="bash")
    call = {"command": "view", "path": "calc.py", "view_range": [1, -1]}
    script = [{"tool_use": [{"name": "str_replace_based_edit_tool", "input": call}]}]
    with scripted_model_server(script) as server:
        sdk = client(server)
        counted = sdk.messages.count_tokens(model=MODEL, messages=HELLO, tools=[editor, bash])
        bare = sdk.messages.count_tokens(model=MODEL, messages=HELLO)
        assert counted.input_tokens - bare.input_tokens == 700 + 245
        message = sdk.messages.create(
            model=MODEL, max_tokens=100, messages=HELLO, tools=[editor, bash]
        )
    assert message.content[0].type == "tool_use"
    assert message.content[0].name == "str_replace_based_edit_tool"
    assert message.content[0].input == call
    recorded = server.message_requests[0].body["tools"]
    assert recorded == [dict(editor), dict(bash)]
    assert message.usage.input_tokens == counted.input_tokens
