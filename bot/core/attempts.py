"""Best-of-N attempts (issue 18): how many run, what each came to, which one is chosen and
why, as values and pure functions (no I/O). :mod:`bot.loop.attempts` runs them.

An iteration with ``attempts: N`` (``.github/vibe.yml``, or ``/vibe attempts=N ...``) runs
N independent agent attempts, each in a worktree and sandbox of its own on a branch of its
own (:func:`attempt_branch`), from the same head of the task branch. The repository's own
checks then choose (:func:`choose`); the chosen attempt's commit becomes the task branch's
next commit, the others stay on their branches until the next iteration or the end of the
task, and ``/vibe pick <k>`` makes another one the head.

**The ranking** (:func:`rank_key`), first difference decides:

1. an attempt that produced a change and finished (outcome ``succeeded``) beats one that
   hit a limit, which beats one that failed or changed nothing;
2. an attempt whose checks all pass beats one with a failing check (the repository's own
   lint and tests are the judge; with no checks configured every attempt is equal here);
3. more test files changed (tests added or extended, and passing by rule 2) ranks higher;
4. fewer check failures fed back to the agent on the way (a first-time pass beats one
   that needed a fix);
5. a smaller diff (inserted plus deleted lines) ranks higher: less for a person to review;
6. lower cost;
7. the lower attempt number (deterministic).

Self-review findings are not ranked: the agent's self-review is its own look at its diff,
not a count of findings.

**The budget** (:func:`affordable`): each attempt may spend up to the per-iteration dollar
limit, and the task's dollar limit covers all attempts together, so the number that runs is
what the task's remaining budget covers at the per-iteration limit each (at least one: a
single attempt is the ordinary iteration, bounded as ever by the agent's own checks).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

MAX_ATTEMPTS = 5
ATTEMPT_SEPARATOR = "--attempt-"

AttemptChecks = Literal["passed", "failed", "none"]
_OUTCOME_ORDER = {"succeeded": 0, "limit": 1}
_CHECKS_ORDER: dict[str, int] = {"passed": 0, "none": 0, "failed": 1}
_TEST_PATH = re.compile(
    r"(^|/)(tests?|spec|__tests__)/|(^|/)test_[^/]*$|_test\.[^/]+$|\.(test|spec)\.[^/]+$"
)


def attempt_branch(task_branch: str, number: int) -> str:
    """Attempt ``number``'s branch: ``<task branch>--attempt-<k>``.

    Not ``<task branch>/attempt-<k>`` as issue 18 first wrote: git stores a branch as a
    file under ``refs/heads``, so ``a/b`` and ``a/b/c`` cannot both exist (``git help
    check-ref-format``; GitHub refuses the push the same way). A sibling name is accepted
    next to the task branch, and the double dash keeps it apart from every task branch
    (:func:`bot.core.branches.slugify` never writes two dashes in a row)."""
    if not 1 <= number <= MAX_ATTEMPTS:
        raise ValueError(f"attempts are numbered 1 to {MAX_ATTEMPTS}")
    return f"{task_branch}{ATTEMPT_SEPARATOR}{number}"


def is_test_path(path: str) -> bool:
    """A test file by the common conventions (``tests/``, ``test_x.py``, ``x_test.go``,
    ``x.test.ts``, ``x.spec.js``)."""
    return _TEST_PATH.search(path) is not None


def affordable(
    wanted: int, *, per_iteration: float, per_task: float, task_spent: float
) -> tuple[int, str | None]:
    """How many of ``wanted`` attempts run, and why fewer when fewer: what the task's
    dollar limit has left covers ``per_iteration`` dollars per attempt."""
    wanted = max(1, min(wanted, MAX_ATTEMPTS))
    if wanted == 1:
        return 1, None
    left = max(0.0, per_task - task_spent)
    fits = math.floor(left / per_iteration + 1e-9) if per_iteration > 0 else wanted
    count = max(1, min(wanted, fits))
    if count == wanted:
        return count, None
    return count, (
        f"{count} of {wanted} attempts run: the task's dollar limit has "
        f"${left:.2f} left and each attempt may spend up to ${per_iteration:.2f}"
    )


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to. ``sha`` is its commit (None: it changed nothing);
    ``branch`` is where that commit is kept (None: not pushed, see ``note``)."""

    number: int
    outcome: str
    checks: AttemptChecks = "none"
    checks_line: str = ""
    tests_changed: int = 0
    fixes: int = 0
    files: int = 0
    insertions: int = 0
    deletions: int = 0
    cost: float = 0.0
    tokens: int = 0
    duration: float = 0.0
    sha: str | None = None
    branch: str | None = None
    summary: str = ""
    note: str | None = None

    @property
    def diff_lines(self) -> int:
        return self.insertions + self.deletions

    @property
    def changed(self) -> bool:
        return self.sha is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "outcome": self.outcome,
            "checks": self.checks,
            "checks_line": self.checks_line,
            "tests_changed": self.tests_changed,
            "fixes": self.fixes,
            "files": self.files,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "cost": self.cost,
            "tokens": self.tokens,
            "duration": round(self.duration, 3),
            "sha": self.sha,
            "branch": self.branch,
            "summary": self.summary,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        checks = data.get("checks")
        return cls(
            number=int(data["number"]),
            outcome=str(data.get("outcome", "failed")),
            checks=checks if checks in ("passed", "failed") else "none",
            checks_line=str(data.get("checks_line", "")),
            tests_changed=int(data.get("tests_changed", 0)),
            fixes=int(data.get("fixes", 0)),
            files=int(data.get("files", 0)),
            insertions=int(data.get("insertions", 0)),
            deletions=int(data.get("deletions", 0)),
            cost=float(data.get("cost", 0.0)),
            tokens=int(data.get("tokens", 0)),
            duration=float(data.get("duration", 0.0)),
            sha=_opt_str(data.get("sha")),
            branch=_opt_str(data.get("branch")),
            summary=str(data.get("summary", "")),
            note=_opt_str(data.get("note")),
        )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class AttemptSet:
    """The attempts of one iteration, the one chosen and why, kept with the iteration.

    ``head`` is the task branch's head the choice (or the last pick) left, so a pick knows
    whether the branch moved since; ``expired`` is set once the other attempts' branches
    are deleted (a later iteration began, or the task ended)."""

    attempts: tuple[Attempt, ...]
    chosen: int | None
    reasons: tuple[str, ...] = ()
    wanted: int = 0
    note: str | None = None
    head: str | None = None
    picked_by: str | None = None
    expired: bool = False
    first: int | None = None  # the ranking's choice; its commit is in the task branch

    def attempt(self, number: int) -> Attempt | None:
        return next((a for a in self.attempts if a.number == number), None)

    def kept_branches(self) -> tuple[str, ...]:
        return tuple(a.branch for a in self.attempts if a.branch is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": [a.to_json() for a in self.attempts],
            "chosen": self.chosen,
            "reasons": list(self.reasons),
            "wanted": self.wanted,
            "note": self.note,
            "head": self.head,
            "picked_by": self.picked_by,
            "expired": self.expired,
            "first": self.first,
        }

    @classmethod
    def from_json(cls, data: object) -> AttemptSet | None:
        """The stored value, or None for a missing or malformed one (shown as no attempts)."""
        if not isinstance(data, dict) or not isinstance(data.get("attempts"), list):
            return None
        try:
            attempts = tuple(Attempt.from_json(a) for a in data["attempts"])
        except (KeyError, TypeError, ValueError):
            return None
        chosen = data.get("chosen")
        return cls(
            attempts=attempts,
            chosen=chosen if isinstance(chosen, int) else None,
            reasons=tuple(str(r) for r in data.get("reasons") or ()),
            wanted=int(data.get("wanted") or len(attempts)),
            note=_opt_str(data.get("note")),
            head=_opt_str(data.get("head")),
            picked_by=_opt_str(data.get("picked_by")),
            expired=bool(data.get("expired")),
            first=first if isinstance(first := data.get("first"), int) else None,
        )


def rank_key(attempt: Attempt) -> tuple[int, int, int, int, int, float, int]:
    """The sort key of the ranking in the module docstring (smaller is better)."""
    finished = _OUTCOME_ORDER.get(attempt.outcome, 2) if attempt.changed else 3
    return (
        finished,
        _CHECKS_ORDER[attempt.checks],
        -attempt.tests_changed,
        attempt.fixes,
        attempt.diff_lines,
        round(attempt.cost, 6),
        attempt.number,
    )


def _why_better(best: Attempt, other: Attempt) -> str:
    """Why ``best`` ranks above ``other``: the first rule that tells them apart."""
    a, b = rank_key(best), rank_key(other)
    k = other.number
    if a[0] != b[0]:
        if not other.changed:
            return f"attempt {k} changed nothing"
        return f"attempt {k} ended {other.outcome}"
    if a[1] != b[1]:
        return f"attempt {k}'s checks fail ({other.checks_line or 'failed'})"
    if a[2] != b[2]:
        return f"attempt {k} changed {other.tests_changed} test files against {best.tests_changed}"
    if a[3] != b[3]:
        return f"attempt {k} needed {other.fixes} fixes of its checks against {best.fixes}"
    if a[4] != b[4]:
        return f"attempt {k}'s diff is larger ({other.diff_lines} lines against {best.diff_lines})"
    if a[5] != b[5]:
        return f"attempt {k} cost more (${other.cost:.4f} against ${best.cost:.4f})"
    return f"attempt {k} ties and comes later"


def choose(attempts: Sequence[Attempt]) -> tuple[int | None, tuple[str, ...]]:
    """The chosen attempt's number and the reasons, one per other attempt; None when no
    attempt produced a change (nothing to push)."""
    if not attempts:
        return None, ()
    ranked = sorted(attempts, key=rank_key)
    best = ranked[0]
    if not best.changed:
        return None, ("no attempt produced a change",)
    head = f"attempt {best.number} is chosen: " + (
        "its checks pass" if best.checks == "passed" else f"checks {best.checks}"
    )
    head += f", {best.diff_lines} changed lines, ${best.cost:.4f}"
    return best.number, (head, *(_why_better(best, other) for other in ranked[1:]))


def picked(attempts: AttemptSet, number: int, by: str, head: str) -> AttemptSet:
    """``attempts`` after ``/vibe pick <number>`` by ``by`` left the task branch at ``head``."""
    reason = f"attempt {number} was picked by @{by}"
    return replace(
        attempts, chosen=number, picked_by=by, head=head, reasons=(reason, *attempts.reasons)
    )


def pick_problem(attempts: AttemptSet | None, number: int, latest: bool) -> str | None:
    """Why attempt ``number`` cannot be picked, or None. ``latest``: the attempts belong to
    the task's last iteration (a later one moved the branch on)."""
    if attempts is None:
        return (
            "this task has no attempts to pick from; `attempts: N` in the config or "
            "`/vibe attempts=N ...` runs some"
        )
    if attempts.expired or not latest:
        return (
            "the attempts have expired: a later iteration or the end of the task removed "
            "their branches"
        )
    found = attempts.attempt(number)
    if found is None:
        listed = ", ".join(str(a.number) for a in attempts.attempts)
        return f"there is no attempt {number}; the last iteration ran attempts {listed}"
    if attempts.chosen == number:
        return f"attempt {number} is already the task branch's head"
    if found.sha is None:
        return f"attempt {number} changed nothing, so there is nothing to pick"
    if found.branch is None and number != attempts.first:
        return f"attempt {number}'s branch was not kept ({found.note or 'it was not pushed'})"
    return None


def _cell(value: object) -> str:
    return str(value).replace("|", "/").replace("\n", " ").replace("`", "'")


def attempts_table(attempts: AttemptSet) -> list[str]:
    """The attempts as a Markdown table with the choice and its reasons (PR body)."""
    lines = [
        "| attempt | branch | checks | tests changed | diff | cost | outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in attempts.attempts:
        mark = " ✅ chosen" if a.number == attempts.chosen else ""
        if a.number == attempts.chosen:
            where = "the task branch"
        elif a.number == attempts.first:
            where = "in the task branch's history"
        elif a.branch is not None and not attempts.expired:
            where = f"`{a.branch}`"
        else:
            where = "not kept" if not attempts.expired else "expired"
        files = f"{a.files} file" + ("" if a.files == 1 else "s")
        diff = f"{files}, +{a.insertions}/-{a.deletions}" if a.changed else "no change"
        lines.append(
            f"| {a.number}{mark} | {where} | {_cell(a.checks_line or a.checks)} | "
            f"{a.tests_changed} | {diff} | ${a.cost:.4f} | {_cell(a.outcome)} |"
        )
    lines.append("")
    if attempts.note:
        lines.append(f"{attempts.note}.")
    lines += [f"- {_cell(r)}" for r in attempts.reasons]
    if not attempts.expired and any(
        a.branch for a in attempts.attempts if a.number != attempts.chosen
    ):
        lines.append("")
        lines.append("`/vibe pick <attempt>` makes another attempt the head of this branch.")
    return lines
