"""Conditional requests and comments edited by id, over real HTTP against the fake: GET
answers carry an ETag, a matching If-None-Match is answered 304 with no body (GitHub's
best practices), the adapter sends back the tags it has and reuses the kept answer, and a
status comment known by id is one PATCH."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bot.core.markers import marker
from bot.github import GitHub
from bot.testing.fake_github import AppCredentials, FakeClock, FakeGitHub
from tests.github.conftest import app_key
from tests.github.test_adapter import REPO, app_hub

COMMENTS = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
EDIT = "/repos/{owner}/{repo}/issues/comments/{comment_id}"


@pytest.fixture
def world(fake: FakeGitHub) -> FakeGitHub:
    fake.create_repo(REPO, {"README.md": "# widgets\n"}, collaborators={"alice": "write"})
    return fake


@pytest.fixture
def creds(fake: FakeGitHub) -> AppCredentials:
    return fake.create_app("vibe-bot", private_key_pem=app_key())


@pytest.fixture
def hub(world: FakeGitHub, clock: FakeClock, creds: AppCredentials) -> Iterator[GitHub]:
    h = app_hub(world, clock, creds)
    world.install_app("acme")
    yield h
    h.close()


def test_the_fake_answers_a_matching_if_none_match_with_304(world: FakeGitHub) -> None:
    headers = {"Authorization": f"token {world.user_token('alice')}"}
    number = world.open_issue(REPO, "alice", "Add a widget", "body")
    url = f"{world.api_url}/repos/{REPO}/issues/{number}"
    with httpx.Client(headers=headers) as http:
        first = http.get(url)
        tag = first.headers["etag"]
        assert first.status_code == 200
        assert tag.startswith('W/"')
        same = http.get(url, headers={"If-None-Match": tag})
        assert same.status_code == 304
        assert same.content == b""
        assert same.headers["etag"] == tag
        # Weak comparison: the tag without W/ names the same representation.
        assert http.get(url, headers={"If-None-Match": tag[2:]}).status_code == 304
        assert http.get(url, headers={"If-None-Match": 'W/"other"'}).status_code == 200
        world.comment(REPO, number, "alice", "a change")
        changed = http.get(url, headers={"If-None-Match": tag})
        assert changed.status_code == 200
        assert changed.headers["etag"] != tag
        assert changed.json()["comments"] == 1
        # A write is never answered 304, whatever it sends.
        posted = http.post(f"{url}/comments", json={"body": "x"}, headers={"If-None-Match": "*"})
        assert posted.status_code == 201
    logged = [r for r in world.requests if r.path == f"/repos/{REPO}/issues/{number}"]
    assert [r.status for r in logged] == [200, 304, 304, 200, 200]
    assert {r.route for r in logged} == {"/repos/{owner}/{repo}/issues/{issue_number}"}


def test_repeated_reads_are_conditional_and_reuse_the_kept_answer(
    world: FakeGitHub, hub: GitHub
) -> None:
    number = world.open_issue(REPO, "alice", "Add a widget", "body")
    world.comment(REPO, number, "alice", "please")
    first = hub.repo(REPO).issue_thread(number)  # a client per job: nothing kept per client
    start = len(world.requests)
    again = hub.repo(REPO).issue_thread(number)
    assert again == first
    statuses = {r.key: r.status for r in world.requests[start:]}
    assert statuses[f"GET {COMMENTS}"] == 304
    assert statuses["GET /repos/{owner}/{repo}/issues/{issue_number}"] == 304
    assert hub.etags.hits >= 2
    world.comment(REPO, number, "alice", "and more")
    changed = hub.repo(REPO).issue_thread(number)
    assert [c.body for c in changed.comments] == ["please", "and more"]


def test_a_known_status_comment_is_one_patch_and_a_deleted_one_reports_gone(
    world: FakeGitHub, hub: GitHub
) -> None:
    number = world.open_issue(REPO, "alice", "t")
    mark = marker("status", task=4)
    repo = hub.repo(REPO)
    comment_id = repo.upsert_comment(number, mark, "Working: step 1")
    start = len(world.requests)
    assert repo.edit_comment(number, comment_id, mark, "Working: step 2 hunter")
    assert [r.key for r in world.requests[start:]] == [f"PATCH {EDIT}"]
    body = world.comments(REPO, number)[0].body
    assert body.startswith("Working: step 2")
    assert body.endswith(str(mark))
    world.delete_comment(REPO, comment_id, "alice")
    assert not repo.edit_comment(number, comment_id, mark, "Working: step 3")
    assert world.comments(REPO, number) == []


def test_the_fake_logs_requests_by_route_and_adds_the_latency_asked(world: FakeGitHub) -> None:
    headers = {"Authorization": f"token {world.user_token('alice')}"}
    number = world.open_issue(REPO, "alice", "t")
    start = len(world.requests)
    world.latency_seconds = 0.2
    with httpx.Client(headers=headers, base_url=world.api_url) as http:
        began = time.monotonic()
        assert http.get(f"/repos/{REPO}/issues/{number}").status_code == 200
        assert time.monotonic() - began >= 0.2
        world.latency_seconds = 0.0
        http.get(f"/repos/{REPO}/issues/{number}/comments")
        http.get(f"/repos/{REPO}/issues/{number}/comments")
        http.get("/repos/acme/missing")
    assert world.request_counts(start) == {
        "GET /repos/{owner}/{repo}/issues/{issue_number}": 1,
        "GET /repos/{owner}/{repo}/issues/{issue_number}/comments": 2,
        "GET /repos/{owner}/{repo}": 1,
    }
    assert world.requests[-1].status == 404
