"""The primitives a development model uses in one iteration (the strategies' ``Run``)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.core.config import RepoConfig
from bot.core.redact import redact
from bot.core.render import (
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
from bot.loop.ports import AgentRequest, Checkout
from bot.loop.status import StatusBoard
from bot.loop.strategies.base import AgentOutcome, AgentUnavailable, Stopped
from bot.sandbox.bwrap import SandboxLimits, network_permitted
from bot.store import tasks as taskdb
from bot.store.tables import Iteration

log = structlog.get_logger(__name__)


CHECK_LIMITS = SandboxLimits(wall_seconds=600.0)


MAX_CHECK_OUTPUT = 4000


def _iteration_id(engine: Engine, task_id: int, number: int) -> int | None:
    """The ``Iteration`` row's id, which the agent's recorded steps point to."""
    with Session(engine) as session:
        return session.exec(
            select(Iteration.id).where(Iteration.task_id == task_id, Iteration.number == number)
        ).first()


class LoopRun:
    """The primitives a development model uses in one iteration
    (:class:`bot.loop.strategies.base.Run`)."""

    def __init__(
        self,
        env: Env,
        task: TaskRecord,
        config: RepoConfig,
        checkout: Checkout,
        board: StatusBoard,
        context: str,
        stop: threading.Event,
        started: float,
    ) -> None:
        self.started = started
        self.env = env
        self.task = task
        self.config = config
        self.checkout = checkout
        self.board = board
        self.context = context
        self.stop = stop
        self.usage = Usage()
        self.plan: list[PlanStep] = list(task.plan)
        self.network = network_permitted(config, env.settings)

    def phase(self, name: str, state: str, detail: str = "") -> None:
        phase_state: PhaseState = state if state in _PHASE_STATES else "running"  # type: ignore[assignment]
        self.board.phase(name, phase_state, detail)

    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped("stopped")

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
            task_dollars_spent=self.task.usage.cost + self.usage.cost,
            task_seconds_spent=earlier + time.monotonic() - self.started,
            iteration_dollars_spent=self.usage.cost,
            iteration_id=_iteration_id(self.env.engine, self.task.id, self.board.iteration),
        )
        name = next(
            (n for n, p in reversed(self.board.phases.items()) if p.state == "running"),
            "Agent working",
        )

        def on_step(step: int) -> None:
            self.board.phase(name, "running", f"step {step}")

        outcome = self.env.agent.run(request, cancel=self.stop, on_step=on_step)
        self.usage = self.usage + outcome.usage
        self._check_stop()
        if outcome.exit == "cancelled":
            raise Stopped("stopped")
        if outcome.exit == "error" and outcome.retryable:
            raise AgentUnavailable(outcome.reason or "the model API is unavailable")
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
            taskdb.update(self.env.engine, self.task.id, plan=tuple(self.plan))
            self.env.forge.upsert_comment(
                self.board.number,
                plan_marker(self.task.id),
                render_plan(self.task.id, self.plan, self.env.secrets),
            )


_PHASE_STATES = frozenset({"pending", "running", "done", "failed", "skipped"})
