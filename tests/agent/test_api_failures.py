"""API failures through the real SDK against the scripted server: retries, spend limits,
broken streams, oversized requests and requests that cannot succeed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bot.agent import AgentTask, MemoryRecorder, ToolSet, run_agent
from bot.core.agent import Errored, Finished
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits

from .conftest import limits, make_settings

TASK = AgentTask(instruction="do the thing")
FINISH = {"tool_use": [{"name": "finish", "input": {"summary": "done"}}]}
READ = {
    "tool_use": [
        {"name": "str_replace_based_edit_tool", "input": {"command": "view", "path": "README.md"}}
    ]
}


def overloaded(retry_after: float = 0.01) -> dict[str, Any]:
    return {"error": {"status": 529, "type": "overloaded_error", "retry_after": retry_after}}


def run(server: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path, **kwargs: Any) -> Any:
    settings_overrides = kwargs.pop("settings", {})
    return run_agent(
        make_settings(server, tmp_path, **settings_overrides),
        tools=ToolSet.full(repo, sandbox, command_limits=SandboxLimits(wall_seconds=30)),
        task=kwargs.pop("task", TASK),
        limits=limits(),
        **kwargs,
    )


def test_529_storm_exhausts_sdk_retries_then_is_retryable_at_job_level(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([overloaded(), overloaded(), overloaded(), FINISH])
    outcome = run(server, repo, sandbox, tmp_path)
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.retryable is True
    assert outcome.exit.kind == "unavailable"
    assert "529" in outcome.exit.reason
    assert [r.retry_count for r in server.message_requests] == [0, 1, 2]
    assert server.remaining == 1  # nothing after the storm was consumed


def test_short_529_storm_is_absorbed_by_sdk_retries(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([overloaded(), overloaded(), FINISH])
    outcome = run(server, repo, sandbox, tmp_path)
    assert outcome.exit == Finished("done")
    assert [r.status for r in server.message_requests] == [529, 529, 200]


def test_429_retry_after_is_honoured(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(
        [{"error": {"status": 429, "type": "rate_limit_error", "retry_after": 0.4}}, FINISH]
    )
    outcome = run(server, repo, sandbox, tmp_path)
    assert outcome.exit == Finished("done")
    first, second = server.message_requests
    assert first.status == 429
    assert second.retry_count == 1
    assert second.received_at - first.received_at >= 0.4


def test_a_long_retry_after_goes_back_to_the_job_instead_of_sleeping(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(
        [{"error": {"status": 429, "type": "rate_limit_error", "retry_after": 120}}, FINISH]
    )
    outcome = run(server, repo, sandbox, tmp_path)
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.retryable is True
    assert outcome.exit.retry_after == 120
    assert "retry after 120 s" in outcome.exit.reason
    assert outcome.duration < 10
    assert len(server.message_requests) == 1


def test_spend_limit_429_stops_at_once_without_retries(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(
        [
            {
                "error": {
                    "status": 429,
                    "type": "rate_limit_error",
                    "message": "You have reached your specified API usage limits.",
                    "error_code": "enforced_spend_limit_reached",
                    "retry_after": 0.01,
                }
            },
            FINISH,
        ]
    )
    outcome = run(server, repo, sandbox, tmp_path, settings={"anthropic_max_retries": 4})
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.kind == "spend_limit"
    assert outcome.exit.retryable is False
    assert "API usage limits" in outcome.exit.reason
    assert len(server.message_requests) == 1


def test_spend_limit_said_only_in_words_also_stops_at_once(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    words = (
        "You have reached your specified API usage limits. You will regain access on 2027-01-01."
    )
    server = server_factory(
        [{"error": {"status": 429, "type": "rate_limit_error", "message": words}}, FINISH]
    )
    outcome = run(server, repo, sandbox, tmp_path, settings={"anthropic_max_retries": 4})
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.kind == "spend_limit"
    assert "regain access" in outcome.exit.reason
    assert len(server.message_requests) == 1


def test_billing_error_stops_at_once(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(
        [{"error": {"status": 402, "type": "billing_error", "message": "credit balance too low"}}]
    )
    outcome = run(server, repo, sandbox, tmp_path)
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.kind == "spend_limit"
    assert len(server.message_requests) == 1


def _appending(name: str) -> dict[str, Any]:
    return {
        "text": "Recording.",
        "tool_use": [{"name": "bash", "input": {"command": f"echo ran >> {name}"}}],
    }


def test_mid_stream_error_retries_the_turn_and_never_runs_the_broken_one(
    server_factory: Any, sandboxed_repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    # The break comes after the tool_use block is complete (9 events: start, ping, text
    # start/delta/stop, tool start/delta/stop, ...) but before message_delta/message_stop.
    broken = dict(_appending("log.txt"), break_stream={"after_events": 8, "kind": "error"})
    server = server_factory([broken, _appending("log.txt"), FINISH])
    recorder = MemoryRecorder()
    outcome = run(server, sandboxed_repo, sandbox, tmp_path, recorder=recorder)
    assert outcome.exit == Finished("done")
    assert (sandboxed_repo / "log.txt").read_text() == "ran\n"
    assert len(server.message_requests) == 3
    assert recorder.steps[0].error is not None
    assert "overloaded_error" in recorder.steps[0].error
    # The retried request is the same conversation, not one with a half turn in it.
    assert (
        server.message_requests[0].body["messages"] == server.message_requests[1].body["messages"]
    )


def test_cut_connection_mid_tool_input_retries_the_turn(
    server_factory: Any, sandboxed_repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    long_command = "echo ran >> cut.txt # " + "x" * 300
    broken = {
        "tool_use": [{"name": "bash", "input": {"command": long_command}}],
        "break_stream": {"after_events": 5, "kind": "disconnect"},
    }
    complete = {"tool_use": [{"name": "bash", "input": {"command": long_command}}]}
    server = server_factory([broken, complete, FINISH])
    outcome = run(server, sandboxed_repo, sandbox, tmp_path)
    assert outcome.exit == Finished("done")
    assert (sandboxed_repo / "cut.txt").read_text() == "ran\n"


def test_a_stream_that_keeps_breaking_is_retryable_later(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    broken = dict(READ, break_stream={"after_events": 2, "kind": "error"})
    server = server_factory([dict(broken, repeat=3), FINISH])
    outcome = run(server, repo, sandbox, tmp_path)
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.kind == "stream_broken"
    assert outcome.exit.retryable is True
    assert len(server.message_requests) == 3


def test_request_too_large_trims_old_tool_output_and_retries_once(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    (repo / "big.txt").write_text("line of text\n" * 3000)
    too_large = {"error": {"status": 413, "type": "request_too_large"}}
    server = server_factory(
        [
            {
                "tool_use": [
                    {
                        "name": "str_replace_based_edit_tool",
                        "input": {"command": "view", "path": "big.txt"},
                    }
                ]
            },
            READ,
            too_large,
            FINISH,
        ]
    )
    outcome = run(server, repo, sandbox, tmp_path)
    assert outcome.exit == Finished("done")
    retried = server.message_requests[3].body["messages"]
    old_result = retried[2]["content"][0]
    assert old_result["content"] == "[output removed to fit the context window]"
    assert "line of text" not in str(retried)


def test_prompt_too_long_halves_the_context_pack_then_gives_up(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    context = "def f():\n    return 1\n" * 2000  # about 11,000 tokens
    fits_after_trim = server_factory([FINISH], context_window=11_000)
    outcome = run(fits_after_trim, repo, sandbox, tmp_path, task=AgentTask("x", context=context))
    assert outcome.exit == Finished("done")
    assert [r.status for r in fits_after_trim.message_requests] == [400, 200]

    never_fits = server_factory([FINISH], context_window=2_000)
    outcome = run(never_fits, repo, sandbox, tmp_path, task=AgentTask("x", context=context))
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.kind == "too_large"
    assert outcome.exit.retryable is False
    assert "prompt is too long" in outcome.exit.reason
    assert len(never_fits.message_requests) == 2


def test_rejected_key_and_invalid_requests_are_not_retried(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    wrong_key = server_factory([FINISH], api_key="sk-ant-some-other-key-000000")
    outcome = run(wrong_key, repo, sandbox, tmp_path)
    assert isinstance(outcome.exit, Errored)
    assert "API key was rejected" in outcome.exit.reason
    assert len(wrong_key.requests) == 1

    invalid = server_factory(
        [{"error": {"status": 400, "type": "invalid_request_error", "message": "bad tool"}}]
    )
    outcome = run(invalid, repo, sandbox, tmp_path)
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.kind == "fatal"
    assert "bad tool" in outcome.exit.reason
    assert len(invalid.requests) == 1


def test_unreachable_api_is_retryable(repo: Path, sandbox: BwrapSandbox, tmp_path: Path) -> None:
    from bot.testing.model_server import ScriptedModelServer

    server = ScriptedModelServer([])
    server.start()
    url = server.base_url
    server.stop()  # nothing listens there any more

    class Gone:
        base_url = url

    outcome = run(Gone(), repo, sandbox, tmp_path, settings={"anthropic_max_retries": 0})
    assert isinstance(outcome.exit, Errored)
    assert outcome.exit.retryable is True
    assert "cannot reach the API" in outcome.exit.reason
