"""Fixtures for the Actions tests: the fake GitHub with workflow runs, a live service."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import uvicorn
from fastapi import FastAPI
from github import Auth, Github
from sqlalchemy.engine import Engine

from bot.core.markers import Marker, carries
from bot.github import GitHub, RetrySettings, StaticToken
from bot.github.actions import RepoActions
from bot.store.engine import init_db, make_engine
from bot.store.tables import utcnow
from bot.testing.fake_actions import FakeActions
from bot.testing.fake_github import FakeGitHub

ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/widgets"
RUNNER_TEMPLATE = (ROOT / "workflows" / "vibe-runner.yml").read_text()


@contextlib.contextmanager
def serve(app: FastAPI, *, lifespan: Literal["on", "off"] = "off") -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a thread; yield its base URL.
    ``lifespan="on"`` runs the app's start-up (the service's in-process workers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan=lifespan)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@dataclass
class World:
    fake: FakeGitHub
    actions: FakeActions
    token: str  # a writer's personal token: the executor's GitHub identity in these tests

    def hub(self, token: str | None = None) -> GitHub:
        """The GitHub adapter as ``token`` (the writer's by default), without write pacing."""
        return GitHub(
            StaticToken(token or self.token),
            api_url=self.fake.api_url,
            retry=RetrySettings(min_write_interval=0.0),
        )

    def actions_api(self, repo: str) -> RepoActions:
        """The adapter's Actions calls for ``repo``, as the executor makes them."""
        return RepoActions(self.hub().repo(repo))

    def client(self) -> Github:
        return Github(
            auth=Auth.Token(self.token),
            base_url=self.fake.api_url,
            seconds_between_requests=None,
            seconds_between_writes=None,
            retry=0,
        )


@pytest.fixture
def world() -> Iterator[World]:
    with FakeGitHub() as fake:
        fake.create_repo(
            REPO,
            {"README.md": "# widgets\n", ".github/workflows/vibe-runner.yml": RUNNER_TEMPLATE},
            collaborators={"alice": "write", "rita": "read"},
        )
        actions = FakeActions.attach(fake, fake.app)
        yield World(fake, actions, fake.user_token("alice"))


class Clock:
    """A settable clock for the executor (credential expiry, deadlines)."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    init_db(engine)
    yield engine
    engine.dispose()


def comment_reporter(world: World) -> Any:
    """The executor's reporter over the fake: one comment per marker, edited in place."""

    def report(repo: str, number: int, mark: Marker, body: str) -> None:
        issue = world.client().get_repo(repo).get_issue(number)
        text = f"{body}\n\n{mark.render()}"
        for comment in issue.get_comments():
            if carries(comment.body, mark):
                comment.edit(text)
                return
        issue.create_comment(text)

    return report
