"""Task and iteration persistence on real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.core.tasks import Check, Feedback, PlanStep, Requirement, State, Usage
from bot.store import tasks as taskdb
from bot.store.engine import init_db, make_engine

REPO = f"octo/demo-{uuid.uuid4().hex[:8]}"  # PostgreSQL keeps rows between runs


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    else:
        eng = make_engine(request.getfixturevalue("pg_database_url"))
    init_db(eng)
    yield eng
    eng.dispose()


def _new(number: int) -> taskdb.NewTask:
    return taskdb.NewTask(
        repo=REPO,
        number=number,
        model="test",
        branch=f"vibe/issue-{number}-x",
        base="main",
        requester="ann",
        title="Fix add",
        instruction="add() is wrong",
        requirements=(Requirement("add adds", "issue"),),
    )


def test_task_is_unique_per_issue_and_round_trips(engine: Engine) -> None:
    first, created = taskdb.find_or_create(engine, _new(12))
    again, created_again = taskdb.find_or_create(engine, _new(12))
    assert created
    assert not created_again
    assert again.id == first.id
    assert first.state is State.QUEUED
    assert first.requirements == (Requirement("add adds", "issue"),)
    taskdb.update(engine, first.id, pr_number=13, state=State.WORKING, plan=(PlanStep("a", True),))
    by_pr = taskdb.find(engine, REPO, 13)
    assert by_pr is not None
    assert by_pr.id == first.id
    assert by_pr.state is State.WORKING
    assert by_pr.plan == (PlanStep("a", True),)
    assert taskdb.find(engine, "octo/other", 12) is None


def test_iterations_are_keyed_and_numbered(engine: Engine) -> None:
    task, _ = taskdb.find_or_create(engine, _new(20))
    fb = (Feedback("human", "rename", author="ann", path="a.py", line=2, comment_id=5),)
    assert taskdb.begin_iteration(engine, task.id, "d1", "label", ()) == (1, False)
    assert taskdb.begin_iteration(engine, task.id, "d1", "label", ()) == (1, False)
    assert taskdb.begin_iteration(engine, task.id, "r9", "review", fb) == (2, False)
    check = Check("tests", "pytest", "execution", 1, 0.5, "1 failed")
    taskdb.update_iteration(
        engine,
        task.id,
        2,
        outcome="succeeded",
        commits=["abc"],
        checks=[check],
        red=check,
        usage=Usage(10, 5, 0.25),
        feedback=(*fb, Feedback("self", "looks fine")),
    )
    taskdb.add_usage(engine, task.id, Usage(10, 5, 0.25))
    assert taskdb.begin_iteration(engine, task.id, "r9", "review", fb) == (2, True)
    loaded = taskdb.load(engine, task.id)
    second = loaded.iterations[1]
    assert second.feedback[0] == fb[0]
    assert [f.kind for f in second.feedback] == ["human", "self"]
    assert second.red == check
    assert second.checks == (check,)
    assert second.usage == Usage(10, 5, 0.25)
    assert loaded.usage == Usage(10, 5, 0.25)


def test_stop_flag(engine: Engine) -> None:
    task, _ = taskdb.find_or_create(engine, _new(3))
    assert not taskdb.stop_requested(engine, task.id)
    taskdb.update(engine, task.id, stop_requested=True)
    assert taskdb.stop_requested(engine, task.id)
    with pytest.raises(taskdb.TaskNotFound):
        taskdb.load(engine, 999)
