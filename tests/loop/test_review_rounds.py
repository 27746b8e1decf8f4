"""Issue 18: the bounded reviewer-coder loop (``review.before_ready``). A green iteration of
the bot's own PR is reviewed; findings at or above ``review.threshold`` drive one more
iteration each round (feedback kind ``self``), at most ``review.max_rounds`` per human
feedback, stopping when a round brings nothing new or a finding comes back. Driven end to
end with the real service, the fake GitHub and the scripted model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from bot.core.tasks import TaskRecord
from bot.entrypoints.demo import (
    REPO,
    WRITER,
    Stage,
    docstring,
    fix_add,
    service,
    stage,
    wait_for,
)
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from tests.conftest import require

CONFIG = (
    "commands:\n  test:\n    - python3 -m unittest -q\n"
    "review:\n  before_ready: true\n  max_rounds: 2\n  threshold: major\n"
)


def answer(findings: list[dict[str, Any]]) -> dict[str, Any]:
    text = json.dumps({"summary": "Reviewed.", "findings": findings})
    return {"tool_use": [{"name": "finish", "input": {"summary": text}}]}


NO_DOCSTRING = {
    "path": "calc.py",
    "line": 1,
    "severity": "major",
    "title": "add() has no docstring",
    "body": "Public functions say what they return.",
    "suggestion": 'def add(a, b):\n    """Return a + b."""',
}
NIT = {"path": "calc.py", "line": 2, "severity": "nit", "title": "name the sum"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    root = tmp_path_factory.mktemp("rounds")
    with stage(root) as st:
        st.fake.commit(REPO, "main", {".github/vibe.yml": CONFIG}, "Review before ready")
        with service(st.settings(), st.port):
            yield st


def finished_task(st: Stage, number: int, iterations: int) -> TaskRecord:
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")

    def done() -> TaskRecord | None:
        task = taskdb.find(engine, REPO, number)
        if task is None or len(task.iterations) < iterations or task.pr_number is None:
            return None
        return task if all(it.outcome != "running" for it in task.iterations) else None

    try:
        return wait_for(done, f"{iterations} iterations", timeout=90)  # type: ignore[no-any-return]
    finally:
        engine.dispose()


def round_log(st: Stage, pr: int) -> str:
    marked = [c.body for c in st.fake.comments(REPO, pr) if "vibe:review key=task-" in c.body]
    assert len(marked) <= 1  # one log comment, edited in place
    return marked[0] if marked else ""


def test_findings_above_the_threshold_drive_one_more_iteration_then_the_loop_stops(
    world: Stage,
) -> None:
    st = world
    st.model.add(
        [
            *fix_add(),  # iteration 1: green
            answer([NO_DOCSTRING, NIT]),  # round 1: one major finding, one nit
            *docstring(),  # iteration 2 (self-review): green
            answer([NIT]),  # round 2: nothing at or above major: stop
        ]
    )
    issue = st.fake.open_issue(REPO, WRITER, "add() subtracts", "Make add() add.", ["vibe"])
    task = finished_task(st, issue, 2)
    assert task.pr_number is not None
    log = wait_for(
        lambda: (
            "- Round 2" in round_log(st, task.pr_number or 0) and round_log(st, task.pr_number or 0)
        ),
        "the last round in the log",
    )
    print("ROUND LOG:\n" + log)
    assert [(it.trigger, it.outcome) for it in task.iterations] == [
        ("start", "succeeded"),
        ("self-review", "succeeded"),
    ]
    second = task.iterations[1]
    assert second.feedback_kinds() == ["self"]
    # The reviewer's finding (the agent's own check before it finished is kept too).
    reviewed = [f for f in second.feedback if f.path is not None]
    assert [(f.path, f.line) for f in reviewed] == [("calc.py", 1)]
    assert "add() has no docstring" in reviewed[0].text
    # The rounds are not posted as reviews: the person sees the end state.
    assert [r for r in st.fake.world.reviews.values() if r.pull_number == task.pr_number] == []
    assert "- Round 1: 2 findings; 1 went to iteration 2 (succeeded):" in log
    assert "**major** `calc.py` line 1: add() has no docstring" in log
    assert "- Round 2: 1 finding; stopped: no new findings." in log
    assert '"""Return a + b."""' in st.fake.read_file(REPO, task.branch, "calc.py")  # type: ignore[operator]
    # The reviewer ran read-only, and its cost is the task's.
    assert task.usage.cost > 0


def test_a_finding_that_comes_back_ends_the_loop(world: Stage) -> None:
    st = world
    st.model.add(
        [
            *fix_add(),
            answer([NO_DOCSTRING]),
            *docstring(),
            answer([NO_DOCSTRING]),  # the same finding again: no third iteration
        ]
    )
    issue = st.fake.open_issue(REPO, WRITER, "add() again", "Make add() add.", ["vibe"])
    task = finished_task(st, issue, 2)
    assert task.pr_number is not None
    assert len(task.iterations) == 2
    log = wait_for(
        lambda: (
            "stopped: the same finding came back" in round_log(st, task.pr_number or 0)
            and round_log(st, task.pr_number or 0)
        ),
        "the last round in the log",
    )
    assert "- Round 2: 1 finding; stopped: the same finding came back." in log
    assert st.model.remaining == 0


def test_fix_in_reply_to_the_bots_review_comment_iterates_on_its_own_pr(world: Stage) -> None:
    st = world
    st.model.add([*fix_add(), answer([])])  # iteration 1, then a clean round 1
    issue = st.fake.open_issue(REPO, WRITER, "add() once more", "Make add() add.", ["vibe"])
    task = finished_task(st, issue, 1)
    pr = task.pr_number
    assert pr is not None
    wait_for(lambda: "- Round 1" in round_log(st, pr), "the clean round")
    st.model.add([answer([NO_DOCSTRING])])
    st.fake.comment(REPO, pr, WRITER, "/vibe review")
    review = wait_for(
        lambda: next((r for r in st.fake.world.reviews.values() if r.pull_number == pr), None),
        "the review",
    )
    (comment,) = [c for c in st.fake.world.review_comments.values() if c.review_id == review.id]
    st.model.add([*docstring(), answer([])])  # the fix, then a clean round
    st.fake.reply_to_review_comment(REPO, pr, WRITER, comment.id, "/vibe fix")
    task = finished_task(st, issue, 2)
    fixed = task.iterations[1]
    assert fixed.trigger == "comment"
    human = [f for f in fixed.feedback if f.kind == "human"]
    assert [(f.path, f.line, f.author) for f in human] == [("calc.py", 1, WRITER)]
    assert human[0].text.startswith("**major**: add() has no docstring")
    assert '"""Return a + b."""' in (st.fake.read_file(REPO, task.branch, "calc.py") or "")
