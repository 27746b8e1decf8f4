"""Fixtures for agent tests: a real git repository handed to a real bwrap sandbox, the
scripted model server on loopback, and settings pointing at it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.agent import AgentLimits
from bot.sandbox.bwrap import BwrapSandbox
from bot.settings import Settings, load_settings
from bot.testing.model_server import ScriptedModelServer, load_script

API_KEY = "sk-ant-api03-testkey-0123456789abcdefghij"
CANARY = "canary-7f3e9b1c4d2a-do-not-leak"

CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\n"
    "if __name__ == '__main__':\n    unittest.main()\n"
)


def hand_over(path: Path, uid: int | None) -> None:
    """Make ``path`` owned by the sandbox uid, as the workspace module does."""
    if uid is None:
        return
    for root, dirs, files in os.walk(path):
        os.lchown(root, uid, uid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture
def sandbox(bwrap_available: None) -> BwrapSandbox:
    return BwrapSandbox()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small committed project: calc.py with a bug and a unittest that catches it."""
    work = tmp_path / "repo"
    work.mkdir()
    (work / "calc.py").write_text(CALC)
    (work / "test_calc.py").write_text(TEST_CALC)
    (work / "README.md").write_text("# calc\n\nAdds numbers.\n")
    (work / ".github" / "workflows").mkdir(parents=True)
    (work / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(
        work,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-q",
        "-m",
        "init",
    )
    return work


@pytest.fixture
def sandboxed_repo(repo: Path, sandbox: BwrapSandbox) -> Path:
    hand_over(repo, sandbox.uid)
    return repo


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> str:
    """A secret in the bot's own environment that must never reach the model."""
    monkeypatch.setenv("VIBE_GITHUB_TOKEN", CANARY)
    monkeypatch.setenv("CANARY_SECRET", CANARY)
    return CANARY


def make_settings(server: ScriptedModelServer, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "anthropic_api_key": API_KEY,
        "anthropic_base_url": server.base_url,
        "anthropic_max_retries": 2,
        "data_dir": tmp_path / "data",
        "max_output_tokens": 4096,
    }
    values.update(overrides)
    return load_settings(**values)


def limits(**overrides: Any) -> AgentLimits:
    values: dict[str, Any] = {
        "steps": 30,
        "input_tokens": 10_000_000,
        "output_tokens": 1_000_000,
        "dollars": 100.0,
        "seconds": 120.0,
    }
    values.update(overrides)
    return AgentLimits(**values)


@pytest.fixture
def server_factory() -> Iterator[Any]:
    servers: list[ScriptedModelServer] = []

    def start(script: Any, **kwargs: Any) -> ScriptedModelServer:
        steps = script if callable(script) else load_script(script)
        server = ScriptedModelServer(steps, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
