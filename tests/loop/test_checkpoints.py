"""An iteration's checkpoints (begun, pushed, concluded) under faults between the push and
the conclusion: the job, run again, finishes the missing steps instead of returning early
or redoing the agent's work, and ends with one PR, the task in the right state and a final
status line (DESIGN.md section 5).

The bot runs as a ``vibe serve`` process (so it can be killed) against the fake GitHub and
the scripted model server; the assertions read the fake's records and the bot's database.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import Session, col, select

from bot.core.tasks import Checkpoint, TaskRecord
from bot.entrypoints.demo import REPO, WRITER, Stage, fix_add, stage, wait_for
from bot.store.engine import make_engine
from bot.store.tables import Job
from bot.store.tasks import find
from bot.testing.fake_github import gitrepo
from tests.conftest import require
from tests.e2e.conftest import Bot

World = tuple[Stage, Bot]
PULLS = "/repos/{owner}/{repo}/pulls"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    root = tmp_path_factory.mktemp("checkpoints")
    with stage(root) as st:
        bot = Bot(st, root / "bot.log")
        bot.start()
        try:
            yield st, bot
        finally:
            bot.stop()


@pytest.fixture
def faults(world: World) -> Iterator[None]:
    st, _ = world
    try:
        yield
    finally:
        st.fake.clear_faults()
        st.fake.fault_delay = 1.0


def task_record(st: Stage, number: int) -> TaskRecord:
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        task = find(engine, REPO, number)
    finally:
        engine.dispose()
    assert task is not None
    return task


def job_attempts(st: Stage) -> int:
    """Attempts of the latest job (the one the label's delivery queued)."""
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        with Session(engine) as session:
            job = session.exec(select(Job).order_by(col(Job.id).desc())).first()
    finally:
        engine.dispose()
    assert job is not None
    return job.attempts


def status_comments(st: Stage, number: int, needle: str = "") -> list[Any]:
    login = st.creds.bot_login
    return [
        c
        for c in st.fake.comments(REPO, number)
        if c.user == login and "vibe:status" in c.body and needle in c.body
    ]


def final_status(st: Stage, number: int, needle: str, timeout: float = 90.0) -> Any:
    def ended() -> Any:
        found = status_comments(st, number)
        if found and "_Working" not in found[0].body and needle in found[0].body:
            return found[0]
        return None

    return wait_for(ended, f"the final status line ({needle}) on #{number}", timeout)


def task_pulls(st: Stage, task: TaskRecord) -> list[Any]:
    return [p for p in st.fake.pulls(REPO) if p.pull and p.pull.head_ref == task.branch]


@pytest.mark.usefixtures("faults")
def test_worker_killed_between_push_and_conclude_finishes_once(world: World) -> None:
    st, bot = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Fix add through a crash after the push", "")
    # GitHub makes the PR but answers late; the worker dies while it waits.
    st.fake.fault_delay = 30.0
    late = st.fake.inject("POST", PULLS, "timeout_after_write")
    st.fake.label(REPO, number, WRITER, "vibe")
    wait_for(lambda: late.hits, "the request that opens the PR", timeout=90)
    pushed = task_record(st, number)
    assert [it.checkpoint for it in pushed.iterations] == [Checkpoint.PUSHED]
    assert pushed.state.value == "working"
    requests = len(st.model.message_requests)
    bot.kill()
    assert "_Working" in status_comments(st, number)[0].body
    bot.start()  # the job's lease lapses and it is claimed again

    status = final_status(st, number, "Done")
    assert len(status_comments(st, number)) == 1
    task = task_record(st, number)
    (pr,) = task_pulls(st, task)
    assert task.pr_number == pr.number
    assert task.state.value == "awaiting_feedback"
    assert [(it.checkpoint, it.outcome) for it in task.iterations] == [
        (Checkpoint.CONCLUDED, "succeeded")
    ]
    assert task.iterations[0].commits == pushed.iterations[0].commits
    # The commit's diff stats, read from git when the bot committed, as git on the
    # remote counts the pushed commit.
    [stat] = task.iterations[0].commit_stats
    assert stat.sha == task.iterations[0].commits[0]
    bare = st.fake.git_root / f"{REPO.lower()}.git"
    shown = gitrepo.git(bare, "show", "--shortstat", "--format=%s", stat.sha).decode()
    subject, shortstat = shown.strip().split("\n\n")
    assert subject == stat.subject
    assert "Fixed add() to add." in subject
    counted = re.fullmatch(
        r"(\d+) files? changed, (\d+) insertions?\(\+\), (\d+) deletions?\(-\)", shortstat.strip()
    )
    assert counted is not None, shortstat
    assert (stat.files, stat.insertions, stat.deletions) == tuple(map(int, counted.groups()))
    assert stat.insertions >= 1  # the edit of calc.py
    assert stat.deletions >= 1
    assert f"Push ({task.iterations[0].commits[0][:7]})" in status.body
    assert len(st.model.message_requests) == requests  # the agent's work was not redone
    assert task.usage == task.iterations[0].usage
    assert job_attempts(st) == 2


@pytest.mark.usefixtures("faults")
def test_pr_creation_failing_through_one_attempt_is_finished_by_the_next(world: World) -> None:
    st, _ = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Fix add while GitHub fails to open PRs", "")
    failing = st.fake.inject("POST", PULLS, "502", times=1000)
    st.fake.label(REPO, number, WRITER, "vibe")
    wait_for(
        lambda: status_comments(st, number, "attempt 1 of 3 failed"),
        "the status comment saying the attempt will be retried",
        timeout=90,
    )
    assert failing.hits >= 1
    pushed = task_record(st, number)
    assert [it.checkpoint for it in pushed.iterations] == [Checkpoint.PUSHED]
    assert task_pulls(st, pushed) == []
    requests = len(st.model.message_requests)
    st.fake.clear_faults()  # GitHub recovers before the next attempt

    final_status(st, number, "Done")
    assert len(status_comments(st, number)) == 1
    task = task_record(st, number)
    (pr,) = task_pulls(st, task)
    assert task.pr_number == pr.number
    assert task.state.value == "awaiting_feedback"
    assert [(it.checkpoint, it.outcome) for it in task.iterations] == [
        (Checkpoint.CONCLUDED, "succeeded")
    ]
    assert len(st.model.message_requests) == requests
    assert task.usage == task.iterations[0].usage  # counted once, by the conclusion
    assert job_attempts(st) == 2


@pytest.mark.usefixtures("faults")
def test_pr_creation_failing_on_every_attempt_ends_with_a_visible_failure(world: World) -> None:
    st, _ = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Fix add while GitHub never opens PRs", "")
    st.fake.inject("POST", PULLS, "502", times=1000)
    st.fake.label(REPO, number, WRITER, "vibe")

    status = final_status(st, number, "Failed", timeout=120)
    assert "GitHub kept failing" in status.body
    assert len(status_comments(st, number)) == 1
    task = task_record(st, number)
    assert task_pulls(st, task) == []
    assert task.pr_number is None
    assert task.state.value == "failed"
    (it,) = task.iterations
    assert (it.checkpoint, it.outcome) == (Checkpoint.CONCLUDED, "failed")
    assert it.commits  # the work stays on its branch for a /vibe retry
    assert task.usage == it.usage
    assert job_attempts(st) == 3
