"""The loop's Agent port over the tool-use loop (:mod:`bot.agent.tool_loop`).

The run's typed exit goes back unchanged (STYLE.md item 17): the port's
:class:`bot.core.agent.AgentOutcome` is the tool loop's report itself."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.engine import Engine

from bot.agent.record import SqlStepRecorder, StepRecord
from bot.core.agent import AgentOutcome, AgentRequest
from bot.sandbox.bwrap import Sandbox, SandboxLimits
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.agent.mcp import McpTools

log = structlog.get_logger(__name__)


@dataclass
class _StepCounter:
    """Records each agent step (when an engine is given) and reports progress."""

    inner: SqlStepRecorder | None
    on_step: Callable[[int], None]

    def record(self, step: StepRecord) -> None:
        if self.inner is not None:
            self.inner.record(step)
        self.on_step(step.index)


class ClaudeAgent:
    """:class:`bot.loop.ports.Agent` over :func:`bot.agent.tool_loop.run_agent`."""

    def __init__(
        self, settings: Settings, sandbox: Sandbox, engine: Engine | None, run_key: str
    ) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.engine = engine
        self.run_key = run_key
        self.runs = 0
        # Best-of-N runs attempts on threads: each run takes its own number for its steps.
        self._runs_lock = threading.Lock()

    def run(
        self,
        request: AgentRequest,
        *,
        cancel: threading.Event,
        on_step: Callable[[int], None],
    ) -> AgentOutcome:
        with self._runs_lock:
            self.runs += 1
            number = self.runs
        if not request.config.mcp.servers:
            return self._run(request, number, None, cancel, on_step)
        # The MCP SDK (about a second of imports) loads only for a repository that names servers.
        from bot.agent.mcp import McpStart, start_servers

        start = McpStart(
            self.sandbox,
            request.workdir,
            request.network,
            tuple(request.config.network.allow),
            SandboxLimits(
                wall_seconds=min(86_400.0, self.settings.limits.minutes_per_iteration * 60)
            ),
            cancel,
        )
        # Started for this run and stopped when it ends, whatever way it ends.
        with start_servers(
            request.config.mcp,
            self.settings,
            repo=request.repo,
            start=start,
            read_only=request.read_only,
        ) as mcp:
            report = self._run(request, number, mcp, cancel, on_step)
            return replace(report, notes=tuple(mcp.problems))

    def _run(
        self,
        request: AgentRequest,
        number: int,
        mcp: McpTools | None,
        cancel: threading.Event,
        on_step: Callable[[int], None],
    ) -> AgentOutcome:
        # The tool loop brings the anthropic SDK (about three seconds of imports): a service
        # process loads it with its first agent run, not before it answers /healthz.
        from bot.agent.tool_loop import AgentLimits, AgentTask, run_agent, worktree_review
        from bot.agent.tools import ToolSet

        secrets = self.settings.secret_values
        if request.read_only:
            tools = ToolSet.read_only(
                request.workdir, self.sandbox, secrets=secrets, cancel=cancel, mcp=mcp
            )
        else:
            tools = ToolSet.full(
                request.workdir,
                self.sandbox,
                protected_paths=request.config.protected_paths,
                allowed_paths=request.config.paths.allowed,
                secrets=secrets,
                network=request.network,
                allow_hosts=tuple(request.config.network.allow),
                cancel=cancel,
                mcp=mcp,
            )
        limits = AgentLimits.from_settings(
            self.settings,
            request.config.limits,
            task_dollars_spent=request.task_dollars_spent,
            task_seconds_spent=request.task_seconds_spent,
        )
        if request.iteration_dollars_spent:
            # one iteration may run the agent more than once (fix rounds, plan steps)
            per_iteration = min(
                self.settings.limits.dollars_per_iteration,
                request.config.limits.dollars_per_iteration or float("inf"),
            )
            left = max(0.0, per_iteration - request.iteration_dollars_spent)
            limits = replace(limits, dollars=min(limits.dollars, left))
        recorder = _StepCounter(
            SqlStepRecorder(
                self.engine, f"{self.run_key}/{number}", iteration_id=request.iteration_id
            )
            if self.engine is not None
            else None,
            on_step,
        )
        base = _head(request.workdir)
        return run_agent(
            self.settings,
            tools=tools,
            task=AgentTask(instruction=request.instruction, context=request.context),
            limits=limits,
            recorder=recorder,
            cancel=cancel,
            review=worktree_review(tools, base) if not request.read_only and base else None,
        )


def _head(workdir: Path) -> str:
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(workdir), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""
