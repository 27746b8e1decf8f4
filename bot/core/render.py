"""Everything the bot writes on GitHub, as pure functions of task values.

Each text ends with its hidden marker (:mod:`bot.core.markers`) and goes through
:func:`bot.core.redact.redact` before it leaves the process (DESIGN.md section 4 rule 8):
callers pass the configured secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.core.attempts import attempts_table
from bot.core.config import ConfigProblem
from bot.core.markers import Marker, marker, with_marker
from bot.core.redact import redact
from bot.core.sanitize import sanitize_untrusted
from bot.core.tasks import Check, IterationRecord, PlanStep, Requirement, TaskRecord, Usage

PhaseState = Literal["pending", "running", "done", "failed", "skipped"]

_BOX: dict[PhaseState, str] = {
    "pending": "- [ ]",
    "running": "- [ ] ⏳",
    "done": "- [x]",
    "failed": "- [ ] ❌",
    "skipped": "- [x] ~",
}

MODEL_NAMES = {
    "unconstrained": "unconstrained automation",
    "conversational": "conversational collaboration",
    "plan": "plan-driven",
    "test": "test-driven",
    "context": "context-enhanced",
}

MAX_OUTPUT_IN_BODY = 1500


@dataclass(frozen=True)
class Phase:
    name: str
    state: PhaseState = "pending"
    detail: str = ""


@dataclass(frozen=True)
class Final:
    """The last line of a status comment: how the iteration ended."""

    outcome: Literal["succeeded", "failed", "stopped", "limit", "planned"]
    duration: float
    usage: Usage
    checks: tuple[Check, ...] = ()
    reason: str | None = None


def status_marker(task_id: int) -> Marker:
    return marker("status", task=task_id)


def task_marker(task_id: int) -> Marker:
    return marker("task", task=task_id)


def plan_marker(task_id: int) -> Marker:
    return marker("plan", task=task_id)


def reply_marker(key: str) -> Marker:
    return marker("reply", to=key)


def config_marker(ref: str) -> Marker:
    return marker("config", ref=ref)


def money(value: float) -> str:
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    return f"{minutes} min {secs} s"


def checks_line(checks: Sequence[Check]) -> str:
    if not checks:
        return "no checks configured"
    parts = []
    for check in checks:
        verdict = "passed" if check.passed else (check.limit or f"failed ({check.exit_code})")
        parts.append(f"{check.name} {verdict}")
    return ", ".join(parts)


def final_line(final: Final, secrets: Iterable[str] = ()) -> str:
    # An iteration that failed before any check ran did not find "no checks configured".
    checks = (
        "not run" if final.outcome == "failed" and not final.checks else checks_line(final.checks)
    )
    stats = (
        f"{seconds(final.duration)} · {final.usage.tokens:,} tokens · {money(final.usage.cost)}"
        f" · checks: {checks}"
    )
    if final.outcome == "succeeded":
        return f"✅ **Done** in {stats}"
    if final.outcome == "planned":
        return f"📝 **Plan ready**, waiting for `/vibe approve`, in {stats}"
    reason = redact(final.reason or "no reason recorded", secrets)
    if final.outcome == "stopped":
        return f"⏹️ **Stopped** after {stats}. {reason}"
    if final.outcome == "limit":
        return f"⚠️ **Limit reached** after {stats}: {reason}"
    return f"❌ **Failed** after {stats}: {reason}"


def console_link(public_url: str | None, task_id: int) -> str | None:
    """The task's page in the console (``/console/tasks/{id}``) under the service's public
    address (``VIBE_PUBLIC_URL``); None when no address is set."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/console/tasks/{task_id}"


def _console_line(link: str | None) -> list[str]:
    return [] if link is None else ["", f"[The task in the console]({link}): every step, live."]


def render_status(
    task_id: int,
    iteration: int,
    model: str,
    phases: Sequence[Phase],
    final: Final | None = None,
    secrets: Iterable[str] = (),
    link: str | None = None,
) -> str:
    """The one live status comment of a task: a phase checklist, then the final line, then
    the task's console page when ``link`` (:func:`console_link`) is given."""
    lines = [f"### vibe-bot · iteration {iteration} · {MODEL_NAMES.get(model, model)}", ""]
    for phase in phases:
        detail = f" ({phase.detail})" if phase.detail else ""
        lines.append(f"{_BOX[phase.state]} {phase.name}{detail}")
    if final is None:
        lines += ["", "_Working; this comment updates as the iteration goes._"]
    else:
        lines += ["", final_line(final, secrets)]
    lines += _console_line(link)
    return with_marker(redact("\n".join(lines), secrets), status_marker(task_id))


def _requirements(reqs: Sequence[Requirement]) -> list[str]:
    return [f"- [{'x' if r.done else ' '}] {r.text}" for r in reqs]


def _plan(steps: Sequence[PlanStep]) -> list[str]:
    return [f"- [{'x' if s.done else ' '}] {s.text}" for s in steps]


def _fenced(text: str) -> str:
    text = text[-MAX_OUTPUT_IN_BODY:]
    fence = "````" if "```" in text else "```"
    return f"{fence}\n{text.rstrip()}\n{fence}"


def _test_runs(it: IterationRecord) -> list[str]:
    out: list[str] = []
    for label, run in (("red, before the change", it.red), ("green, after", it.green)):
        if run is None:
            continue
        verdict = "passed" if run.passed else f"failed (exit {run.exit_code})"
        out += [
            f"<details><summary>Iteration {it.number}, {label}: <code>{run.command}</code> "
            f"{verdict}</summary>",
            "",
            _fenced(run.output),
            "",
            "</details>",
        ]
    return out


def iteration_row(it: IterationRecord) -> str:
    kinds = ", ".join(it.feedback_kinds()) or "none"
    commits = ", ".join(c[:7] for c in it.commits) or "none"
    return (
        f"| {it.number} | {it.trigger} | {kinds} | {commits} | {checks_line(it.checks)} | "
        f"{it.outcome} | {seconds(it.duration)} | {money(it.usage.cost)} |"
    )


MANIFEST_FILES_IN_BODY = 8
_CELL_UNSAFE = str.maketrans({"`": "'", "|": "/", "\n": " ", "\r": " ", "<": "(", ">": ")"})


def _cell(value: object) -> str:
    """A name from the repository, safe inside a Markdown table's code span."""
    return sanitize_untrusted(str(value)).translate(_CELL_UNSAFE)[:120]


def _whole(value: object) -> int:
    return int(value) if type(value) in (int, float) else 0  # type: ignore[call-overload]


def context_section(it: IterationRecord) -> list[str]:
    """The iteration's context manifest, short and collapsed: each part's tokens against
    the budget (L_max), the best-ranked files and what was left out."""
    m = it.context
    if not m:
        return []
    budget = _whole(m.get("budget"))
    kinds = [k for k in m.get("kinds") or [] if isinstance(k, dict)]
    files = [f for f in m.get("files") or [] if isinstance(f, dict)]
    left = [o for o in m.get("left_out") or [] if isinstance(o, dict)]
    lines = [
        f"<details><summary>Context of iteration {it.number}: "
        f"{_whole(m.get('total_tokens')):,} of {budget:,} tokens</summary>",
        "",
        "| part | tokens |",
        "|---|---|",
        *(f"| {_cell(k.get('kind'))} | {_whole(k.get('tokens')):,} |" for k in kinds),
    ]
    if files:
        shown = ", ".join(
            f"{_whole(f.get('rank'))}. `{_cell(f.get('path'))}`"
            + ("" if f.get("included") is True else " (not included)")
            for f in files[:MANIFEST_FILES_IN_BODY]
        )
        lines += ["", f"Files by rank: {shown}."]
    if left:
        tokens = sum(_whole(o.get("tokens")) for o in left)
        names = ", ".join(f"`{_cell(o.get('source'))}`" for o in left[:5])
        more = f" and {len(left) - 5} more" if len(left) > 5 else ""
        lines += ["", f"Left out for lack of budget: {names}{more} ({tokens:,} tokens)."]
    return [*lines, "", "</details>"]


def render_pr_body(
    task: TaskRecord, summary: str, secrets: Iterable[str] = (), link: str | None = None
) -> str:
    """The PR body: "Fixes #n", summary, requirement checklist, iteration log (with the
    task's console page when ``link`` is given), marker."""
    lines: list[str] = []
    if task.owns_pr:
        lines += [f"Fixes #{task.number}", ""]
    lines += [
        f"Development model: **{MODEL_NAMES.get(task.model, task.model)}**, "
        f"requested by @{task.requester}.",
        "",
        "## Summary",
        "",
        summary.strip() or "_No summary yet._",
        "",
        "## Requirements",
        "",
        *(_requirements(task.requirements) or ["_none recorded_"]),
    ]
    if task.plan:
        lines += ["", "## Plan", "", *_plan(task.plan)]
    runs = [line for it in task.iterations for line in _test_runs(it)]
    if runs:
        lines += ["", "## Test runs", "", *runs]
    elif task.model == "test" and task.iterations:
        lines += [
            "",
            "## Test runs",
            "",
            "No test command is known for this repository (set `commands.test` in "
            "`.github/vibe.yml`), so no red and green runs were recorded.",
        ]
    lines += [
        "",
        "## Iterations",
        "",
        "| # | trigger | feedback | commits | checks | outcome | time | cost |",
        "|---|---|---|---|---|---|---|---|",
        *(iteration_row(it) for it in task.iterations),
        "",
        f"Total: {task.usage.tokens:,} tokens, {money(task.usage.cost)}. "
        "Review this PR to request another iteration; `/vibe help` lists the commands.",
    ]
    tried = next((it for it in reversed(task.iterations) if it.attempts), None)
    if tried is not None and tried.attempts is not None:
        lines += ["", f"## Attempts of iteration {tried.number}", ""]
        lines += attempts_table(tried.attempts)
    latest = next((it for it in reversed(task.iterations) if it.context), None)
    if latest is not None:
        lines += ["", *context_section(latest)]
    lines += _console_line(link)
    return with_marker(redact("\n".join(lines), secrets), task_marker(task.id))


def render_plan(task_id: int, steps: Sequence[PlanStep], secrets: Iterable[str] = ()) -> str:
    lines = [
        "### vibe-bot · proposed plan",
        "",
        *_plan(steps),
        "",
        "Nothing is written until a writer answers `/vibe approve`. "
        "`/vibe <changes>` asks for a new plan.",
    ]
    return with_marker(redact("\n".join(lines), secrets), plan_marker(task_id))


def render_status_reply(
    task: TaskRecord,
    limits: dict[str, float | int],
    key: str,
    secrets: Iterable[str] = (),
    ci_rounds: Sequence[str] = (),
) -> str:
    """The answer to `/vibe status`; ``ci_rounds``: the task's CI rounds, one line each
    (:func:`bot.core.ci.round_line`), oldest first."""
    last = task.iterations[-1] if task.iterations else None
    lines = [
        f"**Task state:** {task.state.value.replace('_', ' ')} · model: "
        f"{MODEL_NAMES.get(task.model, task.model)} · branch `{task.branch}`"
        + (f" · PR #{task.pr_number}" if task.pr_number else ""),
        f"**Iterations:** {len(task.iterations)}"
        + (f" (last: {last.outcome}, {checks_line(last.checks)})" if last else ""),
        f"**Cost so far:** {money(task.usage.cost)}, {task.usage.tokens:,} tokens",
        "**Limits:** " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in limits.items()),
    ]
    if task.requirements:
        lines += ["", "**Requirements:**", *_requirements(task.requirements)]
    if ci_rounds:
        lines += ["", "**CI rounds:**", *ci_rounds]
    return with_marker(redact("\n".join(lines), secrets), reply_marker(key))


def render_refusal(reason: str, key: str, secrets: Iterable[str] = ()) -> str:
    text = f"🙅 I can't do that: {reason}"
    return with_marker(redact(text, secrets), reply_marker(key))


def render_reply(text: str, key: str, secrets: Iterable[str] = ()) -> str:
    return with_marker(redact(text, secrets), reply_marker(key))


def render_failure(reason: str, key: str, secrets: Iterable[str] = ()) -> str:
    text = f"❌ vibe-bot failed: {redact(reason, secrets)}"
    return with_marker(text, reply_marker(key))


def render_thread_reply(commit: str, summary: str, secrets: Iterable[str] = ()) -> str:
    text = f"Addressed in {commit}." + (f" {summary.strip()}" if summary.strip() else "")
    return redact(text, secrets)


def render_config_problems(
    problems: Sequence[ConfigProblem], path: str, ref: str, secrets: Iterable[str] = ()
) -> str:
    lines = [
        f"⚠️ `{path}` on `{ref}` is not valid, so I am using safe defaults for this task:",
        "",
        *(f"- {problem}" for problem in problems),
    ]
    return with_marker(redact("\n".join(lines), secrets), config_marker(ref))
