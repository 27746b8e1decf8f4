"""Policy for what GitHub really sends: an inline ``/vibe`` arrives as a comment and with its
review (one iteration: both keyed by the review), and a merge queue merges as a bot."""

from __future__ import annotations

import pytest

from bot.core.policy import Abandon, Accept, Iterate
from tests.core.test_policy import ACTIVE, ALICE, REPO, closed, inline, reviewed, run

REVIEW = 237895671  # the review of the recorded pull_request_review_comment payload
COMMENT = 284312630


def test_an_inline_command_and_its_review_name_the_same_review() -> None:
    from_comment = run(inline("/vibe rename x"), task=ACTIVE)
    from_review = run(reviewed("commented", None), task=ACTIVE)
    assert from_comment == Iterate(REPO, 2, ALICE, "rename x", review_id=REVIEW, comment_id=COMMENT)
    assert isinstance(from_review, Iterate)
    assert from_review.review_id == REVIEW


@pytest.mark.parametrize("login", ["github-merge-queue[bot]", "mergify[bot]"])
def test_a_merge_by_a_bot_accepts_the_task(login: str) -> None:
    assert run(closed(merged=True, sender=login), task=ACTIVE, permission=None) == Accept(
        REPO, 2, login, f"merged by @{login}"
    )


def test_a_close_by_a_bot_abandons_the_task() -> None:
    login = "stale[bot]"
    decision = run(closed(merged=False, sender=login), task=ACTIVE, permission=None)
    assert decision == Abandon(REPO, 2, login, f"closed without merging by @{login}")
