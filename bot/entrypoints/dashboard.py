"""A read-only dashboard: tasks, their iterations and the job queue.

``GET /dashboard`` (HTML) and ``GET /api/tasks`` (JSON). Everything shown is redacted of
token patterns and configured secrets (DESIGN.md section 4 rule 8) and HTML-escaped. Access:
with ``VIBE_DASHBOARD_TOKEN`` set, a request must carry ``Authorization: Bearer <token>``;
without it, only clients on the loopback interface that ask for a loopback host name are
served, since the webhook port is often public.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.core.redact import redact
from bot.store.tables import Iteration, Job, Task

MAX_TASKS = 100


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _allowed(request: Request, token: str | None) -> bool:
    if token:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    # Without a token, the client must be on loopback and must have asked for a loopback
    # name: a web page whose DNS name was rebound to 127.0.0.1 sends its own name as Host
    # (https://en.wikipedia.org/wiki/DNS_rebinding), and so does a same-host proxy that
    # keeps the public Host header.
    client = request.client.host if request.client else None
    return _is_loopback(client) and _is_loopback(request.url.hostname)


def snapshot(engine: Engine, secrets: Sequence[str]) -> dict[str, Any]:
    """Tasks (newest first) with their iterations, and the latest jobs, all redacted."""

    def clean(value: str | None) -> str | None:
        return None if value is None else redact(value, secrets)

    with Session(engine) as session:
        tasks = session.exec(
            select(Task).order_by(col(Task.updated_at).desc()).limit(MAX_TASKS)
        ).all()
        ids = [t.id for t in tasks]
        iterations = session.exec(
            select(Iteration).where(col(Iteration.task_id).in_(ids)).order_by(col(Iteration.number))
        ).all()
        jobs = session.exec(select(Job).order_by(col(Job.id).desc()).limit(50)).all()
    by_task: dict[int, list[dict[str, Any]]] = {}
    for it in iterations:
        by_task.setdefault(it.task_id, []).append(
            {
                "number": it.number,
                "trigger": it.trigger,
                "feedback_kinds": sorted(
                    {str(f.get("kind")) for f in it.feedback if isinstance(f, dict)}
                ),
                "outcome": it.outcome,
                "commits": len(it.commits),
                "cost": round(it.cost, 4),
                "duration": round(it.duration, 1),
                "error": clean(it.error),
            }
        )
    return {
        "tasks": [
            {
                "repository": t.repository,
                "number": t.number,
                "pr": t.pr_number,
                "model": t.model,
                "state": t.state,
                "branch": t.branch,
                "requester": t.requester,
                "title": clean(t.title),
                "cost": round(t.cost, 4),
                "tokens": t.input_tokens + t.output_tokens,
                "iterations": by_task.get(t.id or -1, []),
            }
            for t in tasks
        ],
        "jobs": [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status,
                "attempts": j.attempts,
                "delivery": j.delivery_id,
                "error": clean(j.last_error),
            }
            for j in jobs
        ],
    }


def _html(data: dict[str, Any]) -> str:
    def e(value: object) -> str:
        return html.escape("" if value is None else str(value))

    rows = []
    for t in data["tasks"]:
        its = "<br>".join(
            f"#{i['number']} {e(i['trigger'])} [{e(', '.join(i['feedback_kinds']))}] "
            f"{e(i['outcome'])} ${i['cost']:.2f} {i['duration']}s"
            + (f" <em>{e(i['error'])}</em>" if i["error"] else "")
            for i in t["iterations"]
        )
        rows.append(
            f"<tr><td>{e(t['repository'])}#{t['number']}</td><td>{e(t['title'])}</td>"
            f"<td>{e(t['model'])}</td><td>{e(t['state'])}</td><td>{e(t['pr'])}</td>"
            f"<td>${t['cost']:.2f}</td><td>{its}</td></tr>"
        )
    job_rows = [
        f"<tr><td>{j['id']}</td><td>{e(j['kind'])}</td><td>{e(j['status'])}</td>"
        f"<td>{j['attempts']}</td><td>{e(j['delivery'])}</td><td>{e(j['error'])}</td></tr>"
        for j in data["jobs"]
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>vibe-bot</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}</style></head><body>"
        "<h1>vibe-bot</h1><h2>Tasks</h2><table><tr><th>issue</th><th>title</th><th>model</th>"
        "<th>state</th><th>PR</th><th>cost</th><th>iterations</th></tr>"
        + "".join(rows)
        + "</table><h2>Jobs</h2><table><tr><th>id</th><th>kind</th><th>status</th>"
        "<th>attempts</th><th>delivery</th><th>last error</th></tr>"
        + "".join(job_rows)
        + "</table></body></html>"
    )


def make_dashboard_router(engine: Engine, secrets: Sequence[str], token: str | None) -> APIRouter:
    router = APIRouter()

    def guard(request: Request) -> None:
        if not _allowed(request, token):
            raise HTTPException(status_code=403, detail="dashboard access denied")

    @router.get("/api/tasks")
    def api_tasks(request: Request) -> dict[str, Any]:
        guard(request)
        return snapshot(engine, secrets)

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request) -> HTMLResponse:
        guard(request)
        return HTMLResponse(_html(snapshot(engine, secrets)))

    return router
