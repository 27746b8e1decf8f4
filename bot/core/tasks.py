"""Tasks and iterations as values, and the task state machine as pure functions.

A task is one issue (or one existing PR) the bot works on; an iteration is one pass of
the refinement loop (survey Eq. 4): feedback in, commits and check results out. No I/O
here: :mod:`bot.loop` persists these values through :mod:`bot.store` and shows them
through :mod:`bot.core.render`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from bot.core.attempts import AttemptSet

# The five development models (survey section 8); settings, config and labels name them.
DevelopmentModel = Literal["unconstrained", "conversational", "plan", "test", "context"]
MODELS: tuple[DevelopmentModel, ...] = get_args(DevelopmentModel)

FeedbackKind = Literal["compiler", "execution", "human", "self"]
FEEDBACK_KINDS: tuple[FeedbackKind, ...] = ("compiler", "execution", "human", "self")


class State(StrEnum):
    """Where a task stands. Terminal states end it; a new trigger starts a new task."""

    QUEUED = "queued"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    WORKING = "working"
    AWAITING_FEEDBACK = "awaiting_feedback"
    ACCEPTED = "accepted"
    ABANDONED = "abandoned"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (State.ACCEPTED, State.ABANDONED)

    @property
    def busy(self) -> bool:
        return self in (State.PLANNING, State.WORKING)


class Step(StrEnum):
    """What happens to a task; :func:`transition` says which states allow it."""

    PLAN = "plan"
    PLAN_READY = "plan_ready"
    APPROVE = "approve"
    WORK = "work"
    DONE = "done"
    FAIL = "fail"
    ACCEPT = "accept"
    ABANDON = "abandon"
    REOPEN = "reopen"


class InvalidTransition(ValueError):
    def __init__(self, state: State, step: Step) -> None:
        super().__init__(f"a task that is {state.value} cannot {step.value}")
        self.state = state
        self.step = step


_S = State
_TABLE: dict[tuple[State, Step], State] = {
    (_S.QUEUED, Step.PLAN): _S.PLANNING,
    (_S.QUEUED, Step.WORK): _S.WORKING,
    (_S.PLANNING, Step.PLAN_READY): _S.AWAITING_APPROVAL,
    (_S.PLANNING, Step.FAIL): _S.FAILED,
    (_S.AWAITING_APPROVAL, Step.APPROVE): _S.WORKING,
    (_S.AWAITING_APPROVAL, Step.PLAN): _S.PLANNING,
    (_S.WORKING, Step.DONE): _S.AWAITING_FEEDBACK,
    (_S.WORKING, Step.FAIL): _S.FAILED,
    (_S.AWAITING_FEEDBACK, Step.WORK): _S.WORKING,
    (_S.AWAITING_FEEDBACK, Step.PLAN): _S.PLANNING,
    (_S.FAILED, Step.WORK): _S.WORKING,
    (_S.FAILED, Step.PLAN): _S.PLANNING,
}
for _state in State:
    if not _state.terminal:
        _TABLE[(_state, Step.ACCEPT)] = _S.ACCEPTED
        _TABLE[(_state, Step.ABANDON)] = _S.ABANDONED
for _state in (_S.ACCEPTED, _S.ABANDONED, _S.FAILED):
    _TABLE[(_state, Step.REOPEN)] = _S.QUEUED


def transition(state: State, step: Step) -> State:
    """The state after ``step``, or :class:`InvalidTransition`."""
    try:
        return _TABLE[(state, step)]
    except KeyError:
        raise InvalidTransition(state, step) from None


def allowed(state: State, step: Step) -> bool:
    return (state, step) in _TABLE


@dataclass(frozen=True)
class Requirement:
    text: str
    source: str  # "issue", "require", "plan"
    done: bool = False


@dataclass(frozen=True)
class Feedback:
    """One piece of feedback that drove an iteration (survey section 7)."""

    kind: FeedbackKind
    text: str
    author: str | None = None
    path: str | None = None
    line: int | None = None
    thread_id: str | None = None
    comment_id: int | None = None
    start_line: int | None = None  # a multi-line review comment spans start_line..line
    side: str | None = None  # "LEFT": lines of the base (what the change removed)

    @property
    def where(self) -> str:
        """``path:line``, ``path:start-line`` for a range, marked when the lines are the
        base's (GitHub's ``side: LEFT``); empty without a path."""
        if self.path is None:
            return ""
        if self.line is None:
            return self.path
        span = (
            f"{self.start_line}-{self.line}"
            if self.start_line not in (None, self.line)
            else str(self.line)
        )
        base = " (lines of the base, removed by the change)" if self.side == "LEFT" else ""
        return f"{self.path}:{span}{base}"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "author": self.author,
            "path": self.path,
            "line": self.line,
            "thread_id": self.thread_id,
            "comment_id": self.comment_id,
            "start_line": self.start_line,
            "side": self.side,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Feedback:
        kind = data.get("kind")
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown feedback kind {kind!r}")
        line = data.get("line")
        comment_id = data.get("comment_id")
        start_line = data.get("start_line")
        side = data.get("side")
        return cls(
            kind=kind,
            text=str(data.get("text", "")),
            author=data.get("author"),
            path=data.get("path"),
            line=int(line) if line is not None else None,
            thread_id=data.get("thread_id"),
            comment_id=int(comment_id) if comment_id is not None else None,
            start_line=int(start_line) if start_line is not None else None,
            side=side if side in ("LEFT", "RIGHT") else None,
        )


@dataclass(frozen=True)
class Check:
    """One repository check run in the sandbox (lint -> compiler, test -> execution)."""

    name: str
    command: str
    kind: FeedbackKind
    exit_code: int | None
    duration: float
    output: str = ""
    limit: str | None = None

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.limit is None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": self.command,
            "kind": self.kind,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3),
            "output": self.output,
            "limit": self.limit,
            "passed": self.passed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Check:
        kind = data.get("kind", "execution")
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"unknown check kind {kind!r}")
        code = data.get("exit_code")
        return cls(
            name=str(data.get("name", "")),
            command=str(data.get("command", "")),
            kind=kind,
            exit_code=int(code) if code is not None else None,
            duration=float(data.get("duration", 0.0)),
            output=str(data.get("output", "")),
            limit=data.get("limit"),
        )


@dataclass(frozen=True)
class CommitStat:
    """One commit of the bot with its diff stats (git's numstat against its parent),
    recorded when the bot commits. Kept in the iteration's ``commits`` list as a mapping;
    rows written before stats were recorded hold a bare sha, read as no stats."""

    sha: str
    files: int
    insertions: int
    deletions: int
    subject: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "sha": self.sha,
            "files": self.files,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "subject": self.subject,
        }

    @classmethod
    def from_json(cls, data: object) -> CommitStat | None:
        """The stats of one ``commits`` entry; None for a bare sha or a malformed entry."""
        if not isinstance(data, dict) or not isinstance(data.get("sha"), str):
            return None
        counts = [data.get(k) for k in ("files", "insertions", "deletions")]
        if not all(type(c) is int and c >= 0 for c in counts):
            return None
        return cls(
            sha=data["sha"],
            files=int(data["files"]),
            insertions=int(data["insertions"]),
            deletions=int(data["deletions"]),
            subject=str(data.get("subject", "")),
        )


def commit_sha(entry: object) -> str:
    """The sha of one ``commits`` entry: a bare sha (older rows) or a :class:`CommitStat`."""
    if isinstance(entry, dict):
        return str(entry.get("sha", ""))
    return str(entry)


@dataclass(frozen=True)
class PlanStep:
    text: str
    done: bool = False


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost + other.cost,
        )

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


IterationOutcome = Literal[
    "running", "succeeded", "failed", "stopped", "limit", "planned", "reverted"
]


class Checkpoint(StrEnum):
    """How far an iteration got. Each is written in one transaction, so a job claimed again
    after a crash finishes from the last one instead of redoing or skipping work."""

    BEGUN = "begun"  # the iteration exists; the work runs (again, if resumed)
    PUSHED = "pushed"  # the work's result is recorded and its commits are on the branch
    CONCLUDED = "concluded"  # the PR exists, the task moved, the outcome and usage counted


@dataclass(frozen=True)
class IterationRecord:
    number: int
    trigger: str
    feedback: tuple[Feedback, ...] = ()
    commits: tuple[str, ...] = ()
    # The diff stats of those commits that have them (none for rows older than the stats).
    commit_stats: tuple[CommitStat, ...] = ()
    checks: tuple[Check, ...] = ()
    red: Check | None = None
    green: Check | None = None
    usage: Usage = field(default_factory=Usage)
    duration: float = 0.0
    outcome: IterationOutcome = "running"
    summary: str = ""
    error: str | None = None
    key: str = ""  # what caused it (a delivery, a review): one iteration per key
    checkpoint: Checkpoint = Checkpoint.BEGUN
    started_at: datetime | None = None
    base_sha: str | None = None  # the branch head when the work began (for /vibe undo)
    # What the context builder assembled (bot.context.pack.ContextPack.manifest), if known.
    context: Mapping[str, Any] | None = field(default=None, compare=False)
    # Best-of-N: the attempts, the one chosen and why (bot.core.attempts); None for one.
    attempts: AttemptSet | None = None

    def feedback_kinds(self) -> list[FeedbackKind]:
        seen: list[FeedbackKind] = []
        for item in self.feedback:
            if item.kind not in seen:
                seen.append(item.kind)
        for check in self.checks:
            if not check.passed and check.kind not in seen:
                seen.append(check.kind)
        return seen


@dataclass(frozen=True)
class TaskRecord:
    id: int
    repo: str
    number: int
    model: DevelopmentModel
    state: State
    branch: str
    base: str
    requester: str
    title: str
    instruction: str
    pr_number: int | None = None
    owns_pr: bool = True
    requirements: tuple[Requirement, ...] = ()
    plan: tuple[PlanStep, ...] = ()
    usage: Usage = field(default_factory=Usage)
    iterations: tuple[IterationRecord, ...] = ()
    stop_requested: bool = False
    status_comment_id: int | None = None  # the status comment's id on the code host

    def with_requirement(self, text: str, source: str) -> TaskRecord:
        if any(r.text == text for r in self.requirements):
            return self
        return replace(self, requirements=(*self.requirements, Requirement(text, source)))


@dataclass(frozen=True)
class NewTask:
    """A task about to be created (a writer's first trigger on an issue or PR)."""

    repo: str
    number: int
    model: DevelopmentModel
    branch: str
    base: str
    requester: str
    title: str
    instruction: str
    requirements: tuple[Requirement, ...]
    pr_number: int | None = None
    owns_pr: bool = True
    repo_id: int | None = None  # GitHub's repository id; None in local mode


@dataclass(frozen=True)
class Begun:
    """An iteration as :class:`Checkpoint` left it: new, or found again by its key."""

    id: int
    number: int
    checkpoint: Checkpoint


@dataclass(frozen=True)
class WorkResult:
    """What the work of an iteration came to, recorded at the pushed checkpoint."""

    outcome: IterationOutcome
    commits: tuple[str, ...]
    checks: tuple[Check, ...]
    red: Check | None
    green: Check | None
    usage: Usage
    duration: float
    summary: str
    reason: str | None
    feedback: tuple[Feedback, ...]
    plan: tuple[PlanStep, ...] | None = None  # a plan the work made, kept with the result
    commit_stats: tuple[CommitStat, ...] = ()  # the diff stats of ``commits``, by sha
    attempts: AttemptSet | None = None  # best-of-N: every attempt and the choice


@dataclass(frozen=True)
class Conclusion:
    """How an iteration ends: its outcome and the task's move, written together.

    ``step`` moves the task when the state machine allows it from the state it is in when
    the conclusion is written; with ``stop_wins`` a ``/vibe stop`` that came meanwhile
    abandons it instead. ``usage``, ``duration`` and ``error`` left None keep what the
    pushed checkpoint recorded."""

    outcome: IterationOutcome
    step: Step | None = None
    stop_wins: bool = False
    pr_number: int | None = None
    usage: Usage | None = None
    duration: float | None = None
    error: str | None = None
