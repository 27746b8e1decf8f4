"""The loop's Workspaces port over the mirror cache and worktrees (:mod:`bot.workspace.git`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog

from bot.core.config import RepoConfig
from bot.core.errors import Declined
from bot.workspace.git import (
    AuthenticationFailed,
    GitCredentials,
    Identity,
    UndoRefused,
    Workspace,
    WorkspaceCache,
    WorkspaceError,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Git credentials for one fetch or push, taken when it starts: an installation token lives
# an hour and may be handed out with minutes left, so one taken when the workspace opened
# can be dead by the time an iteration pushes. ``fresh`` (the argument) drops the cached
# token first, after the remote refused it.
Credentials = Callable[[bool], GitCredentials | None]


BOT_IDENTITY = Identity("vibe-bot", "vibe-bot@users.noreply.github.com")


def person(login: str) -> Identity | None:
    """The ``Co-authored-by`` identity of a GitHub login (its noreply address)."""
    try:
        return Identity(login, f"{login}@users.noreply.github.com")
    except WorkspaceError:
        return None


def with_credentials(credentials: Credentials, action: Callable[[GitCredentials | None], T]) -> T:
    """Run one fetch or push with credentials taken as it starts; if the remote refuses
    them (401: the token expired or was revoked meanwhile), once more with a fresh token."""
    try:
        return action(credentials(False))
    except AuthenticationFailed as exc:
        log.info("workspace.credentials_refused", reason=str(exc))
        return action(credentials(True))


class _Checkout:
    """:class:`bot.loop.ports.Checkout` over a :class:`bot.workspace.git.Workspace`."""

    def __init__(
        self,
        ws: Workspace,
        credentials: Credentials,
        config: Callable[[], RepoConfig],
        co_author: Identity | None,
    ) -> None:
        self.ws = ws
        self.path = ws.path
        self.credentials = credentials
        self.config = config
        self.co_authors = [co_author] if co_author is not None else []

    def head(self) -> str:
        return self.ws.head()

    def commit(self, message: str) -> str | None:
        return self.ws.commit(message, author=BOT_IDENTITY, co_authors=self.co_authors)

    def discard(self) -> None:
        self.ws.discard()

    def publish(self) -> None:
        config = self.config()
        with_credentials(self.credentials, lambda creds: self.ws.push(creds, config))

    def revert_since(self, sha: str, message: str) -> str | None:
        try:
            return self.ws.undo(
                sha, author=BOT_IDENTITY, co_authors=self.co_authors, message=message
            )
        except UndoRefused as exc:  # e.g. a person's commit in the range: say so, do nothing
            raise Declined(str(exc)) from exc

    def close(self) -> None:
        self.ws.close()


class GitWorkspaces:
    """:class:`bot.loop.ports.Workspaces` over the mirror cache, for one repository.

    ``url`` is the clone URL (https for GitHub, ``file://`` for a local checkout);
    ``credentials`` is called as each fetch (at open) and each push starts, so an
    installation token is fresh when git uses it."""

    def __init__(
        self,
        cache: WorkspaceCache,
        repo: str,
        url: str,
        credentials: Credentials,
        config: Callable[[str], RepoConfig],
    ) -> None:
        self.cache = cache
        self.repo = repo
        self.url = url
        self.credentials = credentials
        self.config = config

    def open(self, branch: str, base: str, *, shared: bool, requester: str) -> _Checkout:
        ws = with_credentials(
            self.credentials,
            lambda creds: self.cache.prepare(
                self.repo,
                self.url,
                branch=branch,
                default_branch=base,
                credentials=creds,
                shared_branch=shared,
            ),
        )
        return _Checkout(ws, self.credentials, lambda: self.config(base), person(requester))
