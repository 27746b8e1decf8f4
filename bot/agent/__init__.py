"""The coding agent: a Claude tool-use loop with tools, limits, cost accounting and caching.

Entry points: :func:`run_agent` with a :class:`ToolSet` (``ToolSet.full`` or
``ToolSet.read_only``) and an :class:`AgentTask`; the result is an :class:`AgentOutcome`
whose ``exit`` is one of :class:`Finished`, :class:`LimitReached`, :class:`Refused`,
:class:`Errored` or :class:`Stopped`. Steps go to a :class:`StepRecorder`
(:class:`SqlStepRecorder` for the database). Tests drive it against
``bot.testing.model_server.ScriptedModelServer``.
"""

from bot.agent.client import ModelError, make_client
from bot.agent.cost import Usage, cost, price_for
from bot.agent.record import (
    MemoryRecorder,
    SqlStepRecorder,
    StepRecord,
    StepRecorder,
    render_memory,
)
from bot.agent.tool_loop import (
    AgentLimits,
    AgentOutcome,
    AgentTask,
    Errored,
    Exit,
    Finished,
    LimitReached,
    Refused,
    Stopped,
    run_agent,
    worktree_review,
)
from bot.agent.tools import PathPolicy, ToolResult, ToolSet

__all__ = [
    "AgentLimits",
    "AgentOutcome",
    "AgentTask",
    "Errored",
    "Exit",
    "Finished",
    "LimitReached",
    "MemoryRecorder",
    "ModelError",
    "PathPolicy",
    "Refused",
    "SqlStepRecorder",
    "StepRecord",
    "StepRecorder",
    "Stopped",
    "ToolResult",
    "ToolSet",
    "Usage",
    "cost",
    "make_client",
    "price_for",
    "render_memory",
    "run_agent",
    "worktree_review",
]
