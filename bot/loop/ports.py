"""What the refinement loop needs from the outside world, declared by the loop itself.

STYLE.md item 5: the consumer declares only what it uses. :mod:`bot.loop` is written
against these protocols; :mod:`bot.adapters` implements them over the GitHub adapter,
the workspace, the sandbox, the agent and the context engine, and :mod:`bot.local`
implements the forge and the workspace for ``vibe run`` on a local checkout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from bot.core.config import RepoConfig
from bot.core.markers import Marker
from bot.loop.strategies.base import AgentOutcome


@dataclass(frozen=True)
class PullInfo:
    """An existing PR as the loop needs it (``/vibe`` on a PR the bot did not open)."""

    number: int
    title: str
    body: str
    head_ref: str
    base_ref: str
    same_repo: bool
    author: str | None


@dataclass(frozen=True)
class IssueText:
    title: str
    body: str
    comments: tuple[str, ...] = ()


class Forge(Protocol):
    """Where the conversation happens for one repository: GitHub, or the terminal in
    local mode. Pull requests are a separate port (:class:`PullRequests`)."""

    repo: str

    def default_branch(self) -> str: ...

    def read_file(self, path: str, ref: str) -> str | None: ...

    def issue_text(self, number: int) -> IssueText: ...

    def pull(self, number: int) -> PullInfo | None: ...

    def react(self, number: int, comment_id: int | None, content: str) -> None: ...

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int: ...


@dataclass(frozen=True)
class ReviewNote:
    """One inline comment of a review: where it sits and what it says."""

    comment_id: int
    path: str
    line: int | None
    body: str
    author: str | None


class PullRequests(Protocol):
    """Pull requests on the code host; absent in local mode."""

    def find_or_create_pr(
        self, head: str, base: str, title: str, body: str, draft: bool
    ) -> int: ...

    def update_pr_body(self, number: int, body: str) -> None: ...

    def request_review(self, number: int, login: str) -> None: ...

    def reply_in_thread(self, pr: int, comment_id: int, body: str) -> int: ...

    def resolve_thread(self, pr: int, comment_id: int) -> None: ...

    def review_notes(self, pr: int, review_id: int) -> list[ReviewNote]: ...


class Checkout(Protocol):
    """One task's working tree on its branch."""

    path: Path

    def head(self) -> str: ...

    def commit(self, message: str) -> str | None: ...

    def discard(self) -> None: ...

    def publish(self) -> None: ...

    def revert_since(self, sha: str, message: str) -> str | None: ...

    def close(self) -> None: ...


class Workspaces(Protocol):
    def open(self, branch: str, base: str, *, shared: bool, requester: str) -> Checkout: ...


@dataclass(frozen=True)
class AgentRequest:
    workdir: Path
    instruction: str
    context: str
    read_only: bool
    config: RepoConfig
    network: bool
    task_dollars_spent: float = 0.0
    task_seconds_spent: float = 0.0
    iteration_dollars_spent: float = 0.0
    iteration_id: int | None = None


class Agent(Protocol):
    def run(
        self,
        request: AgentRequest,
        *,
        cancel: threading.Event,
        on_step: Callable[[int], None],
    ) -> AgentOutcome: ...


@dataclass(frozen=True)
class ContextPack:
    text: str
    tokens: int
    sources: tuple[str, ...] = field(default_factory=tuple)


class ContextBuilder(Protocol):
    def build(
        self,
        workdir: Path,
        query: str,
        *,
        enhanced: bool,
        named_files: Sequence[str],
        knowledge_ref: str | None = None,
    ) -> ContextPack: ...
