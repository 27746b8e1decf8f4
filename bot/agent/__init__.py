"""The coding agent: a Claude tool-use loop with tools, limits, cost accounting and caching.

Entry points: :func:`run_agent` with a :class:`ToolSet` (``ToolSet.full`` or
``ToolSet.read_only``) and an :class:`AgentTask`; the result is an :class:`AgentReport`
whose ``exit`` is one of the typed exits of :mod:`bot.core.agent` (``Finished``,
``LimitReached``, ``Refused``, ``Errored`` or ``Stopped``). Steps go to a
:class:`StepRecorder` (:class:`SqlStepRecorder` for the database). Tests drive it against
``bot.testing.model_server.ScriptedModelServer``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Light, and eager: ``cost`` is also the name of its module, which would otherwise take the
# package attribute when something imports ``bot.agent.cost`` first.
from bot.agent.cost import TokenUsage, cost, price_for

if TYPE_CHECKING:
    from bot.agent.client import ModelError, make_client
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

# Each name from the module that defines it, loaded when first asked for (PEP 562): the
# tool loop brings the anthropic SDK, about three seconds of imports that a service process
# should pay with its first agent run, not before it answers /healthz.
_HOMES = {
    "ModelError": "client",
    "make_client": "client",
    "MemoryRecorder": "record",
    "SqlStepRecorder": "record",
    "StepRecord": "record",
    "StepRecorder": "record",
    "render_memory": "record",
    "AgentLimits": "tool_loop",
    "AgentReport": "tool_loop",
    "AgentTask": "tool_loop",
    "run_agent": "tool_loop",
    "worktree_review": "tool_loop",
    "PathPolicy": "tools",
    "ToolResult": "tools",
    "ToolSet": "tools",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


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
