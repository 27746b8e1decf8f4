"""Pull requests and reviews as GitHub really answers them, through the adapter and the fake:
drafts that a plan refuses, review-comment positions that index the diff, replies in threads
(their own reviews; a reply to a reply refused), 64-bit comment ids in GraphQL and resolving
threads that needs Contents: write. Assertions read the fake's records."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from bot.github import GitHub
from bot.github.auth import AppTokens
from bot.github.client import WIP_PREFIX
from bot.github.repository import GitHubRepository
from bot.github.retry import GitHubRequestError, RequestPolicy, RetrySettings
from bot.testing.fake_github import FakeClock, FakeGitHub, InlineComment
from tests.github.conftest import Receiver, app_key

OWNER = "acme"
LINES = "".join(f"line {n}\n" for n in range(1, 61))


def hub_for(fake: FakeGitHub, clock: FakeClock) -> GitHub:
    creds = fake.create_app("vibe-bot", private_key_pem=app_key())
    policy = RequestPolicy(clock, RetrySettings(min_write_interval=0.0))
    tokens = AppTokens(
        creds.app_id, creds.private_key_pem, fake.api_url, clock=clock, policy=policy, timeout=5
    )
    return GitHub(
        tokens, api_url=fake.api_url, bot_login=creds.bot_login, clock=clock, policy=policy
    )


@pytest.fixture
def hub(fake: FakeGitHub, clock: FakeClock) -> Iterator[GitHub]:
    h = hub_for(fake, clock)
    yield h
    h.close()


def pull_with_change(fake: FakeGitHub, hub: GitHub, repo: str, branch: str = "vibe/1") -> int:
    """A PR whose only change is line 40 of ``f.txt`` (its hunk starts at line 37)."""
    fake.commit(repo, branch, {"f.txt": LINES.replace("line 40\n", "line forty\n")})
    return hub.repo(repo).find_or_create_pull(branch, "main", "Change f", "body").number


def test_a_private_free_repository_gets_a_wip_pr_and_later_prs_skip_the_draft(
    fake: FakeGitHub, hub: GitHub
) -> None:
    repo = f"{OWNER}/secret"
    fake.create_repo(repo, {"README.md": "hi\n"}, private=True, plan="free")
    fake.install_app(OWNER)
    client = hub.repo(repo)
    fake.commit(repo, "vibe/1", {"a.txt": "a\n"})
    first = client.find_or_create_pull("vibe/1", "main", "Add a", "The body.", draft=True)
    refused = [r for r in fake.responses if r.method == "POST" and r.status == 422]
    assert len(refused) == 1
    assert "Draft pull requests are not supported" in json.dumps(refused[0].body)
    made = fake.issue(repo, first.number)
    assert made.pull is not None
    assert not made.pull.draft
    assert made.title == WIP_PREFIX + "Add a"
    assert "Work in progress" in (made.body or "")
    fake.commit(repo, "vibe/2", {"b.txt": "b\n"})
    second = client.find_or_create_pull("vibe/2", "main", "Add b", "Body.", draft=True)
    assert len([r for r in fake.responses if r.method == "POST" and r.status == 422]) == 1
    assert fake.issue(repo, second.number).title == WIP_PREFIX + "Add b"
    client.update_pr_body(second.number, "New body.")
    assert "Work in progress" in (fake.issue(repo, second.number).body or "")


@pytest.mark.parametrize(("private", "plan"), [(False, "free"), (True, "team")])
def test_drafts_open_where_the_plan_has_them(
    fake: FakeGitHub, hub: GitHub, private: bool, plan: str
) -> None:
    repo = f"{OWNER}/open"
    fake.create_repo(repo, private=private, plan=plan)  # type: ignore[arg-type]
    fake.install_app(OWNER)
    fake.commit(repo, "vibe/1", {"a.txt": "a\n"})
    pr = hub.repo(repo).find_or_create_pull("vibe/1", "main", "Add a", "Body.", draft=True)
    made = fake.issue(repo, pr.number)
    assert made.pull is not None
    assert made.pull.draft
    assert made.title == "Add a"


def test_feedback_names_the_file_line_not_the_diff_position(fake: FakeGitHub, hub: GitHub) -> None:
    repo = f"{OWNER}/lines"
    fake.create_repo(repo, {"f.txt": LINES})
    fake.install_app(OWNER)
    number = pull_with_change(fake, hub, repo)
    review = fake.review(repo, number, "acme", comments=[InlineComment("f.txt", 40, "why?")])
    (stored,) = fake.review_comments(repo, number)
    assert stored.position == 5  # three context lines, the removed line, then line 40
    per_review = hub.repo(repo)._request(
        "GET", f"/repos/{repo}/pulls/{number}/reviews/{review}/comments"
    )
    assert per_review[0]["position"] == 5
    assert "line" not in per_review[0]
    (note,) = GitHubRepository(hub.repo(repo)).review_notes(number, review)
    assert (note.path, note.line, note.body) == ("f.txt", 40, "why?")


def test_a_line_outside_the_diff_takes_no_comment(fake: FakeGitHub, hub: GitHub) -> None:
    repo = f"{OWNER}/outside"
    fake.create_repo(repo, {"f.txt": LINES})
    fake.install_app(OWNER)
    number = pull_with_change(fake, hub, repo)
    with pytest.raises(ValueError, match="not part of the diff"):
        fake.review(repo, number, "acme", comments=[InlineComment("f.txt", 10, "far away")])


def test_a_reply_is_a_review_of_its_own_and_a_reply_to_it_is_refused(
    fake: FakeGitHub, hub: GitHub, receiver: Receiver
) -> None:
    repo = f"{OWNER}/threads"
    fake.create_repo(repo, {"f.txt": LINES}, collaborators={"alice": "write"})
    fake.install_app(OWNER)
    number = pull_with_change(fake, hub, repo)
    fake.review(repo, number, "alice", comments=[InlineComment("f.txt", 40, "why?")])
    (top,) = fake.review_comments(repo, number)
    client = hub.repo(repo)
    answer = client.reply_in_thread(number, top.id, "Because.")
    sent = len(fake.deliveries)
    person = fake.reply_to_review_comment(repo, number, "alice", top.id, "Not convinced.")
    events = [d.event for d in fake.deliveries[sent:]]
    assert sorted(events) == ["pull_request_review", "pull_request_review_comment"]
    reply = next(c for c in fake.review_comments(repo, number) if c.id == person)
    assert reply.in_reply_to_id == top.id
    (note,) = GitHubRepository(client).review_notes(number, reply.review_id)
    assert (note.comment_id, note.reply_to, note.line) == (person, top.id, 40)
    with pytest.raises(GitHubRequestError) as refused:
        client.reply_in_thread(number, answer, "A reply to a reply.")
    assert refused.value.status == 422
    assert len(list(fake.review_comments(repo, number))) == 3


def test_comment_ids_above_two_to_the_31_survive_graphql(
    clock: FakeClock, receiver: Receiver
) -> None:
    with FakeGitHub(clock=clock, webhook_url=receiver.url, first_id=2**31 + 7) as fake:
        hub = hub_for(fake, clock)
        repo = f"{OWNER}/big"
        fake.create_repo(repo, {"f.txt": LINES})
        fake.install_app(OWNER)
        number = pull_with_change(fake, hub, repo)
        fake.review(repo, number, "acme", comments=[InlineComment("f.txt", 40, "why?")])
        (top,) = fake.review_comments(repo, number)
        assert top.id > 2**31
        (thread,) = hub.repo(repo).unresolved_threads(number)
        assert thread.comments[0].id == top.id
        hub.repo(repo).resolve_thread(number, top.id)
        assert [t.resolved for t in fake.threads(repo, number)] == [True]
        hub.close()


def test_resolving_a_thread_needs_contents_write(fake: FakeGitHub, hub: GitHub) -> None:
    repo = f"{OWNER}/readonly"
    fake.create_repo(repo, {"f.txt": LINES})
    fake.install_app(
        OWNER,
        permissions={
            "contents": "read",
            "issues": "write",
            "pull_requests": "write",
            "metadata": "read",
        },
    )
    fake.commit(repo, "vibe/1", {"f.txt": LINES.replace("line 40\n", "line forty\n")})
    number = fake.open_pull(repo, "acme", "vibe/1", "Change f")
    fake.review(repo, number, "acme", comments=[InlineComment("f.txt", 40, "why?")])
    (top,) = fake.review_comments(repo, number)
    with pytest.raises(GitHubRequestError, match="Resource not accessible by integration"):
        hub.repo(repo).resolve_thread(number, top.id)
    assert [t.resolved for t in fake.threads(repo, number)] == [False]
