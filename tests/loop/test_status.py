"""The status comment: throttled live updates, a final line that always lands last."""

from __future__ import annotations

import threading
import time

from bot.core.forge import IssueText, PullInfo
from bot.core.markers import Marker, find_marker
from bot.core.render import Final
from bot.core.tasks import State, TaskRecord, Usage
from bot.loop.status import StatusBoard


class RecordingForge:
    """Keeps every comment body it was sent, per marker, in order."""

    repo = "octo/demo"

    def __init__(self) -> None:
        self.sent: list[tuple[int, str, str]] = []
        self.lock = threading.Lock()

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int:
        with self.lock:
            self.sent.append((number, mark.render(), body))
        return 1

    def default_branch(self) -> str:
        return "main"

    def read_file(self, path: str, ref: str) -> str | None:
        return None

    def issue_text(self, number: int) -> IssueText:
        return IssueText("t", "b")

    def pull(self, number: int) -> PullInfo | None:
        return None

    def react(self, number: int, comment_id: int | None, content: str) -> None:
        return None


TASK = TaskRecord(
    id=3,
    repo="octo/demo",
    number=9,
    model="conversational",
    state=State.WORKING,
    branch="vibe/issue-9-x",
    base="main",
    requester="ann",
    title="x",
    instruction="y",
)


def test_updates_are_throttled_and_the_last_change_is_not_lost() -> None:
    forge = RecordingForge()
    board = StatusBoard(forge, TASK, 1, 9, interval=0.3, secrets=["hunter2hunter2"])
    board.phase("Workspace", "running")
    for step in range(20):
        board.phase("Agent working", "running", f"step {step}")
    assert len(forge.sent) == 1  # the first change goes out at once, the rest wait
    time.sleep(0.35)
    board.flush()
    assert len(forge.sent) == 2
    assert "step 19" in forge.sent[-1][2]
    board.flush()
    assert len(forge.sent) == 2  # nothing new, nothing sent


def test_final_line_lands_last_and_stops_later_flushes() -> None:
    forge = RecordingForge()
    board = StatusBoard(forge, TASK, 2, 9, interval=0.0)
    board.phase("Agent working", "running")
    board.finish(Final("failed", 1.5, Usage(10, 2, 0.01), reason="boom hunter2hunter2"))
    board.phase("Checks", "running")
    board.flush(force=True)
    number, mark, body = forge.sent[-1]
    assert number == 9
    assert "Failed" in body
    assert "- [ ] ❌ Agent working" in body
    assert "_Working" not in body
    found = find_marker(mark, "status")
    assert found is not None
    assert found.get("task") == "3"
    assert {m for _, m, _ in forge.sent} == {mark}
