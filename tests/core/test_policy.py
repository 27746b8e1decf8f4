"""Policy: who may make the bot do what, and which lane a job runs in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.core.events import Event, parse_event
from bot.core.policy import serial_key

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
BOT = "vibe-bot[bot]"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text())
    return data


def comment(body: str, fixture: str = "issue_comment.created") -> Event:
    payload = load(fixture)
    payload["comment"]["body"] = body
    return parse_event(fixture.split(".")[0], payload)


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (parse_event("issues", load("issues.labeled")), "Codertocat/Hello-World#1"),
        (comment("hello"), "Codertocat/Hello-World#1"),
        (comment("/vibe fix it"), "Codertocat/Hello-World#1"),
        (comment("/vibe stop"), "Codertocat/Hello-World#1/control"),
        (comment("/vibe status"), "Codertocat/Hello-World#1/control"),
        (comment("@vibe-bot stop"), "Codertocat/Hello-World#1/control"),
        (comment("/vibe stop now"), "Codertocat/Hello-World#1"),
        (comment("/vibe retry\n/vibe stop"), "Codertocat/Hello-World#1"),
        (comment("```\n/vibe stop\n```"), "Codertocat/Hello-World#1"),
        (
            comment("/vibe stop", "issue_comment.created.on-pull-request"),
            "Codertocat/Hello-World#1/control",
        ),
        (
            parse_event("pull_request_review", load("pull_request_review.submitted")),
            "Codertocat/Hello-World#2",
        ),
        (
            parse_event("pull_request_review_comment", load("pull_request_review_comment.created")),
            "Codertocat/Hello-World#2",
        ),
        (
            parse_event("pull_request_review_thread", load("pull_request_review_thread.resolved")),
            "Codertocat/Hello-World#2",
        ),
        (parse_event("pull_request", load("pull_request.closed")), "Codertocat/Hello-World#2"),
        (parse_event("installation", load("installation.created")), None),
        (parse_event("ping", load("ping")), None),
        (parse_event("workflow_dispatch", load("workflow_dispatch")), None),
        (parse_event("check_run", load("check_run.completed")), None),
        (parse_event("issues", []), None),
    ],
)
def test_serial_key(event: Event, key: str | None) -> None:
    assert serial_key(event, BOT) == key


def test_serial_key_without_bot_login_still_sees_slash_vibe() -> None:
    assert serial_key(comment("/vibe stop")) == "Codertocat/Hello-World#1/control"
    assert serial_key(comment("@vibe-bot stop")) == "Codertocat/Hello-World#1"
