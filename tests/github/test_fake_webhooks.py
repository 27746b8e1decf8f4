"""Which webhooks the fake sends, and in what order, as GitHub does: an App gets only the
events it subscribed to and holds the permission for (``installation`` always); a change's
webhooks may arrive in any order. Assertions read what the receiver got."""

from __future__ import annotations

from bot.testing.fake_github import FakeGitHub, InlineComment
from bot.testing.fake_github.server import DEFAULT_APP_EVENTS, DEFAULT_APP_PERMISSIONS
from tests.github.conftest import Receiver, app_key

REPO = "acme/app"


def reviewed_pull(fake: FakeGitHub) -> int:
    """An issue with a comment, a pull request and a review with two inline comments."""
    fake.create_repo(REPO, {"f.txt": "".join(f"line {n}\n" for n in range(1, 9))})
    issue = fake.open_issue(REPO, "rita", "Change f", "please")
    fake.comment(REPO, issue, "rita", "soon")
    fake.commit(REPO, "vibe/1", {"f.txt": "".join(f"line {n}!\n" for n in range(1, 9))})
    pr = fake.open_pull(REPO, "rita", "vibe/1", "Change f")
    fake.review(
        REPO,
        pr,
        "rita",
        body="Two notes.",
        comments=[InlineComment("f.txt", 2, "first"), InlineComment("f.txt", 6, "second")],
    )
    return pr


def received(receiver: Receiver) -> list[str]:
    return [r.headers["x-github-event"] for r in receiver.got]


def test_an_app_gets_only_the_events_it_subscribed_to_and_may_see(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    # Subscribed to the review events but without Pull requests: GitHub lets no App
    # subscribe to an event without its permission, so none of them arrives.
    permissions = {k: v for k, v in DEFAULT_APP_PERMISSIONS.items() if k != "pull_requests"}
    fake.create_app("my-vibe", private_key_pem=app_key(), permissions=permissions)
    reviewed_pull(fake)
    assert received(receiver) == ["issues", "issue_comment"]
    assert [d.event for d in fake.deliveries] == ["issues", "issue_comment"]


def test_an_app_not_subscribed_to_issue_comment_gets_no_comment(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    events = tuple(e for e in DEFAULT_APP_EVENTS if e != "issue_comment")
    fake.create_app("my-vibe", private_key_pem=app_key(), events=events)
    reviewed_pull(fake)
    assert received(receiver) == [
        "issues",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_comment",
    ]


def test_installation_events_reach_an_app_without_a_subscription(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    fake.create_app("my-vibe", private_key_pem=app_key(), events=())
    reviewed_pull(fake)
    assert received(receiver) == []
    assert fake.deliver("installation", {"action": "created"}) is not None
    assert received(receiver) == ["installation"]


def test_a_repository_webhook_without_an_app_gets_every_event(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    reviewed_pull(fake)
    assert received(receiver) == [
        "issues",
        "issue_comment",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_comment",
    ]


def test_a_reviews_webhooks_can_come_reversed_or_shuffled(
    fake: FakeGitHub, receiver: Receiver
) -> None:
    fake.create_app("my-vibe", private_key_pem=app_key())
    fake.webhook_order = "reversed"
    pr = reviewed_pull(fake)
    review = received(receiver)[3:]
    assert review == [
        "pull_request_review_comment",
        "pull_request_review_comment",
        "pull_request_review",
    ]
    notes = [r for r in fake.deliveries if r.event == "pull_request_review_comment"]
    assert [d.payload["comment"]["body"] for d in notes] == ["second", "first"]
    fake.webhook_order = "shuffled"
    orders: set[tuple[str, ...]] = set()
    for n in range(8):
        before = len(receiver.got)
        fake.review(REPO, pr, "rita", comments=[InlineComment("f.txt", 4, f"note {n}")])
        orders.add(tuple(received(receiver)[before:]))
    assert orders == {
        ("pull_request_review", "pull_request_review_comment"),
        ("pull_request_review_comment", "pull_request_review"),
    }
