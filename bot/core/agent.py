"""What the loop asks of the agent (:class:`AgentRequest`) and how a run ends: typed exits,
kept typed until someone acts on them.

The tool-use loop (:mod:`bot.agent.tool_loop`) returns one of these, the loop's Agent port
hands it on unchanged inside an :class:`AgentOutcome`, and the development models
(:mod:`bot.loop.strategies`) match on it (STYLE.md items 7 and 17; mini-swe-agent
``agents/default.py``). Values only, no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

from bot.core.config import RepoConfig
from bot.core.tasks import Usage

LimitName = Literal["steps", "input_tokens", "output_tokens", "dollars", "wall_time"]


@dataclass(frozen=True)
class Finished:
    """The agent called ``finish``; ``summary`` is what it says it did."""

    summary: str


@dataclass(frozen=True)
class LimitReached:
    """A spend limit (DESIGN.md 4.10) was reached before the next model call: push what
    exists and say why."""

    which: LimitName
    detail: str

    @property
    def reason(self) -> str:
        return f"{self.which} limit: {self.detail}"


@dataclass(frozen=True)
class Refused:
    """The model declined the task (``stop_reason: refusal``)."""

    reason: str


@dataclass(frozen=True)
class Errored:
    """The model API or the run failed. ``retryable``: it may pass (overload, 5xx), so the
    job is tried again, after ``retry_after`` seconds when the API said so."""

    reason: str
    retryable: bool = False
    kind: str = "fatal"
    retry_after: float | None = None


@dataclass(frozen=True)
class Stopped:
    """The run was cancelled (``/vibe stop``, shutdown, a lost lease) before it finished."""

    reason: str = "stopped on request"


AgentExit: TypeAlias = Finished | LimitReached | Refused | Errored | Stopped


@dataclass(frozen=True)
class AgentOutcome:
    """One agent run as the loop sees it: its exit, what it spent, how many model calls it
    made, the self-review it was shown on its first ``finish``, and ``notes``: one line per
    tool server that was left out of the run and why (for the status comment)."""

    exit: AgentExit
    usage: Usage = field(default_factory=Usage)
    steps: int = 0
    self_review: str | None = None
    notes: tuple[str, ...] = ()


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
    repo: str = ""  # owner/name: whose operator-provided MCP secrets the run may use
