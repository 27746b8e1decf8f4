"""A worker that shuts down or loses its lease mid-iteration is not a /vibe stop: the task
stays alive, nothing is pushed, and the job claimed again resumes the same iteration."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.core.tasks import Checkpoint, State
from bot.entrypoints.demo import edit, fix_add, wait_for
from bot.entrypoints.local import local_env
from bot.loop import actions as loop
from bot.loop.errors import Interrupted
from bot.settings import load_settings
from bot.store import tasks as taskdb
from bot.store.engine import init_db, make_engine
from bot.testing.model_server import ScriptedModelServer
from tests.loop.sample import git, make_repo

pytestmark = pytest.mark.usefixtures("bwrap_available")


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer([]) as srv:
        yield srv


def test_interrupted_iteration_resumes_instead_of_abandoning(
    tmp_path: Path, server: ScriptedModelServer
) -> None:
    repo = make_repo(tmp_path / "calc")
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
        server.add([edit("calc.py", "return a - b", "return a + b", delay=2.0), *fix_add()])
        request = loop.StartRequest(number=1, requester="ann", key="delivery:1")
        cancel = threading.Event()
        crashing = replace(env, cancel=cancel)
        failure: list[BaseException] = []

        def first_attempt() -> None:
            try:
                loop.start(crashing, request)
            except Interrupted as exc:
                failure.append(exc)

        worker = threading.Thread(target=first_attempt)
        worker.start()
        wait_for(lambda: server.message_requests, "the first model request")
        cancel.set()  # the worker shuts down while the model answers
        worker.join(30)
        assert failure
        assert "interrupted" in str(failure[0])
        task = taskdb.find(engine, env.forge.repo, 1)
        assert task is not None
        assert task.state is State.WORKING
        assert [(it.outcome, it.checkpoint) for it in task.iterations] == [
            ("running", Checkpoint.BEGUN)
        ]
        assert "vibe/" not in git(repo, "branch", "--list", "vibe/*")
        second = loop.start(env, request)  # the job claimed again
        assert second.iteration == 1
        assert second.outcome == "succeeded"
        final = taskdb.load(engine, task.id)
        assert len(final.iterations) == 1
        assert "return a + b" in git(repo, "show", f"{final.branch}:calc.py")
    finally:
        engine.dispose()
