"""Webhooks out of order, end to end: "GitHub does not guarantee the order of delivery"
(https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks), so a
review's ``pull_request_review_comment`` events may come before its ``pull_request_review``.
The bot still makes one iteration with every inline note. The bot runs as ``vibe serve``;
assertions read the fake GitHub's records and the bot's database."""

from __future__ import annotations

from bot.entrypoints.demo import REPO, WRITER
from bot.testing.fake_github import InlineComment
from tests.e2e.test_github_behaviours import (
    World,
    docstring_step,
    iterations_done,
    task_of,
    task_with_pr,
    wait_settled,
)


def test_a_review_arriving_after_its_comments_makes_one_iteration(world: World) -> None:
    st, _ = world
    number, pr = task_with_pr(st, "Comments before their review")
    st.model.add(docstring_step("Add two numbers."))
    st.fake.webhook_order = "reversed"
    try:
        st.fake.review(
            REPO,
            pr,
            WRITER,
            body="Two notes.",
            comments=[
                InlineComment("calc.py", 1, "Name the module."),
                InlineComment("calc.py", 2, "Needs a docstring."),
            ],
        )
    finally:
        st.fake.webhook_order = "sent"
    review = [d.event for d in st.fake.deliveries[-3:]]
    assert review == [
        "pull_request_review_comment",
        "pull_request_review_comment",
        "pull_request_review",
    ]
    iterations_done(st, number, 2)
    wait_settled(st)
    task = task_of(st, number)
    assert len(task.iterations) == 2
    second = next(it for it in task.iterations if it.number == 2)
    notes = sorted((f.path, f.line, f.text) for f in second.feedback if f.path is not None)
    assert notes == [("calc.py", 1, "Name the module."), ("calc.py", 2, "Needs a docstring.")]
    assert task.state.value != "failed"
