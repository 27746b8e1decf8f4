"""What a service process imports before it answers: the anthropic and MCP SDKs (about
three seconds and one second of CPU here) load with the first agent run or the first
model-key check, not at start-up."""

from __future__ import annotations

import json
import subprocess
import sys


def _loaded_after(statement: str, modules: list[str]) -> dict[str, bool]:
    probe = (
        f"import sys, json; {statement}; "
        f"print(json.dumps({{m: m in sys.modules for m in {modules!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return dict(json.loads(out.stdout))


def test_the_service_app_starts_without_the_model_and_mcp_sdks() -> None:
    loaded = _loaded_after("import bot.entrypoints.app", ["anthropic", "mcp", "bot.agent.tools"])
    assert loaded == {"anthropic": False, "mcp": False, "bot.agent.tools": False}


def test_the_agent_package_still_offers_its_names() -> None:
    loaded = _loaded_after(
        "from bot.agent import ToolSet, cost, run_agent; assert callable(cost)", ["anthropic"]
    )
    assert loaded == {"anthropic": True}
