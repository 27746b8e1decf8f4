"""A local sample repository (the demo's files) for ``vibe run`` tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bot.entrypoints.demo import CALC, CONFIG, TEST, create, docstring, edit, finish, fix_add

__all__ = ["create", "docstring", "edit", "finish", "fix_add", "git", "make_repo"]


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
    ).stdout


def make_repo(path: Path, config: str | None = CONFIG) -> Path:
    path.mkdir(parents=True)
    (path / "calc.py").write_text(CALC)
    (path / "test_calc.py").write_text(TEST)
    (path / "README.md").write_text("# calc\n\nA tiny calculator.\n")
    if config is not None:
        (path / ".github").mkdir()
        (path / ".github" / "vibe.yml").write_text(config)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "-c", "user.name=Ann", "-c", "user.email=ann@example.com", "commit", "-q", "-m", "x")
    return path
