"""The PR's status comment and iteration log link to the task's console page when the
service's public address (``VIBE_PUBLIC_URL``) is set, and say nothing of it otherwise."""

from __future__ import annotations

from bot.core.render import Final, Phase, console_link, render_pr_body, render_status
from bot.core.tasks import IterationRecord, State, TaskRecord, Usage

TASK = TaskRecord(
    id=42,
    repo="octo/demo",
    number=9,
    model="conversational",
    state=State.AWAITING_FEEDBACK,
    branch="vibe/issue-9-x",
    base="main",
    requester="ann",
    title="x",
    instruction="y",
    iterations=(IterationRecord(1, "label"),),
)
LINE = "[The task in the console](https://bot.example.com/console/tasks/42): every step, live."


def test_console_link_joins_the_public_address_and_the_task() -> None:
    assert console_link(None, 42) is None
    assert console_link("", 42) is None
    assert (
        console_link("https://bot.example.com/", 42) == "https://bot.example.com/console/tasks/42"
    )
    assert console_link("https://h.example/vibe", 7) == "https://h.example/vibe/console/tasks/7"


def test_status_comment_and_iteration_log_carry_the_link() -> None:
    link = console_link("https://bot.example.com", TASK.id)
    phases = [Phase("Agent working", "running", "step 1")]
    live = render_status(TASK.id, 1, TASK.model, phases, link=link)
    done = render_status(
        TASK.id, 1, TASK.model, phases, Final("succeeded", 1.0, Usage(1, 1, 0.1)), link=link
    )
    body = render_pr_body(TASK, "Changed add.", link=link)
    for text in (live, done, body):
        assert LINE in text
    # After the final line and the iteration log's total, before the marker.
    assert done.index("**Done**") < done.index(LINE) < done.index("<!--")
    assert body.index("## Iterations") < body.index(LINE) < body.index("<!--")


def test_without_a_public_address_there_is_no_link() -> None:
    phases = [Phase("Agent working", "running")]
    assert "console" not in render_status(TASK.id, 1, TASK.model, phases)
    assert "console" not in render_pr_body(TASK, "Changed add.")
