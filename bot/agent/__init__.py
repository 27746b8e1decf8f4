"""The coding agent: a Claude tool-use loop with tools, limits, cost accounting and caching.

Entry points: :func:`run_agent` with a :class:`ToolSet` (``ToolSet.full`` or
``ToolSet.read_only``) and an :class:`AgentTask`; the result is an :class:`AgentReport`
whose ``exit`` is one of the typed exits of :mod:`bot.core.agent` (``Finished``,
``LimitReached``, ``Refused``, ``Errored`` or ``Stopped``). Steps go to a
:class:`StepRecorder` (:class:`SqlStepRecorder` for the database). Tests drive it against
``bot.testing.model_server.ScriptedModelServer``.
"""

from bot.agent.client import ModelError, make_client
from bot.agent.cost import TokenUsage, cost, price_for
from bot.agent.record import (
    MemoryRecorder,
    SqlStepRecorder,
    StepRecord,
    StepRecorder,
    render_memory,
)
from bot.agent.tool_loop import (
    AgentLimits,
    AgentReport,
    AgentTask,
    run_agent,
    worktree_review,
)
from bot.agent.tools import PathPolicy, ToolResult, ToolSet

__all__ = [
    "AgentLimits",
    "AgentReport",
    "AgentTask",
    "MemoryRecorder",
    "ModelError",
    "PathPolicy",
    "SqlStepRecorder",
    "StepRecord",
    "StepRecorder",
    "TokenUsage",
    "ToolResult",
    "ToolSet",
    "cost",
    "make_client",
    "price_for",
    "render_memory",
    "run_agent",
    "worktree_review",
]
