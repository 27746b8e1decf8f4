"""The bot as a ``vibe serve`` process under uvicorn, the fake GitHub and the scripted model
server, all on 127.0.0.1, with real git and real bubblewrap. One stage per module."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from bot.entrypoints.demo import REPO, Stage, stage
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from tests.conftest import require


@dataclass
class Bot:
    """A running ``vibe serve`` process that can be killed and started again."""

    stage: Stage
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
        env.update(self.stage.env())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--port", str(self.stage.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vibe serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.stage.bot_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # Not left running: the fixture that called start() never reaches its stop().
        self.kill()
        tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"vibe serve did not become healthy: {tail}")

    def kill(self) -> None:
        """SIGKILL, as a crash: no cleanup, leases left to lapse."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stage, Bot]]:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    root = tmp_path_factory.mktemp("e2e")
    with stage(root) as st:
        bot = Bot(st, root / "bot.log")
        bot.start()
        try:
            yield st, bot
        finally:
            bot.stop()


def task_state(st: Stage, number: int, repo: str = REPO) -> str | None:
    """The task's state as the bot stored it (its SQLite database)."""
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        task = taskdb.find(engine, repo, number)
        return task.state.value if task is not None else None
    finally:
        engine.dispose()
