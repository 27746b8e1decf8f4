"""Task and iteration persistence on real SQLite and PostgreSQL: the task store's writes
and the three checkpoints of an iteration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.core.tasks import (
    Check,
    Checkpoint,
    CommitStat,
    Conclusion,
    Feedback,
    NewTask,
    PlanStep,
    Requirement,
    State,
    Step,
    Usage,
    WorkResult,
)
from bot.store.engine import init_db, make_engine
from bot.store.tables import Iteration
from bot.store.tasks import SqlTaskStore, TaskNotFound

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


@pytest.fixture
def store(engine: Engine) -> SqlTaskStore:
    return SqlTaskStore(engine)


def _new(number: int) -> NewTask:
    return NewTask(
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


RESULT = WorkResult(
    outcome="succeeded",
    commits=("abc",),
    checks=(),
    red=None,
    green=None,
    usage=Usage(10, 5, 0.25),
    duration=3.0,
    summary="Fixed add.",
    reason=None,
    feedback=(),
)


def test_task_is_unique_per_issue_and_round_trips(store: SqlTaskStore) -> None:
    first, created = store.find_or_create(_new(12))
    again, created_again = store.find_or_create(_new(12))
    assert created
    assert not created_again
    assert again.id == first.id
    assert first.state is State.QUEUED
    assert first.requirements == (Requirement("add adds", "issue"),)
    store.move(first.id, State.WORKING)
    store.set_plan(first.id, (PlanStep("a", True),))
    store.set_requirements(first.id, (Requirement("add adds", "issue", done=True),))
    store.set_model(first.id, "plan")
    loaded = store.find(REPO, 12)
    assert loaded is not None
    assert loaded.id == first.id
    assert loaded.state is State.WORKING
    assert loaded.plan == (PlanStep("a", True),)
    assert loaded.requirements == (Requirement("add adds", "issue", done=True),)
    assert loaded.model == "plan"
    assert store.find("octo/other", 12) is None


def test_a_task_follows_its_renamed_repository(store: SqlTaskStore) -> None:
    repo_id = uuid.uuid4().int % 2**62  # beyond 32 bits, as GitHub's ids will be
    renamed = f"{REPO}-renamed"
    task, _ = store.find_or_create(replace(_new(30), repo_id=repo_id, pr_number=31))
    store.begin_iteration(task.id, "delivery:1", "start", ())

    found = store.find(renamed, 31, repo_id)  # a review on its PR, under the new name
    assert found is not None
    assert (found.id, found.repo, found.number, len(found.iterations)) == (task.id, renamed, 30, 1)
    assert store.load(task.id).repo == renamed
    assert store.find(REPO, 30) is None  # the old name is no task's any more
    again, created = store.find_or_create(replace(_new(30), repo=renamed, repo_id=repo_id))
    assert (again.id, created) == (task.id, False)
    # Another repository that takes the freed name is another repository.
    assert store.find(REPO, 30, repo_id + 1) is None


def test_a_task_stored_without_a_repository_id_learns_it(store: SqlTaskStore) -> None:
    repo_id = uuid.uuid4().int % 2**62
    old, _ = store.find_or_create(_new(40))  # a row from before ids were kept

    found = store.find(REPO, 40, repo_id)
    assert found is not None
    assert found.id == old.id
    moved = store.find(f"{REPO}-moved", 40, repo_id)  # found by the id it just learnt
    assert moved is not None
    assert (moved.id, moved.repo) == (old.id, f"{REPO}-moved")


def test_iterations_are_keyed_and_numbered(store: SqlTaskStore) -> None:
    task, _ = store.find_or_create(_new(20))
    fb = (Feedback("human", "rename", author="ann", path="a.py", line=2, comment_id=5),)
    first = store.begin_iteration(task.id, "d1", "label", ())
    assert (first.number, first.checkpoint) == (1, Checkpoint.BEGUN)
    assert store.begin_iteration(task.id, "d1", "label", ()) == first
    second = store.begin_iteration(task.id, "r9", "review", fb)
    assert (second.number, second.checkpoint) == (2, Checkpoint.BEGUN)
    assert second.id != first.id
    assert store.record_base(task.id, 2, "base1") == "base1"
    assert store.record_base(task.id, 2, "later") == "base1"  # a resumed run keeps its start
    loaded = store.load(task.id)
    assert [it.key for it in loaded.iterations] == ["d1", "r9"]
    assert loaded.iterations[1].feedback == fb
    assert loaded.iterations[1].base_sha == "base1"
    assert loaded.iterations[1].started_at is not None


def test_pushed_records_the_result_and_conclude_moves_the_task_in_one_write(
    store: SqlTaskStore,
) -> None:
    task, _ = store.find_or_create(_new(21))
    store.move(task.id, State.WORKING)
    begun = store.begin_iteration(task.id, "d1", "label", ())
    check = Check("tests", "pytest", "execution", 1, 0.5, "1 failed")
    fb = (Feedback("human", "please"), Feedback("self", "looks fine"))
    store.record_pushed(
        task.id, begun.number, replace(RESULT, checks=(check,), red=check, feedback=fb)
    )
    assert store.begin_iteration(task.id, "d1", "label", ()).checkpoint is Checkpoint.PUSHED
    pushed = store.load(task.id)
    it = pushed.iterations[0]
    assert (it.checkpoint, it.outcome, it.commits) == (Checkpoint.PUSHED, "succeeded", ("abc",))
    assert it.checks == (check,)
    assert it.red == check
    assert [f.kind for f in it.feedback] == ["human", "self"]
    assert pushed.usage == Usage()  # counted on the task when the iteration concludes
    assert pushed.state is State.WORKING

    done = store.conclude(
        task.id, begun.number, Conclusion("succeeded", Step.DONE, stop_wins=True, pr_number=7)
    )
    assert done.state is State.AWAITING_FEEDBACK
    assert done.pr_number == 7
    assert done.usage == Usage(10, 5, 0.25)
    assert done.iterations[0].checkpoint is Checkpoint.CONCLUDED
    assert done.iterations[0].usage == Usage(10, 5, 0.25)
    assert store.begin_iteration(task.id, "d1", "label", ()).checkpoint is Checkpoint.CONCLUDED


def test_commit_stats_travel_with_the_commits_and_old_bare_shas_still_load(
    store: SqlTaskStore, engine: Engine
) -> None:
    task, _ = store.find_or_create(_new(22))
    stat = CommitStat("a" * 40, 2, 10, 3, "Fix the widget")
    first = store.begin_iteration(task.id, "d1", "label", ())
    store.record_pushed(
        task.id,
        first.number,
        replace(RESULT, commits=("a" * 40, "b" * 40), commit_stats=(stat,)),
    )
    # A row written before the stats were recorded: bare shas in the same JSON column.
    old = store.begin_iteration(task.id, "d2", "label", ())
    with Session(engine) as session:
        row = session.exec(
            select(Iteration).where(Iteration.task_id == task.id, Iteration.number == old.number)
        ).one()
        row.commits = ["c" * 40]
        session.add(row)
        session.commit()
    new, older = store.load(task.id).iterations
    assert (new.commits, new.commit_stats) == (("a" * 40, "b" * 40), (stat,))
    assert (older.commits, older.commit_stats) == (("c" * 40,), ())


def test_a_stop_requested_while_finishing_abandons_the_task(store: SqlTaskStore) -> None:
    task, _ = store.find_or_create(_new(22))
    store.move(task.id, State.WORKING)
    begun = store.begin_iteration(task.id, "d1", "label", ())
    store.record_pushed(task.id, begun.number, RESULT)
    store.request_stop(task.id)
    done = store.conclude(task.id, begun.number, Conclusion("succeeded", Step.DONE, True))
    assert done.state is State.ABANDONED


def test_a_failure_keeps_the_pushed_usage_and_a_refused_move_keeps_the_state(
    store: SqlTaskStore,
) -> None:
    task, _ = store.find_or_create(_new(23))
    store.move(task.id, State.AWAITING_FEEDBACK)
    begun = store.begin_iteration(task.id, "d1", "label", ())
    store.record_pushed(task.id, begun.number, RESULT)
    failed = store.conclude(
        task.id, begun.number, Conclusion("failed", Step.FAIL, error="GitHub kept failing")
    )
    assert failed.state is State.AWAITING_FEEDBACK  # the state machine has no such move
    assert failed.usage == Usage(10, 5, 0.25)
    it = failed.iterations[0]
    assert (it.outcome, it.error, it.commits) == ("failed", "GitHub kept failing", ("abc",))


def test_stop_flag_reopen_and_abandon(store: SqlTaskStore) -> None:
    task, _ = store.find_or_create(_new(3))
    assert not store.stop_requested(task.id)
    store.request_stop(task.id)
    assert store.stop_requested(task.id)
    store.abandon(task.id, stop_running=True)
    assert store.load(task.id).state is State.ABANDONED
    reopened = store.reopen(task.id)
    assert (reopened.state, reopened.stop_requested) == (State.QUEUED, False)
    with pytest.raises(TaskNotFound):
        store.load(999)
