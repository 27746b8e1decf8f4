"""A sandbox that cannot start is an infrastructure error of the iteration, never a failing
test of the repository: the job is retried while attempts remain, nothing is pushed, and
the last attempt fails the iteration saying the sandbox could not start and how to fix it.

The loop runs for real (``vibe run``'s parts: a local checkout, the scripted model server,
real git) with a real bubblewrap that fails the way a container without CAP_SYS_ADMIN
makes it fail (see tests/sandbox/test_start_failure.py for the capability trick).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.bootstrap import job_verdict, loop_env
from bot.core import policy as pol
from bot.entrypoints.local import TerminalForge
from bot.jobs.queue import Retry
from bot.loop.env import Env
from bot.loop.handlers import Context, carry_out
from bot.sandbox.bwrap import BwrapSandbox, SandboxStartFailed
from bot.settings import Settings, load_settings
from bot.store.engine import init_db, make_engine
from bot.testing.model_server import ScriptedModelServer
from tests.loop.sample import fix_add, git, make_repo

pytestmark = pytest.mark.usefixtures("bwrap_available")

REPO = "local/calc"
NAMESPACE_EPERM = "bwrap: Creating new namespace failed: Operation not permitted"
ATTEMPTS = 3


@dataclass
class Stage:
    repo: Path
    server: ScriptedModelServer
    forge: TerminalForge
    sandbox: BwrapSandbox
    settings: Settings
    engine: Engine

    def env(self, attempt: int) -> Env:
        """The environment of one run of the task's job (bootstrap builds it, as for the
        service), with the job's attempt number."""
        return loop_env(
            self.settings,
            self.engine,
            forge=self.forge,
            prs=None,
            clone_url=self.repo.as_uri(),
            credentials=lambda fresh: None,
            run_key=f"test-{attempt}",
            sandbox=self.sandbox,
            attempt=attempt,
            status_interval=0.0,
        )

    def run(self, attempt: int) -> str:
        env = self.env(attempt)
        start = pol.StartTask(REPO, 1, "local-user", env.settings.default_model, "")
        return carry_out(start, Context(env, 1, "delivery-1"))

    def pushed(self) -> list[str]:
        return git(self.repo, "branch", "--list", "vibe/*").split()

    def status(self) -> str:
        (body,) = [b for key, b in self.forge.comments.items() if "status" in key]
        return body


def stage_for(tmp_path: Path, config: str | None) -> Iterator[Stage]:
    if os.geteuid() != 0:
        pytest.skip("dropping capabilities from the bounding set reproduces a container as root")
    setpriv, bwrap = shutil.which("setpriv"), shutil.which("bwrap")
    if setpriv is None or bwrap is None:
        pytest.skip("setpriv (util-linux) is not installed")
    script = tmp_path / "bwrap-in-container"
    script.write_text(
        f'#!/bin/sh\nexec {setpriv} --bounding-set=-sys_admin,-net_admin -- {bwrap} "$@"\n'
    )
    script.chmod(0o755)
    repo = make_repo(tmp_path / "calc", config=config)
    forge = TerminalForge(REPO, repo, "Fix add", "add() subtracts; make it add.", lambda _: None)
    with ScriptedModelServer([]) as server:
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
            max_attempts=ATTEMPTS,
        )
        settings.data_dir.mkdir(parents=True)
        engine = make_engine(settings.effective_database_url)
        init_db(engine)
        try:
            yield Stage(repo, server, forge, BwrapSandbox(bwrap=str(script)), settings, engine)
        finally:
            engine.dispose()


@pytest.fixture
def checks_stage(tmp_path: Path) -> Iterator[Stage]:
    yield from stage_for(tmp_path, "commands:\n  test:\n    - python3 -m unittest -q\n")


@pytest.fixture
def setup_stage(tmp_path: Path) -> Iterator[Stage]:
    yield from stage_for(tmp_path, "commands:\n  setup:\n    - python3 -c 'print(1)'\n")


@pytest.fixture
def plain_stage(tmp_path: Path) -> Iterator[Stage]:
    yield from stage_for(tmp_path, None)


def test_checks_that_cannot_start_are_retried_then_fail_the_iteration(
    checks_stage: Stage,
) -> None:
    st = checks_stage
    for attempt in range(1, ATTEMPTS):
        if st.server.remaining == 0:
            st.server.add(fix_add())
        with pytest.raises(SandboxStartFailed) as caught:
            st.run(attempt)
        verdict = job_verdict(caught.value)
        assert isinstance(verdict, Retry)
        assert NAMESPACE_EPERM in verdict.reason
        assert f"the sandbox is unavailable; attempt {attempt} of {ATTEMPTS} failed" in st.status()
        assert st.pushed() == []
    if st.server.remaining == 0:
        st.server.add(fix_add())

    answer = st.run(ATTEMPTS)

    assert answer.endswith("failed")
    env = st.env(ATTEMPTS)
    task = env.tasks.find(REPO, 1)
    assert task is not None
    (it,) = task.iterations  # one iteration, run again by each attempt
    assert it.outcome == "failed"
    assert it.error is not None
    assert it.error.startswith(f"the sandbox could not start: {NAMESPACE_EPERM}. Fix: ")
    assert "CAP_SYS_ADMIN" in it.error
    assert it.checks == ()  # never reported as the repository's failing tests
    assert it.commits == ()
    assert task.state.value == "failed"
    assert st.pushed() == []
    status = st.status()
    assert f"the sandbox could not start: {NAMESPACE_EPERM}" in status
    assert "tests failed" not in status


def test_an_agent_command_that_cannot_start_is_no_tool_error(plain_stage: Stage) -> None:
    st = plain_stage
    command = {"name": "bash", "input": {"command": "python3 -m unittest -q"}}
    st.server.add([{"tool_use": [command]}, *fix_add()])

    answer = st.run(ATTEMPTS)

    assert answer.endswith("failed")
    # the model was never told the command failed: the run ended at the tool call
    assert len(st.server.message_requests) == 1
    task = st.env(ATTEMPTS).tasks.find(REPO, 1)
    assert task is not None
    (it,) = task.iterations
    assert it.error is not None
    assert it.error.startswith(f"the sandbox could not start: {NAMESPACE_EPERM}")
    assert st.pushed() == []


def test_setup_that_cannot_start_is_retried_before_the_model_is_asked(setup_stage: Stage) -> None:
    st = setup_stage
    st.server.add(fix_add())
    with pytest.raises(SandboxStartFailed) as caught:
        st.run(1)
    assert isinstance(job_verdict(caught.value), Retry)
    assert st.server.message_requests == []
    assert "the sandbox is unavailable; attempt 1 of 3 failed" in st.status()
    assert st.pushed() == []
