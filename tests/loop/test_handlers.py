"""The event job around the loop: a failure before any iteration still ends with a visible,
redacted reply (DESIGN.md section 5). Driven with a recorded GitHub payload and an
in-memory repository that keeps what the bot posted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.agent.adapter import ClaudeAgent
from bot.context.adapter import ProjectContext
from bot.core import events as ev
from bot.core.config import RepoConfig
from bot.core.markers import Marker
from bot.jobs.queue import JobContext, PermanentError
from bot.loop.env import Env
from bot.loop.handlers import Repository, Wiring, handle
from bot.loop.ports import IssueText, PullInfo, ReviewNote
from bot.sandbox.bwrap import make_sandbox
from bot.settings import Settings, load_settings
from bot.store.engine import init_db, make_engine
from bot.workspace.checkout import GitWorkspaces
from bot.workspace.git import GitCredentials, WorkspaceCache
from tests.conftest import FIXTURES

TOKEN = "ghp_" + "b" * 36


class BrokenIssues:
    """A repository whose issue cannot be read; records comments and reactions."""

    repo = "Codertocat/Hello-World"

    def __init__(self) -> None:
        self.comments: dict[str, str] = {}
        self.reactions: list[tuple[int, int | None, str]] = []

    def permission(self, login: str) -> str:
        return "write" if login == "Codertocat" else "read"

    def pull_request(self, number: int) -> ev.PullRequest | None:
        return None

    def clone_url(self) -> str:
        return "https://example.invalid/Codertocat/Hello-World.git"

    def git_credentials(self) -> GitCredentials | None:
        return None

    def default_branch(self) -> str:
        return "main"

    def read_file(self, path: str, ref: str) -> str | None:
        return None

    def issue_text(self, number: int) -> IssueText:
        raise PermanentError(f"GET issue {number}: 403 with token {TOKEN}")

    def pull(self, number: int) -> PullInfo | None:
        return None

    def react(self, number: int, comment_id: int | None, content: str) -> None:
        self.reactions.append((number, comment_id, content))

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int:
        self.comments[mark.render()] = body
        return len(self.comments)

    def find_or_create_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> int:
        raise AssertionError("no PR may be opened")

    def update_pr_body(self, number: int, body: str) -> None:
        raise AssertionError("no PR exists")

    def request_review(self, number: int, login: str) -> None:
        raise AssertionError("no PR exists")

    def reply_in_thread(self, pr: int, comment_id: int, body: str) -> int:
        raise AssertionError("no thread exists")

    def resolve_thread(self, pr: int, comment_id: int) -> None:
        raise AssertionError("no thread exists")

    def review_notes(self, pr: int, review_id: int) -> list[ReviewNote]:
        return []


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    init_db(eng)
    yield eng
    eng.dispose()


def _wiring(settings: Settings, repo: BrokenIssues, tmp_path: Path) -> Wiring:
    sandbox = make_sandbox(settings)

    def env(ctx: JobContext, repository: Repository) -> Env:
        return Env(
            settings=settings,
            engine=ctx.engine,
            forge=repository,
            prs=repository,
            workspaces=GitWorkspaces(
                WorkspaceCache(tmp_path / "ws"),
                repository.repo,
                repository.clone_url(),
                repository.git_credentials,
                lambda ref: RepoConfig(),
            ),
            agent=ClaudeAgent(settings, sandbox, None, "test"),
            sandbox=sandbox,
            context=ProjectContext(2000),
        )

    return Wiring(lambda _repo, _inst: repo, env)


def test_a_permanent_failure_before_any_iteration_gets_a_redacted_reply(
    tmp_path: Path, engine: Engine
) -> None:
    settings = load_settings(data_dir=tmp_path, bot_login="vibe-bot[bot]", max_attempts=3)
    payload = json.loads((FIXTURES / "webhooks" / "issues.labeled.json").read_text())
    payload["label"]["name"] = "vibe"
    repo = BrokenIssues()
    ctx = JobContext(
        job_id=1,
        kind="event",
        payload={},
        attempt=1,
        settings=settings,
        engine=engine,
        cancel=threading.Event(),
        delivery_id="d-1",
        event_name="issues",
        event_payload=payload,
    )
    with pytest.raises(PermanentError):
        handle(ctx, _wiring(settings, repo, tmp_path))
    (body,) = repo.comments.values()
    assert "vibe-bot failed: PermanentError: GET issue 1: 403" in body
    assert TOKEN not in body
    assert (1, None, "eyes") in repo.reactions


def test_a_job_without_its_delivery_is_refused(tmp_path: Path, engine: Engine) -> None:
    settings = load_settings(data_dir=tmp_path)
    ctx = JobContext(1, "event", {}, 1, settings, engine, threading.Event())
    with pytest.raises(PermanentError, match="no stored delivery"):
        handle(ctx, _wiring(settings, BrokenIssues(), tmp_path))
