"""The event job around the loop and the table of decisions: a failure before any iteration
still ends with a visible, redacted reply (DESIGN.md section 5); every decision has its
handler; a decision that runs the agent goes to the executor the wiring chose. Driven with
recorded GitHub payloads and an in-memory repository that keeps what the bot posted."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from sqlalchemy.engine import Engine

from bot.bootstrap import ServiceWiring, job_verdict
from bot.core import events as ev
from bot.core import policy as pol
from bot.core.config import RepoConfig
from bot.core.forge import IssueText, PullInfo, ReviewNote
from bot.core.markers import Marker
from bot.github.retry import GitHubRequestError
from bot.ingest.deliveries import UnknownDelivery, stored_delivery
from bot.jobs.queue import Dead, Verdict
from bot.loop.env import Env
from bot.loop.handlers import HANDLERS, IN_PROCESS, EventJob, Repository, handle
from bot.loop.ports import Executor, TaskStore, Work
from bot.settings import Settings, load_settings
from bot.store.engine import init_db, make_engine
from bot.workspace.git import GitCredentials
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

    def git_credentials(self, fresh: bool = False) -> GitCredentials | None:
        return None

    def default_branch(self) -> str:
        return "main"

    def read_file(self, path: str, ref: str) -> str | None:
        return None

    def issue_text(self, number: int) -> IssueText:
        raise GitHubRequestError(403, f"GET issue {number}: with token {TOKEN}")

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


@dataclass
class Elsewhere:
    """An executor that keeps the work it was given instead of doing it."""

    works: list[Work] = field(default_factory=list)

    def run(self, work: Work, here: Callable[[], str]) -> str:
        self.works.append(work)
        return "elsewhere"


class Wired:
    """The service's wiring (bootstrap) with the repository and the executor replaced."""

    def __init__(self, settings: Settings, repo: BrokenIssues, executor: Executor) -> None:
        self.service = ServiceWiring(settings)
        self.repo = repo
        self.chosen = executor

    def tasks(self, job: EventJob) -> TaskStore:
        return self.service.tasks(job)

    def repository(self, repo: ev.Repo, installation_id: int | None) -> Repository:
        return self.repo

    def env(self, job: EventJob, repository: Repository) -> Env:
        return self.service.env(job, repository)

    def executor(self, job: EventJob, config: RepoConfig) -> Executor:
        return self.chosen

    def follow_run(self, job: EventJob, run: ev.WorkflowRun) -> str:
        return "ignored"

    def judge(self, exc: Exception) -> Verdict:
        return self.service.judge(exc)


def _job(settings: Settings, engine: Engine, event: str, payload: dict[str, Any]) -> EventJob:
    return EventJob(event, payload, "d-1", 1, 1, threading.Event(), settings, engine)


def _labeled() -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        (FIXTURES / "webhooks" / "issues.labeled.json").read_text()
    )
    payload["label"]["name"] = "vibe"
    return payload


def test_a_permanent_failure_before_any_iteration_gets_a_redacted_reply(
    tmp_path: Path, engine: Engine
) -> None:
    settings = load_settings(data_dir=tmp_path, bot_login="vibe-bot[bot]", max_attempts=3)
    repo = BrokenIssues()
    job = _job(settings, engine, "issues", _labeled())
    with pytest.raises(GitHubRequestError):
        handle(job, Wired(settings, repo, IN_PROCESS))
    (body,) = repo.comments.values()
    # Issue 14: a sentence for the reader and a reference to the logged detail.
    assert (
        "vibe-bot failed: GitHub refused a request (HTTP 403); the operator finds the details "
        "in the logs under `d-1`" in body
    )
    assert TOKEN not in body
    assert "GitHubRequestError" not in body
    assert (1, None, "eyes") in repo.reactions


def test_a_job_without_its_delivery_is_dead(engine: Engine) -> None:
    with pytest.raises(UnknownDelivery, match="no stored delivery") as err:
        stored_delivery(engine, "never-stored")
    assert isinstance(job_verdict(err.value), Dead)


@pytest.mark.parametrize("kind", [*get_args(pol.Action), pol.Refusal], ids=lambda k: k.__name__)
def test_every_decision_has_a_handler(kind: type[Any]) -> None:
    assert kind in HANDLERS


def test_a_run_goes_to_the_chosen_executor_and_a_reply_does_not(
    tmp_path: Path, engine: Engine
) -> None:
    settings = load_settings(data_dir=tmp_path, bot_login="vibe-bot[bot]")
    repo, elsewhere = BrokenIssues(), Elsewhere()
    wiring = Wired(settings, repo, elsewhere)
    payload = _labeled()
    assert handle(_job(settings, engine, "issues", payload), wiring) == "elsewhere"
    (work,) = elsewhere.works
    assert (work.repo, work.number, work.key) == (repo.repo, 1, "delivery:d-1")
    assert (work.event_name, work.payload) == ("issues", payload)
    assert repo.comments == {}  # the executor did the work, not this job

    comment = json.loads((FIXTURES / "webhooks" / "issue_comment.created.json").read_text())
    comment["comment"]["body"] = "/vibe help"
    assert handle(_job(settings, engine, "issue_comment", comment), wiring) == "help"
    (reply,) = repo.comments.values()
    assert "vibe-bot commands" in reply
    assert len(elsewhere.works) == 1
