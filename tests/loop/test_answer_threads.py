"""Answering review threads after the push: a thread GitHub will not let the bot resolve
(``resolveReviewThread`` needs Contents: write) or answer is a warning in the status
comment; the iteration still succeeds and the other threads are answered."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from bot.core.config import RepoConfig
from bot.core.forge import ReviewNote
from bot.core.render import Final
from bot.core.tasks import Feedback, Usage
from bot.github.retry import GitHubRequestError
from bot.loop.env import Env
from bot.loop.iteration import _answer_threads
from bot.loop.status import StatusBoard
from bot.settings import load_settings
from tests.loop.test_status import TASK, RecordingForge

FORBIDDEN = "resolve a review thread: Resource not accessible by integration"


class Threads:
    """Pull requests whose threads can be answered but not resolved; keeps the replies."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = []

    def find_or_create_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> int:
        return 1

    def update_pr_body(self, number: int, body: str) -> None:
        return None

    def request_review(self, number: int, login: str) -> None:
        return None

    def reply_in_thread(self, pr: int, comment_id: int, body: str) -> int:
        if comment_id == 404:
            raise GitHubRequestError(404, "reply in a thread: Not Found")
        self.replies.append((comment_id, body))
        return len(self.replies)

    def resolve_thread(self, pr: int, comment_id: int) -> None:
        raise GitHubRequestError(200, FORBIDDEN)

    def review_notes(self, pr: int, review_id: int) -> list[ReviewNote]:
        return []


def test_a_thread_not_resolved_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    forge = RecordingForge()
    threads = Threads()
    unused = cast(Any, None)
    env = Env(
        settings=load_settings(data_dir=tmp_path, bot_login="vibe-bot[bot]"),
        tasks=unused,
        forge=forge,
        prs=threads,
        workspaces=unused,
        agent=unused,
        sandbox=unused,
        context=unused,
    )
    board = StatusBoard(forge, TASK, 2, TASK.number, interval=0.0)
    feedback = (
        Feedback("human", "rename x", author="ann", path="a.py", line=40, comment_id=7),
        Feedback("human", "gone", author="ann", path="b.py", line=3, comment_id=404),
    )
    _answer_threads(env, 5, feedback, "abcdef1234", RepoConfig(resolve_threads=True), board)
    board.finish(Final("succeeded", 1.0, Usage()))
    assert [c for c, _ in threads.replies] == [7]
    status = forge.sent[-1][2]
    assert "Review threads" in status
    assert "a.py:40" in status
    assert "Resource not accessible by integration" in status
    assert "b.py:3" in status
