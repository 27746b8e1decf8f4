"""Issue 18 in the policy: ``/vibe review`` on a pull request (anyone's) by a writer,
``review.on`` for new pull requests, and ``/vibe fix`` in reply to a review comment."""

from __future__ import annotations

from typing import Any

import pytest

from bot.core.config import parse_repo_config
from bot.core.events import Event, parse_event
from bot.core.policy import (
    RUN_ACTIONS,
    FixFinding,
    Help,
    RefusalReason,
    ReviewPull,
    StartTask,
    serial_key,
)
from tests.core.test_policy import ACTIVE, BOT, REPO, ignored, load, refused, run, user

REVIEW_ON = parse_repo_config("review:\n  on: [opened, ready_for_review]\n")[0]


def on_pull(body: str) -> Event:
    payload = load("issue_comment.created.on-pull-request")
    payload["comment"]["body"] = body
    return parse_event("issue_comment", payload)


def on_issue(body: str) -> Event:
    payload = load("issue_comment.created")
    payload["comment"]["body"] = body
    return parse_event("issue_comment", payload)


def inline(body: str, reply_to: int | None) -> Event:
    payload = load("pull_request_review_comment.created")
    payload["comment"]["body"] = body
    payload["comment"]["in_reply_to_id"] = reply_to
    return parse_event("pull_request_review_comment", payload)


def pull_event(action: str, *, draft: bool = False, sender: str = "Codertocat") -> Event:
    payload = load("pull_request.opened")
    payload["action"] = action
    payload["pull_request"]["draft"] = draft
    payload["sender"] = user(sender, "Bot" if sender.endswith("[bot]") else "User")
    return parse_event("pull_request", payload)


CASES: list[tuple[str, Event, dict[str, Any], Any]] = [
    ("review", on_pull("/vibe review"), {}, ReviewPull(REPO, 1, "Codertocat", "")),
    (
        "review with focus",
        on_pull("/vibe review the error paths\nand the tests"),
        {},
        ReviewPull(REPO, 1, "Codertocat", "the error paths\nand the tests"),
    ),
    # With or without a task: a person's PR is reviewed as well as the bot's own.
    (
        "review on the task's PR",
        on_pull("/vibe review"),
        {"task": ACTIVE},
        ReviewPull(REPO, 1, "Codertocat", ""),
    ),
    (
        "review by a reader",
        on_pull("/vibe review"),
        {"permission": "read"},
        refused(RefusalReason.NOT_WRITER),
    ),
    ("review on an issue", on_issue("/vibe review"), {}, refused(RefusalReason.NOT_A_PULL)),
    ("review typo", on_pull("/vibe reveiw"), {}, Help),  # a mistyped verb gets the help
    (
        "fix in a thread",
        inline("/vibe fix", 99),
        {},
        FixFinding(REPO, 2, "Codertocat", 99, 284312630),
    ),
    ("fix outside a thread", on_pull("/vibe fix"), {}, refused(RefusalReason.NO_FINDING)),
    ("fix as a first comment", inline("/vibe fix", None), {}, refused(RefusalReason.NO_FINDING)),
    (
        "fix by a reader",
        inline("/vibe fix", 99),
        {"permission": "read"},
        refused(RefusalReason.NOT_WRITER),
    ),
    # "/vibe fix <words>" stays an instruction (here: work on the PR's branch).
    ("fix with words", inline("/vibe fix the loop", 99), {}, StartTask),
    # review.on
    ("opened, off", pull_event("opened"), {}, ignored()),
    (
        "opened, on",
        pull_event("opened"),
        {"config": REVIEW_ON, "permission": None},
        ReviewPull(REPO, 2, "Codertocat", "", automatic=True),
    ),
    ("opened as a draft", pull_event("opened", draft=True), {"config": REVIEW_ON}, ignored()),
    (
        "ready for review",
        pull_event("ready_for_review"),
        {"config": REVIEW_ON, "permission": None},
        ReviewPull(REPO, 2, "Codertocat", "", automatic=True),
    ),
    ("opened by the bot", pull_event("opened", sender=BOT), {"config": REVIEW_ON}, ignored()),
    (
        "opened by another bot",
        pull_event("opened", sender="dependabot[bot]"),
        {"config": REVIEW_ON},
        ignored(),
    ),
]


@pytest.mark.parametrize(("name", "event", "inputs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(name: str, event: Event, inputs: dict[str, Any], expected: Any) -> None:
    decision = run(event, **inputs)
    if isinstance(expected, type):
        assert type(decision) is expected
    else:
        assert decision == expected


def test_a_review_is_not_a_run_but_a_fix_is() -> None:
    """The loop breaker counts what drives iterations; a review only writes a review."""
    assert ReviewPull not in RUN_ACTIONS
    assert FixFinding in RUN_ACTIONS


def test_reviews_run_in_the_pull_requests_lane() -> None:
    assert serial_key(on_pull("/vibe review"), BOT) == f"{REPO}#1"
