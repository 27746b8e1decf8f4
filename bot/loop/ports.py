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
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bot.core.agent import AgentOutcome, AgentRequest
from bot.core.attempts import AttemptSet
from bot.core.ci import HeadChecks, PullHead, Round
from bot.core.context import ContextPack
from bot.core.forge import IssueText, PullInfo, ReviewNote, ReviewTarget
from bot.core.markers import Marker
from bot.core.tasks import (
    Begun,
    CommitStat,
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


@runtime_checkable
class EditsComments(Protocol):
    """A forge that edits a comment by its id (GitHub): the status comment's id is kept
    with the task, so an update is one request instead of a listing and an edit."""

    def edit_comment(self, number: int, comment_id: int, mark: Marker, body: str) -> bool:
        """Replace the comment's body (ending with ``mark``); False when the comment no
        longer exists."""


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


class Reviews(Protocol):
    """Reviewing a pull request (:mod:`bot.loop.review`); absent in local mode."""

    def review_target(self, number: int) -> ReviewTarget | None: ...

    def find_review(self, pr: int, mark: Marker) -> int | None:
        """The bot's review of ``pr`` carrying ``mark``, if one was posted."""
        ...

    def create_review(
        self, pr: int, commit_id: str, body: str, comments: Sequence[dict[str, object]]
    ) -> int:
        """Post one review with event COMMENT; returns its id."""
        ...

    def review_comment(self, comment_id: int) -> ReviewNote | None: ...


class CiChecks(Protocol):
    """The repository's own CI on a commit, and moving the bot's draft PR to review
    (:mod:`bot.loop.ci`); absent in local mode."""

    def head_checks(self, sha: str) -> HeadChecks: ...

    def pull_head(self, pr_number: int) -> PullHead | None: ...

    def job_log_tail(self, job_id: int, max_bytes: int) -> str | None:
        """The end of an Actions job's log; ``None`` when GitHub has no log to give."""
        ...

    def rerun_job(self, job_id: int) -> bool:
        """Re-run one Actions job; False when GitHub refused."""
        ...

    def mark_ready_for_review(self, pr_number: int) -> None: ...

    def threads_waiting(self, pr_number: int) -> int:
        """Unresolved review threads whose last word is the bot's: a person is to answer."""
        ...


class CiRounds(Protocol):
    """The decision per head commit of a task's PR (:class:`bot.core.ci.Round`)."""

    def rounds(self, task_id: int) -> tuple[Round, ...]: ...

    def record(self, task_id: int, decided: Round, *, over: Collection[str] = ("rerun",)) -> bool:
        """Write the round unless its head has one whose outcome is not in ``over``; True
        if this call wrote it."""
        ...

    def annotate(self, task_id: int, sha: str, note: str) -> None: ...


class Checkout(Protocol):
    """One task's working tree on its branch."""

    path: Path

    def head(self) -> str: ...

    def commit(self, message: str) -> str | None: ...

    def commit_stat(self, sha: str) -> CommitStat: ...

    def discard(self) -> None: ...

    def publish(self) -> None: ...

    def revert_since(self, sha: str, message: str) -> str | None: ...

    def changed_paths(self, since: str) -> list[str]:
        """Paths that differ between commit ``since`` and the head."""
        ...

    def adopt(self, sha: str) -> str:
        """Fast-forward to ``sha`` (a best-of-N attempt made from this head)."""
        ...

    def take_tree(self, sha: str, message: str) -> str | None:
        """One new commit with ``sha``'s files (``/vibe pick``); None when unchanged."""
        ...

    def close(self) -> None: ...


class Workspaces(Protocol):
    def open(
        self, branch: str, base: str, *, shared: bool, requester: str, start: str | None = None
    ) -> Checkout:
        """A checkout of ``branch``; ``start`` (a commit id) starts it there instead of at
        the remote's head of that name (a best-of-N attempt)."""
        ...

    def drop_branches(self, names: Sequence[str], base: str) -> list[str]:
        """Delete the bot's own branches ``names`` on the remote; returns those deleted."""
        ...

    def open_pull(self, number: int, base: str, head_ref: str | None) -> PullCheckout:
        """PR ``number``'s head to read (a review): its branch ``head_ref`` here, or
        (``None``, a fork's PR) GitHub's ``refs/pull/<number>/head``."""
        ...


class PullCheckout(Protocol):
    """A pull request's head, checked out to be read: never committed to or pushed."""

    path: Path

    def head(self) -> str: ...

    def diff(self) -> str:
        """The PR's diff as GitHub shows it: from the merge base with the base branch."""
        ...

    def close(self) -> None: ...


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

    def find_by_branch(
        self, repo: str, branch: str, repo_id: int | None = None
    ) -> TaskRecord | None: ...

    def record_pr(self, task_id: int, pr_number: int) -> TaskRecord: ...

    def record_status_comment(self, task_id: int, comment_id: int) -> None:
        """Keep the id of the task's status comment (:class:`bot.loop.status.StatusBoard`)."""

    def record_context(self, iteration_id: int, manifest: dict[str, Any]) -> None:
        """Keep what the context builder assembled for the iteration (its manifest)."""

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

    def record_attempts(self, task_id: int, number: int, attempts: AttemptSet) -> None:
        """The iteration's best-of-N attempts after a pick, or once they expired."""


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
