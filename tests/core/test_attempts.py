"""Best-of-N attempts as values (issue 18): the ranking and its reasons, the budget, the
branch names, picking, the PR table, the /vibe grammar and the config that ask for them."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bot.core.attempts import (
    MAX_ATTEMPTS,
    Attempt,
    AttemptSet,
    affordable,
    attempt_branch,
    attempts_table,
    choose,
    is_test_path,
    pick_problem,
    picked,
)
from bot.core.branches import task_branch, valid_branch
from bot.core.commands import Verb, parse_commands
from bot.core.config import parse_repo_config
from bot.core.policy import Iterate, Pick, RefusalReason, StartTask
from tests.core.test_policy import ACTIVE, ENDED, refused, run, said

BRANCH = task_branch(7, "Fix add")


def attempt(number: int, **fields: object) -> Attempt:
    base: dict[str, object] = {
        "outcome": "succeeded",
        "checks": "passed",
        "checks_line": "tests passed",
        "files": 1,
        "insertions": 1,
        "deletions": 1,
        "cost": 0.01,
        "sha": f"{number:040x}",
    }
    base.update(fields)
    return Attempt(number, **base)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- ranking


@pytest.mark.parametrize(
    ("attempts", "chosen", "why"),
    [
        # checks that pass beat checks that fail, whatever the diff
        (
            [
                attempt(1, checks="failed", checks_line="tests failed (1)", insertions=0),
                attempt(2, insertions=9),
            ],
            2,
            "attempt 1's checks fail (tests failed (1))",
        ),
        # among passing attempts, the smaller diff
        ([attempt(1, insertions=30), attempt(2, insertions=2)], 2, "diff is larger (31 lines"),
        # tests added rank above a smaller diff
        ([attempt(1), attempt(2, insertions=40, tests_changed=1)], 2, "changed 0 test files"),
        # a first-time pass beats one that needed a fix of its checks
        ([attempt(1, fixes=1), attempt(2, insertions=5)], 2, "needed 1 fixes"),
        # a finished attempt beats one that hit a limit
        ([attempt(1, outcome="limit"), attempt(2, insertions=50)], 2, "ended limit"),
        # an attempt that changed nothing never wins
        ([attempt(1, sha=None, insertions=0, deletions=0), attempt(2)], 2, "changed nothing"),
        # equal but for cost: the cheaper
        ([attempt(1, cost=0.05), attempt(2, cost=0.02)], 2, "cost more"),
        # equal in everything: the lower number, deterministically
        ([attempt(2), attempt(1)], 1, "ties and comes later"),
    ],
)
def test_the_ranking_chooses_and_says_why(attempts: list[Attempt], chosen: int, why: str) -> None:
    number, reasons = choose(attempts)
    assert number == chosen
    assert reasons[0].startswith(f"attempt {chosen} is chosen")
    assert any(why in r for r in reasons[1:]), reasons
    # the order the attempts come in does not matter
    assert choose(list(reversed(attempts)))[0] == chosen


def test_three_attempts_one_failing_two_passing_with_different_diffs() -> None:
    failing = attempt(1, checks="failed", checks_line="tests failed (1)", insertions=1)
    small = attempt(2, insertions=1, deletions=1)
    large = attempt(3, insertions=6, deletions=1, files=2)
    number, reasons = choose([failing, small, large])
    assert number == 2
    assert reasons == (
        "attempt 2 is chosen: its checks pass, 2 changed lines, $0.0100",
        "attempt 3's diff is larger (7 lines against 2)",
        "attempt 1's checks fail (tests failed (1))",
    )


def test_no_attempt_that_changed_something_means_no_choice() -> None:
    nothing = [attempt(1, sha=None), attempt(2, sha=None, outcome="failed")]
    assert choose(nothing) == (None, ("no attempt produced a change",))
    assert choose([]) == (None, ())


# ----------------------------------------------------------------------------- budget


@pytest.mark.parametrize(
    ("wanted", "per_iteration", "per_task", "spent", "count", "fewer"),
    [
        (3, 5.0, 20.0, 0.0, 3, False),
        (3, 0.5, 1.2, 0.0, 2, True),  # the task's limit covers two attempts
        (3, 0.5, 1.2, 0.3, 1, True),
        (3, 5.0, 1.0, 0.99, 1, True),  # less than one left: the ordinary single iteration
        (5, 1.0, 5.0, 0.0, 5, False),  # exactly enough
        (1, 5.0, 1.0, 10.0, 1, False),  # one attempt is never "fewer"
        (99, 1.0, 100.0, 0.0, MAX_ATTEMPTS, False),  # bounded, whatever asks
    ],
)
def test_the_task_budget_bounds_the_attempts(
    wanted: int,
    per_iteration: float,
    per_task: float,
    spent: float,
    count: int,
    fewer: bool,
) -> None:
    got, note = affordable(wanted, per_iteration=per_iteration, per_task=per_task, task_spent=spent)
    assert got == count
    assert (note is not None) is fewer
    if note is not None:
        assert note.startswith(f"{count} of {min(wanted, MAX_ATTEMPTS)} attempts run")
        assert f"${per_iteration:.2f}" in note


# ---------------------------------------------------------------------------- branches


def test_attempt_branches_are_valid_siblings_of_the_task_branch(tmp_path: Path) -> None:
    names = [attempt_branch(BRANCH, k) for k in range(1, MAX_ATTEMPTS + 1)]
    assert names[1] == "vibe/issue-7-fix-add--attempt-2"
    assert all(valid_branch(n) for n in names)
    # git itself takes the task branch and all attempt branches side by side (a branch
    # ``a/b`` next to ``a/b/attempt-2`` is what git refuses).
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=a",
            "-c",
            "user.email=a@b",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
    )
    for name in [BRANCH, *names]:
        subprocess.run(["git", "-C", str(repo), "branch", name], check=True)
    child = subprocess.run(
        ["git", "-C", str(repo), "branch", f"{BRANCH}/attempt-2"], capture_output=True
    )
    assert child.returncode != 0


def test_no_task_branch_is_ever_an_attempt_branch() -> None:
    # slugs never hold two dashes in a row, so a title cannot forge an attempt's name
    assert task_branch(7, "Fix add -- attempt 2") != attempt_branch(BRANCH, 2)
    assert "--" not in task_branch(7, "a -- b --- c")
    with pytest.raises(ValueError, match="numbered 1 to"):
        attempt_branch(BRANCH, 0)
    with pytest.raises(ValueError, match="numbered 1 to"):
        attempt_branch(BRANCH, MAX_ATTEMPTS + 1)


@pytest.mark.parametrize(
    ("path", "test"),
    [
        ("tests/test_calc.py", True),
        ("test_calc.py", True),
        ("pkg/calc_test.go", True),
        ("web/app.test.ts", True),
        ("web/app.spec.js", True),
        ("src/spec/helper.rb", True),
        ("calc.py", False),
        ("docs/testing.md", False),
        ("contest.py", False),
    ],
)
def test_test_paths(path: str, test: bool) -> None:
    assert is_test_path(path) is test


# ------------------------------------------------------------------------------- pick


def three() -> AttemptSet:
    return AttemptSet(
        attempts=(
            attempt(1, checks="failed", branch=attempt_branch(BRANCH, 1)),
            attempt(2),
            attempt(3, branch=attempt_branch(BRANCH, 3)),
            attempt(4, sha=None),
            attempt(5, note="its push was refused"),
        ),
        chosen=2,
        first=2,
        head="a" * 40,
    )


@pytest.mark.parametrize(
    ("attempts", "number", "latest", "problem"),
    [
        (three(), 3, True, None),
        (three(), 1, True, None),  # a failing attempt may still be picked by a person
        (None, 2, True, "no attempts to pick from"),
        (three(), 3, False, "expired"),
        (replace(three(), expired=True), 3, True, "expired"),
        (three(), 2, True, "already the task branch's head"),
        (three(), 4, True, "changed nothing"),
        (three(), 5, True, "not kept (its push was refused)"),
        (replace(three(), attempts=three().attempts[:3]), 5, True, "there is no attempt 5"),
    ],
)
def test_pick_problems(
    attempts: AttemptSet | None, number: int, latest: bool, problem: str | None
) -> None:
    found = pick_problem(attempts, number, latest)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found


def test_the_first_choice_can_be_picked_back_after_another() -> None:
    after = picked(three(), 3, "ann", "b" * 40)
    assert (after.chosen, after.picked_by, after.head) == (3, "ann", "b" * 40)
    assert after.reasons[0] == "attempt 3 was picked by @ann"
    assert pick_problem(after, 2, True) is None  # its commit is in the branch's history
    assert pick_problem(after, 3, True) is not None


# ------------------------------------------------------------------------ stored value


def test_the_set_round_trips_through_json_and_malformed_values_read_as_none() -> None:
    value = replace(three(), reasons=("a", "b"), note="2 of 3 attempts run", wanted=3)
    assert AttemptSet.from_json(value.to_json()) == value
    for bad in (None, [], {"attempts": "x"}, {"attempts": [{"outcome": "x"}]}, "text"):
        assert AttemptSet.from_json(bad) is None


def test_the_table_lists_every_attempt_with_checks_diff_and_cost() -> None:
    value = replace(three(), reasons=("attempt 2 is chosen: its checks pass",))
    lines = attempts_table(value)
    assert lines[0] == "| attempt | branch | checks | tests changed | diff | cost | outcome |"
    row = "| 2 ✅ chosen | the task branch | tests passed | 0 | 1 file, +1/-1 | $0.0100 |"
    assert lines[3] == row + " succeeded |"
    assert f"`{attempt_branch(BRANCH, 3)}`" in lines[4]
    assert "no change" in lines[5]
    assert "| not kept |" in lines[6]
    assert "- attempt 2 is chosen: its checks pass" in lines
    assert lines[-1].startswith("`/vibe pick <attempt>`")
    expired = attempts_table(replace(value, expired=True))
    assert "`/vibe pick" not in expired[-1]
    assert all(attempt_branch(BRANCH, 3) not in line for line in expired)


# ------------------------------------------------------------- grammar, config, policy


@pytest.mark.parametrize(
    ("text", "verb", "attempts", "rest"),
    [
        ("/vibe attempts=3 fix the parser", Verb.RUN, 3, "fix the parser"),
        ("/vibe ATTEMPTS = 2\nmore lines", Verb.RUN, 2, "more lines"),
        ("/vibe attempts=5", Verb.RUN, 5, ""),
        ("/vibe pick 2", Verb.PICK, None, "2"),
        ("/vibe pick 02", Verb.PICK, None, "2"),
    ],
)
def test_grammar_of_attempts_and_pick(
    text: str, verb: Verb, attempts: int | None, rest: str
) -> None:
    (command,) = parse_commands(text)
    assert (command.verb, command.attempts, command.text) == (verb, attempts, rest)


@pytest.mark.parametrize(
    "text",
    [
        "/vibe attempts=0 fix it",
        "/vibe attempts=999 fix it",
        "/vibe attempts=6",
        "/vibe attempts=abc",
        "/vibe attempts=-1",
        "/vibe attempts=2.5",
        "/vibe attempts=",
        "/vibe attempts=٣",  # a digit, but not an ASCII one
        "/vibe attempts=" + "9" * 5000,
        "/vibe pick",
        "/vibe pick two",
        "/vibe pick 0",
        "/vibe pick 9",
        "/vibe pick " + "9" * 5000,
    ],
)
def test_hostile_attempts_and_picks_get_a_clear_error(text: str) -> None:
    (command,) = parse_commands(text)
    assert command.verb is Verb.UNKNOWN
    assert command.error is not None
    assert "1 to 5" in command.error
    assert len(command.error) < 200


@pytest.mark.parametrize(
    ("text", "attempts", "problem"),
    [
        ("attempts: 3\n", 3, None),
        ("", 1, None),
        ("attempts: 0\n", 1, "attempts"),
        ("attempts: 99\n", 1, "attempts"),
        ("attempts: many\n", 1, "attempts"),
    ],
)
def test_config_attempts_is_bounded(text: str, attempts: int, problem: str | None) -> None:
    config, problems = parse_repo_config(text)
    assert config.attempts == attempts
    if problem is None:
        assert problems == []
    else:
        assert problems
        assert problems[0].line == 1
        assert problem in problems[0].message


def test_policy_carries_attempts_and_picks() -> None:
    start = run(said("/vibe attempts=3 fix it"))
    assert isinstance(start, StartTask)
    assert start.attempts == 3
    feedback = run(said("/vibe attempts=2 smaller please", on_pr=True), task=ACTIVE)
    assert isinstance(feedback, Iterate)
    assert (feedback.attempts, feedback.feedback) == (2, "smaller please")
    chosen = run(said("/vibe pick 3", on_pr=True), task=ACTIVE)
    assert isinstance(chosen, Pick)
    assert chosen.attempt == 3


def test_policy_refuses_bad_attempts_once_and_picks_without_a_task() -> None:
    assert run(said("/vibe attempts=0 x")) == refused(RefusalReason.BAD_COMMAND)
    bad = run(said("/vibe pick x", on_pr=True), task=ACTIVE)
    assert bad == refused(RefusalReason.BAD_COMMAND)
    assert run(said("/vibe pick 2", on_pr=True), task=ENDED) == refused(RefusalReason.NO_TASK)
    # a reader asking gets the one refusal readers get, not the grammar's
    reader = run(said("/vibe attempts=0 x"), permission="read")
    assert reader == refused(RefusalReason.NOT_WRITER)
