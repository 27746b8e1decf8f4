"""Exact cost from usage (cache tokens included) and prompt-cache breakpoints that stay
put, so a real API would bill most of each request as cache reads."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.agent import AgentTask, MemoryRecorder, TokenUsage, ToolSet, cost, run_agent
from bot.agent.cost import price_for
from bot.core.agent import Finished
from bot.core.tasks import Usage
from bot.observability import PROCESS_REGISTRY
from bot.sandbox.bwrap import BwrapSandbox
from bot.settings import ModelPrice

from .conftest import limits, make_settings

READ = {
    "tool_use": [
        {"name": "str_replace_based_edit_tool", "input": {"command": "view", "path": "calc.py"}}
    ]
}
FINISH = {"tool_use": [{"name": "finish", "input": {"summary": "done"}}]}
USAGE = {
    "input_tokens": 1000,
    "output_tokens": 500,
    "cache_creation_input_tokens": 2000,
    "cache_read_input_tokens": 30000,
}


def test_cost_is_exact_from_usage_including_cache_tokens(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([dict(READ, usage=USAGE, repeat=2), dict(FINISH, usage=USAGE)])
    recorder = MemoryRecorder()
    before = _counted("claude-sonnet-4-6")
    outcome = run_agent(
        make_settings(server, tmp_path, model="claude-sonnet-4-6"),
        tools=ToolSet.full(repo, sandbox),
        task=AgentTask("x"),
        limits=limits(),
        recorder=recorder,
    )
    assert outcome.exit == Finished("done")
    # $3 input, $15 output, $3.75 cache write, $0.30 cache read per million tokens:
    # 1000*3 + 500*15 + 2000*3.75 + 30000*0.3 = 27,000 micro-dollars per step.
    assert outcome.usage.cost == 0.081
    assert [s.cost for s in recorder.steps] == [0.027, 0.027, 0.027]
    assert outcome.tokens == TokenUsage(3000, 1500, 6000, 90000)
    assert outcome.tokens.total_input == 99000
    assert outcome.usage == Usage(99000, 1500, 0.081)  # what the task records
    # The process's Prometheus counters grew by exactly the same amounts.
    after = _counted("claude-sonnet-4-6")
    grown = {k: after[k] - before[k] for k in after}
    assert grown == pytest.approx(
        {"input": 3000, "output": 1500, "cache_write": 6000, "cache_read": 90000, "$": 0.081}
    )


def _counted(model: str) -> dict[str, float]:
    def value(name: str, **labels: str) -> float:
        return PROCESS_REGISTRY.get_sample_value(name, {"model": model, **labels}) or 0.0

    kinds = ("input", "output", "cache_write", "cache_read")
    counted = {k: value("vibe_model_tokens_total", kind=k) for k in kinds}
    return {**counted, "$": value("vibe_model_cost_dollars_total")}


def test_cost_uses_operator_prices_and_dated_model_names(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    prices = {"claude-test-1": ModelPrice(input=2, output=10, cache_write=2.5, cache_read=0.2)}
    server = server_factory([dict(FINISH, usage=USAGE)])
    outcome = run_agent(
        make_settings(server, tmp_path, prices=prices),
        tools=ToolSet.full(repo, sandbox),
        task=AgentTask("x"),
        limits=limits(),
        model="claude-test-1-20260101",
    )
    assert outcome.usage.cost == (1000 * 2 + 500 * 10 + 2000 * 2.5 + 30000 * 0.2) / 1e6
    assert server.message_requests[0].body["model"] == "claude-test-1-20260101"
    assert price_for(prices, "claude-test-1-20260101") == prices["claude-test-1"]
    assert cost(TokenUsage(1_000_000, 0, 0, 0), prices["claude-test-1"]) == Decimal(2)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _breakpoints(body: dict[str, Any]) -> list[str]:
    where = [f"tools.{i}" for i, t in enumerate(body["tools"]) if "cache_control" in t]
    where += [f"system.{i}" for i, s in enumerate(body["system"]) if "cache_control" in s]
    for m, message in enumerate(body["messages"]):
        for b, block in enumerate(message["content"]):
            if "cache_control" in block:
                where.append(f"messages.{m}.{b}")
    return where


def test_cache_breakpoints_are_present_and_stable_across_steps(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    server = server_factory([dict(READ, repeat=5), FINISH], min_cache_tokens=1)
    recorder = MemoryRecorder()
    context = "## Repository map\ncalc.py: add(a, b)\ntest_calc.py: AddTest\n" * 20
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=ToolSet.full(repo, sandbox),
        task=AgentTask("fix add", context=context),
        limits=limits(),
        recorder=recorder,
    )
    assert outcome.exit == Finished("done")
    requests = [r.body for r in server.message_requests]
    assert len(requests) == 6
    # The Anthropic-defined tools head the prefix, in a fixed order, type and name only.
    assert requests[0]["tools"][:2] == [
        {
            "type": "text_editor_20250728",
            "name": "str_replace_based_edit_tool",
            "max_characters": 25000,
        },
        {"type": "bash_20250124", "name": "bash"},
    ]
    assert [t["name"] for t in requests[0]["tools"]] == [
        "str_replace_based_edit_tool",
        "bash",
        "search",
        "finish",
    ]
    head = json.dumps([requests[0]["tools"], requests[0]["system"]], sort_keys=True)
    for k, body in enumerate(requests):
        # Stable head: tools and system byte-identical, breakpoints at the same places.
        assert json.dumps([body["tools"], body["system"]], sort_keys=True) == head
        last = len(body["messages"]) - 1
        moving = [f"messages.{last}.0"]
        if k:  # the previous request's newest block stays marked, so it is hit exactly
            previous_last = requests[k - 1]["messages"][-1]["content"]
            moving.insert(0, f"messages.{last - 2}.{len(previous_last) - 1}")
        assert _breakpoints(body) == ["system.0", "system.1", *moving]
        if k:
            previous = _strip(requests[k - 1]["messages"])
            assert _strip(body["messages"])[: len(previous)] == previous
    # Billing as the API does it: everything before the moving breakpoint is read from
    # cache on every later step, and reads grow with the conversation.
    usages = [r.usage for r in server.message_requests]
    assert usages[0] is not None
    assert usages[0]["cache_read_input_tokens"] == 0
    assert usages[0]["cache_creation_input_tokens"] > 0
    reads = [u["cache_read_input_tokens"] for u in usages if u is not None]
    assert all(b > a for a, b in itertools.pairwise(reads))
    # The built-in tools' documented 700 + 245 tokens are inside what each later step reads.
    assert reads[1] > 700 + 245
    for earlier, later in itertools.pairwise(usages):
        assert earlier is not None
        assert later is not None
        prefix = earlier["cache_read_input_tokens"] + earlier["cache_creation_input_tokens"]
        assert later["cache_read_input_tokens"] == prefix
    # The agent recorded exactly what the API reported.
    assert [s.usage.cache_read_tokens for s in recorder.steps] == reads
    assert outcome.tokens.cache_read_tokens == sum(reads)
