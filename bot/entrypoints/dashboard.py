"""A read-only dashboard: tasks, their iterations and the job queue.

``GET /dashboard`` (HTML) and ``GET /api/tasks`` (JSON). Everything shown is redacted of
token patterns and configured secrets (DESIGN.md section 4 rule 8) and HTML-escaped. Access:
with ``VIBE_DASHBOARD_TOKEN`` set, a request must carry ``Authorization: Bearer <token>``;
without it, only clients on the loopback interface that ask for a loopback host name are
served, since the webhook port is often public. A refusal says how to get access, in the
same words whether or not a token is configured (:data:`ACCESS_HELP`).

The loopback rule reads the request as it arrived, never ``request.url`` (Starlette builds
that from the Host header and falls back to the server's own address when the header is
empty or malformed): exactly one raw ``Host`` header, parsed strictly (:func:`parse_host`),
naming ``localhost``, ``127.0.0.0/8`` or ``[::1]``; a socket peer on loopback; and no
forwarding header, since a request that carries one came through a proxy, from someone
else's machine.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.core.redact import redact
from bot.store.tables import Iteration, Job, Task

MAX_TASKS = 100

# One text for every refusal: it covers both set-ups, so it does not tell a stranger whether
# a token is configured (and so whether guessing one could ever work).
ACCESS_HELP = (
    "The vibe-bot dashboard refused this request. "
    "To get access, send the header 'Authorization: Bearer <token>', where <token> is the "
    "value of VIBE_DASHBOARD_TOKEN on the bot's host, for example "
    'curl -H "Authorization: Bearer $VIBE_DASHBOARD_TOKEN" <bot URL>/dashboard. '
    "While VIBE_DASHBOARD_TOKEN is not set, only loopback clients are served: open "
    "http://127.0.0.1:<port>/dashboard or http://localhost:<port>/dashboard on the bot's own "
    "machine (or through an SSH tunnel); to serve others, set VIBE_DASHBOARD_TOKEN, restart "
    "the bot and send the header."
)


# RFC 3986 section 3.2.2 host and 3.2.3 port, as RFC 9110 section 7.2 uses them for Host,
# narrowed to what names a server: an IPv6 literal in brackets (no zone, no IPvFuture), a
# dotted-decimal IPv4 address (dec-octet: no leading zeros, no short or hex forms), or a DNS
# name in the preferred syntax of RFC 1123 section 2.1 (labels of letters, digits and
# inner hyphens; no trailing dot), and a port of 1 to 65535 without leading zeros.
_DEC_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(
    rf"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<ipv4>{_DEC_OCTET}(?:\.{_DEC_OCTET}){{3}})"
    rf"|(?P<name>{_LABEL}(?:\.{_LABEL})*))(?::(?P<port>[1-9][0-9]{{0,4}}))?"
)
MAX_NAME = 253  # RFC 1035 section 2.3.4, without the root's trailing dot
# A last label that is a number makes the name an IPv4 address in other readers' eyes
# (``127.1``, ``0x7f.1``; https://url.spec.whatwg.org/#ends-in-a-number-checker), and no
# top-level domain is all-numeric (RFC 3696 section 2).
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
LOOPBACK_NAME = "localhost"
# Headers that proxies add (RFC 7239 Forwarded, RFC 9110 section 7.6.3 Via and the de-facto
# X-Forwarded-* family). uvicorn replaces the ASGI client with X-Forwarded-For's value for a
# peer on loopback (its ``proxy_headers`` default), so refusing them also keeps the client
# the socket's peer.
_FORWARDING = frozenset(
    {
        b"forwarded",
        b"via",
        b"x-real-ip",
        b"x-client-ip",
        b"true-client-ip",
        b"cf-connecting-ip",
        b"fastly-client-ip",
        b"x-cluster-client-ip",
        b"x-original-host",
    }
)


@dataclass(frozen=True)
class Host:
    """A Host header that parsed: ``name`` lower-cased (an address in its compressed
    form), ``address`` set for an IP literal."""

    name: str
    port: int | None
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None

    @property
    def loopback(self) -> bool:
        """``localhost``, an address of 127.0.0.0/8 or ``::1``. Not ``localhost.`` or
        ``*.localhost`` (one spelling of the name, the one the refusal gives), nor IPv4
        addresses mapped into IPv6: no browser sends them for the bot's own machine."""
        if self.address is None:
            return self.name == LOOPBACK_NAME
        if isinstance(self.address, ipaddress.IPv6Address):
            return self.address == ipaddress.IPv6Address("::1")
        return self.address.is_loopback


def parse_host(raw: str) -> Host | None:
    """The Host header's value as a :class:`Host`, or None when it is not one host with an
    optional port (userinfo, a path, a fragment, spaces, control characters, an unclosed
    bracket, a port out of range, anything after the port)."""
    found = _HOST.fullmatch(raw.lower()) if raw.isascii() else None
    if found is None:
        return None
    port = int(found["port"]) if found["port"] else None
    if port is not None and port > 65535:
        return None
    if found["ipv6"] is not None:
        try:
            address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(
                found["ipv6"]
            )
        except ValueError:
            return None
        return Host(str(address), port, address)
    if found["ipv4"] is not None:
        address = ipaddress.IPv4Address(found["ipv4"])
        return Host(str(address), port, address)
    name = found["name"]
    if len(name) > MAX_NAME or _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        return None
    return Host(name, port, None)


def _loopback_peer(client: tuple[str, int] | None) -> bool:
    if client is None:  # a Unix socket, or a server that does not say
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_local_request(request: Request) -> bool:
    """The loopback rule, from the request as it arrived (see the module's docstring): for
    any page that serves only the bot's own machine."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    hosts = [value for name, value in headers if name == b"host"]
    if len(hosts) != 1 or any(
        name in _FORWARDING or name.startswith(b"x-forwarded-") for name, _ in headers
    ):
        return False
    host = parse_host(hosts[0].decode("latin-1"))
    return host is not None and host.loopback and _loopback_peer(request.scope.get("client"))


def allowed(request: Request, token: str | None) -> bool:
    """The access rule of the dashboard and the console (``bot/entrypoints/console/``)."""
    if token:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
    # Without a token, the client must be on loopback and must have asked for a loopback
    # name: a web page whose DNS name was rebound to 127.0.0.1 sends its own name as Host
    # (https://en.wikipedia.org/wiki/DNS_rebinding), and so does a same-host proxy that
    # keeps the public Host header.
    return is_local_request(request)


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


def _refusal_page() -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>vibe-bot: access denied"
        "</title></head><body><h1>Access denied</h1><p>"
        + html.escape(ACCESS_HELP)
        + "</p></body></html>"
    )


def make_dashboard_router(engine: Engine, secrets: Sequence[str], token: str | None) -> APIRouter:
    router = APIRouter()

    def guard(request: Request) -> None:
        if not allowed(request, token):
            raise HTTPException(status_code=403, detail=ACCESS_HELP)

    @router.get("/api/tasks")
    def api_tasks(request: Request) -> dict[str, Any]:
        guard(request)
        return snapshot(engine, secrets)

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request) -> HTMLResponse:
        if not allowed(request, token):
            return HTMLResponse(_refusal_page(), status_code=403)
        return HTMLResponse(_html(snapshot(engine, secrets)))

    return router
