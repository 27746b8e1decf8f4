"""The loop's Agent port over the tool-use loop (:mod:`bot.agent.tool_loop`).

The run's typed exit goes back unchanged (STYLE.md item 17): the port's
:class:`bot.core.agent.AgentOutcome` is the tool loop's report itself."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import structlog
from sqlalchemy.engine import Engine

from bot.agent.record import SqlStepRecorder, StepRecord
from bot.agent.tool_loop import AgentLimits, AgentTask, run_agent, worktree_review
from bot.agent.tools import ToolSet
from bot.core.agent import AgentOutcome, AgentRequest
from bot.sandbox.bwrap import Sandbox
from bot.settings import Settings

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

    def run(
        self,
        request: AgentRequest,
        *,
        cancel: threading.Event,
        on_step: Callable[[int], None],
    ) -> AgentOutcome:
        self.runs += 1
        secrets = self.settings.secret_values
        if request.read_only:
            tools = ToolSet.read_only(request.workdir, self.sandbox, secrets=secrets, cancel=cancel)
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
                self.engine, f"{self.run_key}/{self.runs}", iteration_id=request.iteration_id
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
