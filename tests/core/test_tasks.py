"""The task state machine and task values, table-tested."""

from __future__ import annotations

import pytest

from bot.core.tasks import (
    Check,
    Feedback,
    InvalidTransition,
    IterationRecord,
    State,
    Step,
    allowed,
    transition,
)

S = State
VALID = [
    (S.QUEUED, Step.WORK, S.WORKING),
    (S.QUEUED, Step.PLAN, S.PLANNING),
    (S.PLANNING, Step.PLAN_READY, S.AWAITING_APPROVAL),
    (S.AWAITING_APPROVAL, Step.APPROVE, S.WORKING),
    (S.AWAITING_APPROVAL, Step.PLAN, S.PLANNING),
    (S.WORKING, Step.DONE, S.AWAITING_FEEDBACK),
    (S.WORKING, Step.FAIL, S.FAILED),
    (S.AWAITING_FEEDBACK, Step.WORK, S.WORKING),
    (S.FAILED, Step.WORK, S.WORKING),
    (S.WORKING, Step.ABANDON, S.ABANDONED),
    (S.AWAITING_FEEDBACK, Step.ACCEPT, S.ACCEPTED),
    (S.AWAITING_APPROVAL, Step.ABANDON, S.ABANDONED),
    (S.ACCEPTED, Step.REOPEN, S.QUEUED),
    (S.ABANDONED, Step.REOPEN, S.QUEUED),
]
INVALID = [
    (S.QUEUED, Step.DONE),
    (S.QUEUED, Step.APPROVE),
    (S.WORKING, Step.WORK),
    (S.WORKING, Step.APPROVE),
    (S.AWAITING_FEEDBACK, Step.APPROVE),
    (S.ACCEPTED, Step.WORK),
    (S.ACCEPTED, Step.ABANDON),
    (S.ABANDONED, Step.ACCEPT),
    (S.PLANNING, Step.DONE),
    (S.WORKING, Step.REOPEN),
]


@pytest.mark.parametrize(("state", "step", "after"), VALID)
def test_valid_transitions(state: State, step: Step, after: State) -> None:
    assert allowed(state, step)
    assert transition(state, step) is after


@pytest.mark.parametrize(("state", "step"), INVALID)
def test_invalid_transitions_raise(state: State, step: Step) -> None:
    assert not allowed(state, step)
    with pytest.raises(InvalidTransition, match=step.value):
        transition(state, step)


def test_terminal_states_only_reopen() -> None:
    for state in (S.ACCEPTED, S.ABANDONED):
        assert [step for step in Step if allowed(state, step)] == [Step.REOPEN]


def test_feedback_json_round_trip_and_bad_kind() -> None:
    item = Feedback("human", "rename it", author="ann", path="a.py", line=3, comment_id=9)
    assert Feedback.from_json(item.to_json()) == item
    with pytest.raises(ValueError, match="unknown feedback kind"):
        Feedback.from_json({"kind": "gossip", "text": "x"})


def test_feedback_kinds_include_failing_checks_once() -> None:
    lint = Check("lint", "ruff check", "compiler", 1, 0.1)
    tests = Check("tests", "pytest", "execution", 0, 0.2)
    it = IterationRecord(
        1, "review", feedback=(Feedback("human", "a"), Feedback("human", "b")), checks=(lint, tests)
    )
    assert it.feedback_kinds() == ["human", "compiler"]
    assert Check.from_json(lint.to_json()) == lint


@pytest.mark.parametrize(
    ("feedback", "where"),
    [
        (Feedback("human", "x", path="calc.py", line=7), "calc.py:7"),
        (Feedback("human", "x", path="calc.py", line=9, start_line=5), "calc.py:5-9"),
        (Feedback("human", "x", path="calc.py", line=9, start_line=9), "calc.py:9"),
        (
            Feedback("human", "x", path="calc.py", line=3, side="LEFT"),
            "calc.py:3 (lines of the base, removed by the change)",
        ),
        (Feedback("human", "x", path="calc.py"), "calc.py"),
        (Feedback("human", "x"), ""),
    ],
)
def test_review_feedback_says_which_lines_of_which_side(feedback: Feedback, where: str) -> None:
    # GitHub's review comments: line (and start_line for a range) on side RIGHT (the head)
    # or LEFT (the base), never the diff position.
    assert feedback.where == where


def test_feedback_keeps_its_line_range_and_side_through_the_database_json() -> None:
    item = Feedback("human", "x", path="a.py", line=9, start_line=5, side="LEFT", comment_id=3)
    assert Feedback.from_json(item.to_json()) == item
    hostile = {**item.to_json(), "side": "<script>", "start_line": None}
    back = Feedback.from_json(hostile)
    assert (back.side, back.start_line) == (None, None)
