"""The App's manifest and its page: one table gives both; the fake refuses what GitHub
refuses in a manifest and in the code conversion."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import httpx
import pytest

from bot.core.events import KNOWN_ACTIONS
from bot.github.manifest import FEATURES, build_manifest, render_doc
from bot.testing.fake_github import FakeClock, FakeGitHub
from bot.testing.fake_github.manifests import manifest_problems

DOC = Path(__file__).resolve().parents[2] / "docs" / "github-app.md"
# GitHub sends these to every App (installation*) or they need no subscription.
UNSUBSCRIBED = {"installation", "installation_repositories", "workflow_dispatch", "ping"}


def _manifest(**overrides: object) -> dict[str, object]:
    args: dict[str, object] = {
        "name": "vibe-bot-acme",
        "url": "https://vibe.example.org",
        "webhook_url": "https://vibe.example.org/webhook",
        "redirect_url": "http://127.0.0.1:5000/callback",
    }
    args.update(overrides)
    return build_manifest(**args)  # type: ignore[arg-type]


def test_the_committed_doc_is_the_generated_one() -> None:
    regenerate = (
        "python -c 'from bot.github.manifest import render_doc; "
        'open("docs/github-app.md", "w").write(render_doc())\''
    )
    assert DOC.read_text() == render_doc(), f"the doc drifted from the table; run {regenerate}"


def test_the_doc_names_every_permission_and_event_of_the_table() -> None:
    text = render_doc()
    for feature in FEATURES:
        for event in feature.events:
            assert f"| `{event}` |" in text
        assert feature.name in text
    assert "create-github-app-token" in text
    assert "GITHUB_TOKEN" in text
    # a token's default allow-list is its user: an organisation needs naming
    assert "VIBE_ALLOWED_OWNERS" in text


def test_the_default_manifest_asks_for_exactly_what_the_bot_uses() -> None:
    manifest = _manifest()
    assert manifest["default_permissions"] == {
        "metadata": "read",
        "contents": "write",
        "issues": "write",
        "pull_requests": "write",
        "checks": "write",
        "actions": "read",
        "statuses": "read",
    }
    assert manifest["default_events"] == [
        "check_run",
        "check_suite",
        "issue_comment",
        "issues",
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "status",
        "workflow_run",
    ]
    assert manifest["hook_attributes"] == {
        "url": "https://vibe.example.org/webhook",
        "active": True,
    }
    assert manifest["public"] is False


@pytest.mark.parametrize(
    ("executor", "workflows", "extra_permissions", "extra_events"),
    [
        ("actions", False, {"actions": "write"}, []),
        ("local", True, {"workflows": "write"}, []),
        ("actions", True, {"actions": "write", "workflows": "write"}, []),
    ],
)
def test_actions_and_workflow_changes_add_only_their_permissions(
    executor: str, workflows: bool, extra_permissions: dict[str, str], extra_events: list[str]
) -> None:
    base = _manifest()
    manifest = _manifest(executor=executor, allow_workflow_changes=workflows)
    assert manifest["default_permissions"] == {**base["default_permissions"], **extra_permissions}  # type: ignore[dict-item]
    assert manifest["default_events"] == sorted([*base["default_events"], *extra_events])  # type: ignore[misc]


def test_the_manifest_subscribes_to_every_event_the_bot_handles_and_no_other() -> None:
    handled = set(KNOWN_ACTIONS) - UNSUBSCRIBED
    subscribed = set(_manifest(executor="actions")["default_events"])  # type: ignore[call-overload]
    assert subscribed == handled


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda m: m.pop("url"), "Url"),
        (lambda m: m.pop("hook_attributes"), "Hook attributes"),
        (lambda m: m["hook_attributes"].pop("url"), "Hook attributes"),
        (lambda m: m.pop("redirect_url"), "Redirect url"),
        (lambda m: m.update(name=""), "Name can't be blank"),
        (lambda m: m.update(name="x" * 35), "too long"),
        (lambda m: m["default_permissions"].update(contents="admin"), "cannot be 'admin'"),
        (lambda m: m["default_permissions"].update(telepathy="read"), "does not exist"),
        (lambda m: m["default_events"].append("teleport"), "not supported"),
        (lambda m: m["default_permissions"].pop("actions"), "needs the actions permission"),
    ],
)
def test_the_fake_refuses_a_manifest_github_refuses(change: object, problem: str) -> None:
    manifest = json.loads(json.dumps(_manifest()))
    assert manifest_problems(manifest, set()) == []
    change(manifest)  # type: ignore[operator]
    problems = manifest_problems(manifest, set())
    assert any(problem in p for p in problems), problems


def _register(
    fake: FakeGitHub, manifest: dict[str, object], path: str, state: str
) -> httpx.Response:
    return httpx.post(
        f"{fake.base_url}{path}?state={state}",
        data={"manifest": json.dumps(manifest)},
        follow_redirects=False,
    )


def test_the_fake_runs_the_manifest_flow_once_per_code() -> None:
    with FakeGitHub(clock=FakeClock()) as fake:
        manifest = _manifest(executor="actions")
        answer = _register(fake, manifest, "/settings/apps/new", "s1")
        assert answer.status_code == 302
        target = urllib.parse.urlsplit(answer.headers["location"])
        assert target.netloc == "127.0.0.1:5000"
        assert target.path == "/callback"
        query = urllib.parse.parse_qs(target.query)
        assert query["state"] == ["s1"]
        code = query["code"][0]

        made = httpx.post(f"{fake.api_url}/app-manifests/{code}/conversions")
        assert made.status_code == 201
        app = made.json()
        assert app["slug"] == "vibe-bot-acme"
        assert app["owner"]["login"] == "octocat"
        assert app["pem"].startswith("-----BEGIN")
        assert app["webhook_secret"]
        assert app["client_id"]
        assert app["client_secret"]
        assert app["permissions"] == manifest["default_permissions"]
        assert app["events"] == manifest["default_events"]
        assert fake.world.app is not None
        assert fake.world.app.id == app["id"]
        assert fake.webhook_url == "https://vibe.example.org/webhook"
        assert fake.webhook_secret == app["webhook_secret"]

        again = httpx.post(f"{fake.api_url}/app-manifests/{code}/conversions")
        assert again.status_code == 404
        unknown = httpx.post(f"{fake.api_url}/app-manifests/{'0' * 40}/conversions")
        assert unknown.status_code == 404
        # App names are unique on GitHub.
        taken = _register(fake, manifest, "/settings/apps/new", "s2")
        assert taken.status_code == 422
        assert "already in use" in taken.text


def test_a_code_expires_after_an_hour() -> None:
    clock = FakeClock()
    with FakeGitHub(clock=clock) as fake:
        answer = _register(fake, _manifest(), "/settings/apps/new", "s")
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.headers["location"]).query)
        clock.advance(3601)
        made = httpx.post(f"{fake.api_url}/app-manifests/{code['code'][0]}/conversions")
        assert made.status_code == 404


def test_the_organisation_page_needs_an_organisation() -> None:
    with FakeGitHub(clock=FakeClock()) as fake:
        fake.add_user("acme", org=True)
        fake.add_user("alice")
        path = "/organizations/{}/settings/apps/new"
        assert _register(fake, _manifest(), path.format("nobody"), "s").status_code == 404
        assert _register(fake, _manifest(), path.format("alice"), "s").status_code == 404
        answer = _register(fake, _manifest(), path.format("acme"), "s")
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.headers["location"]).query)
        made = httpx.post(f"{fake.api_url}/app-manifests/{code['code'][0]}/conversions")
        assert made.json()["owner"]["login"] == "acme"


def test_the_fake_refuses_a_form_without_a_valid_manifest() -> None:
    with FakeGitHub(clock=FakeClock()) as fake:
        empty = httpx.post(f"{fake.base_url}/settings/apps/new", data={})
        assert empty.status_code == 422
        assert "manifest is required" in empty.text
        broken = httpx.post(f"{fake.base_url}/settings/apps/new", data={"manifest": "{"})
        assert broken.status_code == 422
        manifest = _manifest()
        manifest.pop("redirect_url")
        assert _register(fake, manifest, "/settings/apps/new", "s").status_code == 422
