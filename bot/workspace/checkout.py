"""The loop's Workspaces port over the mirror cache and worktrees (:mod:`bot.workspace.git`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import structlog

from bot.core.branches import BRANCH_PREFIX
from bot.core.config import RepoConfig
from bot.core.errors import Declined
from bot.core.tasks import CommitStat
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

    def commit_stat(self, sha: str) -> CommitStat:
        return self.ws.commit_stat(sha)

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

    def changed_paths(self, since: str) -> list[str]:
        return self.ws.changed_paths(since)

    def adopt(self, sha: str) -> str:
        return self.ws.adopt(sha)

    def take_tree(self, sha: str, message: str) -> str | None:
        return self.ws.take_tree(sha, message, author=BOT_IDENTITY, co_authors=self.co_authors)

    def close(self) -> None:
        self.ws.close()


class _PullCheckout:
    """:class:`bot.loop.ports.PullCheckout` over a :class:`bot.workspace.git.Workspace`."""

    def __init__(self, ws: Workspace, base: str) -> None:
        self.ws = ws
        self.path = ws.path
        self.base = base

    def head(self) -> str:
        return self.ws.head()

    def diff(self) -> str:
        # A PR's diff is three-dot: from the merge base to the head
        # (https://docs.github.com/en/pull-requests/collaborating-with-pull-requests/proposing-changes-to-your-work-with-pull-requests/about-comparing-branches-in-pull-requests#three-dot-and-two-dot-git-diff-comparisons).
        # No external diff or textconv: a repository's attributes must not run anything.
        base = self.ws.git("merge-base", f"refs/remotes/origin/{self.base}", "HEAD").strip()
        return self.ws.git(
            "diff", "--no-color", "--no-ext-diff", "--no-textconv", "-U3", "-M", base, "HEAD"
        )

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

    def open(
        self, branch: str, base: str, *, shared: bool, requester: str, start: str | None = None
    ) -> _Checkout:
        ws = with_credentials(
            self.credentials,
            lambda creds: self.cache.prepare(
                self.repo,
                self.url,
                branch=branch,
                default_branch=base,
                credentials=creds,
                shared_branch=shared,
                start=start,
            ),
        )
        return _Checkout(ws, self.credentials, lambda: self.config(base), person(requester))

    def open_pull(self, number: int, base: str, head_ref: str | None) -> _PullCheckout:
        """A PR's head to read: its branch here (``head_ref``) or, for a fork's PR, GitHub's
        ``refs/pull/<number>/head`` on a local ``vibe/review/<number>`` branch that is
        never pushed."""
        branch = head_ref or f"{BRANCH_PREFIX}review/{number}"
        ws = with_credentials(
            self.credentials,
            lambda creds: self.cache.prepare(
                self.repo,
                self.url,
                branch=branch,
                default_branch=base,
                credentials=creds,
                pr_number=None if head_ref else number,
                shared_branch=head_ref is not None,
            ),
        )
        return _PullCheckout(ws, base)

    def drop_branches(self, names: Sequence[str], base: str) -> list[str]:
        """Delete the bot's branches ``names`` on the remote (best-of-N attempts whose time
        is over); returns those deleted."""
        return with_credentials(
            self.credentials,
            lambda creds: self.cache.delete_branches(
                self.repo,
                self.url,
                names,
                credentials=creds,
                default_branch=base,
                author=BOT_IDENTITY,
            ),
        )
