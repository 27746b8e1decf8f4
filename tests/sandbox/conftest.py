"""Fixtures for sandbox tests: a real bwrap sandbox and a worktree its uid can write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.sandbox.bwrap import BwrapSandbox


def hand_over(path: Path, uid: int | None) -> None:
    """Make ``path`` (recursively) owned by the sandbox uid, as the workspace does."""
    if uid is None:
        return
    for root, dirs, files in os.walk(path):
        os.lchown(root, uid, uid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


@pytest.fixture
def sandbox(bwrap_available: None) -> BwrapSandbox:
    return BwrapSandbox()


@pytest.fixture
def workdir(tmp_path: Path, sandbox: BwrapSandbox) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "hello.txt").write_text("hello\n")
    hand_over(work, sandbox.uid)
    return work
