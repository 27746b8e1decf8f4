"""Faults that left work undone or ran it twice, end to end (issue 14): a review on the bot's
PR that arrives before the PR's number is recorded, one comment delivered under two ids,
the issue closed while an iteration runs, and the model API's ``retry-after`` carried to
the job's retry time. The bot runs as ``vibe serve``; assertions read the fake GitHub's
records and the bot's database."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial

import pytest
from sqlmodel import Session, col, select

from bot.entrypoints.demo import REPO, WRITER, Stage, edit, fix_add, wait_for
from bot.store.engine import make_engine
from bot.store.tables import Job
from tests.e2e.test_faults import branches, request_arrives
from tests.e2e.test_flow import bot_comments
from tests.e2e.test_github_behaviours import (
    World,
    docstring_step,
    iterations_done,
    task_of,
    task_with_pr,
    wait_settled,
)

REVIEWERS = "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers"


@pytest.fixture
def faults(world: World) -> Iterator[None]:
    st, _ = world
    try:
        yield
    finally:
        st.fake.clear_faults()
        st.fake.fault_delay = 1.0


@pytest.mark.usefixtures("faults")
def test_a_review_before_the_pr_number_is_recorded_is_the_next_iteration(world: World) -> None:
    st, _ = world
    st.model.add(fix_add())
    number = st.fake.open_issue(REPO, WRITER, "Review before the PR is recorded", "")
    # GitHub opens the PR, then answers the review request late: the PR exists on GitHub
    # while the iteration that opened it has not recorded its number yet.
    st.fake.fault_delay = 8.0
    held = st.fake.inject("POST", REVIEWERS, "timeout_after_write")
    st.fake.label(REPO, number, WRITER, "vibe")
    wait_for(lambda: held.hits, "the review request after the PR was opened", timeout=90)
    pr = next(p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    assert task_of(st, number).pr_number is None
    st.model.add(docstring_step("Add two numbers."))
    st.fake.review(REPO, pr.number, WRITER, body="Please add a docstring.")

    iterations_done(st, number, 2)
    wait_settled(st)
    task = task_of(st, number)
    assert task.pr_number == pr.number
    assert len(task.iterations) == 2
    second = next(it for it in task.iterations if it.number == 2)
    assert [f.text for f in second.feedback if f.kind == "human"] == ["Please add a docstring."]
    assert second.outcome == "succeeded"


def test_one_comment_delivered_under_two_ids_runs_once(world: World) -> None:
    st, _ = world
    number, pr = task_with_pr(st, "A comment delivered twice")
    st.model.add(docstring_step("Delivered twice."))
    requests = len(st.model.message_requests)
    comment_id = st.fake.comment(REPO, pr, WRITER, "/vibe add a docstring")
    first = next(
        d
        for d in reversed(st.fake.deliveries)
        if d.event == "issue_comment" and d.payload["comment"]["id"] == comment_id
    )
    # The same comment from a repository webhook too (no installation, a new GUID).
    copy = {k: v for k, v in first.payload.items() if k != "installation"}
    again = st.fake.deliver(first.event, copy)
    assert again is not None
    assert again.id != first.id
    assert again.status == 202

    iterations_done(st, number, 2)
    wait_settled(st)
    task = task_of(st, number)
    assert [it.number for it in task.iterations] == [1, 2]
    assert len(st.model.message_requests) - requests == 3  # one edit, finish twice
    assert st.model.remaining == 0
    assert len(bot_comments(st, number, "vibe:status")) == 1


def test_closing_the_issue_mid_iteration_abandons_the_task(world: World) -> None:
    st, _ = world
    st.model.add([edit("calc.py", "return a - b", "return a + b", delay=3.0)])
    requests = len(st.model.message_requests)
    number = st.fake.open_issue(REPO, WRITER, "Slow fix, then the issue is closed", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    request_arrives(st, requests)
    closed = time.monotonic()
    st.fake.close(REPO, number, WRITER)

    status = wait_for(
        lambda: [c for c in bot_comments(st, number, "vibe:status") if "Stopped" in c.body],
        "the stopped status",
    )
    assert time.monotonic() - closed < 10
    assert "nothing from this iteration was pushed" in status[0].body
    assert bot_comments(st, number, "The task is abandoned: the issue was closed by @ann")
    wait_settled(st)
    assert task_of(st, number).state.value == "abandoned"
    assert branches(st, number) == []
    assert not [p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or "")]
    assert st.model.remaining == 0


def _job_of(st: Stage, number: int) -> Job | None:
    """The job of the ``vibe`` label's delivery on issue ``number``, once it was retried."""
    delivery = next(
        (
            d
            for d in st.fake.deliveries
            if d.event == "issues"
            and d.payload["action"] == "labeled"
            and d.payload["issue"]["number"] == number
        ),
        None,
    )
    if delivery is None:
        return None
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        with Session(engine) as session:
            job = session.exec(select(Job).where(col(Job.delivery_id) == delivery.id)).first()
    finally:
        engine.dispose()
    return job if job is not None and job.status == "queued" and job.attempts == 1 else None


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


# Last in the module: the jobs come back 40 s later, when no other test waits on the model.
def test_the_model_apis_retry_after_is_the_jobs_retry_time(world: World) -> None:
    """Whatever the retryable status, a wait longer than the worker should sleep through is
    the job's retry time, not a sleep that holds a worker (nor the queue's short backoff)."""
    st, _ = world
    answers = [(429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error")]
    st.model.add([{"error": {"status": s, "type": t, "retry_after": 40}} for s, t in answers])
    requests = len(st.model.message_requests)
    numbers = [
        st.fake.open_issue(REPO, WRITER, f"Fix add while the API says {s}", "") for s, _ in answers
    ]
    asked = time.time()
    for number in numbers:
        st.fake.label(REPO, number, WRITER, "vibe")
    # The three jobs run at once: which of them meets which answer is the workers' order.
    seen = []
    for number in numbers:
        job = wait_for(partial(_job_of, st, number), f"the retried job of #{number}")
        assert time.time() - asked < 30  # no worker slept through the wait
        assert _epoch(job.run_after) >= asked + 40
        found = re.search(r"retry after 40 s \((\d+)\)", job.last_error or "")
        assert found is not None, job.last_error
        seen.append(int(found[1]))
    assert sorted(seen) == sorted(status for status, _ in answers)
    assert len(st.model.message_requests) - requests == len(answers)
    assert st.model.remaining == 0
