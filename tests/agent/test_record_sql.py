"""Steps persisted through SqlStepRecorder on real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.agent import AgentTask, SqlStepRecorder, ToolSet, render_memory, run_agent
from bot.core.agent import Finished
from bot.sandbox.bwrap import BwrapSandbox
from bot.store.engine import init_db, make_engine

from .conftest import limits, make_settings

SCRIPT = [
    {
        "text": "Reading.",
        "tool_use": [
            {
                "name": "str_replace_based_edit_tool",
                "input": {"command": "view", "path": "x" * 3000},
            }
        ],
    },
    {"tool_use": [{"name": "finish", "input": {"summary": "done"}}]},
]


def _run_and_load(
    url: str, server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    engine = make_engine(url)
    init_db(engine)
    server = server_factory(SCRIPT)
    recorder = SqlStepRecorder(engine, run_key=f"task-1/iter-{uuid.uuid4().hex[:8]}")
    outcome = run_agent(
        make_settings(server, tmp_path),
        tools=ToolSet.full(repo, sandbox),
        task=AgentTask("x"),
        limits=limits(),
        recorder=recorder,
    )
    assert outcome.exit == Finished("done")
    rows = recorder.load()
    assert [r.index for r in rows] == [1, 2]
    first = rows[0]
    assert first.text == "Reading."
    assert first.stop_reason == "tool_use"
    call = first.tool_calls[0]
    assert call["name"] == "str_replace_based_edit_tool"
    assert call["is_error"] is True
    assert "not recorded" in call["input"]  # the long input was truncated for storage
    assert first.input_tokens + first.cache_write_tokens + first.cache_read_tokens > 0
    assert sum(r.cost for r in rows) == pytest.approx(outcome.usage.cost)
    assert sum(r.output_tokens for r in rows) == outcome.usage.output_tokens
    assert first.request["messages"] == 1
    assert first.request["request_id"].startswith("req_")
    memory = render_memory(rows).splitlines()
    assert memory[0].startswith("1. str_replace_based_edit_tool {")
    assert "-> error: " in memory[0]
    assert memory[1].startswith("2. finish ")
    assert memory[1].endswith("-> ok: finished")
    assert render_memory(rows, limit_chars=40).startswith("[earlier steps omitted]")
    engine.dispose()


def test_steps_persist_in_sqlite(
    server_factory: Any, repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    _run_and_load(f"sqlite:///{tmp_path / 'vibe.db'}", server_factory, repo, sandbox, tmp_path)


@pytest.mark.postgres
def test_steps_persist_in_postgres(
    pg_database_url: str,
    server_factory: Any,
    repo: Path,
    sandbox: BwrapSandbox,
    tmp_path: Path,
) -> None:
    _run_and_load(pg_database_url, server_factory, repo, sandbox, tmp_path)
