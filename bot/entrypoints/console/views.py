"""The store's console values as redacted JSON-ready dicts: one shape for the pages (the
templates read these dicts) and the JSON API, so nothing reaches either unredacted
(DESIGN.md section 4 rule 8). Escaping is the templates' job (Jinja2 autoescape)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.attempts import AttemptSet
from bot.core.redact import redact
from bot.core.tasks import CommitStat, commit_sha
from bot.store.console import (
    IterationView,
    JobsView,
    StepView,
    TaskDetail,
    TaskPage,
    TaskRow,
    Tokens,
    aware,
)
from bot.store.tables import ConsoleAction

RESULT_CHARS = 2_000  # a tool result as shown; the store keeps up to its own limit


def ago(then: datetime, now: datetime) -> str:
    """``then`` relative to ``now``, in the largest whole unit ("5 min ago")."""
    seconds = int((now - then).total_seconds())
    if seconds < 0:
        return "just now"
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def when(then: datetime | None, now: datetime) -> dict[str, str] | None:
    if then is None:
        return None
    return {
        "iso": then.isoformat(),
        "ago": ago(then, now),
        "utc": then.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def _tokens(tokens: Tokens) -> dict[str, int]:
    return {
        "input": tokens.input,
        "cache_write": tokens.cache_write,
        "cache_read": tokens.cache_read,
        "output": tokens.output,
        "total": tokens.total,
    }


@dataclass(frozen=True)
class Views:
    """Redacts with ``secrets``; links to ``server`` (GitHub's web address)."""

    secrets: Sequence[str]
    server: str

    def clean(self, value: object) -> str | None:
        return None if value is None else redact(str(value), self.secrets)

    def issue_url(self, repository: str, number: int) -> str:
        return f"{self.server}/{repository}/issues/{number}"

    def pull_url(self, repository: str, number: int | None) -> str | None:
        return None if number is None else f"{self.server}/{repository}/pull/{number}"

    def task_row(self, row: TaskRow, now: datetime) -> dict[str, Any]:
        return {
            "id": row.id,
            "repository": row.repository,
            "number": row.number,
            "issue_url": self.issue_url(row.repository, row.number),
            "pr": row.pr_number,
            "pr_url": self.pull_url(row.repository, row.pr_number),
            "title": self.clean(row.title),
            "model": row.model,
            "state": row.state,
            "requester": row.requester,
            "created": when(row.created_at, now),
            "updated": when(row.updated_at, now),
            "cost": round(row.cost, 4),
            "tokens": row.tokens,
            "iterations": row.iterations,
            "running": row.running,
            "outcome": row.last_outcome,
        }

    def task_page(self, page: TaskPage, now: datetime) -> dict[str, Any]:
        return {
            "tasks": [self.task_row(r, now) for r in page.rows],
            "total": page.total,
            "next": page.next_cursor,
        }

    def check(self, c: dict[str, Any]) -> dict[str, Any]:
        """A check as :meth:`bot.core.tasks.Check.to_json` stored it; its output's tail."""
        return {
            "command": self.clean(c.get("command")),
            "kind": self.clean(c.get("kind")),
            "passed": bool(c.get("passed")),
            "exit_code": c.get("exit_code") if type(c.get("exit_code")) is int else None,
            "limit": self.clean(c.get("limit")),
            "output": self.clean(str(c.get("output", ""))[-RESULT_CHARS:]),
        }

    def commit(self, entry: object) -> dict[str, Any]:
        """One of an iteration's commits: its sha, and its subject and diff stats where
        recorded (rows older than the stats hold a bare sha: those are None)."""
        sha = self.clean(commit_sha(entry)) or ""
        stat = CommitStat.from_json(entry)
        return {
            "sha": sha,
            "short": sha[:7],
            "subject": self.clean(stat.subject) if stat else None,
            "files": stat.files if stat else None,
            "insertions": stat.insertions if stat else None,
            "deletions": stat.deletions if stat else None,
        }

    def iteration(self, it: IterationView, now: datetime) -> dict[str, Any]:
        return {
            "id": it.id,
            "number": it.number,
            "trigger": it.trigger,
            "feedback": [
                {
                    "kind": self.clean(f.get("kind")),
                    "text": self.clean(f.get("text")),
                    "author": self.clean(f.get("author")),
                    "where": self.clean(f.get("path")),
                    "line": f.get("line") if type(f.get("line")) is int else None,
                }
                for f in it.feedback
            ],
            "feedback_kinds": it.feedback_kinds,
            "commits": [self.commit(c) for c in it.commits],
            "checks": [self.check(c) for c in it.checks],
            "red": self.check(it.red) if it.red else None,
            "green": self.check(it.green) if it.green else None,
            "outcome": it.outcome,
            "running": it.outcome == "running",
            # A run stopped by a spend limit says which in its reason (bot.core.agent
            # LimitReached.reason: "<which> limit: <detail>").
            "limit": self.clean(it.error) if it.outcome == "limit" else None,
            "summary": self.clean(it.summary),
            "error": self.clean(it.error),
            "cost": round(it.cost, 4),
            "tokens": _tokens(it.tokens),
            "steps": it.steps,
            # A running iteration's duration is not recorded yet: the time since it began.
            "duration": round(
                (now - it.started_at).total_seconds() if it.outcome == "running" else it.duration,
                1,
            ),
            "started": when(it.started_at, now),
            "finished": when(it.finished_at, now),
            "context": self.manifest(it.context),
            "attempts": self.attempts(it.attempts),
        }

    def attempts(self, value: AttemptSet | None) -> dict[str, Any] | None:
        """Best-of-N attempts as recorded (:class:`bot.core.attempts.AttemptSet`): each with
        its branch, checks, diff and cost, the choice and its reasons, texts redacted."""
        if value is None:
            return None
        return {
            "chosen": value.chosen,
            "picked_by": self.clean(value.picked_by),
            "expired": value.expired,
            "note": self.clean(value.note),
            "reasons": [self.clean(r) for r in value.reasons],
            "attempts": [
                {
                    "number": a.number,
                    "chosen": a.number == value.chosen,
                    "branch": self.clean(a.branch),
                    "checks": a.checks,
                    "checks_line": self.clean(a.checks_line),
                    "tests_changed": a.tests_changed,
                    "files": a.files,
                    "insertions": a.insertions,
                    "deletions": a.deletions,
                    "changed": a.changed,
                    "cost": round(a.cost, 4),
                    "outcome": self.clean(a.outcome),
                }
                for a in value.attempts
            ],
        }

    def manifest(self, raw: dict[str, Any] | None) -> dict[str, Any] | None:
        """The context manifest as recorded (:meth:`bot.context.pack.ContextPack.manifest`),
        re-shaped from what is stored: numbers kept only when they are numbers, every
        name (a path, a source) redacted."""
        if raw is None:
            return None

        def rows(key: str) -> list[dict[str, Any]]:
            value = raw.get(key)
            return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []

        def number(value: object) -> int | float:
            return value if type(value) in (int, float) else 0  # type: ignore[return-value]

        budget = number(raw.get("budget"))
        return {
            "budget": budget,
            "total": number(raw.get("total_tokens")),
            "kinds": [
                {
                    "kind": self.clean(k.get("kind")),
                    "tokens": number(k.get("tokens")),
                    "percent": round(100 * number(k.get("tokens")) / budget) if budget else 0,
                }
                for k in rows("kinds")
            ],
            "items": [
                {
                    "kind": self.clean(i.get("kind")),
                    "source": self.clean(i.get("source")),
                    "tokens": number(i.get("tokens")),
                    "truncated": i.get("truncated") is True,
                }
                for i in rows("items")
            ],
            "files": [
                {
                    "rank": number(f.get("rank")),
                    "path": self.clean(f.get("path")),
                    "score": number(f.get("score")),
                    "included": f.get("included") is True,
                    "reason": ", ".join(
                        f"{self.clean(name)} {number(value)}"
                        for name, value in (f.get("signals") or {}).items()
                    )
                    if isinstance(f.get("signals"), dict)
                    else "",
                }
                for f in rows("files")
            ],
            "left_out": [
                {
                    "kind": self.clean(o.get("kind")),
                    "source": self.clean(o.get("source")),
                    "tokens": number(o.get("tokens")),
                }
                for o in rows("left_out")
            ],
            "skipped": [
                {"path": self.clean(k.get("path")), "reason": self.clean(k.get("reason"))}
                for k in rows("skipped_files")
            ],
        }

    def step(self, step: StepView, now: datetime) -> dict[str, Any]:
        return {
            "id": step.id,
            "iteration_id": step.iteration_id,
            "index": step.index,
            "started": when(step.started_at, now),
            "duration": round(step.duration, 2),
            "model": step.model,
            "text": self.clean(step.text),
            "stop_reason": step.stop_reason,
            "tool_calls": [
                {
                    "name": self.clean(c.get("name")),
                    "input": self.clean(c.get("input")),
                    "result": self.clean(str(c.get("result", ""))[:RESULT_CHARS]),
                    "is_error": bool(c.get("is_error")),
                }
                for c in step.tool_calls
            ],
            "tokens": _tokens(step.tokens),
            "cost": round(step.cost, 4),
            "feedback": step.feedback,
            "error": self.clean(step.error),
            "failed": step.failed,
        }

    def task(self, detail: TaskDetail, steps: Sequence[StepView], now: datetime) -> dict[str, Any]:
        t = detail.task
        running = [i for i in detail.iterations if i.outcome == "running"]
        by_iteration: dict[int, list[dict[str, Any]]] = {}
        for s in steps:
            if s.iteration_id is not None:
                by_iteration.setdefault(s.iteration_id, []).append(self.step(s, now))
        iterations = []
        for it in detail.iterations:
            view = self.iteration(it, now)
            view["agent_steps"] = by_iteration.get(it.id, [])
            iterations.append(view)
        return {
            "id": t.id,
            "repository": t.repository,
            "number": t.number,
            "issue_url": self.issue_url(t.repository, t.number),
            "pr": t.pr_number,
            "pr_url": self.pull_url(t.repository, t.pr_number),
            "title": self.clean(t.title),
            "instruction": self.clean(t.instruction),
            "model": t.model,
            "state": t.state,
            "branch": self.clean(t.branch),
            "base": self.clean(t.base),
            "requester": t.requester,
            "plan": [
                {"text": self.clean(p.get("text")), "done": bool(p.get("done"))}
                for p in t.plan
                if isinstance(p, dict)
            ],
            "requirements": [
                {
                    "text": self.clean(r.get("text")),
                    "source": self.clean(r.get("source")),
                    "done": bool(r.get("done")),
                }
                for r in t.requirements
                if isinstance(r, dict)
            ],
            # Concluded iterations are counted in the task; running ones by their steps so far.
            "cost": round(t.cost + sum(i.cost for i in running), 4),
            "tokens": t.input_tokens + t.output_tokens + sum(i.tokens.counted for i in running),
            "created": when(aware(t.created_at), now),
            "updated": when(aware(t.updated_at), now),
            "iterations": iterations,
        }

    def jobs(self, view: JobsView, now: datetime) -> dict[str, Any]:
        return {
            "jobs": [
                {
                    "id": j.id,
                    "kind": j.kind,
                    "state": j.status,
                    "event": self.clean(j.event),
                    "action": self.clean(j.action),
                    "repository": self.clean(j.repository),
                    "number": j.number,
                    "issue_url": self.issue_url(j.repository, j.number)
                    if j.repository and j.number
                    else None,
                    "attempts": j.attempts,
                    "max_attempts": j.max_attempts,
                    "worker": self.clean(j.lease_owner),
                    "created": when(j.created_at, now),
                    "run_after": when(j.run_after, now),
                    "error": self.clean(j.last_error),
                }
                for j in view.rows
            ],
            "next": view.next_after,
            "depth": view.depth,
            "workers": [
                {"worker": self.clean(owner), "job": job}
                for owner, job in sorted(view.workers.items())
            ],
            "refused": [
                {
                    "id": self.clean(d.id),
                    "event": self.clean(d.event),
                    "action": self.clean(d.action),
                    "repository": self.clean(d.repository),
                    "outcome": d.outcome,
                    "reason": self.clean(d.detail),
                    "received": when(d.received_at, now),
                }
                for d in view.refused
            ],
        }

    def actions(self, done: Sequence[ConsoleAction], now: datetime) -> list[dict[str, Any]]:
        """Who did what from the console, newest first."""
        return [
            {
                "at": when(aware(a.at), now),
                "actor": self.clean(a.actor),
                "remote": self.clean(a.remote),
                "action": a.action,
                "outcome": a.outcome,
                "detail": self.clean(a.detail),
            }
            for a in done
        ]
