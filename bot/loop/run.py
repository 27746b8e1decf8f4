"""The primitives a development model uses in one iteration (the strategies' ``Run``)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Protocol

import structlog

from bot.core.agent import AgentOutcome, AgentRequest, Errored, Stopped
from bot.core.config import RepoConfig
from bot.core.redact import redact
from bot.core.render import (
    Phase,
    PhaseState,
    plan_marker,
    render_plan,
)
from bot.core.tasks import (
    Check,
    FeedbackKind,
    PlanStep,
    TaskRecord,
    Usage,
)
from bot.loop.env import Env
from bot.loop.errors import AgentUnavailable, StopRequested
from bot.loop.ports import Checkout
from bot.sandbox.bwrap import SandboxLimits, network_permitted

log = structlog.get_logger(__name__)


CHECK_LIMITS = SandboxLimits(wall_seconds=600.0)
MCP_PHASE = "MCP servers"


MAX_CHECK_OUTPUT = 4000


class Board(Protocol):
    """Where a run shows its phases: the task's status comment
    (:class:`bot.loop.status.StatusBoard`), or one best-of-N attempt's line on it."""

    number: int  # the issue or PR the status comment is on
    phases: dict[str, Phase]

    def phase(self, name: str, state: PhaseState, detail: str = "") -> None: ...


class Spend:
    """What every run of one iteration spent so far, shared by its best-of-N attempts
    running in parallel, so each agent run is bounded by what the task has left after all
    of them (DESIGN.md section 4 rule 10)."""

    def __init__(self) -> None:
        self._usage = Usage()
        self._lock = threading.Lock()

    def add(self, usage: Usage) -> None:
        with self._lock:
            self._usage = self._usage + usage

    @property
    def usage(self) -> Usage:
        with self._lock:
            return self._usage


class LoopRun:
    """The primitives a development model uses in one iteration
    (:class:`bot.loop.strategies.base.Run`)."""

    def __init__(
        self,
        env: Env,
        task: TaskRecord,
        config: RepoConfig,
        checkout: Checkout,
        board: Board,
        context: str,
        stop: threading.Event,
        started: float,
        iteration_id: int,
        spend: Spend | None = None,
    ) -> None:
        self.started = started
        self.iteration_id = iteration_id  # the agent's recorded steps point to it
        self.env = env
        self.task = task
        self.config = config
        self.checkout = checkout
        self.board = board
        self.context = context
        self.stop = stop
        self.usage = Usage()  # this run's own
        self.spend = spend if spend is not None else Spend()  # the iteration's, all attempts
        self.plan: list[PlanStep] = list(task.plan)
        self.network = network_permitted(config, env.settings)

    def phase(self, name: str, state: str, detail: str = "") -> None:
        phase_state: PhaseState = state if state in _PHASE_STATES else "running"  # type: ignore[assignment]
        self.board.phase(name, phase_state, detail)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise StopRequested("stopped")

    def agent(self, instruction: str, *, read_only: bool = False) -> AgentOutcome:
        self._check_stop()
        earlier = sum(it.duration for it in self.task.iterations if it.outcome != "running")
        request = AgentRequest(
            workdir=self.checkout.path,
            instruction=instruction,
            context=self.context,
            read_only=read_only,
            config=self.config,
            network=self.network,
            task_dollars_spent=self.task.usage.cost + self.spend.usage.cost,
            task_seconds_spent=earlier + time.monotonic() - self.started,
            iteration_dollars_spent=self.usage.cost,
            iteration_id=self.iteration_id,
            repo=self.task.repo,
        )
        name = next(
            (n for n, p in reversed(self.board.phases.items()) if p.state == "running"),
            "Agent working",
        )

        def on_step(step: int) -> None:
            self.board.phase(name, "running", f"step {step}")

        outcome = self.env.agent.run(request, cancel=self.stop, on_step=on_step)
        self.usage = self.usage + outcome.usage
        if outcome.notes:
            # A tool server left out is the repository's to fix; the run went on without it.
            self.board.phase(MCP_PHASE, "failed", "; ".join(outcome.notes))
        self.spend.add(outcome.usage)
        self._check_stop()
        match outcome.exit:
            case Stopped(reason):
                raise StopRequested(reason)
            case Errored(reason, retryable=True, retry_after=wait):
                raise AgentUnavailable(reason, None if wait is None else time.time() + wait)
        # Every other exit is the strategy's to act on (STYLE.md item 17).
        return outcome

    def _run_check(self, name: str, command: str, kind: FeedbackKind) -> Check:
        self._check_stop()
        result = self.env.sandbox.run(
            command,
            workdir=self.checkout.path,
            limits=CHECK_LIMITS,
            network=self.network,
            allow_hosts=tuple(self.config.network.allow),
            cancel=self.stop,
        )
        self._check_stop()
        output = redact((result.stdout + result.stderr)[-MAX_CHECK_OUTPUT:], self.env.secrets)
        return Check(name, command, kind, result.exit_code, result.duration, output, result.limit)

    def checks(self) -> list[Check]:
        out = [self._run_check("lint", c, "compiler") for c in self.config.commands.lint]
        out += [self._run_check("tests", c, "execution") for c in self.config.commands.test]
        return out

    def test_run(self) -> Check | None:
        commands = self.config.commands.test
        if not commands:
            return None
        return self._run_check("tests", " && ".join(commands), "execution")

    def tick(self, index: int) -> None:
        if 0 <= index < len(self.plan):
            self.plan[index] = replace(self.plan[index], done=True)
            self.env.tasks.set_plan(self.task.id, tuple(self.plan))
            self.env.forge.upsert_comment(
                self.board.number,
                plan_marker(self.task.id),
                render_plan(self.task.id, self.plan, self.env.secrets),
            )


_PHASE_STATES = frozenset({"pending", "running", "done", "failed", "skipped"})
