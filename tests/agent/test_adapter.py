"""The loop's agent adapter (:class:`bot.agent.adapter.ClaudeAgent`) over the scripted model."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from bot.agent.adapter import ClaudeAgent
from bot.agent.record import SqlStepRecorder
from bot.core.agent import AgentRequest, Finished
from bot.core.config import RepoConfig
from bot.entrypoints.local import run_local
from bot.sandbox.bwrap import make_sandbox
from bot.settings import Limits, load_settings
from bot.store.engine import init_db, make_engine
from bot.store.tables import AgentStep, Iteration
from bot.testing.model_server import ScriptedModelServer
from tests.loop.sample import docstring, finish, fix_add, make_repo


def test_progress_reports_the_one_based_step_numbers_that_are_stored(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "calc")
    engine = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    init_db(engine)
    read = {"name": "str_replace_based_edit_tool", "input": {"command": "view", "path": "calc.py"}}
    with ScriptedModelServer([]) as server:
        server.add([{"tool_use": [read]}, {"tool_use": [read]}, *finish("Read it.")])
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
        )
        agent = ClaudeAgent(settings, make_sandbox(settings), engine, "progress")
        reported: list[int] = []
        request = AgentRequest(
            workdir=repo,
            instruction="read calc.py",
            context="",
            read_only=True,
            config=RepoConfig(),
            network=False,
        )
        outcome = agent.run(request, cancel=threading.Event(), on_step=reported.append)
    stored = [s.index for s in SqlStepRecorder(engine, "progress/1").load()]
    engine.dispose()
    assert outcome.exit == Finished("Read it."), outcome.exit
    assert reported == [1, 2, 3]
    assert stored == reported


def test_agent_steps_are_linked_to_their_iteration(tmp_path: Path, bwrap_available: None) -> None:
    repo = make_repo(tmp_path / "calc")
    with ScriptedModelServer([]) as server:
        server.add([*fix_add(), *docstring()])
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
        )
        feed = ["please add a docstring to add()", ""]
        run = run_local(
            settings,
            repo,
            "add() subtracts instead of adding",
            model=None,
            read=lambda: feed.pop(0) if feed else None,
            echo=lambda _: None,
        )
    assert [it.number for it in run.task.iterations] == [1, 2]
    engine = make_engine(settings.effective_database_url)
    with Session(engine) as session:
        iterations = session.exec(select(Iteration).where(Iteration.task_id == run.task.id)).all()
        ids = {it.number: it.id for it in iterations}
        steps = session.exec(select(AgentStep)).all()
        per_iteration = {
            number: sorted(s.index for s in steps if s.iteration_id == ids[number])
            for number in ids
        }
        unlinked = [s for s in steps if s.iteration_id is None]
    engine.dispose()
    assert unlinked == []
    assert per_iteration[1][:1] == [1]
    assert per_iteration[2][:1] == [1]
    assert len(steps) == len(per_iteration[1]) + len(per_iteration[2])


READ = {
    "tool_use": [
        {"name": "str_replace_based_edit_tool", "input": {"command": "view", "path": "calc.py"}}
    ]
}


@pytest.mark.parametrize(
    ("script", "steps", "outcome", "reason"),
    [
        # LimitReached: one step allowed, the second model call is never made.
        ([READ, READ], 1, "limit", "steps limit: 1 of 1 steps used"),
        # Refused: the model declines; its own words are the reason.
        (
            [{"text": "I can't help with that.", "stop_reason": "refusal"}],
            60,
            "failed",
            "I can't help with that.",
        ),
        # Errored (not retryable): a 400 from the API fails the iteration with its message.
        (
            [{"error": {"status": 400, "type": "invalid_request_error", "message": "bad tool"}}],
            60,
            "failed",
            "bad tool",
        ),
    ],
    ids=["limit_reached", "refused", "errored"],
)
def test_the_typed_exit_reaches_the_strategy_and_the_record(
    tmp_path: Path,
    bwrap_available: None,
    script: list[dict[str, Any]],
    steps: int,
    outcome: str,
    reason: str,
) -> None:
    repo = make_repo(tmp_path / "calc")
    shown: list[str] = []
    with ScriptedModelServer([]) as server:
        server.add(script)
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
            limits=Limits(steps_per_iteration=steps),
        )
        run = run_local(
            settings, repo, "fix add()", model=None, read=lambda: None, echo=shown.append
        )
    (iteration,) = run.task.iterations
    assert iteration.outcome == outcome
    assert iteration.error is not None
    assert reason in iteration.error
    assert any(reason in line for line in shown)  # the status comment says why
