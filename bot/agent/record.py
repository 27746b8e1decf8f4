"""What the agent did, step by step: records and where they go.

Every model call becomes a :class:`StepRecord` (request summary, the model's text, tool
calls with truncated inputs and results, usage, cost, durations) handed to a
:class:`StepRecorder`. :class:`SqlStepRecorder` writes them to the ``agentstep`` table
(``bot/store/tables.py``) so later iterations can use them as memory and the dashboard can show
them; :class:`MemoryRecorder` keeps them in a list (``vibe run``, tests).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.agent.cost import TokenUsage
from bot.store.tables import AgentStep

RECORD_TEXT_CHARS = 4_000
RECORD_INPUT_CHARS = 2_000


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} characters not recorded ...]"


@dataclass(frozen=True)
class ToolCallRecord:
    id: str
    name: str
    input: str
    is_error: bool
    result: str


@dataclass(frozen=True)
class StepRecord:
    """One model call and the tool calls it asked for."""

    index: int
    started_at: datetime
    duration: float
    model_duration: float
    model: str
    request: dict[str, Any]
    text: str = ""
    stop_reason: str | None = None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: float = 0.0
    feedback: Literal["self"] | None = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return data


class StepRecorder(Protocol):
    def record(self, step: StepRecord) -> None: ...


@dataclass
class MemoryRecorder:
    """Keeps records in memory, in order."""

    steps: list[StepRecord] = field(default_factory=list)

    def record(self, step: StepRecord) -> None:
        self.steps.append(step)


class SqlStepRecorder:
    """Writes each step as an ``AgentStep`` row, committed at once (a crash loses nothing
    already done). ``run_key`` groups the steps of one agent run; ``iteration_id`` links
    them to the loop's ``Iteration`` when there is one."""

    def __init__(self, engine: Engine, run_key: str, iteration_id: int | None = None) -> None:
        self.engine = engine
        self.run_key = run_key
        self.iteration_id = iteration_id

    def record(self, step: StepRecord) -> None:
        row = AgentStep(
            run_key=self.run_key,
            iteration_id=self.iteration_id,
            index=step.index,
            started_at=step.started_at,
            duration=step.duration,
            model_duration=step.model_duration,
            model=step.model,
            request=step.request,
            text=step.text,
            stop_reason=step.stop_reason,
            tool_calls=[asdict(c) for c in step.tool_calls],
            input_tokens=step.usage.input_tokens,
            output_tokens=step.usage.output_tokens,
            cache_write_tokens=step.usage.cache_write_tokens,
            cache_read_tokens=step.usage.cache_read_tokens,
            cost=step.cost,
            feedback=step.feedback,
            error=step.error,
        )
        with Session(self.engine) as session:
            session.add(row)
            session.commit()

    def load(self) -> list[AgentStep]:
        """The run's steps in order (for memory and the dashboard)."""
        with Session(self.engine) as session:
            query = (
                select(AgentStep)
                .where(AgentStep.run_key == self.run_key)
                .order_by(col(AgentStep.index))
            )
            return list(session.exec(query).all())


def render_memory(steps: Sequence[AgentStep], limit_chars: int = 6_000) -> str:
    """A compact account of an earlier run for a later iteration's context (``mem``): one
    line per tool call with its outcome, failed model calls and the self-review."""
    lines = []
    for step in steps:
        for call in step.tool_calls:
            status = "error" if call.get("is_error") else "ok"
            result = str(call.get("result", "")).strip()
            first = result.splitlines()[0] if result else ""
            name = call.get("name")
            lines.append(
                f"{step.index}. {name} {str(call.get('input'))[:160]} -> {status}: {first[:160]}"
            )
        if step.feedback == "self":
            lines.append(f"{step.index}. (self-review of the diff was shown)")
        if step.error:
            lines.append(f"{step.index}. model call failed: {step.error[:200]}")
    text = "\n".join(lines)
    if len(text) <= limit_chars:
        return text
    return "[earlier steps omitted]\n" + text[-limit_chars:]


def tool_input_text(value: object) -> str:
    return clip(json.dumps(value, ensure_ascii=False, sort_keys=True), RECORD_INPUT_CHARS)
