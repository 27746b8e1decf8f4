"""The loop that records a task and the workspace that pushes it agree on its branch: both
take it from :func:`bot.core.branches.task_branch`. Driven through ``vibe run`` on a local
checkout, where the workspace's push updates the checkout's own branches."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.core.branches import task_branch
from bot.entrypoints.demo import CALC, create, finish
from bot.entrypoints.local import run_local
from bot.settings import load_settings
from bot.testing.model_server import ScriptedModelServer

TITLE = "Add a greeting to the README file of this project please"

pytestmark = pytest.mark.usefixtures("bwrap_available")


def _git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
    ).stdout


def test_the_recorded_branch_is_the_pushed_branch(tmp_path: Path) -> None:
    repo = tmp_path / "calc"
    repo.mkdir()
    (repo / "calc.py").write_text(CALC)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=Ann", "-c", "user.email=ann@example.com", "commit", "-qm", "x")
    with ScriptedModelServer([]) as server:
        server.add([create("README.md", "# calc\n\nHello!\n"), *finish("Added a greeting.")])
        settings = load_settings(
            data_dir=tmp_path / "data",
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
        )
        run = run_local(settings, repo, TITLE, model=None, read=lambda: None, echo=lambda _: None)
    expected = task_branch(1, TITLE)
    assert expected == "vibe/issue-1-add-a-greeting-to-the-readme-file-of"
    assert run.task.branch == expected
    assert _git(repo, "branch", "--list", "vibe/*").split() == [expected]
    assert "Hello!" in _git(repo, "show", f"{expected}:README.md")
