"""Webhook payloads -> typed events: every fixture, missing fields, garbage."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.events import (
    KNOWN_ACTIONS,
    CiEvent,
    Comment,
    CommentPlace,
    InstallationEvent,
    Issue,
    IssueEvent,
    Ping,
    PullRequest,
    PullRequestEvent,
    ReviewState,
    ReviewThreadEvent,
    Unparseable,
    Unsupported,
    WorkflowDispatch,
    WorkflowRun,
    is_supported,
    parse_event,
    parse_pull_request,
)

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text())
    return data


def event_name(fixture: str) -> str:
    return fixture.split(".")[0]


# fixture -> expected type; every JSON file in the directory must be listed here.
EXPECTED: dict[str, type] = {
    "check_run.completed": CiEvent,
    "check_run.rerequested": Unsupported,
    "installation.created": InstallationEvent,
    "installation.deleted": InstallationEvent,
    "installation_repositories.added": InstallationEvent,
    "issue_comment.created": Comment,
    "issue_comment.created.on-pull-request": Comment,
    "issue_comment.created.with-installation": Comment,
    "issue_comment.deleted": Unsupported,
    "issue_comment.edited": Comment,
    "issues.edited": IssueEvent,
    "issues.labeled": IssueEvent,
    "issues.opened": IssueEvent,
    "issues.unlabeled": IssueEvent,
    "ping": Ping,
    "pull_request.closed": PullRequestEvent,
    "pull_request.opened": PullRequestEvent,  # review.on (issue 18)
    "pull_request.reopened": Unsupported,
    "pull_request.synchronize": PullRequestEvent,
    "pull_request_review.submitted": Comment,
    "pull_request_review_comment.created": Comment,
    "pull_request_review_thread.resolved": ReviewThreadEvent,
    "workflow_dispatch": WorkflowDispatch,
}


def test_every_fixture_is_in_the_table() -> None:
    on_disk = {p.name.removesuffix(".json") for p in WEBHOOKS.glob("*.json")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_fixture_parses_to_its_type(fixture: str) -> None:
    event = parse_event(event_name(fixture), load(fixture))
    assert type(event) is EXPECTED[fixture]
    supported = EXPECTED[fixture] is not Unsupported
    assert is_supported(event_name(fixture), load(fixture).get("action")) is supported


def test_issue_comment_on_an_issue() -> None:
    event = parse_event("issue_comment", load("issue_comment.created"))
    assert isinstance(event, Comment)
    assert event.place is CommentPlace.ISSUE
    assert not event.is_pr
    assert event.number == 1
    assert event.comment_id == 492700400
    assert event.body == "You are totally right! I'll get this fixed right away."
    assert event.author is not None
    assert event.author.login == "Codertocat"
    assert event.sender is not None
    assert not event.sender.is_bot
    assert event.repo.full_name == "Codertocat/Hello-World"
    assert event.repo.owner == "Codertocat"
    assert event.repo.name == "Hello-World"
    assert event.repo.default_branch == "master"
    assert event.repo.clone_url == "https://github.com/Codertocat/Hello-World.git"
    assert event.repo.id == 186853002
    assert event.installation_id is None
    assert isinstance(event.target, Issue)
    assert event.target.labels == ("bug",)


def test_a_stored_delivery_without_a_repository_id_still_parses() -> None:
    payload = load("issue_comment.created")
    del payload["repository"]["id"]
    event = parse_event("issue_comment", payload)
    assert isinstance(event, Comment)
    assert (event.repo.full_name, event.repo.id) == ("Codertocat/Hello-World", None)


def test_issue_comment_on_a_pull_request_is_a_pr_comment() -> None:
    event = parse_event("issue_comment", load("issue_comment.created.on-pull-request"))
    assert isinstance(event, Comment)
    assert event.place is CommentPlace.PULL_REQUEST
    assert event.is_pr
    assert event.number == 1
    assert isinstance(event.target, Issue)
    assert event.target.is_pr


def test_installation_id_is_carried() -> None:
    event = parse_event("issue_comment", load("issue_comment.created.with-installation"))
    assert isinstance(event, Comment)
    assert event.installation_id == 1


def test_edited_comment_keeps_its_action() -> None:
    event = parse_event("issue_comment", load("issue_comment.edited"))
    assert isinstance(event, Comment)
    assert event.action == "edited"


def test_labeled_issue() -> None:
    event = parse_event("issues", load("issues.labeled"))
    assert isinstance(event, IssueEvent)
    assert event.action == "labeled"
    assert event.label == "bug"
    assert event.number == 1
    assert event.issue.title == "Spelling error in the README file"
    assert event.issue.state == "open"
    assert not event.issue.is_pr


def test_review_is_a_comment_with_its_state() -> None:
    event = parse_event("pull_request_review", load("pull_request_review.submitted"))
    assert isinstance(event, Comment)
    assert event.place is CommentPlace.REVIEW
    assert event.review is not None
    assert event.review.state is ReviewState.COMMENTED
    assert event.review.id == 237895671
    assert event.body == ""  # GitHub sends null for an empty review body
    assert event.comment_id is None
    assert event.number == 2
    assert isinstance(event.target, PullRequest)
    assert event.target.head_ref == "changes"
    assert event.target.same_repo(event.repo)


@pytest.mark.parametrize("state", ["approved", "changes_requested", "APPROVED"])
def test_review_states(state: str) -> None:
    payload = load("pull_request_review.submitted")
    payload["review"]["state"] = state
    event = parse_event("pull_request_review", payload)
    assert isinstance(event, Comment)
    assert event.review is not None
    assert event.review.state == state.lower()


def test_review_in_unknown_state_is_unparseable() -> None:
    payload = load("pull_request_review.submitted")
    payload["review"]["state"] = "pending"
    event = parse_event("pull_request_review", payload)
    assert isinstance(event, Unparseable)
    assert "review.state" in event.reason


def test_inline_review_comment_carries_its_position() -> None:
    event = parse_event("pull_request_review_comment", load("pull_request_review_comment.created"))
    assert isinstance(event, Comment)
    assert event.place is CommentPlace.REVIEW_THREAD
    assert event.thread is not None
    assert event.thread.path == "README.md"
    assert event.thread.line == 265
    assert event.thread.side == "RIGHT"
    assert event.thread.in_reply_to is None
    assert event.thread.review_id == 237895671
    assert event.comment_id == 284312630
    assert event.body == "Maybe you should use more emoji on this line."


def test_inline_reply_has_in_reply_to() -> None:
    payload = load("pull_request_review_comment.created")
    payload["comment"]["in_reply_to_id"] = 111
    event = parse_event("pull_request_review_comment", payload)
    assert isinstance(event, Comment)
    assert event.thread is not None
    assert event.thread.in_reply_to == 111


def test_review_thread_resolved() -> None:
    event = parse_event("pull_request_review_thread", load("pull_request_review_thread.resolved"))
    assert isinstance(event, ReviewThreadEvent)
    assert event.thread_node_id == "PRRT_kwDOFd42Pc4rQOUv"
    assert event.comment_ids == (284312630,)
    assert event.number == 2


def test_pull_request_closed_and_merged() -> None:
    payload = load("pull_request.closed")
    event = parse_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert event.number == 2
    assert not event.pull_request.merged
    assert event.installation_id == 1
    payload["pull_request"]["merged"] = True
    merged = parse_event("pull_request", payload)
    assert isinstance(merged, PullRequestEvent)
    assert merged.pull_request.merged


def test_pull_request_synchronize() -> None:
    event = parse_event("pull_request", load("pull_request.synchronize"))
    assert isinstance(event, PullRequestEvent)
    assert event.before == "f95f852bd8fca8fcc58a9a2d6c842781e32a215e"
    assert event.after == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


def test_fork_pull_request_is_not_same_repo() -> None:
    payload = load("pull_request.synchronize")
    payload["pull_request"]["head"]["repo"]["full_name"] = "someone/Hello-World"
    event = parse_event("pull_request", payload)
    assert isinstance(event, PullRequestEvent)
    assert not event.pull_request.same_repo(event.repo)
    payload["pull_request"]["head"]["repo"] = None  # the fork was deleted
    gone = parse_event("pull_request", payload)
    assert isinstance(gone, PullRequestEvent)
    assert gone.pull_request.head_repo is None
    assert not gone.pull_request.same_repo(gone.repo)


def test_installation_events_list_repositories() -> None:
    created = parse_event("installation", load("installation.created"))
    assert isinstance(created, InstallationEvent)
    assert created.installation_id == 957387
    assert [r.full_name for r in created.added] == ["Codertocat/Hello-World"]
    assert created.removed == ()
    assert created.account is not None
    assert created.account.login == "Codertocat"
    deleted = parse_event("installation", load("installation.deleted"))
    assert isinstance(deleted, InstallationEvent)
    assert [r.full_name for r in deleted.removed] == ["octocat/Hello-World"]
    assert deleted.added == ()
    added = parse_event("installation_repositories", load("installation_repositories.added"))
    assert isinstance(added, InstallationEvent)
    assert [r.full_name for r in added.added] == ["Codertocat/Space"]
    assert added.repository_selection == "selected"


def test_workflow_dispatch_inputs() -> None:
    event = parse_event("workflow_dispatch", load("workflow_dispatch"))
    assert isinstance(event, WorkflowDispatch)
    assert event.input("name") == "Mona the Octocat"
    assert event.input("prompt") is None
    assert event.ref == "refs/heads/master"
    assert event.repo.private


def test_workflow_dispatch_non_string_inputs_become_text() -> None:
    payload = load("workflow_dispatch")
    payload["inputs"] = {"flag": True, "count": 3, "nothing": None}
    event = parse_event("workflow_dispatch", payload)
    assert isinstance(event, WorkflowDispatch)
    assert event.inputs == (("count", "3"), ("flag", "true"), ("nothing", ""))


def test_ping() -> None:
    event = parse_event("ping", load("ping"))
    assert isinstance(event, Ping)
    assert event.hook_id == 109948940
    assert event.repo is not None
    assert event.repo.full_name == "Octocoders/Hello-World"
    bare = parse_event("ping", {"zen": "z", "hook_id": 1})
    assert isinstance(bare, Ping)
    assert bare.repo is None


@pytest.mark.parametrize(
    ("user", "is_bot"),
    [
        ({"login": "Codertocat", "id": 1, "type": "User"}, False),
        ({"login": "renovate[bot]", "id": 2, "type": "Bot"}, True),
        ({"login": "vibe-bot[bot]", "id": 3}, True),
        ({"login": "ci-robot", "id": 4, "type": "Bot"}, True),
    ],
)
def test_bots_are_recognised(user: dict[str, Any], is_bot: bool) -> None:
    payload = load("issue_comment.created")
    payload["sender"] = user
    event = parse_event("issue_comment", payload)
    assert isinstance(event, Comment)
    assert event.sender is not None
    assert event.sender.is_bot is is_bot


def test_unknown_event_and_action_are_unsupported() -> None:
    assert parse_event("star", {"action": "created"}) == Unsupported("star", "created")
    assert parse_event("issues", {**load("issues.opened"), "action": "transferred"}) == (
        Unsupported("issues", "transferred")
    )
    assert parse_event("star", [1, 2]) == Unsupported("star", None)


def _without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(payload)
    node: Any = out
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    del node[last]
    return out


@pytest.mark.parametrize(
    ("fixture", "path", "reason"),
    [
        ("issues.opened", "issue", "issue"),
        ("issues.opened", "issue.number", "issue.number"),
        ("issues.opened", "repository", "repository"),
        ("issues.opened", "repository.full_name", "repository.full_name"),
        ("issue_comment.created", "comment", "comment"),
        ("issue_comment.created", "comment.id", "comment.id"),
        ("issue_comment.created", "issue.number", "issue.number"),
        ("pull_request_review.submitted", "review.id", "review.id"),
        ("pull_request_review.submitted", "review.state", "review.state"),
        ("pull_request_review.submitted", "pull_request", "pull_request"),
        ("pull_request_review_comment.created", "comment.path", "comment.path"),
        ("pull_request_review_comment.created", "pull_request.number", "pull_request.number"),
        ("pull_request_review_thread.resolved", "thread", "thread"),
        ("pull_request.closed", "pull_request", "pull_request"),
        ("installation.created", "installation.id", "installation.id"),
        ("installation_repositories.added", "installation", "installation"),
        ("workflow_dispatch", "repository", "repository"),
        ("issues.opened", "action", "action"),
    ],
)
def test_missing_required_field_is_unparseable(fixture: str, path: str, reason: str) -> None:
    event = parse_event(event_name(fixture), _without(load(fixture), path))
    assert isinstance(event, Unparseable)
    assert reason in event.reason
    assert event.event == event_name(fixture)


@pytest.mark.parametrize(
    ("fixture", "path", "value"),
    [
        ("issues.opened", "issue.number", "1"),
        ("issues.opened", "issue.number", True),
        ("issues.opened", "issue", []),
        ("issues.opened", "repository", "Codertocat/Hello-World"),
        ("issue_comment.created", "comment.id", None),
        ("pull_request.closed", "pull_request.number", 2.5),
    ],
)
def test_wrong_type_for_required_field_is_unparseable(fixture: str, path: str, value: Any) -> None:
    payload = load(fixture)
    node: Any = payload
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    assert isinstance(parse_event(event_name(fixture), payload), Unparseable)


def test_optional_fields_may_be_missing_or_wrong() -> None:
    payload = load("issue_comment.created")
    payload["comment"]["body"] = None
    payload["comment"]["user"] = "not an object"
    payload["issue"]["labels"] = [None, 3, {"name": 7}, {"name": "ok"}]
    payload["issue"]["title"] = 12
    del payload["sender"]
    payload["repository"]["owner"] = None
    payload["repository"]["private"] = "yes"
    payload["installation"] = {"id": "1"}
    event = parse_event("issue_comment", payload)
    assert isinstance(event, Comment)
    assert event.body == ""
    assert event.author is None
    assert event.sender is None
    assert event.target.labels == ("ok",)
    assert event.target.title == ""
    assert event.repo.owner == "Codertocat"  # taken from full_name
    assert event.repo.private is False
    assert event.installation_id is None


@pytest.mark.parametrize("payload", [None, [], [1, 2], "text", 3, 2.5, True, {}, {"action": 5}])
@pytest.mark.parametrize("event", sorted(KNOWN_ACTIONS))
def test_garbage_payloads_never_raise(event: str, payload: Any) -> None:
    result = parse_event(event, payload)
    if event == "ping" and isinstance(payload, dict):
        assert isinstance(result, Ping)  # a ping needs nothing: ingest only answers it
    else:
        assert isinstance(result, Unparseable | Unsupported)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(event=st.sampled_from([*sorted(KNOWN_ACTIONS), "star"]), payload=json_values)
def test_any_json_value_parses_without_raising(event: str, payload: Any) -> None:
    parse_event(event, payload)


@settings(max_examples=300, deadline=None)
@given(
    fixture=st.sampled_from(sorted(EXPECTED)),
    key=st.sampled_from(
        ["issue", "comment", "review", "pull_request", "repository", "sender", "thread"]
    ),
    value=json_values,
)
def test_fixture_with_one_part_replaced_never_raises(fixture: str, key: str, value: Any) -> None:
    payload = load(fixture)
    payload[key] = value
    parse_event(event_name(fixture), payload)


def test_parse_pull_request_from_a_rest_object() -> None:
    raw = load("pull_request.closed")["pull_request"]
    pull = parse_pull_request(raw)
    assert pull.number == 2
    assert pull.head_repo == "Codertocat/Hello-World"
    with pytest.raises(ValueError, match=r"pull_request\.number"):
        parse_pull_request({"title": "no number"})


def test_events_are_frozen_and_hashable() -> None:
    event = parse_event("pull_request_review", load("pull_request_review.submitted"))
    assert isinstance(event, Comment)
    with pytest.raises(AttributeError):
        event.body = "changed"  # type: ignore[misc]
    assert hash(event) == hash(
        parse_event("pull_request_review", load("pull_request_review.submitted"))
    )


def test_thread_comment_ids_skip_malformed_entries() -> None:
    payload = load("pull_request_review_thread.resolved")
    payload["thread"]["comments"] = [{"id": True}, {"id": 5}, "x", {"id": "6"}, {"id": 7}]
    event = parse_event("pull_request_review_thread", payload)
    assert isinstance(event, ReviewThreadEvent)
    assert event.comment_ids == (5, 7)


def workflow_run_payload(action: str = "completed") -> dict[str, Any]:
    """A ``workflow_run`` delivery in GitHub's documented shape (trimmed), built on the
    octokit ``workflow_dispatch`` fixture's repository and sender."""
    base = load("workflow_dispatch")
    return {
        "action": action,
        "workflow_run": {
            "id": 30433642,
            "name": "vibe-runner",
            "display_title": "vibe task 7",
            "path": ".github/workflows/vibe-runner.yml",
            "run_attempt": 2,
            "event": "workflow_dispatch",
            "status": "completed" if action == "completed" else action,
            "conclusion": "failure" if action == "completed" else None,
            "html_url": "https://github.com/octo-org/octo-repo/actions/runs/30433642",
        },
        "workflow": {"id": 159038, "path": ".github/workflows/vibe-runner.yml"},
        "repository": base["repository"],
        "sender": base["sender"],
        "installation": {"id": 2311213},
    }


def test_workflow_run_completed() -> None:
    event = parse_event("workflow_run", workflow_run_payload())
    assert isinstance(event, WorkflowRun)
    assert (event.run_id, event.status, event.conclusion) == (30433642, "completed", "failure")
    assert event.title == "vibe task 7"
    assert event.workflow_path == ".github/workflows/vibe-runner.yml"
    assert event.run_attempt == 2
    assert event.installation_id == 2311213
    assert event.repo.full_name == load("workflow_dispatch")["repository"]["full_name"]


@pytest.mark.parametrize("action", ["requested", "in_progress"])
def test_workflow_run_before_completion_has_no_conclusion(action: str) -> None:
    event = parse_event("workflow_run", workflow_run_payload(action))
    assert isinstance(event, WorkflowRun)
    assert event.status == action
    assert event.conclusion is None


def test_workflow_run_is_lenient_about_optional_fields() -> None:
    payload = workflow_run_payload()
    run = payload["workflow_run"]
    run["display_title"] = None
    run["conclusion"] = 3
    run["run_attempt"] = "2"
    del run["path"], run["html_url"]
    event = parse_event("workflow_run", payload)
    assert isinstance(event, WorkflowRun)
    assert (event.title, event.conclusion, event.run_attempt) == ("", None, None)
    assert event.workflow_path is None
    assert event.html_url is None


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("workflow_run", None, "workflow_run"),
        ("workflow_run.id", "30433642", "workflow_run.id"),
        ("workflow_run.id", True, "workflow_run.id"),
        ("workflow_run.status", "", "workflow_run.status"),
        ("repository", None, "repository"),
    ],
)
def test_workflow_run_without_what_the_executor_needs_is_unparseable(
    path: str, value: Any, reason: str
) -> None:
    payload = workflow_run_payload()
    node: Any = payload
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    event = parse_event("workflow_run", payload)
    assert isinstance(event, Unparseable)
    assert reason in event.reason


def test_workflow_run_other_actions_are_unsupported() -> None:
    assert not is_supported("workflow_run", "deleted")
    assert parse_event("workflow_run", workflow_run_payload("deleted")) == Unsupported(
        "workflow_run", "deleted"
    )
