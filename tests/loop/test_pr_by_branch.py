"""A review on the bot's PR that arrives before the iteration that opened the PR recorded
its number: the task is found from the PR's head branch (the task's own, by the branch
rule of bot/core/branches.py), at ingest (the review joins the task's lane, so it waits
for the iteration) and in the worker (which records the PR's number). A PR someone else
opened from that branch, or from a fork, finds nothing. End to end:
tests/e2e/test_loop_faults.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot.core.branches import task_branch
from bot.core.forge import PullInfo
from bot.core.tasks import NewTask, Requirement
from bot.ingest.deliveries import task_lane
from bot.loop import actions as loop
from bot.loop.actions import _task_of_own_pr
from bot.loop.handlers import handle
from bot.settings import load_settings
from bot.store.tasks import SqlTaskStore
from tests.conftest import FIXTURES
from tests.loop.test_handlers import BrokenIssues, Elsewhere, Wired, _job, engine

__all__ = ["engine"]  # the fixture, shared with test_handlers

BOT = "vibe-bot[bot]"
REPO = "Codertocat/Hello-World"
REPO_ID = 186853002
BRANCH = task_branch(1, "Spelling error in the README file")


def _task(engine: Engine) -> int:
    task, _ = SqlTaskStore(engine).find_or_create(
        NewTask(
            repo=REPO,
            number=1,
            model="conversational",
            branch=BRANCH,
            base="main",
            requester="Codertocat",
            title="Spelling error in the README file",
            instruction="Fix the spelling.",
            requirements=(Requirement("Fix the spelling.", "issue"),),
            repo_id=REPO_ID,
        )
    )
    return task.id


def _review(author: str = BOT, head_repo: str = REPO) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (FIXTURES / "webhooks" / "pull_request_review.submitted.json").read_text()
    )
    payload["review"]["body"] = "Please also fix the heading."
    pull = payload["pull_request"]
    pull["user"]["login"] = author
    pull["user"]["type"] = "Bot" if author == BOT else "User"
    pull["head"]["ref"] = BRANCH
    pull["head"]["repo"]["full_name"] = head_repo
    return payload


def test_a_review_before_the_pr_number_is_recorded_finds_the_task(
    tmp_path: Path, engine: Engine
) -> None:
    task_id = _task(engine)
    settings = load_settings(data_dir=tmp_path, bot_login=BOT)
    elsewhere = Elsewhere()
    payload = _review()
    result = handle(
        _job(settings, engine, "pull_request_review", payload),
        Wired(settings, BrokenIssues(), elsewhere),
    )
    assert result == "elsewhere"
    (work,) = elsewhere.works
    assert (work.number, work.key) == (2, f"review:{payload['review']['id']}")
    assert SqlTaskStore(engine).load(task_id).pr_number == 2


@pytest.mark.parametrize(
    ("author", "head_repo"),
    [("Codertocat", REPO), (BOT, "Octocat/Hello-World")],
    ids=["a-persons-pr", "a-fork"],
)
def test_only_the_bots_own_pr_from_the_branch_is_the_tasks(
    tmp_path: Path, engine: Engine, author: str, head_repo: str
) -> None:
    task_id = _task(engine)
    settings = load_settings(data_dir=tmp_path, bot_login=BOT)
    elsewhere = Elsewhere()
    result = handle(
        _job(settings, engine, "pull_request_review", _review(author, head_repo)),
        Wired(settings, BrokenIssues(), elsewhere),
    )
    assert result == "ignored: a review on a pull request without a task"
    assert elsewhere.works == []
    assert SqlTaskStore(engine).load(task_id).pr_number is None


def test_at_ingest_the_review_joins_the_tasks_lane(engine: Engine) -> None:
    _task(engine)
    with engine.connect() as conn:
        lane = task_lane(conn, f"{REPO}#2", REPO_ID, BRANCH)
        other = task_lane(conn, f"{REPO}#2", REPO_ID, "a-persons-branch")
    assert lane == f"repository:{REPO_ID}#1"
    assert other == f"repository:{REPO_ID}#2"


class OwnPull(BrokenIssues):
    """A repository whose PR #2 comes from ``BRANCH``, opened by ``author``."""

    def __init__(self, author: str) -> None:
        super().__init__()
        self.author = author

    def pull(self, number: int) -> PullInfo | None:
        return PullInfo(number, "Fix the spelling", "", BRANCH, "main", True, self.author)


@pytest.mark.parametrize(("author", "found"), [(BOT, True), ("Codertocat", False)])
def test_a_vibe_comment_on_the_bots_pr_joins_its_task(
    tmp_path: Path, engine: Engine, author: str, found: bool
) -> None:
    """An ``issue_comment`` carries no branch: the ``/vibe`` on the PR looks the PR up, and
    the bot's own PR from the task's branch is the task's (not a second task on it)."""
    task_id = _task(engine)
    settings = load_settings(data_dir=tmp_path, bot_login=BOT)
    repo = OwnPull(author)
    job = _job(settings, engine, "issue_comment", {})
    env = Wired(settings, repo, Elsewhere()).env(job, repo)
    request = loop.StartRequest(2, "Codertocat", "k", on_pr=True, repo_id=REPO_ID)
    task = _task_of_own_pr(env, request)
    assert (task is not None and task.id == task_id) is found
    assert SqlTaskStore(engine).load(task_id).pr_number == (2 if found else None)
