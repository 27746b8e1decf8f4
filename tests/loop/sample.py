"""A small sample repository with a failing test, and agent scripts that fix it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

CALC = "def add(a, b):\n    return a - b\n"
TEST = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\n"
    'if __name__ == "__main__":\n    unittest.main()\n'
)
CONFIG = "commands:\n  test:\n    - python3 -m unittest -q\n"


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
    git(
        path,
        "-c",
        "user.name=Ann",
        "-c",
        "user.email=ann@example.com",
        "commit",
        "-q",
        "-m",
        "initial",
    )
    return path


def finish(summary: str) -> list[dict[str, Any]]:
    """``finish`` twice: the first call gets the self-review, the second ends the run."""
    return [
        {"tool_use": [{"name": "finish", "input": {"summary": summary}}]},
        {"tool_use": [{"name": "finish", "input": {"summary": summary}}]},
    ]


def edit(path: str, old: str, new: str) -> dict[str, Any]:
    return {
        "text": f"Editing {path}.",
        "tool_use": [
            {"name": "edit_file", "input": {"path": path, "old_text": old, "new_text": new}}
        ],
    }


def create(path: str, content: str) -> dict[str, Any]:
    return {"tool_use": [{"name": "create_file", "input": {"path": path, "content": content}}]}


def fix_add() -> list[dict[str, Any]]:
    return [edit("calc.py", "return a - b", "return a + b"), *finish("Fixed add() to add.")]


def docstring() -> list[dict[str, Any]]:
    return [
        edit("calc.py", "def add(a, b):\n", 'def add(a, b):\n    """Return a + b."""\n'),
        *finish("Added a docstring."),
    ]
