"""The repository's own CI as feedback: check results as values and the decision per head
commit. Pure: no I/O (the GitHub adapter reads checks, :mod:`bot.loop.ci` acts).

A head commit of the bot's PR is decided once, when its suite is complete (every check run
and commit status concluded). :func:`decide` says what to do with it:

- :class:`Green`: every check passed (``success``, ``neutral`` or ``skipped``);
- :class:`Rerun`: failing Actions jobs are re-run once first (``ci.rerun_failed_jobs``);
- :class:`Fix`: one fix iteration whose feedback is the failing checks;
- :class:`Halt`: a failure not fixed automatically: fixes are off, the cap is reached,
  the same failure came back after a fix, the task's budget is spent, or a check ended
  in a way a code change does not address (cancelled, action required, stale).

Failure signature (the rule the repeat check uses): the sorted set of ``check:<name>`` for
every failing check plus ``test:<id>`` for every failing test id found in their annotation
messages, output texts and log tails (:func:`failing_tests`: pytest's ``FAILED``/``ERROR
path::test``, unittest's ``FAIL: test (module.Class)``, Go's ``--- FAIL: TestName``). Two
rounds repeat when their signatures are equal: the same checks fail on the same tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.core.globs import Glob
from bot.core.sanitize import frame_untrusted
from bot.core.tasks import Feedback, FeedbackKind

# GitHub's conclusions of a check run (https://docs.github.com/en/rest/checks/runs) and
# states of a commit status (https://docs.github.com/en/rest/commits/statuses).
PASSING = frozenset({"success", "neutral", "skipped"})
FAILING = frozenset({"failure", "timed_out", "startup_failure", "error"})

# Check names the default classification calls ``compiler`` (lint, type and build checks);
# every other failing check is ``execution`` (tests). Matched as substrings of the name with
# separators removed, case-insensitively.
COMPILER_WORDS: tuple[str, ...] = (
    "lint",
    "ruff",
    "flake8",
    "pylint",
    "eslint",
    "mypy",
    "pyright",
    "typecheck",
    "tsc",
    "build",
    "compile",
    "clippy",
    "format",
)

# The bot's own check run (its phases), never CI feedback for itself.
OWN_CHECK = "vibe"


@dataclass(frozen=True)
class Annotation:
    path: str
    start_line: int
    end_line: int
    level: str  # notice | warning | failure
    message: str


@dataclass(frozen=True)
class CheckResult:
    """A check run (``source == "check_run"``) or a commit status (``"status"``)."""

    name: str
    source: str  # "check_run" | "status"
    status: str  # queued | in_progress | completed
    conclusion: str | None
    app_slug: str | None
    title: str
    summary: str
    text: str
    annotations: tuple[Annotation, ...]
    job_id: int | None
    details_url: str | None
    run_attempt: int | None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def passed(self) -> bool:
        return self.completed and self.conclusion in PASSING

    @property
    def failed(self) -> bool:
        return self.completed and self.conclusion in FAILING


@dataclass(frozen=True)
class HeadChecks:
    """Every check of one head commit, as GitHub lists it now."""

    sha: str
    checks: tuple[CheckResult, ...]

    @property
    def complete(self) -> bool:
        """Some check exists and every one has concluded."""
        return bool(self.checks) and all(c.completed for c in self.checks)


@dataclass(frozen=True)
class PullHead:
    """The bot's PR as the CI decision checks it: still open, still the bot's head."""

    sha: str | None
    same_repo: bool
    open: bool
    draft: bool


@dataclass(frozen=True)
class CiPolicy:
    """The ``ci`` section of ``.github/vibe.yml`` as the decision needs it."""

    auto_fix: bool = True
    max_fix_iterations: int = 3
    rerun_failed_jobs: bool = False
    ready_when: Literal["checks_green", "never"] = "checks_green"
    compiler: tuple[str, ...] = ()
    execution: tuple[str, ...] = ()


RoundOutcome = Literal["rerun", "green", "fix", "halt", "superseded"]


@dataclass(frozen=True)
class Round:
    """A head commit already decided (or re-run and waiting), as the store keeps it."""

    sha: str
    outcome: RoundOutcome
    # The failure signature (fix, halt); a re-run round keeps the jobs it re-ran here as
    # ``job:<id>`` (:func:`rerun_jobs`) until the head is decided.
    signature: tuple[str, ...] = ()
    failing: tuple[str, ...] = ()
    manual: bool = False  # a fix a person asked for with /vibe fix-ci
    note: str = ""  # what the round came to, for the CI log


def rerun_jobs(r: Round) -> frozenset[int]:
    """The job ids a ``rerun`` round re-ran. A re-run job gets a new id (and check run),
    so while one of these is still the head's latest check, the re-run has not started."""
    if r.outcome != "rerun":
        return frozenset()
    return frozenset(int(s[4:]) for s in r.signature if s.startswith("job:") and s[4:].isdigit())


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def _glob(pattern: str) -> Glob:
    """A check-name glob: ``*`` matches any text (check names hold ``/``)."""
    return Glob(pattern.casefold().replace("**", "*").replace("*", "**"))


def classify(name: str, policy: CiPolicy) -> FeedbackKind:
    """``compiler`` or ``execution`` for a failing check: the config's globs first
    (``ci.kinds.compiler`` before ``ci.kinds.execution``), then the default by name."""
    folded = name.casefold()
    if any(_glob(p).match(folded) for p in policy.compiler):
        return "compiler"
    if any(_glob(p).match(folded) for p in policy.execution):
        return "execution"
    flat = _normal(name)
    return "compiler" if any(word in flat for word in COMPILER_WORDS) else "execution"


_TEST_PATTERNS = (
    re.compile(r"^\s*(?:FAILED|ERROR)\s+(\S+::\S+)", re.MULTILINE),  # pytest summary
    re.compile(r"^(?:FAIL|ERROR): (\w+) \(([\w.]+)\)", re.MULTILINE),  # unittest
    re.compile(r"^\s*--- FAIL: (\S+)", re.MULTILINE),  # go test
)
MAX_TEST_IDS = 50


def failing_tests(texts: Iterable[str]) -> tuple[str, ...]:
    """Failing test ids named in ``texts`` (sorted, at most :data:`MAX_TEST_IDS`)."""
    found: set[str] = set()
    for text in texts:
        for pattern in _TEST_PATTERNS:
            for match in pattern.finditer(text):
                ident = match[1]
                if match.lastindex == 2:  # unittest: Python 3.11 names the test in full
                    ident = (
                        match[2] if match[2].endswith(f".{match[1]}") else f"{match[2]}.{match[1]}"
                    )
                found.add(ident[:300])
    return tuple(sorted(found))[:MAX_TEST_IDS]


def signature(failing: Sequence[CheckResult], logs: Mapping[str, str]) -> tuple[str, ...]:
    """The failure signature of a round (see the module's docstring)."""
    texts: list[str] = []
    for check in failing:
        texts += [check.summary, check.text, *(a.message for a in check.annotations)]
        texts.append(logs.get(check.name, ""))
    names = {f"check:{c.name}" for c in failing}
    return tuple(sorted(names)) + tuple(f"test:{t}" for t in failing_tests(texts))


@dataclass(frozen=True)
class Green:
    flaky: tuple[str, ...] = ()  # checks that failed, then passed on re-run


@dataclass(frozen=True)
class Rerun:
    job_ids: tuple[int, ...]
    failing: tuple[str, ...]


@dataclass(frozen=True)
class Fix:
    failing: tuple[CheckResult, ...]
    flaky: tuple[str, ...] = ()


HaltReason = Literal["off", "cap", "repeat", "budget", "unfixable"]


@dataclass(frozen=True)
class Halt:
    reason: HaltReason
    failing: tuple[CheckResult, ...]
    evidence: str
    flaky: tuple[str, ...] = ()


Decision = Green | Rerun | Fix | Halt


@dataclass(frozen=True)
class Facts:
    """What the decision needs besides the checks."""

    rounds: tuple[Round, ...] = ()  # earlier rounds of the task, oldest first
    budget_spent: str | None = None  # which task limit is spent, if one is
    manual: bool = False  # /vibe fix-ci: one fix past the switches and the cap
    ignore: frozenset[str] = field(default_factory=lambda: frozenset({OWN_CHECK}))


def own_names(bot_login: str) -> frozenset[str]:
    """What marks the bot's own checks: its check run's name and its App's slug."""
    return frozenset({OWN_CHECK, bot_login.removesuffix("[bot]").casefold()})


def counted(checks: HeadChecks, ignore: frozenset[str]) -> tuple[CheckResult, ...]:
    """The checks that count: not the bot's own (by name or by App, case-insensitive)."""
    return tuple(
        c
        for c in checks.checks
        if c.name.casefold() not in ignore and (c.app_slug or "").casefold() not in ignore
    )


def _names(checks: Iterable[CheckResult]) -> tuple[str, ...]:
    return tuple(sorted({c.name for c in checks}))


def fixes_so_far(rounds: Iterable[Round]) -> int:
    """Automatic fix rounds of the task (a /vibe fix-ci round is the person's, not the cap's)."""
    return sum(1 for r in rounds if r.outcome == "fix" and not r.manual)


def decide(
    checks: HeadChecks, policy: CiPolicy, facts: Facts, sig: tuple[str, ...] = ()
) -> Decision | None:
    """What to do with a head whose suite is complete; ``None`` while it is not.

    ``facts.rounds`` holds this head's own round when it was re-run (outcome ``rerun``):
    the re-run happens once, and checks it turned green are flaky. ``sig`` is the
    failure signature of this head (:func:`signature`, which needs the job logs)."""
    mine = counted(checks, facts.ignore)
    if not mine or not all(c.completed for c in mine):
        return None
    this = next((r for r in facts.rounds if r.sha == checks.sha), None)
    earlier = tuple(r for r in facts.rounds if r.sha != checks.sha)
    rerun_before = this is not None and this.outcome == "rerun"
    failing = tuple(c for c in mine if c.failed)
    flaky = (
        tuple(n for n in this.failing if n not in {c.name for c in failing})
        if this is not None and rerun_before
        else ()
    )
    if all(c.passed for c in mine):
        return Green(flaky)
    if not failing:
        odd = tuple(c for c in mine if not c.passed)
        ended = ", ".join(f"{c.name} ({c.conclusion})" for c in odd)
        return Halt("unfixable", odd, f"checks ended without a failure to fix: {ended}", flaky)
    if facts.budget_spent is not None:
        return Halt("budget", failing, f"the task's {facts.budget_spent} is spent", flaky)
    if facts.manual:
        return Fix(failing, flaky)
    if not policy.auto_fix:
        return Halt("off", failing, "automatic CI fixes are off (`ci.auto_fix: false`)", flaky)
    jobs = tuple(c.job_id for c in failing if c.job_id is not None)
    if policy.rerun_failed_jobs and not rerun_before and jobs:
        return Rerun(jobs, _names(failing))
    last_fix = next((r for r in reversed(earlier) if r.outcome == "fix"), None)
    if last_fix is not None and sig and last_fix.signature == sig:
        evidence = f"the same failure came back after the fix of {last_fix.sha[:7]}: " + ", ".join(
            sig
        )
        return Halt("repeat", failing, evidence, flaky)
    done = fixes_so_far(earlier)
    if done >= policy.max_fix_iterations:
        evidence = (
            f"{done} automatic CI fixes were made; `ci.max_fix_iterations` is "
            f"{policy.max_fix_iterations}"
        )
        return Halt("cap", failing, evidence, flaky)
    return Fix(failing, flaky)


# What one round's feedback may hold of check output and logs, in characters, over all its
# failing checks; each check gets an equal share, its log the tail of what is left.
FEEDBACK_BUDGET_CHARS = 12_000
MAX_ANNOTATIONS = 20
LOG_TAIL_BYTES = 64 * 1024  # asked of GitHub per job; the budget trims it further


def _tail(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[len(text) - limit :]
    newline = cut.find("\n")
    return "[...]\n" + (cut[newline + 1 :] if 0 <= newline < limit // 2 else cut)


def check_feedback_text(check: CheckResult, log: str | None, budget: int) -> str:
    """One failing check as feedback text: its name and conclusion (the bot's words), then
    everything the check or its log says, sanitised and framed as untrusted data."""
    lines: list[str] = []
    for part in (check.title, check.summary, check.text):
        if part.strip():
            lines.append(part.strip())
    notes = [a for a in check.annotations if a.level in ("failure", "warning")][:MAX_ANNOTATIONS]
    if notes:
        lines.append("Annotations:")
        for a in notes:
            span = (
                str(a.start_line)
                if a.end_line in (a.start_line, 0)
                else (f"{a.start_line}-{a.end_line}")
            )
            lines.append(f"- {a.path}:{span} [{a.level}] {a.message.strip()}")
    output = _tail("\n".join(lines), budget // 2)
    if log is not None and log.strip():
        output += "\n\nJob log (tail):\n" + _tail(log, max(budget - len(output), budget // 4))
    elif check.job_id is not None:
        output += "\n\nThe job's log is not available."
    kind = "check run" if check.source == "check_run" else "commit status"
    head = f"CI {kind} `{check.name}` concluded {check.conclusion}."
    return head + "\n" + frame_untrusted(output.strip() or "(no output)", f"ci:{check.name}")


def ci_feedback(
    failing: Sequence[CheckResult],
    policy: CiPolicy,
    logs: Mapping[str, str | None],
    budget: int = FEEDBACK_BUDGET_CHARS,
) -> tuple[Feedback, ...]:
    """The failing checks of a round as one iteration's feedback, kind by :func:`classify`."""
    share = max(budget // max(len(failing), 1), 500)
    return tuple(
        Feedback(classify(c.name, policy), check_feedback_text(c, logs.get(c.name), share))
        for c in failing
    )


_OUTCOME_WORDS: Mapping[str, str] = {
    "rerun": "failed; failed jobs re-run once",
    "green": "all checks passed",
    "fix": "failed; fixing",
    "halt": "failed; not fixed automatically",
    "superseded": "not the bot's head any more",
}


def round_line(r: Round) -> str:
    """One CI round as a line of the CI log."""
    failing = ", ".join(f"`{n}`" for n in r.failing)
    words = _OUTCOME_WORDS.get(r.outcome, r.outcome)
    if r.outcome == "fix" and r.manual:
        words = "failed; fixing (asked with `/vibe fix-ci`)"
    parts = [f"- `{r.sha[:7]}`: {words}"]
    if failing and r.outcome != "green":
        parts.append(f"failing: {failing}")
    if r.note:
        parts.append(r.note)
    return " · ".join(parts)


def render_ci_log(rounds: Sequence[Round]) -> str:
    """The CI rounds of a task, oldest first, as Markdown (without its marker)."""
    lines = ["### vibe-bot · CI rounds", ""]
    lines += [round_line(r) for r in rounds] or ["- none yet"]
    return "\n".join(lines)
