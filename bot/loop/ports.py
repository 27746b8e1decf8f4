"""What the refinement loop needs from the outside world, declared by the loop itself.

STYLE.md item 5: the consumer declares only what it uses. :mod:`bot.loop` is written
against these protocols; :mod:`bot.bootstrap` chooses what stands behind each: the GitHub
adapter (:mod:`bot.github.repository`), the workspaces (:mod:`bot.workspace.checkout`),
the agent (:mod:`bot.agent.adapter`), the context engine (:mod:`bot.context.adapter`) and
the task store (:mod:`bot.store.tasks`); :mod:`bot.entrypoints.local` implements the forge
for ``vibe run`` on a local checkout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.core.agent import AgentOutcome, AgentRequest
from bot.core.context import ContextPack
from bot.core.forge import IssueText, PullInfo, ReviewNote
from bot.core.markers import Marker
from bot.core.tasks import (
    Begun,
    Conclusion,
    DevelopmentModel,
    Feedback,
    NewTask,
    PlanStep,
    Requirement,
    State,
    TaskRecord,
    Usage,
    WorkResult,
)


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


class Agent(Protocol):
    def run(
        self,
        request: AgentRequest,
        *,
        cancel: threading.Event,
        on_step: Callable[[int], None],
    ) -> AgentOutcome: ...


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


class TaskStore(Protocol):
    """Where the loop keeps tasks and iterations. Every write is one transaction.

    An iteration is written at three checkpoints (:class:`bot.core.tasks.Checkpoint`):
    :meth:`begin_iteration`, :meth:`record_pushed` and :meth:`conclude`. A job claimed
    again finds the last one reached and finishes from there."""

    def find(self, repo: str, number: int, repo_id: int | None = None) -> TaskRecord | None:
        """By GitHub's repository id when given (a task found under an older name of its
        repository takes ``repo`` as its name), else by name."""

    def load(self, task_id: int) -> TaskRecord: ...

    def stop_requested(self, task_id: int) -> bool: ...

    def find_or_create(self, new: NewTask) -> tuple[TaskRecord, bool]: ...

    def reopen(self, task_id: int) -> TaskRecord: ...

    def set_requirements(self, task_id: int, requirements: tuple[Requirement, ...]) -> None: ...

    def set_model(self, task_id: int, model: DevelopmentModel) -> None: ...

    def set_plan(self, task_id: int, plan: tuple[PlanStep, ...]) -> None: ...

    def move(self, task_id: int, state: State) -> None: ...

    def request_stop(self, task_id: int) -> None: ...

    def abandon(self, task_id: int, *, stop_running: bool) -> None: ...

    def add_usage(self, task_id: int, usage: Usage) -> None: ...

    def begin_iteration(
        self, task_id: int, key: str, trigger: str, feedback: tuple[Feedback, ...]
    ) -> Begun: ...

    def record_base(self, task_id: int, number: int, head: str) -> str: ...

    def record_pushed(self, task_id: int, number: int, result: WorkResult) -> None: ...

    def conclude(self, task_id: int, number: int, end: Conclusion) -> TaskRecord: ...

    def mark_reverted(self, task_id: int, number: int) -> None: ...


@dataclass(frozen=True)
class Work:
    """A decision that runs the agent, as an executor elsewhere needs it: the event that
    asked (a runner handles it again, as this job would), where it happened and its key."""

    repo: str
    number: int
    key: str
    event_name: str
    payload: dict[str, object]


class Executor(Protocol):
    """Where the work of a decision that runs the agent is done: in this job (``here()``,
    through the loop) or on the repository's Actions runners; either way it returns when
    the work has ended, saying what was done. :mod:`bot.bootstrap` chooses one per
    repository."""

    def run(self, work: Work, here: Callable[[], str]) -> str: ...
