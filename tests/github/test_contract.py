"""Contract: every response the fake sends matches GitHub's OpenAPI description (npm
``@octokit/openapi``), every webhook it sends matches ``@octokit/openapi-webhooks`` and
the shape of the real payloads in ``tests/fixtures/webhooks``, and the adapter's GraphQL
operations are valid against GitHub's schema (``@octokit/graphql-schema``) with the fake
answering every field they select.

The descriptions are installed by ``.ci/run`` under ``.ci/node``; elsewhere set
``VIBE_OCTOKIT_NODE_MODULES`` to a ``node_modules`` holding them, or the test skips
(and fails under ``VIBE_TEST_STRICT=1``).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
from functools import cache
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest
from fastapi.routing import APIRoute
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7, DRAFT202012

from bot.core.markers import marker
from bot.github import GitHub, RequestPolicy, RetrySettings, StaticToken
from bot.github.auth import AppTokens
from bot.github.client import MARK_READY_MUTATION, RESOLVE_MUTATION, THREADS_QUERY
from bot.github.hook_deliveries import AppHookDeliveries
from bot.github.manifest import ConversionError, build_manifest, convert_code
from bot.testing.fake_github import FakeClock, FakeGitHub, InlineComment
from bot.testing.fake_github.ci import CiJob
from tests.conftest import FIXTURES, require
from tests.github.conftest import app_key
from tests.support.web import free_port

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(
    os.environ.get("VIBE_OCTOKIT_NODE_MODULES", ROOT / ".ci" / "node" / "node_modules")
)
REST = NODE_MODULES / "@octokit" / "openapi" / "generated" / "api.github.com.json"
HOOKS = NODE_MODULES / "@octokit" / "openapi-webhooks" / "generated" / "api.github.com.json"
GRAPHQL = NODE_MODULES / "@octokit" / "graphql-schema" / "schema.json"
REPO = "acme/widgets"


def _nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` becomes a JSON Schema union with ``null``."""
    if isinstance(node, list):
        return [_nullable_to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable_to_json_schema(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        if "$ref" in out or "type" not in out:
            return {"anyOf": [out, {"type": "null"}]}
        kind = out["type"]
        out["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


@cache
def rest_spec() -> dict[str, Any]:
    with REST.open() as fh:
        spec = json.load(fh)
    spec["components"] = _nullable_to_json_schema(spec["components"])
    spec["paths"] = _nullable_to_json_schema(spec["paths"])
    return spec


@cache
def hooks_spec() -> dict[str, Any]:
    with HOOKS.open() as fh:
        return json.load(fh)  # type: ignore[no-any-return]


def _pointer(parts: list[str]) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def rest_validator(method: str, template: str, status: int) -> Draft7Validator | None:
    spec = rest_spec()
    path = re.sub(r"\{(\w+):path\}", r"{\1}", template)
    op = spec["paths"][path][method.lower()]
    response = op["responses"].get(str(status))
    registry: Registry[Any] = Registry().with_resource("urn:rest", Resource(spec, DRAFT7))
    if response is None and status >= 400:
        # GitHub documents only some errors per operation; all share this shape.
        return Draft7Validator(
            {"$ref": "urn:rest#/components/schemas/basic-error"}, registry=registry
        )
    assert response is not None, f"{method} {path} has no {status} response in GitHub's description"
    parts = ["paths", path, method.lower(), "responses", str(status)]
    if "$ref" in response:
        ref = response["$ref"].removeprefix("#/").split("/")
        response = spec
        for p in ref:
            response = response[p]
        parts = ref
    if "application/json" not in response.get("content", {}):
        return None
    schema_ref = _pointer([*parts, "content", "application/json", "schema"])
    return Draft7Validator({"$ref": f"urn:rest{schema_ref}"}, registry=registry)


def hook_validator(event: str, action: str | None) -> Draft202012Validator:
    """The schema of a webhook; events without actions (``status``) are keyed by name."""
    spec = hooks_spec()
    key = (event + (f"-{action}" if action else "")).replace("_", "-")
    schema = spec["webhooks"][key]["post"]["requestBody"]["content"]["application/json"]["schema"]
    registry: Registry[Any] = Registry().with_resource("urn:hooks", Resource(spec, DRAFT202012))
    return Draft202012Validator({"$ref": f"urn:hooks{schema['$ref']}"}, registry=registry)


def _errors(validator: Draft7Validator | Draft202012Validator, body: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}"
        for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))[:10]
    ]


def _exercise(fake: FakeGitHub, clock: FakeClock) -> None:
    """Drive every REST route of the fake through the adapter (and PyGithub directly)."""
    fake.create_repo(
        REPO,
        {"README.md": "hi\n", ".github/vibe.yml": "model: plan\n", "docs/a.md": "a\n"},
        collaborators={"alice": "write"},
    )
    creds = fake.create_app(private_key_pem=app_key())
    fake.install_app("acme")
    policy = RequestPolicy(clock, RetrySettings(min_write_interval=0))
    tokens = AppTokens(
        creds.app_id, creds.private_key_pem, fake.api_url, clock=clock, policy=policy, timeout=5
    )
    hub = GitHub(
        tokens, api_url=fake.api_url, bot_login=creds.bot_login, clock=clock, policy=policy
    )
    repo = hub.repo(REPO)
    number = fake.open_issue(REPO, "alice", "Add a widget", "please", labels=["vibe"])
    comment = fake.comment(REPO, number, "alice", "/vibe go")
    repo.react(number, comment, "eyes")
    repo.react(number, None, "rocket")
    repo.upsert_comment(number, marker("status", task=1), "working")
    repo.upsert_comment(number, marker("status", task=1), "done")
    repo.issue_thread(number)
    repo.permission("alice")
    repo.add_labels(number, ["vibe:plan"])
    repo.remove_label(number, "vibe:plan")
    repo.read_config("main")
    # the repository's CI (bot/testing/fake_github/ci.py) runs on the PR
    fake.set_ci(
        REPO,
        [
            CiJob("lint", ["sh", "-c", "echo 'w.py:1: error: no'; exit 1"]),
            CiJob("deploy", ["true"], via="status"),
            CiJob("codecheck", ["false"], via="app"),
        ],
    )
    fake.commit(REPO, "vibe/1", {"w.py": "x = 1\n"})
    pr = repo.find_or_create_pull("vibe/1", "main", "Add w", "body")
    fake.ci.wait(20)
    checks = repo.head_checks(pr.head_sha)
    lint = next(c for c in checks.checks if c.name == "lint")
    assert lint.job_id is not None
    assert repo.job_log_tail(lint.job_id, 4096)
    assert not repo.rerun_job(lint.job_id)  # the App reads Actions, re-running needs write
    repo.mark_ready_for_review(pr.number)
    repo.update_pull(pr.number, title="Add w, better")
    repo.get_pull(pr.number)
    repo.request_review(pr.number, "alice")
    review = fake.review(
        REPO,
        pr.number,
        "alice",
        state="CHANGES_REQUESTED",
        comments=[InlineComment("w.py", 1, "why?")],
    )
    inline = repo.review_comments(pr.number, review)[0]
    repo.review_comments(pr.number)
    repo.reply_in_thread(pr.number, inline.id, "because")
    repo.react(pr.number, inline.id, "eyes", review_comment=True)
    # the bot's own review (issue 18): one COMMENT review with an inline comment
    note = {"path": "w.py", "line": 1, "side": "RIGHT", "body": "a finding"}
    own = repo.create_review(pr.number, pr.head_sha, "review <!-- vibe:review key=k -->", [note])
    assert repo.find_review(pr.number, marker("review", key="k")) == own
    assert repo.review_comment(inline.id) is not None
    run = repo.create_check_run(pr.head_sha, "vibe", title="t", summary="s")
    assert run is not None
    repo.update_check_run(run, title="t", summary="s", conclusion="success")
    repo.git_credentials()
    # answers GitHub gives as errors, handled by the adapter
    repo.request_review(pr.number, "stranger")
    repo.remove_label(number, "never-there")
    assert repo.read_file("missing.md", "main") is None
    assert repo.get_pull(999) is None
    fake.approve(REPO, pr.number, "alice")
    fake.merge(REPO, pr.number, "alice")
    other = fake.open_issue(REPO, "alice", "Close me")
    fake.close(REPO, other, "alice")
    fake.commit(REPO, "feature", {"f.py": "f\n"})
    labelled = fake.open_pull(REPO, "alice", "feature", "Feature")
    fake.label(REPO, labelled, "alice", "vibe")
    fake.commit(REPO, "feature", {"f.py": "g\n"})
    # routes the adapter does not use but PyGithub's own lookups do
    gh = hub.client(REPO)
    requester = gh.requester
    requester.requestJsonAndCheck("GET", f"/repos/{REPO}/issues/comments/{comment}")
    requester.requestJsonAndCheck("GET", f"/repos/{REPO}/pulls/comments/{inline.id}")
    requester.requestJsonAndCheck("GET", f"/repos/{REPO}/pulls/{pr.number}/reviews")
    requester.requestJsonAndCheck(
        "GET", f"/repos/{REPO}/pulls/{pr.number}/reviews/{review}/comments"
    )
    requester.requestJsonAndCheck("GET", f"/repos/{REPO}/check-runs/{run}")
    requester.requestJsonAndCheck("GET", f"/repos/{REPO}/contents/docs")
    requester.requestJsonAndCheck("GET", f"/repos/{REPO}/issues/{number}/comments")
    requester.requestJsonAndCheck("GET", f"/repos/{REPO}/commits/{pr.head_sha}/check-suites")
    app_requester = tokens._github.requester
    app_requester.requestJsonAndCheck("GET", "/app")
    inst = tokens.installation_id(REPO)
    app_requester.requestJsonAndCheck("GET", f"/app/installations/{inst}")
    fake.ci.wait(20)  # CI of the pushes above, before the webhook URL changes
    # the App webhook's delivery log, with one delivery that failed (nothing listens)
    fake.webhook_url = f"http://127.0.0.1:{free_port()}/webhook"
    fake.comment(REPO, number, "alice", "while the service was down")
    fake.webhook_url = None
    log = AppHookDeliveries(tokens)
    [failed] = log.recent(0)
    log.redeliver(failed.attempt_id)
    user = GitHub(
        StaticToken(fake.user_token("alice")), api_url=fake.api_url, bot_login="alice", clock=clock
    )
    user_requester = user.client(REPO).requester
    user_requester.requestJsonAndCheck("GET", "/user")
    user_requester.requestJsonAndCheck(
        "POST", f"/repos/{REPO}/issues", input={"title": "via the API", "labels": ["bug"]}
    )
    user.repo(REPO).update_pull(labelled, body="edited")
    user_requester.requestJsonAndCheck(
        "POST", f"/repos/{REPO}/statuses/{pr.head_sha}", input={"state": "success"}
    )
    user_requester.requestJsonAndCheck("POST", f"/repos/{REPO}/actions/jobs/{lint.job_id}/rerun")
    fake.ci.wait(20)
    user_requester.requestJsonAndCheck(
        "PATCH", f"/repos/{REPO}/pulls/{labelled}", input={"state": "closed"}
    )
    user.close()
    hub.close()
    # The App manifest flow (vibe setup): the web step, then the code traded once.
    manifest = build_manifest(
        name="vibe-bot-contract",
        url=f"{fake.base_url}/home",
        webhook_url=f"{fake.base_url}/hook",
        redirect_url=f"{fake.base_url}/callback",
        executor="actions",
    )
    web = httpx.post(
        f"{fake.base_url}/settings/apps/new?state=s",
        data={"manifest": json.dumps(manifest)},
        follow_redirects=False,
    )
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(web.headers["location"]).query)["code"]
    assert convert_code(fake.api_url, code[0]).slug == "vibe-bot-contract"
    with pytest.raises(ConversionError):
        convert_code(fake.api_url, code[0])


@pytest.fixture(scope="module")
def exercised() -> FakeGitHub:
    """One run of the scenario for the whole module (the tests only read its record)."""
    clock = FakeClock()
    with FakeGitHub(clock=clock, echo_api_events=True) as fake:
        _exercise(fake, clock)
        return fake


def _need(path: Path) -> None:
    require(path.exists(), f"{path.name} of @octokit not found under {NODE_MODULES} (see .ci/run)")


def test_every_rest_response_matches_githubs_openapi_description(exercised: FakeGitHub) -> None:
    _need(REST)
    assert exercised.app is not None
    rest_routes = {
        (method, route.path)
        for route in exercised.app.routes
        if isinstance(route, APIRoute) and route.path.startswith(("/repos", "/app", "/user"))
        for method in route.methods
    }
    seen = {(r.method, r.template) for r in exercised.responses if r.status < 400}
    assert {r.status for r in exercised.responses} >= {200, 201, 404, 422}
    assert rest_routes - seen == set(), "routes the contract scenario does not exercise"
    problems: list[str] = []
    checked = 0
    for recorded in exercised.responses:
        if recorded.template == "/graphql":
            continue
        validator = rest_validator(recorded.method, recorded.template, recorded.status)
        if validator is None:
            continue
        checked += 1
        for err in _errors(validator, recorded.body):
            problems.append(f"{recorded.method} {recorded.template} {recorded.status}: {err}")
    assert checked >= len(rest_routes)
    assert problems == []


def test_every_webhook_matches_the_webhook_description_and_the_fixtures(
    exercised: FakeGitHub,
) -> None:
    _need(HOOKS)
    kinds = {(d.event, d.payload.get("action")) for d in exercised.deliveries}
    assert kinds >= {
        ("issues", "opened"),
        ("issues", "labeled"),
        ("issues", "closed"),
        ("issue_comment", "created"),
        ("pull_request", "opened"),
        ("pull_request", "labeled"),
        ("pull_request", "synchronize"),
        ("pull_request", "closed"),
        ("pull_request_review", "submitted"),
        ("pull_request_review_comment", "created"),
        ("pull_request", "edited"),
        ("pull_request", "ready_for_review"),
        ("check_suite", "requested"),
        ("check_suite", "completed"),
        ("check_run", "created"),
        ("check_run", "completed"),
        ("workflow_run", "requested"),
        ("workflow_run", "in_progress"),
        ("workflow_run", "completed"),
        ("status", None),
    }
    api_made = [d for d in exercised.deliveries if d.payload["sender"]["login"] == "vibe-bot[bot]"]
    assert {d.event for d in api_made} >= {"issue_comment", "pull_request", "issues"}
    problems: list[str] = []
    for delivery in exercised.deliveries:
        action = delivery.payload.get("action")
        name = f"{delivery.event}.{action}" if action else delivery.event
        validator = hook_validator(delivery.event, action)
        for err in _errors(validator, delivery.payload):
            problems.append(f"{name}: {err}")
        fixture = FIXTURES / "webhooks" / f"{name}.json"
        if fixture.exists():
            real = json.loads(fixture.read_text())
            for key, value in real.items():
                if key == "installation":
                    continue
                if key not in delivery.payload:
                    problems.append(f"{fixture.name}: {key} missing")
                elif isinstance(value, dict):
                    missing = set(value) - set(delivery.payload[key])
                    if missing:
                        problems.append(f"{fixture.name}: {key} lacks {sorted(missing)}")
    assert problems == [], "\n".join(problems)


def test_the_contract_check_catches_a_wrong_shape(exercised: FakeGitHub) -> None:
    _need(REST)
    _need(HOOKS)
    recorded = next(
        r
        for r in exercised.responses
        if r.template == "/repos/{owner}/{repo}/issues/{issue_number}" and r.status == 200
    )
    validator = rest_validator(recorded.method, recorded.template, recorded.status)
    assert validator is not None
    assert _errors(validator, recorded.body) == []
    broken = {k: v for k, v in recorded.body.items() if k != "number"}
    assert any("number" in e for e in _errors(validator, broken))
    assert _errors(validator, {**recorded.body, "state": 3}) != []
    delivery = next(d for d in exercised.deliveries if d.event == "issues")
    hook = hook_validator(delivery.event, delivery.payload["action"])
    assert _errors(hook, delivery.payload) == []
    assert _errors(hook, {**delivery.payload, "issue": {"id": "x"}}) != []


def _missing_fields(selection: Any, data: Any, path: str = "") -> list[str]:
    """Fields the operation selects that the answer lacks."""
    missing: list[str] = []
    for field in selection.selections:
        key = field.alias.value if field.alias else field.name.value
        if not isinstance(data, dict) or key not in data:
            missing.append(path + key)
            continue
        value = data[key]
        if field.selection_set is not None and value is not None:
            for item in value if isinstance(value, list) else [value]:
                missing += _missing_fields(field.selection_set, item, f"{path}{key}.")
    return missing


def test_adapter_graphql_is_valid_for_github_and_answered_by_the_fake(clock: FakeClock) -> None:
    _need(GRAPHQL)
    # GitHub's published schema breaks a rule graphql-core 3.3 checks on schemas (a field
    # deprecated on PullRequest but not on its interface Reactable); what is checked here
    # is our operations against it, so the schema is taken as GitHub serves it.
    schema = graphql.build_client_schema(json.loads(GRAPHQL.read_text()), assume_valid=True)
    operations = {
        "threads": THREADS_QUERY,
        "resolve": RESOLVE_MUTATION,
        "ready": MARK_READY_MUTATION,
    }
    for name, text in operations.items():
        errors = graphql.validate(schema, graphql.parse(text))
        assert errors == [], f"{name}: {errors}"
    with FakeGitHub(clock=clock) as fake:
        fake.create_repo(REPO, collaborators={"alice": "write"})
        fake.commit(REPO, "f", {"a.py": "a\n"})
        number = fake.open_pull(REPO, "alice", "f", "F")
        fake.review(REPO, number, "alice", comments=[InlineComment("a.py", 1, "x")])
        token = fake.world.tokens[fake.user_token("alice")]
        threads = fake.graphql(
            token, operations["threads"], {"owner": "acme", "name": "widgets", "number": number}
        )
        thread_id = threads["data"]["repository"]["pullRequest"]["reviewThreads"]["nodes"][0]["id"]
        resolved = fake.graphql(token, operations["resolve"], {"threadId": thread_id})
        fake.commit(REPO, "g", {"b.py": "b\n"})
        draft = fake.open_pull(REPO, "alice", "g", "G", draft=True)
        pr_id = fake.shapes.pull(fake.repo(REPO), fake.issue(REPO, draft))["node_id"]
        ready = fake.graphql(token, operations["ready"], {"pullRequestId": pr_id})
    answers = (
        (operations["threads"], threads),
        (operations["resolve"], resolved),
        (operations["ready"], ready),
    )
    for text, answer in answers:
        assert "errors" not in answer
        op = graphql.parse(text).definitions[0]
        assert isinstance(op, graphql.OperationDefinitionNode)
        assert _missing_fields(op.selection_set, answer["data"]) == []
    broken = graphql.parse(
        'query { repository(owner: "a", name: "b") '
        "{ pullRequest(number: 1) { reviewThreadz { totalCount } } } }"
    )
    assert graphql.validate(schema, broken) != []
    thread = threads["data"]["repository"]["pullRequest"]["reviewThreads"]["nodes"][0]
    del thread["isOutdated"]
    query = graphql.parse(operations["threads"]).definitions[0]
    assert isinstance(query, graphql.OperationDefinitionNode)
    assert _missing_fields(query.selection_set, threads["data"]) == [
        "repository.pullRequest.reviewThreads.nodes.isOutdated"
    ]


def _urls(node: Any, key: str = "") -> list[str]:
    if isinstance(node, dict):
        return [u for k, v in node.items() for u in _urls(v, k)]
    if isinstance(node, list):
        return [u for v in node for u in _urls(v, key)]
    if key == "documentation_url":  # GitHub's errors point at its docs, not at the API
        return []
    if isinstance(node, str) and (key.endswith(("url", "href")) or key in ("self", "git", "html")):
        return [node]
    return []


def test_every_url_the_fake_sends_is_its_own(exercised: FakeGitHub) -> None:
    bodies = [r.body for r in exercised.responses] + [d.payload for d in exercised.deliveries]
    urls = [u for body in bodies for u in _urls(body) if not u.startswith("git@")]
    assert len(urls) > 1000
    assert [u for u in urls if not u.startswith(exercised.base_url + "/")] == []
