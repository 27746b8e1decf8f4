"""The fake's HTTP entry points under malformed, hostile and oversized input: clear
GitHub-style errors, no state change, nothing lost."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest

from bot.testing.fake_github import FakeClock, FakeGitHub
from tests.github.conftest import Receiver, app_key

REPO = "acme/widgets"


@pytest.fixture
def api(fake: FakeGitHub) -> Iterator[httpx.Client]:
    fake.create_repo(REPO, collaborators={"alice": "write"})
    fake.open_issue(REPO, "alice", "t")
    token = fake.user_token("alice")
    with httpx.Client(
        base_url=fake.api_url, headers={"Authorization": f"token {token}"}, timeout=10
    ) as client:
        yield client


def test_malformed_json_and_wrong_types_are_refused(fake: FakeGitHub, api: httpx.Client) -> None:
    url = f"/repos/{REPO}/issues/1/comments"
    bad = api.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert bad.json()["message"] == "Problems parsing JSON"
    assert api.post(url, json=["a", "list"]).status_code == 400
    assert api.post(url, json={"body": 42}).status_code == 422
    assert api.post(url, json={}).status_code == 422
    too_long = api.post(url, json={"body": "x" * 65_537})
    assert too_long.status_code == 422
    assert "too long" in str(too_long.json()["errors"])
    huge = api.post(url, content=b"{" + b" " * (6 * 1024 * 1024) + b"}")
    assert huge.status_code == 413
    assert fake.comments(REPO, 1) == []
    assert api.post(f"/repos/{REPO}/issues/1/labels", json={"labels": [""]}).status_code == 422
    assert (
        api.post(f"/repos/{REPO}/issues/1/reactions", json={"content": "party"}).status_code == 422
    )
    assert api.get(f"/repos/{REPO}/pulls", params={"per_page": "many"}).status_code == 422
    assert fake.issue(REPO, 1).labels == []


def test_authentication_is_checked_like_github(fake: FakeGitHub, api: httpx.Client) -> None:
    url = f"/repos/{REPO}/issues/1/comments"
    anonymous = httpx.post(f"{fake.api_url}{url}", json={"body": "hi"})
    assert anonymous.status_code == 401
    wrong = httpx.get(f"{fake.api_url}/repos/{REPO}", headers={"Authorization": "token ghp_nope"})
    assert wrong.status_code == 401
    odd = httpx.get(f"{fake.api_url}/repos/{REPO}", headers={"Authorization": "Digest abc"})
    assert odd.status_code == 401
    private = fake.create_repo("acme/secret", private=True)
    assert api.get(f"/repos/{private.full_name}").status_code == 404  # hidden, not forbidden
    assert api.get("/app").status_code == 401  # a token is not an App JWT
    assert fake.comments(REPO, 1) == []


def test_app_jwts_are_validated(fake: FakeGitHub, clock: FakeClock) -> None:
    creds = fake.create_app(private_key_pem=app_key())
    now = int(clock.now())

    def call(claims: dict[str, object], key: str = creds.private_key_pem) -> int:
        token = jwt.encode(claims, key, algorithm="RS256")
        return httpx.get(
            f"{fake.api_url}/app", headers={"Authorization": f"Bearer {token}"}
        ).status_code

    assert call({"iat": now - 60, "exp": now + 540, "iss": str(creds.app_id)}) == 200
    assert call({"iat": now - 60, "exp": now + 540, "iss": "1"}) == 401
    assert call({"iat": now + 600, "exp": now + 900, "iss": str(creds.app_id)}) == 401
    assert call({"iat": now - 700, "exp": now - 10, "iss": str(creds.app_id)}) == 401
    assert call({"iat": now - 60, "exp": now + 3600, "iss": str(creds.app_id)}) == 401
    assert call({"exp": now + 60, "iss": str(creds.app_id)}) == 401
    forged = jwt.encode(
        {"iat": now, "exp": now + 60, "iss": str(creds.app_id)},
        "a-shared-secret-long-enough-for-hs256-x",
        algorithm="HS256",
    )
    assert (
        httpx.get(f"{fake.api_url}/app", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    fake.install_app("acme", repositories=["widgets"])
    fake.create_repo("acme/widgets")
    good = jwt.encode(
        {"iat": now - 60, "exp": now + 540, "iss": str(creds.app_id)},
        creds.private_key_pem,
        algorithm="RS256",
    )
    headers = {"Authorization": f"Bearer {good}"}
    inst = httpx.get(f"{fake.api_url}/repos/acme/widgets/installation", headers=headers).json()[
        "id"
    ]
    url = f"{fake.api_url}/app/installations/{inst}/access_tokens"
    assert (
        httpx.post(url, headers=headers, json={"repositories": ["not-installed"]}).status_code
        == 422
    )
    assert httpx.post(url, headers=headers, json={"repositories": "widgets"}).status_code == 422
    assert (
        httpx.post(
            url, headers=headers, json={"permissions": {"administration": "write"}}
        ).status_code
        == 422
    )
    assert fake.issued_tokens() == []


def test_expired_installation_tokens_are_refused(fake: FakeGitHub, clock: FakeClock) -> None:
    fake.create_repo(REPO)
    token = fake.actions_token(REPO)
    headers = {"Authorization": f"token {token}"}
    assert httpx.get(f"{fake.api_url}/repos/{REPO}", headers=headers).status_code == 200
    other = fake.create_repo("acme/other", private=True)
    assert httpx.get(f"{fake.api_url}/repos/{other.full_name}", headers=headers).status_code == 404
    clock.advance(3601)
    assert httpx.get(f"{fake.api_url}/repos/{REPO}", headers=headers).status_code == 401


def test_graphql_subset_refuses_what_it_does_not_know(fake: FakeGitHub, api: httpx.Client) -> None:
    unknown = api.post("/graphql", json={"query": "{ viewer { login } }"}).json()
    assert unknown["errors"]
    assert api.post("/graphql", json={"query": 5}).json()["errors"]
    missing = api.post(
        "/graphql",
        json={
            "query": "query { repository { pullRequest { reviewThreads } } }",
            "variables": {"owner": "acme", "name": "widgets", "number": 1},
        },
    ).json()
    assert missing["errors"][0]["type"] == "NOT_FOUND"  # issue 1 is not a pull request
    assert httpx.post(f"{fake.api_url}/graphql", json={"query": "{}"}).status_code == 401


def test_faults_fire_the_given_number_of_times(fake: FakeGitHub, api: httpx.Client) -> None:
    fake.inject("GET", "/repos/{owner}/{repo}", "502", times=2)
    assert [api.get(f"/repos/{REPO}").status_code for _ in range(3)] == [502, 502, 200]
    fake.inject(
        "*", "/repos/{owner}/{repo}/issues/{issue_number}", "primary_rate_limit", reset_at=123
    )
    limited = api.get(f"/repos/{REPO}/issues/1")
    assert limited.status_code == 403
    assert (limited.headers["x-ratelimit-remaining"], limited.headers["x-ratelimit-reset"]) == (
        "0",
        "123",
    )
    fake.inject(
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        "secondary_rate_limit_no_headers",
    )
    secondary = api.post(f"/repos/{REPO}/issues/1/comments", json={"body": "x"})
    assert secondary.status_code == 403
    assert "retry-after" not in secondary.headers
    assert "secondary rate limit" in secondary.json()["message"]
    assert fake.comments(REPO, 1) == []
    fake.inject(
        "POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", "timeout_after_write"
    )
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        api.post(f"/repos/{REPO}/issues/1/comments", json={"body": "late"}, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert [c.body for c in fake.comments(REPO, 1)] == ["late"]


def test_unknown_routes_answer_like_github(fake: FakeGitHub, api: httpx.Client) -> None:
    missing = api.get("/repos/acme/widgets/no-such-thing/at/all")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Not Found"
    assert api.get(f"/repos/{REPO}/contents/../../etc/passwd").status_code == 404
    assert (
        api.get(f"/repos/{REPO}/contents/README.md", params={"ref": "--output=/tmp/x"}).status_code
        == 404
    )


def test_rest_changes_send_webhooks_when_echo_is_on(
    fake: FakeGitHub, api: httpx.Client, receiver: Receiver
) -> None:
    before = len(receiver.got)
    api.post(f"/repos/{REPO}/issues/1/comments", json={"body": "quiet"})
    assert len(receiver.got) == before  # off by default: only the helpers send webhooks
    fake.echo_api_events = True
    created = api.post(f"/repos/{REPO}/issues", json={"title": "new", "labels": ["vibe"]})
    assert created.status_code == 201
    api.post(f"/repos/{REPO}/issues/{created.json()['number']}/comments", json={"body": "/vibe go"})
    got = [
        (r.headers["x-github-event"], json.loads(r.body)["action"]) for r in receiver.got[before:]
    ]
    assert got == [("issues", "opened"), ("issues", "labeled"), ("issue_comment", "created")]
    assert json.loads(receiver.got[-1].body)["sender"]["login"] == "alice"


def test_editing_a_comment_through_the_api_sends_issue_comment_edited(
    fake: FakeGitHub, api: httpx.Client, receiver: Receiver
) -> None:
    fake.echo_api_events = True
    made = api.post(f"/repos/{REPO}/issues/1/comments", json={"body": "/vibe go"})
    edited = api.patch(
        f"/repos/{REPO}/issues/comments/{made.json()['id']}", json={"body": "/vibe stop"}
    )
    assert edited.status_code == 200
    last = receiver.got[-1]
    payload = json.loads(last.body)
    assert (last.headers["x-github-event"], payload["action"]) == ("issue_comment", "edited")
    assert payload["comment"]["body"] == "/vibe stop"
    assert payload["changes"] == {"body": {"from": "/vibe go"}}
