"""``POST /repos/{owner}/{repo}/pulls/{n}/reviews`` on the fake is as strict as GitHub's
(@octokit/openapi ``pulls/create-review``): a comment off the diff, a range across hunks or
backwards, approving one's own pull request, a blank COMMENT are refused with 422 and leave
nothing behind; an accepted review and its comments read back through the GET endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bot.testing.fake_github import FakeGitHub

REPO = "acme/widgets"
BASE = "".join(f"line {n}\n" for n in range(1, 41))
# Line 3 changed, line 30 removed, a line added after 35: two hunks.
HEAD = (
    BASE.replace("line 3\n", "line three\n")
    .replace("line 30\n", "")
    .replace("line 35\n", "line 35\nline 35b\n")
)


@pytest.fixture
def pull(fake: FakeGitHub) -> Iterator[tuple[httpx.Client, int]]:
    fake.create_repo(REPO, {"a.txt": BASE}, collaborators={"alice": "write", "bob": "write"})
    fake.commit(REPO, "feature", {"a.txt": HEAD}, author="alice")
    number = fake.open_pull(REPO, "alice", "feature", "Change a")
    token = fake.user_token("alice")
    with httpx.Client(
        base_url=fake.api_url, headers={"Authorization": f"token {token}"}, timeout=10
    ) as client:
        yield client, number


def post(client: httpx.Client, number: int, **body: Any) -> httpx.Response:
    return client.post(f"/repos/{REPO}/pulls/{number}/reviews", json=body)


# GitHub's texts (recorded 422 answers; see create_review in the fake's server.py).
OFF_DIFF = (
    "Pull request review thread line must be part of the diff and Pull request review thread "
    "diff hunk can't be blank"
)
SAME_HUNK = "Pull request review thread start line must be part of the same hunk as the line."


def comment(line: int, **place: Any) -> dict[str, Any]:
    return {"path": "a.txt", "line": line, "body": "note", **place}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            {"event": "COMMENT", "body": "x", "comments": [comment(20)]},
            OFF_DIFF,
        ),
        (
            {"event": "COMMENT", "body": "x", "comments": [comment(20, side="LEFT")]},
            OFF_DIFF,
        ),
        (
            {"event": "COMMENT", "body": "x", "comments": [comment(20, start_line=3)]},
            "Pull request review thread line must be part of the diff, Pull request review "
            "thread start line must be part of the same hunk as the line., and Pull request "
            "review thread diff hunk can't be blank",
        ),
        (
            {"event": "COMMENT", "body": "x", "comments": [{**comment(3), "path": "b.txt"}]},
            "Path could not be resolved",
        ),
        (
            {"event": "COMMENT", "body": "x", "comments": [comment(35, start_line=3)]},
            SAME_HUNK,
        ),
        (
            {"event": "COMMENT", "body": "x", "comments": [comment(3, start_line=5)]},
            SAME_HUNK,
        ),
        (
            {"event": "COMMENT", "body": "x", "comments": [comment(3, start_line=20)]},
            SAME_HUNK,
        ),
        (
            {
                "event": "COMMENT",
                "body": "x",
                "comments": [{"path": "a.txt", "position": 99, "body": "y"}],
            },
            "Pull request review thread position is invalid",
        ),
        ({"event": "APPROVE"}, "Can not approve your own pull request"),
        (
            {"event": "REQUEST_CHANGES", "body": "no"},
            "Can not request changes on your own pull request",
        ),
        ({"event": "COMMENT", "body": "  "}, "Body can't be blank"),
        (
            {"event": "COMMENT", "body": "x", "commit_id": "f" * 40},
            f"No commit found for SHA: {'f' * 40}",
        ),
    ],
)
def test_what_github_refuses_is_refused_and_leaves_nothing(
    fake: FakeGitHub, pull: tuple[httpx.Client, int], body: dict[str, Any], error: str
) -> None:
    client, number = pull
    answer = post(client, number, **body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["message"] == "Unprocessable Entity"
    assert answer.json()["errors"] == [error]
    assert fake.world.reviews == {}
    assert fake.review_comments(REPO, number) == []


def test_malformed_bodies_are_refused(fake: FakeGitHub, pull: tuple[httpx.Client, int]) -> None:
    client, number = pull
    assert post(client, number, event="MERGE").status_code == 422
    assert post(client, number, event="COMMENT", body=7).status_code == 422
    assert post(client, number, event="COMMENT", body="x", comments="no").status_code == 422
    assert (
        post(client, number, event="COMMENT", body="x", comments=[{"line": 3}]).status_code == 422
    )
    assert post(client, number, event="COMMENT", body="x" * 65_537).status_code == 422
    assert fake.world.reviews == {}


def test_a_review_with_ranges_and_both_sides_reads_back(
    fake: FakeGitHub, pull: tuple[httpx.Client, int]
) -> None:
    client, number = pull
    comments = [
        comment(3, start_line=1, side="RIGHT", start_side="RIGHT"),
        comment(30, side="LEFT"),
        comment(36),
        {"path": "a.txt", "position": 1, "body": "by position"},  # the older placement
    ]
    answer = post(client, number, event="COMMENT", body="Three notes.", comments=comments)
    assert answer.status_code == 200, answer.text
    review = answer.json()
    assert review["state"] == "COMMENTED"
    listed = client.get(f"/repos/{REPO}/pulls/{number}/comments").json()
    assert [(c["start_line"], c["line"], c["side"]) for c in listed] == [
        (1, 3, "RIGHT"),
        (None, 30, "LEFT"),
        (None, 36, "RIGHT"),
        (None, 1, "RIGHT"),
    ]
    assert all(c["pull_request_review_id"] == review["id"] for c in listed)
    reviews = client.get(f"/repos/{REPO}/pulls/{number}/reviews").json()
    assert [(r["id"], r["body"]) for r in reviews] == [(review["id"], "Three notes.")]


def test_another_writer_may_approve(fake: FakeGitHub, pull: tuple[httpx.Client, int]) -> None:
    _, number = pull
    token = fake.user_token("bob")
    with httpx.Client(base_url=fake.api_url, headers={"Authorization": f"token {token}"}) as bob:
        assert post(bob, number, event="APPROVE").json()["state"] == "APPROVED"
