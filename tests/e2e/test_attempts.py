"""Best-of-N attempts end to end (issue 18): ``vibe serve`` against the fake GitHub and the
scripted model, with real git and bubblewrap. Three attempts of which one fails its tests
and two pass with different diffs; the table in the PR; ``/vibe pick``; the branches going
when the next iteration begins or the task ends; ``/vibe stop``; a dollar limit that covers
two attempts only.

Attempts run in parallel, so their model requests arrive in no set order: the scripted
model answers each conversation from the script of its attempt, found by the "attempt k of
n" line of the brief, and by how many turns the conversation already has."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bot.core.attempts import attempt_branch
from bot.core.branches import task_branch
from bot.core.tasks import TaskRecord
from bot.entrypoints.demo import REPO, WRITER, Stage, edit, finish, fix_add, stage, wait_for
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from bot.testing.fake_github import gitrepo
from bot.testing.model_server import RecordedRequest, Step, load_script
from tests.conftest import require
from tests.e2e.conftest import Bot

World = tuple[Stage, Bot]
USAGE = {  # $0.009 a call at Sonnet's prices, no cache: each attempt costs what it asks
    "input_tokens": 2000,
    "output_tokens": 200,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}
_ATTEMPT = re.compile(r"This is attempt (\d) of (\d)")
RECEIVE_PACK = "POST /{owner}/{repo_git}/git-receive-pack"


class Router:
    """The scripted model's responder: attempt k's conversation gets step i of
    ``scripts[k]`` at its i-th turn (a fix round is a new conversation and starts again);
    a conversation of no attempt takes the next step of ``single``."""

    def __init__(self) -> None:
        self.scripts: dict[int, list[dict[str, Any]]] = {}
        self.single: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Step:
        messages = request.body.get("messages") or []
        first = str(messages[0].get("content")) if messages else ""
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        found = _ATTEMPT.search(first)
        with self.lock:
            if found is None:
                item = self.single.pop(0) if self.single else {"text": "no script left"}
            else:
                script = self.scripts[int(found[1])]
                item = script[min(turn, len(script) - 1)]
        return load_script([{**item, "usage": USAGE}])[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stage, Bot, Router]]:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    root = tmp_path_factory.mktemp("attempts")
    router = Router()
    with stage(root, router) as st:
        bot = Bot(st, root / "bot.log")
        bot.start()
        try:
            yield st, bot, router
        finally:
            bot.stop()


def task_of(st: Stage, number: int) -> TaskRecord:
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        task = taskdb.find(engine, REPO, number)
    finally:
        engine.dispose()
    assert task is not None
    return task


def status(st: Stage, number: int, iteration: int) -> Any:
    def ended() -> Any:
        found = [
            c
            for c in st.fake.comments(REPO, number)
            if c.user == st.creds.bot_login and "vibe:status" in c.body
        ]
        if found and "_Working" not in found[0].body and f"iteration {iteration}" in found[0].body:
            return found[0]
        return None

    return wait_for(ended, f"the end of iteration {iteration} on #{number}", timeout=120)


def reply(st: Stage, number: int, needle: str) -> str:
    def said() -> str | None:
        return next(
            (
                c.body
                for c in st.fake.comments(REPO, number)
                if c.user == st.creds.bot_login and needle in c.body
            ),
            None,
        )

    found: str = wait_for(said, f"a reply saying {needle!r} on #{number}", timeout=60)
    return found


FAILING = [edit("calc.py", "return a - b", "return a * b"), *finish("Made add() multiply.")]
SMALL = fix_add()
LARGE = [
    edit(
        "calc.py",
        "def add(a, b):\n    return a - b\n",
        'def add(a, b):\n    """Return the sum of a and b."""\n    # plain addition\n'
        "    return a + b\n",
    ),
    *finish("Fixed add() and documented it."),
]


@pytest.fixture(scope="module")
def three(world: tuple[Stage, Bot, Router]) -> tuple[int, int]:
    """An issue started with ``/vibe attempts=3``: the issue and its PR."""
    st, _, router = world
    router.scripts = {1: FAILING, 2: SMALL, 3: LARGE}
    title = "add() subtracts"
    number = st.fake.open_issue(REPO, WRITER, title, "`add(2, 3)` should be 5")
    before = len(st.fake.requests)
    st.fake.comment(REPO, number, WRITER, "/vibe attempts=3 fix add()")
    done = status(st, number, 1)
    pushes = st.fake.request_counts(before, git=True)[RECEIVE_PACK]
    assert pushes == 3  # attempts 1 and 3 to their branches, attempt 2 to the task branch
    for k in (1, 2, 3):
        assert f"Attempt {k}" in done.body
    assert "Done" in done.body
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    return number, pr.number


def test_three_attempts_the_passing_smaller_diff_is_chosen(
    world: tuple[Stage, Bot, Router], three: tuple[int, int]
) -> None:
    st, _, _ = world
    number, pr = three
    branch = task_branch(number, "add() subtracts")
    task = task_of(st, number)
    (it,) = task.iterations
    assert it.attempts is not None
    assert it.attempts.chosen == 2
    assert it.commits == (it.attempts.head,)
    assert st.fake.branch_sha(REPO, branch) == it.attempts.head
    assert st.fake.read_file(REPO, branch, "calc.py") == "def add(a, b):\n    return a + b\n"
    # the others are kept on their branches; the chosen one needs none
    one, three_ = attempt_branch(branch, 1), attempt_branch(branch, 3)
    assert "return a * b" in (st.fake.read_file(REPO, one, "calc.py") or "")
    assert "plain addition" in (st.fake.read_file(REPO, three_, "calc.py") or "")
    assert st.fake.branch_sha(REPO, attempt_branch(branch, 2)) is None
    # the iteration's cost is all three attempts'
    costs = {a.number: a.cost for a in it.attempts.attempts}
    assert it.usage.cost == pytest.approx(sum(costs.values()))
    assert costs[1] > costs[2]  # the failing attempt had a fix round
    body = st.fake.issue(REPO, pr).body or ""
    table = body[body.index("## Attempts of iteration 1") :].split("\n\n## ")[0]
    rows = table.splitlines()  # each row whole in the message when one does not match
    assert "| 2 ✅ chosen | the task branch | tests passed | 0 | 1 file, +1/-1 |" in table, rows
    assert f"| 1 | `{one}` | tests failed (1) | 0 | 1 file, +1/-1 |" in table, rows
    assert f"| 3 | `{three_}` | tests passed | 0 | 1 file, +3/-1 |" in table, rows
    assert "- attempt 3's diff is larger (4 lines against 2)" in table
    assert "- attempt 1's checks fail (tests failed (1))" in table


def test_pick_makes_another_attempt_the_head_with_a_new_commit(
    world: tuple[Stage, Bot, Router], three: tuple[int, int]
) -> None:
    st, _, _ = world
    number, pr = three
    branch = task_branch(number, "add() subtracts")
    before = st.fake.branch_sha(REPO, branch)
    st.fake.comment(REPO, pr, WRITER, "/vibe pick 3")
    said = reply(st, pr, "Attempt 3 is now the head")
    head = st.fake.branch_sha(REPO, branch)
    assert head is not None
    assert head != before
    assert head[:7] in said
    assert "plain addition" in (st.fake.read_file(REPO, branch, "calc.py") or "")
    # a new commit on top: the chosen attempt's commit stays in the history
    parent = gitrepo.git(st.fake.repo(REPO).path, "rev-parse", f"{head}^").decode().strip()
    assert parent == before
    attempts = task_of(st, number).iterations[-1].attempts
    assert attempts is not None
    assert (attempts.chosen, attempts.picked_by, attempts.head) == (3, WRITER, head)
    body = st.fake.issue(REPO, pr).body or ""
    assert "| 3 ✅ chosen | the task branch |" in body
    assert "| 2 | in the task branch's history |" in body
    # a missing attempt, and a number the grammar refuses, get a clear reply each
    st.fake.comment(REPO, pr, WRITER, "/vibe pick 4")
    assert "there is no attempt 4" in reply(st, pr, "I cannot pick attempt 4")
    st.fake.comment(REPO, pr, WRITER, "/vibe pick 999")
    reply(st, pr, "`/vibe pick` takes the number of an attempt, from 1 to 5")
    st.fake.comment(REPO, pr, WRITER, "/vibe attempts=abc try again")
    reply(st, pr, "`attempts=abc` is not a number of attempts")
    assert st.fake.branch_sha(REPO, branch) == head  # none of them pushed anything


def test_the_next_iteration_deletes_the_attempt_branches(
    world: tuple[Stage, Bot, Router], three: tuple[int, int]
) -> None:
    st, _, router = world
    number, pr = three
    branch = task_branch(number, "add() subtracts")
    router.single = [
        edit("calc.py", "    # plain addition\n", ""),
        *finish("Dropped the comment."),
    ]
    st.fake.comment(REPO, pr, WRITER, "/vibe drop the comment")
    status(st, number, 2)
    for k in (1, 3):
        assert st.fake.branch_sha(REPO, attempt_branch(branch, k)) is None
    first = task_of(st, number).iterations[0].attempts
    assert first is not None
    assert first.expired
    st.fake.comment(REPO, pr, WRITER, "/vibe pick 1")
    assert "expired" in reply(st, pr, "I cannot pick attempt 1")


def test_stop_ends_every_attempt_and_pushes_nothing(world: tuple[Stage, Bot, Router]) -> None:
    st, _, router = world
    slow = [edit("calc.py", "return a - b", "return a + b", delay=3.0), *finish("Slow.")]
    router.scripts = {1: slow, 2: slow}
    asked = len(st.model.message_requests)
    before = len(st.fake.requests)
    number = st.fake.open_issue(REPO, WRITER, "add() subtracts, stop it", "")
    st.fake.comment(REPO, number, WRITER, "/vibe attempts=2")
    wait_for(lambda: len(st.model.message_requests) >= asked + 2, "both attempts asking")
    st.fake.comment(REPO, number, WRITER, "/vibe stop")

    def stopped() -> Any:
        return [
            c
            for c in st.fake.comments(REPO, number)
            if "vibe:status" in c.body and "Stopped" in c.body
        ]

    body = wait_for(stopped, "the stopped status", timeout=60)[0].body
    assert "Attempt 1" in body
    assert "Attempt 2" in body
    branch = task_branch(number, "add() subtracts, stop it")
    for name in (branch, attempt_branch(branch, 1), attempt_branch(branch, 2)):
        assert st.fake.branch_sha(REPO, name) is None
    assert st.fake.request_counts(before, git=True)[RECEIVE_PACK] == 0
    assert task_of(st, number).state.value == "abandoned"


def test_a_dollar_limit_that_covers_two_attempts_runs_two(
    world: tuple[Stage, Bot, Router],
) -> None:
    st, _, router = world
    # Each attempt may spend up to $0.10 and the task $0.25: two attempts fit, not three.
    config = (
        "attempts: 3\n"
        "commands:\n  test:\n    - python3 -m unittest -q\n"
        "limits:\n  dollars_per_iteration: 0.10\n  dollars_per_task: 0.25\n"
    )
    st.fake.commit(REPO, "main", {".github/vibe.yml": config}, "Ask for three attempts")
    router.scripts = {1: LARGE, 2: SMALL, 3: SMALL}
    number = st.fake.open_issue(REPO, WRITER, "add() subtracts on a budget", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    done = status(st, number, 1)
    assert "Attempt 2" in done.body
    assert "Attempt 3" not in done.body
    assert "2 of 3 attempts run: the task's dollar limit has $0.25 left" in done.body
    (it,) = task_of(st, number).iterations
    assert it.attempts is not None
    assert [a.number for a in it.attempts.attempts] == [1, 2]
    assert it.attempts.wanted == 3
    assert it.attempts.note == (
        "2 of 3 attempts run: the task's dollar limit has $0.25 left and each attempt may "
        "spend up to $0.10"
    )
    assert it.attempts.chosen == 2
    assert it.usage.cost <= 0.25
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    assert "2 of 3 attempts run" in (pr.body or "")
    # The task ends (its PR closed unmerged): the attempt kept on its branch goes.
    kept = attempt_branch(task_branch(number, "add() subtracts on a budget"), 1)
    assert st.fake.branch_sha(REPO, kept) is not None
    st.fake.close(REPO, pr.number, WRITER)
    wait_for(lambda: st.fake.branch_sha(REPO, kept) is None, "the attempt branch deleted")

    def expired() -> TaskRecord | None:
        task = task_of(st, number)
        first = task.iterations[0].attempts
        return task if first is not None and first.expired else None

    assert wait_for(expired, "the attempts recorded as expired").state.value == "abandoned"
