"""The main flow: label -> draft PR, review -> one iteration, require, approve."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from bot.core.markers import find_marker
from bot.entrypoints.demo import (
    READER,
    REPO,
    SAMPLE_FILES,
    WRITER,
    Stage,
    create,
    docstring,
    edit,
    finish,
    fix_add,
    wait_for,
)
from bot.testing.fake_github import InlineComment
from tests.e2e.conftest import Bot, task_state

World = tuple[Stage, Bot]


def bot_comments(st: Stage, number: int, needle: str = "") -> list[Any]:
    login = st.creds.bot_login
    return [c for c in st.fake.comments(REPO, number) if c.user == login and needle in c.body]


def final_status(st: Stage, number: int, count: int = 1) -> Any:
    """The status comment once ``count`` iterations have ended (a final line each)."""

    def done() -> Any:
        found = bot_comments(st, number, "vibe:status")
        if found and "_Working" not in found[0].body and f"iteration {count}" in found[0].body:
            return found[0]
        return None

    return wait_for(done, f"the end of iteration {count} on #{number}")


def test_label_opens_a_draft_pr(world: World) -> None:
    st, _ = world
    fake = st.fake
    st.model.add(fix_add())
    start = len(st.model.message_requests)
    number = fake.open_issue(REPO, WRITER, "add() subtracts instead of adding", "`add(2, 3)` is -1")
    fake.label(REPO, number, WRITER, "vibe")
    status = final_status(st, number)
    system = str(st.model.message_requests[start].body.get("system"))
    assert "## repository map" in system  # every model gets the map and the knowledge part
    assert "## file: calc.py" not in system  # ranked files are the context-enhanced model's
    assert "Done" in status.body
    assert "tests passed" in status.body
    assert len(bot_comments(st, number, "vibe:status")) == 1
    pr = next(p for p in fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    assert pr.pull.draft
    assert pr.pull.head_ref == f"vibe/issue-{number}-add-subtracts-instead-of-adding"
    assert pr.pull.requested_reviewers == [WRITER]
    assert "- [ ] add() subtracts instead of adding" in pr.body
    assert find_marker(pr.body, "task") is not None
    assert "| 1 | start |" in pr.body
    calc = fake.read_file(REPO, pr.pull.head_ref, "calc.py")
    assert calc is not None
    assert "return a + b" in calc
    assert any(r.content == "eyes" for r in fake.issue(REPO, number).reactions)


def second_comment() -> list[dict[str, Any]]:
    return [
        edit("calc.py", "def add(a, b):\n", 'def add(a, b):\n    """Return a + b."""\n'),
        edit("test_calc.py", "    def test_add(self):\n", "    def test_add(self):  # 2 + 3\n"),
        *finish("Added a docstring and a note in the test."),
    ]


@pytest.fixture(scope="module")
def flow(world: World) -> tuple[int, int]:
    """An issue with its draft PR after iteration 1 (shared by the tests below)."""
    st, _ = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Make add() add", "add(2, 3) should be 5")
    st.fake.label(REPO, number, WRITER, "vibe")
    final_status(st, number)
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    return number, pr.number


def test_review_with_two_inline_comments_is_one_iteration(
    world: World, flow: tuple[int, int]
) -> None:
    st, _ = world
    number, pr = flow
    branch = st.fake.issue(REPO, pr).pull.head_ref
    before = st.fake.branch_sha(REPO, branch)
    st.model.add(second_comment())
    requests = len(st.model.message_requests)
    st.fake.review(
        REPO,
        pr,
        WRITER,
        state="CHANGES_REQUESTED",
        body="Two small things.",
        comments=[
            InlineComment("calc.py", 1, "Please add a docstring."),
            # GitHub takes inline comments only on lines of the PR's diff: the first
            # iteration changed calc.py alone.
            InlineComment("calc.py", 2, "Say what the test checks."),
        ],
    )
    final_status(st, number, 2)
    threads = st.fake.threads(REPO, pr)
    replies = [
        c
        for c in st.fake.review_comments(REPO, pr)
        if c.user == st.creds.bot_login and c.in_reply_to_id is not None
    ]
    assert len(replies) == 2
    head = st.fake.branch_sha(REPO, branch)
    assert head != before
    assert all(f"Addressed in {head[:7]}" in r.body for r in replies)
    assert sorted((t.path, t.line) for t in threads) == [("calc.py", 1), ("calc.py", 2)]
    log = subprocess.run(
        ["git", "-C", str(st.fake.repo(REPO).path), "rev-list", f"{before}..{head}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(log) == 1  # one iteration, one commit, one push
    assert len(st.model.message_requests) - requests == len(second_comment())
    body = st.fake.issue(REPO, pr).body or ""
    assert "| 2 | review | human, self |" in body
    prompt = str(st.model.message_requests[requests].body)
    assert "Please add a docstring." in prompt
    assert "Say what the test checks." in prompt


def test_require_adds_a_requirement_and_iterates(world: World, flow: tuple[int, int]) -> None:
    st, _ = world
    _number, pr = flow
    st.model.add(
        [
            edit("calc.py", '    """Return a + b."""\n', '    """Return a + b (ints only)."""\n'),
            *finish("Documented the int-only contract."),
        ]
    )
    st.fake.comment(REPO, pr, WRITER, "/vibe require add() documents that it takes ints")
    body = wait_for(
        lambda: (b := st.fake.issue(REPO, pr).body or "") and "| 3 | require |" in b and b,
        "iteration 3 in the PR body",
    )
    assert "- [ ] add() documents that it takes ints" in body
    assert "- [ ] Make add() add" in body
    calc = st.fake.read_file(REPO, st.fake.issue(REPO, pr).pull.head_ref, "calc.py")
    assert calc is not None
    assert "ints only" in calc


def test_a_comment_on_the_pr_is_the_next_iteration(world: World, flow: tuple[int, int]) -> None:
    st, _ = world
    number, pr = flow
    st.model.add(
        [
            edit("README.md", "A tiny calculator.", "A tiny calculator that adds."),
            *finish("Described add in the README."),
        ]
    )
    st.fake.comment(REPO, pr, WRITER, "/vibe mention add() in the README")
    final_status(st, number, 4)
    body = st.fake.issue(REPO, pr).body or ""
    assert "| 4 | comment | human" in body
    readme = st.fake.read_file(REPO, st.fake.issue(REPO, pr).pull.head_ref, "README.md")
    assert readme is not None
    assert "calculator that adds" in readme


def test_status_command_answers_with_state_iterations_cost_limits(
    world: World, flow: tuple[int, int]
) -> None:
    st, _ = world
    _, pr = flow
    st.fake.comment(REPO, pr, WRITER, "/vibe status")
    reply = wait_for(lambda: bot_comments(st, pr, "**Task state:**"), "the status reply")
    text = reply[0].body
    assert "awaiting feedback" in text
    assert "**Iterations:** 4" in text
    assert "**Cost so far:** $" in text
    assert "dollars per task 20.0" in text


def test_an_empty_review_causes_no_iteration(world: World, flow: tuple[int, int]) -> None:
    st, _ = world
    _, pr = flow
    requests = len(st.model.message_requests)
    st.fake.review(REPO, pr, WRITER, state="COMMENTED")
    time.sleep(1.5)
    assert len(st.model.message_requests) == requests
    assert "| 5 |" not in (st.fake.issue(REPO, pr).body or "")


def test_approval_accepts_the_task(world: World, flow: tuple[int, int]) -> None:
    st, _ = world
    number, pr = flow
    requests = len(st.model.message_requests)
    st.fake.approve(REPO, pr, WRITER, "Looks good.")
    task = wait_for(lambda: task_state(st, number) == "accepted", "the task to be accepted")
    assert task
    assert len(st.model.message_requests) == requests


def test_undo_then_retry_then_close(world: World) -> None:
    st, _ = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Fix add for undo", "add(2, 3) should be 5")
    st.fake.label(REPO, number, WRITER, "vibe")
    final_status(st, number)
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    branch = pr.pull.head_ref
    st.fake.comment(REPO, pr.number, WRITER, "/vibe undo")
    reply = wait_for(lambda: bot_comments(st, pr.number, "Reverted iteration 1"), "the undo reply")
    calc = st.fake.read_file(REPO, branch, "calc.py")
    assert calc is not None
    assert "return a - b" in calc
    assert (
        reply[0].body.split("Reverted iteration 1 in ")[1][:7]
        == (st.fake.branch_sha(REPO, branch) or "")[:7]
    )
    st.model.add(fix_add())
    st.fake.comment(REPO, pr.number, WRITER, "/vibe retry")
    final_status(st, number, 2)
    calc = st.fake.read_file(REPO, branch, "calc.py")
    assert calc is not None
    assert "return a + b" in calc
    assert "| 2 | retry |" in (st.fake.issue(REPO, pr.number).body or "")
    st.fake.close(REPO, pr.number, WRITER)
    assert wait_for(lambda: task_state(st, number) == "abandoned", "the task to be abandoned")


def test_plan_model_writes_nothing_until_approved(world: World) -> None:
    st, _ = world
    st.model.add(
        [
            {
                "tool_use": [
                    {
                        "name": "str_replace_based_edit_tool",
                        "input": {"command": "view", "path": "calc.py"},
                    }
                ]
            },
            {"tool_use": [{"name": "finish", "input": {"summary": "1. Fix add"}}]},
            {"tool_use": [{"name": "finish", "input": {"summary": "1. Fix add\n2. Document add"}}]},
        ]
    )
    start = len(st.model.message_requests)
    number = st.fake.open_issue(REPO, WRITER, "Plan the add fix", "add(2, 3) should be 5")
    st.fake.label(REPO, number, WRITER, "vibe:plan")
    final_status(st, number)
    plan = bot_comments(st, number, "vibe:plan")
    assert "- [ ] Fix add" in plan[0].body
    assert "Document add" not in plan[0].body
    st.fake.comment(REPO, number, WRITER, "/vibe also document add()")
    final_status(st, number, 2)
    plan = bot_comments(st, number, "vibe:plan")
    assert len(plan) == 1
    assert "- [ ] Document add" in plan[0].body
    assert "also document add()" in str(st.model.message_requests[-1].body)
    assert task_state(st, number) == "awaiting_approval"
    branch = f"vibe/issue-{number}-plan-the-add-fix"
    assert st.fake.branch_sha(REPO, branch) is None
    tools = [t["name"] for t in st.model.message_requests[start].body["tools"]]
    # Planning: the editor answers only view there, and there is no bash.
    assert tools == ["str_replace_based_edit_tool", "search", "run_command", "finish"]
    st.model.add([*fix_add(), *docstring()])
    st.fake.comment(REPO, number, WRITER, "/vibe approve")
    final_status(st, number, 3)
    plan = bot_comments(st, number, "vibe:plan")
    assert "- [x] Fix add" in plan[0].body
    assert "- [x] Document add" in plan[0].body
    assert st.fake.branch_sha(REPO, branch) is not None
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    assert "- [x] Fix add" in (pr.body or "")


def test_test_model_records_red_then_green(world: World) -> None:
    st, _ = world
    new_test = (
        "import unittest\n\nfrom calc import add\n\n\n"
        "class NegTest(unittest.TestCase):\n"
        "    def test_negative(self):\n        self.assertEqual(add(-1, -1), -2)\n"
    )
    st.model.add([create("test_neg.py", new_test), *finish("Test for negatives."), *fix_add()])
    number = st.fake.open_issue(REPO, WRITER, "Negative numbers", "add(-1, -1) must be -2")
    st.fake.label(REPO, number, WRITER, "vibe:test")
    final_status(st, number)
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    body = pr.body or ""
    assert "red, before the change" in body
    assert "failed (exit 1)" in body
    assert "green, after" in body
    assert "python3 -m unittest -q</code> passed" in body


def test_a_readers_command_gets_one_refusal_and_no_run(world: World) -> None:
    st, _ = world
    number = st.fake.open_issue(REPO, WRITER, "Reader tries", "")
    requests = len(st.model.message_requests)
    st.fake.comment(REPO, number, READER, "/vibe fix everything")
    refusal = wait_for(lambda: bot_comments(st, number, "only people with write access"), "refusal")
    time.sleep(1.0)
    assert len(bot_comments(st, number)) == 1
    assert len(refusal) == 1
    assert len(st.model.message_requests) == requests
    assert task_state(st, number) is None


def test_the_bots_own_comments_cause_nothing(world: World, flow: tuple[int, int]) -> None:
    st, _ = world
    number, pr = flow
    before = len(bot_comments(st, pr))
    requests = len(st.model.message_requests)
    st.fake.comment(REPO, pr, st.creds.bot_login, "/vibe do it all again")
    st.fake.comment(REPO, number, st.creds.bot_login, "/vibe status")
    time.sleep(2.0)
    assert len(st.model.message_requests) == requests
    assert len(bot_comments(st, pr)) == before + 1  # only the comment the test itself made


def test_invalid_config_gets_one_comment_and_defaults(world: World) -> None:
    st, _ = world
    broken = "octo/broken"
    files = dict(SAMPLE_FILES)
    files[".github/vibe.yml"] = "commands:\n  test: python3 -m unittest\nmodel: telepathy\n"
    st.fake.create_repo(broken, files, collaborators={WRITER: "write"})
    st.model.add(fix_add())
    number = st.fake.open_issue(broken, WRITER, "Fix add in broken", "")
    st.fake.label(broken, number, WRITER, "vibe")
    login = st.creds.bot_login
    notes = wait_for(
        lambda: [
            c
            for c in st.fake.comments(broken, number)
            if c.user == login and "vibe:config" in c.body
        ],
        "the config comment",
    )
    assert "line 2" in notes[0].body
    assert "line 3" in notes[0].body
    wait_for(
        lambda: any(
            "Done" in c.body and "vibe:status" in c.body for c in st.fake.comments(broken, number)
        ),
        "the run on defaults",
    )
    configs = [c for c in st.fake.comments(broken, number) if "vibe:config" in c.body]
    assert len(configs) == 1


def test_unconstrained_model_fixes_its_own_failures_and_opens_a_ready_pr(world: World) -> None:
    st, _ = world
    st.model.add(
        [
            edit("calc.py", "return a - b", "return a * b"),
            *finish("Changed add()."),
            edit("calc.py", "return a * b", "return a + b"),
            *finish("Fixed add() after the failing test."),
        ]
    )
    number = st.fake.open_issue(REPO, WRITER, "Unconstrained add fix", "")
    st.fake.label(REPO, number, WRITER, "vibe:unconstrained")
    status = final_status(st, number)
    assert "Done" in status.body
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    assert not pr.pull.draft
    assert "| 1 | start | self, execution |" in (pr.body or "")
    prompt = str(st.model.message_requests[-len(fix_add())].body)
    assert "[execution]" in prompt
    assert "python3 -m unittest -q" in prompt


def test_context_model_starts_from_a_ranked_pack(world: World) -> None:
    st, _ = world
    st.model.add(fix_add())
    start = len(st.model.message_requests)
    number = st.fake.open_issue(
        REPO, WRITER, "The adder returns the difference", "adding two numbers gives a - b"
    )
    st.fake.label(REPO, number, WRITER, "vibe:context")
    final_status(st, number)
    system = str(st.model.message_requests[start].body.get("system"))
    assert "## file: calc.py" in system
    assert "return a - b" in system
    assert "## repository map" in system


def test_vibe_on_a_persons_pr_works_on_its_branch(world: World) -> None:
    st, _ = world
    st.fake.commit(REPO, "feature/notes", {"NOTES.md": "notes\n"}, "Add notes", author=WRITER)
    pr = st.fake.open_pull(REPO, WRITER, "feature/notes", "Notes", "My own PR text.")
    pulls = len(st.fake.pulls(REPO))
    st.model.add(fix_add())
    st.fake.comment(REPO, pr, WRITER, "/vibe also fix add() while you are here")
    status = final_status(st, pr)
    assert "Done" in status.body
    calc = st.fake.read_file(REPO, "feature/notes", "calc.py")
    assert calc is not None
    assert "return a + b" in calc
    assert st.fake.read_file(REPO, "feature/notes", "NOTES.md") == "notes\n"
    assert st.fake.issue(REPO, pr).body == "My own PR text."
    assert len(st.fake.pulls(REPO)) == pulls


def test_threads_are_resolved_when_the_config_says_so_and_merge_accepts(world: World) -> None:
    st, _ = world
    repo = "octo/resolving"
    files = dict(SAMPLE_FILES)
    files[".github/vibe.yml"] = (
        "resolve_threads: true\ncommands:\n  test: [python3 -m unittest -q]\n"
    )
    st.fake.create_repo(repo, files, collaborators={WRITER: "write"})
    st.model.add([*fix_add(), *docstring()])
    number = st.fake.open_issue(repo, WRITER, "Fix add here too", "")
    st.fake.label(repo, number, WRITER, "vibe")
    pr = wait_for(
        lambda: next(
            (p for p in st.fake.pulls(repo) if f"Fixes #{number}" in (p.body or "")), None
        ),
        "the PR",
    )
    wait_for(lambda: pr.pull.requested_reviewers, "the review request")
    st.fake.review(
        repo,
        pr.number,
        WRITER,
        state="COMMENTED",
        comments=[InlineComment("calc.py", 1, "Please add a docstring.")],
    )
    wait_for(
        lambda: all(t.resolved for t in st.fake.threads(repo, pr.number)),
        "the thread to be resolved",
    )
    (thread,) = st.fake.threads(repo, pr.number)
    assert thread.resolved_by == st.creds.bot_login
    st.fake.merge(repo, pr.number, WRITER)
    assert wait_for(lambda: task_state(st, number, repo) == "accepted", "accepted on merge")


def edit_comment(st: Stage, number: int, comment_id: int, user: str, body: str) -> None:
    """``user`` edits a comment (GitHub sends ``issue_comment`` edited); the fake has no
    helper for it, so the test builds the delivery from the fake's own shapes."""
    fake = st.fake
    with fake.world.lock:
        repo = fake.repo(REPO)
        comment = fake.world.issue_comments[comment_id]
        old = comment.body
        comment.body = body
        payload = {
            "action": "edited",
            "changes": {"body": {"from": old}},
            "issue": fake.shapes.issue(repo, fake.issue(REPO, number)),
            "comment": fake.shapes.issue_comment(repo, comment),
            **fake._common(repo, user),
        }
    fake.deliver("issue_comment", payload)


def test_a_writer_editing_the_plan_approves_the_edited_plan(world: World) -> None:
    st, _ = world
    st.model.add(
        [{"tool_use": [{"name": "finish", "input": {"summary": "1. Fix add\n2. Rewrite calc"}}]}]
    )
    number = st.fake.open_issue(REPO, WRITER, "Plan then edit", "add(2, 3) should be 5")
    st.fake.label(REPO, number, WRITER, "vibe:plan")
    final_status(st, number)
    (plan,) = bot_comments(st, number, "vibe:plan")
    edited = plan.body.replace("- [ ] Rewrite calc\n", "")
    st.model.add(fix_add())
    edit_comment(st, number, plan.id, WRITER, edited)
    final_status(st, number, 2)
    (plan,) = bot_comments(st, number, "vibe:plan")
    assert "- [x] Fix add" in plan.body
    assert "Rewrite calc" not in plan.body
    calc = st.fake.read_file(REPO, f"vibe/issue-{number}-plan-then-edit", "calc.py")
    assert calc is not None
    assert "return a + b" in calc


def test_undo_never_removes_a_persons_commit(world: World) -> None:
    st, _ = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Fix add, then a person commits", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    final_status(st, number)
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    branch = pr.pull.head_ref
    mine = st.fake.commit(REPO, branch, {"NOTES.md": "mine\n"}, "My notes", author=WRITER)
    st.fake.comment(REPO, pr.number, WRITER, "/vibe undo")
    reply = wait_for(lambda: bot_comments(st, pr.number, "not the bot"), "the undo refusal")
    assert "I can't do that" in reply[0].body
    assert st.fake.branch_sha(REPO, branch) == mine
