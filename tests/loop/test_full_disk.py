"""A full disk under the data directory at the end of an iteration: the database write that
concludes it fails, and the status comment still ends with the failure and a reason
instead of saying "working" (DESIGN.md section 5: the visible failure is posted before
and regardless of the bookkeeping)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from bot.core.tasks import Conclusion, TaskRecord
from bot.entrypoints.local import TerminalForge, local_env
from bot.loop import actions as loop
from bot.settings import load_settings
from bot.store.engine import init_db, make_engine
from bot.store.tasks import SqlTaskStore
from bot.testing.model_server import ScriptedModelServer
from tests.loop.sample import fix_add, make_repo

pytestmark = pytest.mark.usefixtures("bwrap_available")

FULL = {
    "ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
    "sqlite": OperationalError(
        "UPDATE iteration", {}, sqlite3.OperationalError("database or disk is full")
    ),
}


class FullDisk(SqlTaskStore):
    """The task store on a disk that fills up as the iteration ends: every conclusion fails
    (reads and the earlier checkpoints still work)."""

    def __init__(self, engine: Engine, error: Exception) -> None:
        super().__init__(engine)
        self.error = error
        self.conclusions = 0

    def conclude(self, task_id: int, number: int, end: Conclusion) -> TaskRecord:
        self.conclusions += 1
        raise self.error


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer([]) as srv:
        yield srv


@pytest.mark.parametrize("kind", FULL)
def test_the_status_ends_failed_when_the_conclusion_cannot_be_written(
    tmp_path: Path, server: ScriptedModelServer, kind: str
) -> None:
    repo = make_repo(tmp_path / "calc", config=None)
    settings = load_settings(
        data_dir=tmp_path / "data",
        anthropic_base_url=server.base_url,
        anthropic_api_key="sk-test-local-key-0000",
        anthropic_max_retries=0,
    )
    settings.data_dir.mkdir()
    engine = make_engine(settings.effective_database_url)
    init_db(engine)
    try:
        env = local_env(settings, engine, repo, "fix add", lambda _: None)
        full = FullDisk(engine, FULL[kind])
        server.add(fix_add())
        with pytest.raises(type(FULL[kind])):
            loop.start(
                replace(env, tasks=full),
                loop.StartRequest(number=1, requester="ann", key="delivery:1"),
            )
        assert full.conclusions >= 1
        forge = env.forge
        assert isinstance(forge, TerminalForge)
        (status,) = [body for mark, body in forge.comments.items() if "vibe:status" in mark]
        assert "_Working" not in status
        final = [line for line in status.splitlines() if "Failed" in line]
        assert final, status
        assert len(final[-1].split("Failed", 1)[1].strip(" *:._-")) > 10  # says why
    finally:
        engine.dispose()
