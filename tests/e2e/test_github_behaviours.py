"""GitHub's real behaviours around pull requests and reviews, end to end: an inline ``/vibe``
arrives twice (as a comment and with its review) and runs once; a person's reply in a
thread the bot answered is feedback; a ``/vibe`` after the PR was closed unmerged opens a
new PR; a merge queue (a bot) merging the PR accepts the task. The bot runs as ``vibe
serve``; assertions read the fake GitHub's records and the bot's database."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from bot.core.tasks import TaskRecord
from bot.entrypoints.demo import REPO, WRITER, Stage, edit, finish, fix_add, wait_for
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from bot.store.tables import Job
from bot.testing.fake_github import InlineComment
from tests.e2e.conftest import Bot, task_state

World = tuple[Stage, Bot]


def find_task(st: Stage, number: int) -> TaskRecord | None:
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        return taskdb.find(engine, REPO, number)
    finally:
        engine.dispose()


def task_of(st: Stage, number: int) -> TaskRecord:
    task = find_task(st, number)
    assert task is not None
    return task


def settled(st: Stage) -> bool:
    """No event job is waiting or running (every delivery so far was handled)."""
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        with Session(engine) as session:
            busy = session.exec(
                select(Job).where(Job.kind == "event", col(Job.status).in_(["queued", "running"]))
            ).first()
    finally:
        engine.dispose()
    return busy is None


def wait_settled(st: Stage) -> None:
    wait_for(lambda: settled(st), "every delivery handled", timeout=90)


def iterations_done(st: Stage, number: int, count: int) -> TaskRecord:
    def done() -> TaskRecord | None:
        task = find_task(st, number)
        if task is None:
            return None
        concluded = [it for it in task.iterations if it.outcome != "running"]
        return task if len(concluded) >= count else None

    found: TaskRecord = wait_for(done, f"{count} iterations on #{number}", timeout=120)
    return found


def task_with_pr(st: Stage, title: str) -> tuple[int, int]:
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, title, "add(2, 3) should be 5")
    st.fake.label(REPO, number, WRITER, "vibe")
    iterations_done(st, number, 1)
    wait_settled(st)
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    return number, pr.number


def docstring_step(text: str) -> list[dict[str, Any]]:
    return [
        edit("calc.py", "def add(a, b):\n", f'def add(a, b):\n    """{text}"""\n'),
        *finish(f"Added the docstring {text!r}."),
    ]


def test_an_inline_vibe_command_runs_one_iteration(world: World) -> None:
    st, _ = world
    number, pr = task_with_pr(st, "Inline command runs once")
    st.model.add(docstring_step("Return a + b."))
    st.fake.review(
        REPO, pr, WRITER, comments=[InlineComment("calc.py", 2, "/vibe add a docstring here")]
    )
    kinds = {d.event for d in st.fake.deliveries[-2:]}
    assert kinds == {"pull_request_review", "pull_request_review_comment"}
    task = iterations_done(st, number, 2)
    wait_settled(st)
    task = task_of(st, number)
    assert len(task.iterations) == 2
    (second,) = [it for it in task.iterations if it.number == 2]
    human = [f for f in second.feedback if f.kind == "human"]
    assert [(f.text, f.path, f.line) for f in human] == [("add a docstring here", "calc.py", 2)]
    calc = st.fake.read_file(REPO, st.fake.issue(REPO, pr).pull.head_ref, "calc.py")
    assert calc is not None
    assert '"""Return a + b."""' in calc


def test_a_reply_in_a_thread_the_bot_answered_is_feedback(world: World) -> None:
    st, _ = world
    number, pr = task_with_pr(st, "Replies in threads are feedback")
    st.model.add(docstring_step("Add two numbers."))
    st.fake.review(REPO, pr, WRITER, comments=[InlineComment("calc.py", 2, "Needs a docstring.")])
    iterations_done(st, number, 2)
    wait_settled(st)
    (top,) = [c for c in st.fake.review_comments(REPO, pr) if c.in_reply_to_id is None]
    answered = [c for c in st.fake.review_comments(REPO, pr) if c.in_reply_to_id == top.id]
    assert [c.user for c in answered] == [st.creds.bot_login]
    st.model.add(
        [
            edit("calc.py", "Add two numbers.", "Add two numbers; ints only."),
            *finish("Said that add() takes ints."),
        ]
    )
    st.fake.reply_to_review_comment(REPO, pr, WRITER, top.id, "Say it takes ints.")
    task = iterations_done(st, number, 3)
    wait_settled(st)
    third = next(it for it in task_of(st, number).iterations if it.number == 3)
    assert [(f.text, f.path, f.line) for f in third.feedback if f.kind == "human"] == [
        ("Say it takes ints.", "calc.py", 2)
    ]
    bot_replies = [
        c
        for c in st.fake.review_comments(REPO, pr)
        if c.user == st.creds.bot_login and c.in_reply_to_id == top.id
    ]
    assert len(bot_replies) == 2  # answered in the thread, not as a reply to the reply
    assert task.state.value != "failed"


def test_vibe_after_the_pr_was_closed_unmerged_opens_a_new_pr(world: World) -> None:
    st, _ = world
    number, first = task_with_pr(st, "A closed PR is not reused")
    st.fake.close(REPO, first, WRITER)
    wait_for(lambda: task_state(st, number) == "abandoned", "the task abandoned")
    st.model.add(docstring_step("Sum of a and b."))
    st.fake.comment(REPO, number, WRITER, "/vibe add a docstring to add()")
    iterations_done(st, number, 2)
    wait_settled(st)
    task = task_of(st, number)
    pulls = [p for p in st.fake.pulls(REPO) if p.pull and p.pull.head_ref == task.branch]
    assert sorted((p.number, p.state) for p in pulls) == [
        (first, "closed"),
        (task.pr_number, "open"),
    ]
    assert task.pr_number != first


def test_a_merge_by_the_merge_queue_accepts_the_task(world: World) -> None:
    st, _ = world
    number, pr = task_with_pr(st, "Merged by the merge queue")
    queue = "github-merge-queue[bot]"
    st.fake.add_user(queue, bot=True)
    st.fake.merge(REPO, pr, queue)
    wait_for(lambda: task_state(st, number) == "accepted", "the task accepted")
