"""Rendered comments and PR bodies: content, markers, redaction."""

from __future__ import annotations

from bot.core.config import ConfigProblem
from bot.core.markers import find_marker
from bot.core.render import (
    Final,
    Phase,
    render_config_problems,
    render_plan,
    render_pr_body,
    render_refusal,
    render_status,
    render_status_reply,
)
from bot.core.tasks import (
    Check,
    Feedback,
    IterationRecord,
    PlanStep,
    Requirement,
    State,
    TaskRecord,
    Usage,
)

TOKEN = "ghp_" + "a" * 36


def _task(**kw: object) -> TaskRecord:
    base: dict[str, object] = {
        "id": 5,
        "repo": "octo/demo",
        "number": 12,
        "model": "conversational",
        "state": State.AWAITING_FEEDBACK,
        "branch": "vibe/issue-12-fix-add",
        "base": "main",
        "requester": "ann",
        "title": "Fix add",
        "instruction": "add() is wrong",
        "pr_number": 13,
        "requirements": (Requirement("add() adds", "issue"), Requirement("keep API", "require")),
        "usage": Usage(1000, 200, 0.0123),
    }
    base.update(kw)
    return TaskRecord(**base)  # type: ignore[arg-type]


def test_pr_body_has_fixes_summary_checklist_log_and_marker() -> None:
    it = IterationRecord(
        1,
        "label",
        feedback=(Feedback("human", "please"),),
        commits=("abcdef1234",),
        checks=(Check("tests", "pytest -q", "execution", 0, 1.5),),
        usage=Usage(1000, 200, 0.0123),
        duration=12.0,
        outcome="succeeded",
    )
    body = render_pr_body(_task(iterations=(it,)), f"Changed add. {TOKEN}")
    assert body.startswith("Fixes #12\n")
    assert "Changed add." in body
    assert TOKEN not in body
    assert "[redacted]" in body
    assert "- [ ] add() adds" in body
    assert "- [ ] keep API" in body
    assert "| 1 | label | human | abcdef1 | tests passed | succeeded | 12.0 s | $0.0123 |" in body
    found = find_marker(body, "task")
    assert found is not None
    assert found.get("task") == "5"


def test_pr_body_on_a_borrowed_pr_does_not_claim_to_fix() -> None:
    assert "Fixes #" not in render_pr_body(_task(owns_pr=False), "s")


def test_test_model_body_shows_red_and_green_or_says_none() -> None:
    red = Check("tests", "pytest", "execution", 1, 0.4, "1 failed")
    green = Check("tests", "pytest", "execution", 0, 0.4, "1 passed")
    it = IterationRecord(1, "label", red=red, green=green, outcome="succeeded")
    body = render_pr_body(_task(model="test", iterations=(it,)), "s")
    assert "red, before the change" in body
    assert "1 failed" in body
    assert "green, after" in body
    assert "1 passed" in body
    bare = render_pr_body(_task(model="test", iterations=(IterationRecord(1, "label"),)), "s")
    assert "No test command is known" in bare


def test_status_lists_phases_then_a_final_line() -> None:
    phases = [Phase("Workspace ready", "done"), Phase("Agent working", "running", "step 3")]
    live = render_status(5, 2, "plan", phases)
    assert "iteration 2 · plan-driven" in live
    assert "- [x] Workspace ready" in live
    assert "⏳ Agent working (step 3)" in live
    assert "Working" in live
    done = render_status(
        5,
        2,
        "plan",
        phases,
        Final("failed", 75.0, Usage(10, 5, 0.5), reason=f"boom {TOKEN}"),
        secrets=["hunter22secret"],
    )
    assert "❌ **Failed** after 1 min 15 s · 15 tokens · $0.5000 · checks: not run" in done
    succeeded = render_status(5, 2, "plan", phases, Final("succeeded", 1.0, Usage(1, 1, 0.1)))
    assert "checks: no checks configured" in succeeded
    assert TOKEN not in done
    assert "Working" not in done
    status = find_marker(done, "status")
    assert status is not None
    assert status.get("task") == "5"


def test_replies_plan_and_config_problems() -> None:
    reply = render_status_reply(_task(), {"dollars_per_task": 20.0}, "c1")
    assert "awaiting feedback" in reply
    assert "PR #13" in reply
    assert "$0.0123" in reply
    assert "dollars per task 20.0" in reply
    refusal = render_refusal("only writers can ask", "c2")
    assert "only writers can ask" in refusal
    plan = render_plan(5, [PlanStep("read", True), PlanStep("edit")])
    assert "- [x] read" in plan
    assert "- [ ] edit" in plan
    assert "/vibe approve" in plan
    problems = render_config_problems([ConfigProblem(3, "model: bad")], ".github/vibe.yml", "main")
    assert "line 3: model: bad" in problems
