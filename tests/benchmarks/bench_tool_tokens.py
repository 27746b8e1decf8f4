"""Tokens of the agent's tool definitions in the cached prefix, before and after the
Anthropic-defined tools replaced our own file and command tools. Run with
``python tests/benchmarks/bench_tool_tokens.py``.

Before: the definitions main sent (``tool_definitions_before.json``, written from
``ToolSet.full(...).definitions()`` and ``ToolSet.read_only(...).definitions()`` on main just
before the change), read_file, list_files, search, edit_file, create_file, run_command and
finish with their JSON schemas. After: what ``ToolSet`` sends now, in the same run.

The real ``count_tokens`` endpoint cannot be reached from here, so both sides use what is
documented or measurable offline:

- our own JSON-schema tools: the codebase's token proxy, characters / 4 rounded up
  (``bot.context.terms.estimate_tokens``, as ``bot/context/budget.py`` counts), over the
  definition's canonical JSON;
- an Anthropic-defined tool: the input tokens its documentation states, 700 for the text
  editor (https://docs.claude.com/en/docs/agents-and-tools/tool-use/text-editor-tool,
  "Pricing and token usage") and 245 for bash
  (https://docs.claude.com/en/docs/agents-and-tools/tool-use/bash-tool, "Pricing"), which
  stand for the schema and instructions built into the model.

The tool-use system prompt (346 tokens with ``tool_choice`` auto on Claude 4 models,
https://docs.claude.com/en/docs/agents-and-tools/tool-use/overview#pricing) is sent
whenever ``tools`` is, before and after alike, and is printed apart. As a cross-check the
same requests go to the scripted model server's ``count_tokens``, which bills this way.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anthropic

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.agent import ToolSet, price_for  # noqa: E402
from bot.context.terms import estimate_tokens  # noqa: E402
from bot.sandbox.bwrap import BwrapSandbox  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.testing.model_server import BUILTIN_TOOL_TOKENS, ScriptedModelServer  # noqa: E402

BEFORE = Path(__file__).with_name("tool_definitions_before.json")
TOOL_USE_SYSTEM_PROMPT = 346
MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "hello"}]


def tool_tokens(tool: dict[str, Any]) -> tuple[int, str]:
    """One definition's tokens in the prefix and how they were counted."""
    documented = BUILTIN_TOOL_TOKENS.get(str(tool.get("type", "")))
    if documented is not None:
        return documented, "documented"
    canonical = json.dumps(tool, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return estimate_tokens(canonical), "chars/4"


def report(label: str, tools: list[dict[str, Any]]) -> int:
    total = 0
    print(f"  {label}")
    for tool in tools:
        tokens, how = tool_tokens(tool)
        total += tokens
        kind = tool.get("type", "custom")
        print(f"    {tool['name']:<30} {kind:<22} {tokens:>5}  ({how})")
    print(f"    {'total':<30} {'':<22} {total:>5}")
    return total


def counted(server: ScriptedModelServer, tools: list[dict[str, Any]]) -> int:
    """The scripted server's ``count_tokens`` for a one-message request with these tools,
    minus the same request without tools."""
    client = anthropic.Anthropic(api_key="sk-ant-bench-0", base_url=server.base_url)
    try:
        with_tools = client.messages.count_tokens(
            model=MODEL,
            messages=HELLO,
            tools=tools,
        ).input_tokens
        bare = client.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens
    finally:
        client.close()
    return with_tools - bare


def main() -> None:
    before = json.loads(BEFORE.read_text())
    work = Path(tempfile.mkdtemp(prefix="bench-tool-tokens-"))
    sandbox = BwrapSandbox()
    after = {
        "full": [dict(t) for t in ToolSet.full(work, sandbox).definitions()],
        "read_only": [dict(t) for t in ToolSet.read_only(work, sandbox).definitions()],
    }
    work.rmdir()
    print("tool definitions in the cached prefix (tokens; one run)")
    figures: dict[str, tuple[int, int]] = {}
    with ScriptedModelServer([]) as server:
        for kind, title in [("full", "working set"), ("read_only", "planning set")]:
            print(f"{title}:")
            old = report("before (our JSON schemas, main)", before[kind])
            new = report("after (Anthropic-defined editor/bash + our own)", after[kind])
            figures[kind] = (old, new)
            check_old, check_new = counted(server, before[kind]), counted(server, after[kind])
            print(
                f"  scripted server count_tokens, same requests: before {check_old}, "
                f"after {check_new}"
            )
            assert (check_old, check_new) == (old, new), "the two counts disagree"
    print(f"tool-use system prompt, sent before and after alike: {TOOL_USE_SYSTEM_PROMPT}")
    settings = load_settings(
        anthropic_api_key="sk-ant-bench-0", data_dir=Path(tempfile.gettempdir())
    )
    price = price_for(settings.prices, MODEL)
    for kind, title in [("full", "working set"), ("read_only", "planning set")]:
        old, new = figures[kind]
        with_prompt = (new + TOOL_USE_SYSTEM_PROMPT) / (old + TOOL_USE_SYSTEM_PROMPT)
        print(
            f"{title}: before {old}, after {new} tokens; ratio after/before {new / old:.2f} "
            f"({with_prompt:.2f} with the tool-use system prompt)"
        )
        # Tools head the cached prefix: written once per cache lifetime, read every step.
        read = (new - old) * float(price.cache_read) / 1e6
        write = (new - old) * float(price.cache_write) / 1e6
        print(
            f"  difference at {MODEL} prices: ${read:.6f} per step (cache read), "
            f"${write:.6f} once per cache write"
        )


if __name__ == "__main__":
    main()
