"""A task follows its repository through a rename: the task begun on ``octo/calc`` goes on
after the repository became ``octo/calculator``, keyed by GitHub's repository id. The bot
runs as ``vibe serve``; assertions read the fake GitHub's records and the bot's database."""

from __future__ import annotations

import httpx
from sqlmodel import Session, select

from bot.core.tasks import TaskRecord
from bot.entrypoints.demo import OWNER, REPO, WRITER, Stage, edit, finish, fix_add, wait_for
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from bot.store.tables import Task
from tests.e2e.conftest import Bot

World = tuple[Stage, Bot]
RENAMED = f"{OWNER}/calculator"


def concluded(st: Stage, repo: str, number: int, count: int) -> TaskRecord:
    def done() -> TaskRecord | None:
        engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
        try:
            task = taskdb.find(engine, repo, number)
        finally:
            engine.dispose()
        if task is None:
            return None
        finished = [it for it in task.iterations if it.outcome != "running"]
        return task if len(finished) >= count and not task.state.busy else None

    found: TaskRecord = wait_for(done, f"{count} iterations on {repo}#{number}", timeout=120)
    return found


def task_rows(st: Stage) -> list[Task]:
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        with Session(engine) as session:
            return list(session.exec(select(Task)))
    finally:
        engine.dispose()


def test_a_review_after_a_rename_iterates_the_same_task(world: World) -> None:
    st, _ = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Fix add", "add(2, 3) should be 5")
    st.fake.label(REPO, number, WRITER, "vibe")
    first = concluded(st, REPO, number, 1)
    assert first.pr_number is not None
    repo_id = st.fake.repo(REPO).id

    st.fake.rename_repo(REPO, RENAMED, sender=WRITER)
    old = httpx.get(f"{st.fake.base_url}/repos/{REPO}", timeout=10)
    assert old.status_code == 301
    assert old.headers["location"].endswith(f"/repos/{RENAMED}")

    st.model.add(
        [
            edit("calc.py", "def add(a, b):\n", 'def add(a, b):\n    """Sum of a and b."""\n'),
            *finish("Added a docstring."),
        ]
    )
    st.fake.review(
        RENAMED, first.pr_number, WRITER, state="CHANGES_REQUESTED", body="Add a docstring."
    )
    task = concluded(st, RENAMED, number, 2)

    (row,) = task_rows(st)
    assert (row.id, row.repository, row.repository_id) == (first.id, RENAMED, repo_id)
    assert [it.number for it in task.iterations] == [1, 2]
    assert task.pr_number == first.pr_number
    pulls = [p for p in st.fake.pulls(RENAMED) if p.pull and p.pull.head_ref == task.branch]
    assert [p.number for p in pulls] == [first.pr_number]
    calc = st.fake.read_file(RENAMED, task.branch, "calc.py")
    assert calc is not None
    assert '"""Sum of a and b."""' in calc
    assert "return a + b" in calc
