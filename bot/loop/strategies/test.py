"""Test-driven: a failing test that captures the requirement first (red, recorded), then
the change until it passes (green, recorded); the PR shows both runs. Without a known
test command the model says so and works like the conversational one."""

from __future__ import annotations

from dataclasses import replace

from bot.core.agent import Finished
from bot.loop.strategies.base import Brief, Result, Run, Strategy, agent_and_checks, unfinished

RED_PROMPT = (
    "Test-driven step 1 of 2: write or extend an automated test that captures the "
    "requirement and FAILS with the current code. Change only test files now; do not "
    "implement the change yet. Finish with a one-line summary of the test."
)
GREEN_PROMPT = (
    "Test-driven step 2 of 2: the new test failed as recorded below. Now change the "
    "implementation so that it and the existing tests pass. Do not weaken the test."
)
NO_TEST_COMMAND = (
    "no test command is known for this repository (set commands.test in .github/vibe.yml), "
    "so no red and green runs are recorded"
)


class TestDriven(Strategy):
    name = "test"
    fix_rounds = 1
    draft_default = True

    def iterate(self, run: Run, brief: Brief) -> Result:
        if not run.config.commands.test:
            run.phase("Red and green test runs", "skipped", NO_TEST_COMMAND)
            return agent_and_checks(run, brief, self.fix_rounds)
        run.phase("Writing a failing test", "running")
        first = run.agent(brief.text() + "\n\n" + RED_PROMPT)
        match first.exit:
            case Finished(test_summary):
                run.phase("Writing a failing test", "done")
            case ended:
                return unfinished(run, "Writing a failing test", ended)
        red = run.test_run()
        if red is None:
            run.phase("Red run", "skipped", NO_TEST_COMMAND)
            return agent_and_checks(run, brief, self.fix_rounds)
        run.phase(
            "Red run",
            "done" if not red.passed else "failed",
            "failed as expected"
            if not red.passed
            else "passed before the change: the new test does not capture the requirement",
        )
        tail = red.output[-3000:].strip()
        green_brief = replace(
            brief,
            instruction=brief.instruction
            + f"\n\n{GREEN_PROMPT}\n\nRed run of `{red.command}` (exit {red.exit_code}):\n{tail}",
        )
        result = agent_and_checks(run, green_brief, self.fix_rounds)
        green = next((c for c in result.checks if c.kind == "execution"), None)
        if green is not None:
            run.phase("Green run", "done" if green.passed else "failed")
        summary = f"{test_summary.strip()}\n{result.summary.strip()}".strip()
        return replace(result, red=red, green=green, summary=summary)
