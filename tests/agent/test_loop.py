"""The agent loop driven end to end: scripted model on loopback, real tools, real bwrap."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from bot.agent import AgentTask, MemoryRecorder, ToolSet, run_agent, worktree_review
from bot.core.agent import Errored, Finished, LimitReached, Refused, Stopped
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits
from bot.testing.model_server import Step

from .conftest import limits, make_settings

TASK = AgentTask(instruction="add() subtracts; make it add and keep the tests green.")
EDITOR = "str_replace_based_edit_tool"


def view(path: str) -> dict[str, Any]:
    return {"name": EDITOR, "input": {"command": "view", "path": path}}


def replace(path: str, old: str, new: str) -> dict[str, Any]:
    call = {"command": "str_replace", "path": path, "old_str": old, "new_str": new}
    return {"name": EDITOR, "input": call}


def create(path: str, text: str) -> dict[str, Any]:
    return {"name": EDITOR, "input": {"command": "create", "path": path, "file_text": text}}


def bash(command: str) -> dict[str, Any]:
    return {"name": "bash", "input": {"command": command}}


FIX_SCRIPT: list[dict[str, Any]] = [
    {"text": "Let me look around.", "tool_use": [view(".")]},
    {"tool_use": [view("calc.py")]},
    {"tool_use": [bash("python3 -m unittest -q")]},
    {
        "text": "The operator is wrong.",
        "tool_use": [replace("calc.py", "return a - b", "return a + b")],
    },
    {"tool_use": [bash("python3 -m unittest -q")]},
    {"tool_use": [{"name": "finish", "input": {"summary": "Fixed add() to add."}}]},
]


def tool_results(request: Any) -> list[dict[str, Any]]:
    last = request.body["messages"][-1]
    return [b for b in last["content"] if b.get("type") == "tool_result"]


def full_tools(repo: Path, sandbox: BwrapSandbox, **kwargs: Any) -> ToolSet:
    return ToolSet.full(repo, sandbox, command_limits=SandboxLimits(wall_seconds=60), **kwargs)


def test_scripted_run_reads_edits_tests_and_finishes(
    server_factory: Any, sandboxed_repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(FIX_SCRIPT)
    recorder = MemoryRecorder()
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=full_tools(sandboxed_repo, sandbox),
        task=TASK,
        limits=limits(),
        recorder=recorder,
    )
    assert outcome.exit == Finished("Fixed add() to add.")
    assert (sandboxed_repo / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert outcome.steps == 6
    requests = server.message_requests
    assert len(requests) == 6
    listing = tool_results(requests[1])[0]["content"]
    assert "calc.py" in listing
    assert ".git" not in listing.split()
    assert "return a - b" in tool_results(requests[2])[0]["content"]
    failing = tool_results(requests[3])[0]
    assert failing["is_error"] is True
    assert "FAILED" in failing["content"]
    passing = tool_results(requests[5])[0]
    assert passing["is_error"] is False
    assert "exit code 0" in passing["content"]
    assert [s.index for s in recorder.steps] == [1, 2, 3, 4, 5, 6]
    assert recorder.steps[3].tool_calls[0].name == EDITOR
    assert recorder.steps[-1].stop_reason == "tool_use"
    assert sum(s.usage.output_tokens for s in recorder.steps) == outcome.usage.output_tokens
    assert all(r.stream for r in requests)


def test_tool_error_is_data_and_the_agent_recovers(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(
        [
            {"tool_use": [view("nope.py")]},
            {"tool_use": [replace("calc.py", "a-b", "a+b")]},
            {"tool_use": [{"name": EDITOR, "input": {"path": "calc.py"}}]},
            {"tool_use": [{"name": "no_such_tool", "input": {}}]},
            {"tool_use": [replace("calc.py", "a - b", "a + b")]},
            {"tool_use": [{"name": "finish", "input": {"summary": "done"}}]},
        ]
    )
    outcome = run_agent(
        make_settings(server, tmp_path), tools=full_tools(repo, sandbox), task=TASK, limits=limits()
    )
    assert outcome.exit == Finished("done")
    errors = [tool_results(r)[0] for r in server.message_requests[1:5]]
    assert all(e["is_error"] for e in errors)
    assert "no such file" in errors[0]["content"]
    assert "did not appear verbatim" in errors[1]["content"]
    assert "invalid input for str_replace_based_edit_tool: command" in errors[2]["content"]
    assert "unknown tool 'no_such_tool'" in errors[3]["content"]
    assert tool_results(server.message_requests[5])[0]["is_error"] is False
    assert "a + b" in (repo / "calc.py").read_text()


LOOPING = [{"tool_use": [view("README.md")]}]
NO_CACHE = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}


@pytest.mark.parametrize(
    ("which", "limit_kwargs", "usage"),
    [
        ("steps", {"steps": 3}, None),
        ("input_tokens", {"input_tokens": 25_000}, {"input_tokens": 10_000, **NO_CACHE}),
        ("output_tokens", {"output_tokens": 1_500}, {"output_tokens": 700}),
        # 10,000 input tokens at $3 per million: $0.03 a step, so the 4th call is refused.
        ("dollars", {"dollars": 0.1}, {"input_tokens": 10_000, "output_tokens": 0, **NO_CACHE}),
    ],
)
def test_each_limit_stops_the_run_cleanly(
    server_factory: Any,
    repo: Path,
    sandbox: BwrapSandbox,
    tmp_path: Path,
    which: str,
    limit_kwargs: dict[str, Any],
    usage: dict[str, int] | None,
) -> None:
    step = dict(LOOPING[0], usage=usage) if usage else LOOPING[0]
    server = server_factory([dict(step, repeat=20)])
    recorder = MemoryRecorder()
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=full_tools(repo, sandbox),
        task=TASK,
        limits=limits(**limit_kwargs),
        recorder=recorder,
    )
    assert isinstance(outcome.exit, LimitReached)
    assert outcome.exit.which == which
    reason = {
        "steps": "3 of 3 steps used",
        "input_tokens": "30000 of 25000 input tokens used",
        "output_tokens": "2100 of 1500 output tokens used",
        "dollars": "$0.1200 of $0.10 spent",
    }[which]
    assert outcome.exit.detail == reason
    expected_steps = {"steps": 3, "input_tokens": 3, "output_tokens": 3, "dollars": 4}[which]
    assert outcome.steps == expected_steps == len(server.message_requests)
    # Clean: every tool call of the last turn was answered and recorded.
    assert len(recorder.steps) == expected_steps
    assert outcome.messages[-1]["content"][0]["type"] == "tool_result"


def test_wall_time_limit(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([dict(LOOPING[0], delay=0.15, repeat=20)])
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=full_tools(repo, sandbox),
        task=TASK,
        limits=limits(seconds=0.4),
    )
    assert isinstance(outcome.exit, LimitReached)
    assert outcome.exit.which == "wall_time"
    assert outcome.exit.detail.endswith("of 0.4 s used")
    assert 2 <= outcome.steps <= 3


def test_a_turn_of_many_commands_stops_at_the_wall_time_limit(
    server_factory: Any, sandboxed_repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    calls = [bash(f"sleep 1; touch ran{n}.txt") for n in range(1, 5)]
    server = server_factory([{"tool_use": calls}])
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=full_tools(sandboxed_repo, sandbox),
        task=TASK,
        limits=limits(seconds=1.5),
    )
    assert isinstance(outcome.exit, LimitReached)
    assert outcome.exit.which == "wall_time"
    results = outcome.messages[-1]["content"]
    assert results[0]["content"].startswith("exit code 0")
    assert [r["content"] for r in results[2:]] == ["not run: the wall-time limit was reached"] * 2
    assert (sandboxed_repo / "ran1.txt").exists()
    assert not (sandboxed_repo / "ran3.txt").exists()
    assert not (sandboxed_repo / "ran4.txt").exists()
    assert outcome.duration < 3.5


def test_stop_while_the_model_answers_abandons_the_turn(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    cancel = threading.Event()
    calls = {"n": 0}

    def responder(_request: Any) -> Step:
        calls["n"] += 1
        if calls["n"] == 2:
            cancel.set()  # /vibe stop arrives while the model is answering
        return Step.model_validate(LOOPING[0])

    server = server_factory(responder)
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=full_tools(repo, sandbox, cancel=cancel),
        task=TASK,
        limits=limits(),
        cancel=cancel,
    )
    assert outcome.exit == Stopped()
    assert len(server.message_requests) == 2
    assert outcome.steps == 1  # the abandoned turn was neither used nor run
    assert outcome.messages[-1]["role"] == "user"


def test_stop_during_a_command_kills_it_and_skips_the_rest_of_the_turn(
    server_factory: Any, sandboxed_repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    cancel = threading.Event()
    server = server_factory(
        [
            {
                "tool_use": [
                    bash("sleep 30"),
                    create("late.txt", "x"),
                ]
            },
            {"tool_use": [{"name": "finish", "input": {"summary": "never"}}]},
        ]
    )
    timer = threading.Timer(1.0, cancel.set)
    timer.start()
    try:
        outcome = run_agent(
            make_settings(server, tmp_path),
            tools=full_tools(sandboxed_repo, sandbox, cancel=cancel),
            task=TASK,
            limits=limits(),
            cancel=cancel,
        )
    finally:
        timer.cancel()
    assert outcome.exit == Stopped()
    assert outcome.duration < 10
    killed, skipped = outcome.messages[-1]["content"]
    assert "cancelled" in killed["content"]
    assert skipped["content"] == "not run: the task was stopped"
    assert not (sandboxed_repo / "late.txt").exists()
    assert len(server.message_requests) == 1


def test_self_review_shows_the_diff_once_and_is_recorded(
    server_factory: Any, sandboxed_repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    from .conftest import git

    base = git(sandboxed_repo, "rev-parse", "HEAD").strip()
    server = server_factory(
        [
            {
                "tool_use": [
                    replace("calc.py", "a - b", "a + b"),
                    create("NOTES.md", "new\n"),
                    bash("mkfifo trap"),
                    bash("python3 -m unittest -q"),
                ]
            },
            {"tool_use": [{"name": "finish", "input": {"summary": "first try"}}]},
            {"tool_use": [{"name": "finish", "input": {"summary": "reviewed and done"}}]},
        ]
    )
    recorder = MemoryRecorder()
    tools = full_tools(sandboxed_repo, sandbox)
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=tools,
        task=TASK,
        limits=limits(),
        recorder=recorder,
        review=worktree_review(tools, base),
    )
    assert outcome.exit == Finished("reviewed and done")
    review = tool_results(server.message_requests[2])[0]["content"]
    assert "-    return a - b" in review
    assert "+    return a + b" in review
    assert "+new" in review  # the untracked new file is part of the diff
    assert "trap" not in review  # a FIFO is left out, not an error in the review
    assert "python3 -m unittest -q" in review
    assert "exit code 0" in review
    assert outcome.self_review is not None
    assert "Your changes" in outcome.self_review
    assert [s.feedback for s in recorder.steps] == [None, "self", None]


def test_refusal_stop_reason_is_a_typed_exit(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([{"text": "I can't help with that.", "stop_reason": "refusal"}])
    outcome = run_agent(
        make_settings(server, tmp_path), tools=full_tools(repo, sandbox), task=TASK, limits=limits()
    )
    assert outcome.exit == Refused("I can't help with that.")


def test_answers_without_tools_are_nudged_then_give_up(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([{"text": "Thinking...", "repeat": 3}])
    outcome = run_agent(
        make_settings(server, tmp_path), tools=full_tools(repo, sandbox), task=TASK, limits=limits()
    )
    assert isinstance(outcome.exit, Errored)
    assert "without using a tool" in outcome.exit.reason
    nudge = server.message_requests[1].body["messages"][-1]["content"][0]["text"]
    assert "call finish" in nudge


def test_cut_off_tool_call_is_never_executed(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(
        [
            {
                "tool_use": [create("half.py", "x = ")],
                "stop_reason": "max_tokens",
            },
            {"tool_use": [{"name": "finish", "input": {"summary": "ok"}}]},
        ]
    )
    outcome = run_agent(
        make_settings(server, tmp_path), tools=full_tools(repo, sandbox), task=TASK, limits=limits()
    )
    assert outcome.exit == Finished("ok")
    assert not (repo / "half.py").exists()
    result = tool_results(server.message_requests[1])[0]
    assert result["is_error"]
    assert "cut off" in result["content"]


def test_unknown_model_price_refuses_to_start(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([])
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=full_tools(repo, sandbox),
        task=TASK,
        limits=limits(),
        model="claude-unpriced-9",
    )
    assert isinstance(outcome.exit, Errored)
    assert "VIBE_PRICES__claude-unpriced-9__input" in outcome.exit.reason
    assert server.requests == []


def test_empty_text_blocks_are_not_sent_back(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory(
        [
            {"text": "", "tool_use": LOOPING[0]["tool_use"]},
            {"tool_use": [{"name": "finish", "input": {"summary": "ok"}}]},
        ]
    )
    outcome = run_agent(
        make_settings(server, tmp_path), tools=full_tools(repo, sandbox), task=TASK, limits=limits()
    )
    assert outcome.exit == Finished("ok")
    assistant = server.message_requests[1].body["messages"][1]
    assert [b["type"] for b in assistant["content"]] == ["tool_use"]


def test_missing_api_key_is_a_clear_error_without_a_request(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([])
    outcome = run_agent(
        make_settings(server, tmp_path, anthropic_api_key=None),
        tools=full_tools(repo, sandbox),
        task=TASK,
        limits=limits(),
    )
    assert outcome.exit == Errored("no model access: set VIBE_ANTHROPIC_API_KEY")
    assert server.requests == []


def test_a_planning_run_can_view_but_never_edit(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    """The planning set offers the editor for view only (no bash): the model may still
    call str_replace, create or insert, and gets an is_error result instead of a change."""
    server = server_factory(
        [
            {
                "tool_use": [
                    view("calc.py"),
                    replace("calc.py", "a - b", "a + b"),
                    create("PLAN.md", "x"),
                    {
                        "name": EDITOR,
                        "input": {
                            "command": "insert",
                            "path": "calc.py",
                            "insert_line": 0,
                            "insert_text": "x",
                        },
                    },
                    bash("touch hacked"),
                ]
            },
            {"tool_use": [{"name": "finish", "input": {"summary": "1. change calc.py"}}]},
        ]
    )
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=ToolSet.read_only(repo, sandbox),
        task=TASK,
        limits=limits(),
    )
    assert outcome.exit == Finished("1. change calc.py")
    first = server.message_requests[0].body
    assert [t["name"] for t in first["tools"]] == [EDITOR, "search", "run_command", "finish"]
    assert "the editor answers only view" in first["system"][0]["text"]
    viewed, *refused, unknown = tool_results(server.message_requests[1])
    assert viewed["is_error"] is False
    assert "return a - b" in viewed["content"]
    assert [r["is_error"] for r in refused] == [True, True, True]
    assert all("is refused: this is a planning run" in r["content"] for r in refused)
    assert unknown["content"].startswith("unknown tool 'bash'")
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert not (repo / "PLAN.md").exists()
    assert not (repo / "hacked").exists()
