"""Issue 18: ``/vibe review`` and ``review.on`` post ONE review (event COMMENT) on a pull
request, with inline comments on lines of the diff and the rest in its body. Driven end to
end: the real service, the fake GitHub (which refuses a comment off the diff with 422, as
GitHub does) and the scripted model, with real git and real bubblewrap."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from bot.entrypoints.demo import REPO, WRITER, Stage, service, stage, wait_for
from bot.testing.fake_github.state import Review, ReviewComment
from tests.conftest import require

READER = "rita"
SECRET_IN_DIFF = "ghp_" + "A" * 36

CHANGED = (
    "def add(a, b):\n    return a - b\n\n\ndef div(a, b):\n    total = a\n    return total / b\n"
)


def answer(findings: list[dict[str, Any]], summary: str = "Adds div().") -> dict[str, Any]:
    """One model turn: the read-only reviewer calls ``finish`` with its JSON answer."""
    text = json.dumps({"summary": summary, "findings": findings})
    return {"tool_use": [{"name": "finish", "input": {"summary": text}}]}


FINDINGS = [
    {
        "path": "calc.py",
        "line": 7,
        "start_line": 6,
        "severity": "major",
        "title": "Division by zero is not handled",
        "body": "div(1, 0) raises ZeroDivisionError; say what the caller gets. "
        f"(token seen: {SECRET_IN_DIFF})",
        "suggestion": (
            "    if b == 0:\n        raise ValueError('b must not be 0')\n    return a / b"
        ),
    },
    {
        "path": "calc.py",
        "line": 2,
        "severity": "critical",
        "title": "add() subtracts",
        "body": "An old bug this PR does not touch.",
    },
    {"path": "calc.py", "line": 999, "severity": "minor", "title": "Not a line of the diff"},
    {"path": "nowhere.py", "line": 1, "severity": "nit", "title": "A file the PR did not change"},
    {"severity": "major", "title": "no path at all"},
    {"path": "calc.py", "line": 5, "severity": "blocker", "title": "unknown severity"},
    "not an object",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    root = tmp_path_factory.mktemp("review")
    with stage(root) as st:
        st.fake.set_role(REPO, READER, "read")
        with service(st.settings(), st.port):
            yield st


def reviews_of(st: Stage, number: int) -> list[Review]:
    return [r for r in st.fake.world.reviews.values() if r.pull_number == number]


def comments_of(st: Stage, review: Review) -> list[ReviewComment]:
    return [c for c in st.fake.world.review_comments.values() if c.review_id == review.id]


def open_pull(st: Stage, branch: str, files: dict[str, str | bytes | None]) -> int:
    st.fake.commit(REPO, branch, files, "Add div", author=WRITER)
    return st.fake.open_pull(REPO, WRITER, branch, "Add div()", "Adds division.")


def test_a_writer_asks_for_a_review_and_gets_one_formal_review(world: Stage) -> None:
    st = world
    number = open_pull(st, "feature/div", {"calc.py": CHANGED})
    st.model.add([answer(FINDINGS)])
    st.fake.comment(REPO, number, WRITER, "/vibe review division edge cases")
    review = wait_for(lambda: next(iter(reviews_of(st, number)), None), "the review")
    comments = comments_of(st, review)
    print("REVIEW BODY:\n" + review.body)
    for c in comments:
        print(f"COMMENT {c.path}:{c.start_line}-{c.line} {c.side}:\n{c.body}")
    assert review.state == "COMMENTED"  # never APPROVED
    assert review.user == st.creds.bot_login
    assert review.commit_id == st.fake.world.repo("octo", "calc").issues[number].pull.head_sha  # type: ignore[union-attr]
    # Findings on lines of the diff (added or context lines) are inline, most severe
    # first; the range keeps its first line and carries a suggestion block.
    assert [(c.path, c.start_line, c.line, c.side) for c in comments] == [
        ("calc.py", None, 2, "RIGHT"),
        ("calc.py", 6, 7, "RIGHT"),
    ]
    assert comments[0].body.startswith("**critical**: add() subtracts")
    assert comments[1].body.startswith("**major**: Division by zero is not handled")
    assert "```suggestion\n    if b == 0:" in comments[1].body
    # Findings off the diff are in the body; malformed ones are counted, not posted.
    assert "**minor** `calc.py` line 999: Not a line of the diff" in review.body
    assert "`nowhere.py` line 1" in review.body
    assert "Left out of the model's answer: 3 malformed parts." in review.body
    assert "Focus: division edge cases" in review.body
    assert "Cost:" in review.body
    # A secret the model echoed never leaves the host.
    assert SECRET_IN_DIFF not in comments[1].body + review.body
    # The prompt framed the diff as untrusted data and asked for read-only work.
    prompt = json.dumps(st.model.message_requests[-1].body)
    assert '<untrusted-data source="pull request diff">' in prompt.replace('\\"', '"')
    # The read-only tool set: no shell, commands from an allow-list (ToolSet.read_only).
    tools = {t["name"] for t in st.model.message_requests[-1].body["tools"]}
    assert tools == {"finish", "run_command", "search", "str_replace_based_edit_tool"}


def test_a_reader_cannot_ask_for_a_review(world: Stage) -> None:
    st = world
    number = open_pull(st, "feature/reader", {"calc.py": CHANGED + "# r\n"})
    st.fake.comment(REPO, number, READER, "/vibe review")
    wait_for(
        lambda: any(
            "only people with write access" in c.body for c in st.fake.comments(REPO, number)
        ),
        "the refusal",
    )
    assert reviews_of(st, number) == []


def test_fix_on_a_persons_pull_request_offers_the_suggestion_and_pushes_nothing(
    world: Stage,
) -> None:
    st = world
    number = open_pull(st, "feature/fix", {"calc.py": CHANGED + "# fix\n"})
    head = st.fake.world.repo("octo", "calc").issues[number].pull.head_sha  # type: ignore[union-attr]
    st.model.add([answer([FINDINGS[0]])])
    st.fake.comment(REPO, number, WRITER, "/vibe review")
    review = wait_for(lambda: next(iter(reviews_of(st, number)), None), "the review")
    (finding,) = comments_of(st, review)
    st.fake.reply_to_review_comment(REPO, number, WRITER, finding.id, "/vibe fix")
    offer = wait_for(
        lambda: next(
            (
                c
                for c in st.fake.review_comments(REPO, number)
                if c.user == st.creds.bot_login and c.in_reply_to_id == finding.id
            ),
            None,
        ),
        "the offered suggestion",
    )
    assert offer.body.startswith(f"@{WRITER}, I do not push to this pull request")
    assert "```suggestion\n    if b == 0:" in offer.body
    assert st.fake.world.repo("octo", "calc").issues[number].pull.head_sha == head  # type: ignore[union-attr]
    assert st.model.remaining == 0  # no model call for the offer


def test_an_answer_that_is_no_json_still_ends_in_one_valid_review(world: Stage) -> None:
    st = world
    number = open_pull(st, "feature/garbage", {"calc.py": CHANGED + "# g\n"})
    garbage = "I think it is fine {not json] ```suggestion\nrm -rf /\n```" + "x" * 5_000
    st.model.add([{"tool_use": [{"name": "finish", "input": {"summary": garbage}}]}])
    st.fake.comment(REPO, number, WRITER, "/vibe review")
    review = wait_for(lambda: next(iter(reviews_of(st, number)), None), "the review")
    assert comments_of(st, review) == []
    assert "**Findings**: none; 0 inline." in review.body
    assert "Left out of the model's answer: 1 malformed part." in review.body
    assert "rm -rf" not in review.body.split("**Findings**")[1]


def test_a_forks_pull_request_is_reviewed_read_only_and_can_be_turned_off(world: Stage) -> None:
    st = world
    fork = st.fake.fork(REPO, "mallory")
    st.fake.commit(fork.full_name, "patch", {"calc.py": CHANGED + "# fork\n"}, author="mallory")
    number = st.fake.open_pull(REPO, "mallory", "mallory:patch", "Add div()", "From a fork.")
    fork_head = st.fake.branch_sha(fork.full_name, "patch")
    st.model.add([answer([FINDINGS[0]])])
    st.fake.comment(REPO, number, WRITER, "/vibe review")
    review = wait_for(lambda: next(iter(reviews_of(st, number)), None), "the fork's review")
    assert [(c.start_line, c.line) for c in comments_of(st, review)] == [(6, 7)]
    assert review.commit_id == fork_head
    assert st.fake.branch_sha(fork.full_name, "patch") == fork_head  # nothing written there
    st.fake.commit(REPO, "main", {".github/vibe.yml": "review:\n  forks: false\n"}, "No forks")
    st.fake.comment(REPO, number, WRITER, "/vibe review again")
    wait_for(
        lambda: any("turned off here" in c.body for c in st.fake.comments(REPO, number)),
        "the refusal",
    )
    assert len(reviews_of(st, number)) == 1


# Last: it turns review.on on for the rest of the module.
def test_review_on_opened_reads_the_config_and_skips_generated_files(world: Stage) -> None:
    st = world
    st.fake.commit(
        REPO,
        "main",
        {
            ".github/vibe.yml": "commands:\n  test:\n    - python3 -m unittest -q\n"
            "review:\n  on: [opened]\n  instructions: Prefer ValueError over asserts.\n",
            ".gitattributes": "gen/** linguist-generated=true\n",
        },
        "Enable reviews",
    )
    st.model.add([answer([], summary="Looks fine.")])
    number = open_pull(
        st,
        "feature/auto",
        {"calc.py": CHANGED, "gen/table.py": "X = 1\n", "package-lock.json": "{}\n"},
    )
    review = wait_for(lambda: next(iter(reviews_of(st, number)), None), "the automatic review")
    assert comments_of(st, review) == []
    assert "**Findings**: none" in review.body
    assert "`gen/table.py` (generated or vendored (.gitattributes))" in review.body
    assert "`package-lock.json` (lock file)" in review.body
    prompt = json.dumps(st.model.message_requests[-1].body)
    assert "Prefer ValueError over asserts." in prompt
    assert "gen/table.py" not in prompt.split("pull request diff", 1)[1].split("untrusted-data>")[0]
