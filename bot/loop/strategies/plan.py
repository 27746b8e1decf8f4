"""Plan-driven: read-only exploration, a plan posted as a checklist, nothing written until
a writer answers ``/vibe approve``; then each step runs and is ticked off."""

from __future__ import annotations

import re
from dataclasses import replace

from bot.core.agent import Finished
from bot.core.tasks import PlanStep
from bot.loop.strategies.base import (
    Brief,
    Result,
    Run,
    Strategy,
    agent_and_checks,
    check_feedback,
    unfinished,
)

MAX_STEPS = 20
MAX_STEP_CHARS = 300
_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,2}[.)])\s+(?:\[[ xX]\]\s+)?(?P<text>\S.*)$")

PLAN_PROMPT = (
    "Explore the repository with the read-only tools and propose a plan for the task. "
    "Do not change anything. Finish with the plan as a numbered list of concrete steps, "
    "one line each, in the order you would do them."
)


def parse_plan(text: str) -> tuple[PlanStep, ...]:
    """The list items of the agent's plan, in order (at most 20, each line capped)."""
    steps: list[PlanStep] = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match is None:
            continue
        item = " ".join(match.group("text").split())
        if len(item) > MAX_STEP_CHARS:
            item = item[: MAX_STEP_CHARS - 1] + "…"
        steps.append(PlanStep(item))
        if len(steps) == MAX_STEPS:
            break
    return tuple(steps)


class PlanDriven(Strategy):
    name = "plan"
    fix_rounds = 1
    draft_default = True

    def plan(self, run: Run, brief: Brief) -> Result:
        run.phase("Exploring read-only", "running")
        outcome = run.agent(brief.text() + "\n\n" + PLAN_PROMPT, read_only=True)
        match outcome.exit:
            case Finished(summary):
                steps = parse_plan(summary)
            case ended:
                return unfinished(run, "Exploring read-only", ended, writes=False)
        if not steps:
            run.phase("Exploring read-only", "failed", "no plan")
            return Result(
                "failed",
                summary,
                reason="the agent finished without a plan (no list of steps)",
                writes=False,
            )
        run.phase("Exploring read-only", "done", f"{len(steps)} steps")
        return Result("planned", summary, plan=steps, writes=False)

    def execute_plan(self, run: Run, brief: Brief) -> Result:
        steps = list(brief.plan)
        summaries = []
        for index, step in enumerate(steps):
            if step.done:
                continue
            run.phase(f"Step {index + 1}: {step.text}", "running")
            outcome = run.agent(
                brief.text()
                + "\n\nThe approved plan:\n"
                + "\n".join(f"{n + 1}. {s.text}" for n, s in enumerate(steps))
                + f"\n\nDo step {index + 1} now, and only that step: {step.text}"
            )
            match outcome.exit:
                case Finished(summary):
                    summaries.append(f"{index + 1}. {summary.strip()}")
                case ended:
                    return unfinished(
                        run, f"Step {index + 1}: {step.text}", ended, plan=tuple(steps)
                    )
            steps[index] = replace(step, done=True)
            run.tick(index)
            run.phase(f"Step {index + 1}: {step.text}", "done")
        run.phase("Checks", "running")
        checks = run.checks()
        failing = check_feedback(checks)
        run.phase("Checks", "failed" if failing else "done")
        summary = "\n".join(summaries)
        if failing:
            fixed = agent_and_checks(run, replace(brief, feedback=tuple(failing)), 0)
            return replace(fixed, plan=tuple(steps), summary=summary + "\n" + fixed.summary)
        return Result("succeeded", summary, tuple(checks), plan=tuple(steps))
