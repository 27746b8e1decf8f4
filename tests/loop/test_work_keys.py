"""What the loop keys work by, and what closing an issue decides.

One comment is one piece of work under any delivery id (a repository webhook and the App
both configured, a replay under a new id), as a review is one under its review id; an
edit of a comment is new work only as a new edit. Closing the issue ends its task in the
control lane (so it stops a running iteration), abandoned unless the task's PR was merged
(GitHub closes the issue a merged PR "Fixes": the normal end). End to end:
tests/e2e/test_loop_faults.py."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.core.config import RepoConfig
from bot.core.events import PullRequest, parse_event, parse_pull_request
from bot.core.policy import (
    Abandon,
    Accept,
    BotIdentity,
    Ignore,
    NeedsPullRequest,
    TaskView,
    serial_key,
)
from bot.core.policy import decide as policy_decide
from bot.loop.handlers import EventJob, work_key
from bot.settings import load_settings
from tests.conftest import FIXTURES

BOT = BotIdentity(login="vibe-bot[bot]")


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "webhooks" / f"{name}.json").read_text())
    return data


def _key(tmp_path: Path, event: str, payload: dict[str, Any], delivery: str) -> str:
    settings = load_settings(data_dir=tmp_path)
    job = EventJob(event, payload, delivery, 1, 1, threading.Event(), settings, None)  # type: ignore[arg-type]
    return work_key(job)


@pytest.mark.parametrize(
    "name",
    [
        "issue_comment.created",
        "issue_comment.created.on-pull-request",
        "pull_request_review_comment.created",
    ],
)
def test_a_comment_is_one_piece_of_work_under_any_delivery_id(tmp_path: Path, name: str) -> None:
    event = name.split(".")[0]
    payload = _load(name)
    first = _key(tmp_path, event, payload, "d-1")
    again = _key(tmp_path, event, {k: v for k, v in payload.items() if k != "installation"}, "d-2")
    assert first == again == f"comment:{payload['comment']['id']}"


def test_a_review_is_keyed_by_its_id(tmp_path: Path) -> None:
    payload = _load("pull_request_review.submitted")
    keys = {_key(tmp_path, "pull_request_review", payload, d) for d in ("d-1", "d-2")}
    assert keys == {f"review:{payload['review']['id']}"}


def test_each_edit_of_a_comment_is_its_own_work(tmp_path: Path) -> None:
    payload = _load("issue_comment.edited")
    first = _key(tmp_path, "issue_comment", payload, "d-1")
    assert first == _key(tmp_path, "issue_comment", payload, "d-2")  # the same edit twice
    later = json.loads(json.dumps(payload))
    later["comment"]["updated_at"] = "2031-01-01T00:00:00Z"
    assert _key(tmp_path, "issue_comment", later, "d-3") not in (first, "")
    assert first.startswith(f"comment:{payload['comment']['id']}@")


def test_other_events_are_keyed_by_their_delivery(tmp_path: Path) -> None:
    assert _key(tmp_path, "issues", _load("issues.labeled"), "d-9") == "delivery:d-9"


def _closed() -> Any:
    payload = _load("issues.labeled")
    payload["action"] = "closed"
    payload["issue"]["state"] = "closed"
    return parse_event("issues", payload)


def _decide(task: TaskView | None, pull: PullRequest | None = None) -> object:
    return policy_decide(
        _closed(),
        permission=None,
        repo_config=RepoConfig(),
        bot=BOT,
        recent_runs=0,
        task=task,
        pull_request=pull,
    )


def _pull(merged: bool) -> PullRequest:
    raw = _load("pull_request.closed")["pull_request"]
    raw["merged"] = merged
    return parse_pull_request(raw)


def test_closing_the_issue_abandons_its_task_in_the_control_lane() -> None:
    event = _closed()
    assert serial_key(event) == f"{event.repo.full_name}#{event.number}/control"
    decision = _decide(TaskView())
    assert isinstance(decision, Abandon)
    assert decision.issue_closed
    assert decision.reason == f"the issue was closed by @{event.sender.login}"


def test_closing_the_issue_after_its_pr_merged_accepts_the_task() -> None:
    assert _decide(TaskView(pr_number=2)) == NeedsPullRequest(2)
    assert isinstance(_decide(TaskView(pr_number=2), _pull(merged=True)), Accept)
    assert isinstance(_decide(TaskView(pr_number=2), _pull(merged=False)), Abandon)


def test_closing_an_issue_without_a_live_task_does_nothing() -> None:
    assert isinstance(_decide(None), Ignore)
    assert isinstance(_decide(TaskView(ended=True)), Ignore)
