"""The App webhook's delivery log: list recent attempts and ask for a redelivery.

GitHub does not redeliver a failed delivery by itself
(https://docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks);
an App asks with its JWT: ``GET /app/hook/deliveries`` (newest first, paginated by a
cursor given in the ``Link`` header) and ``POST /app/hook/deliveries/{delivery_id}/attempts``
(https://docs.github.com/en/rest/apps/webhooks). Each attempt has its own ``id``; the
``guid`` (our ``X-GitHub-Delivery``) is shared by an event's redeliveries.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.github.auth import AppTokens
from bot.github.retry import GitHubRequestError

PER_PAGE = 100
MAX_PAGES = 50  # 5,000 attempts: more than an App's 3 days of deliveries we expect
_NEXT = 'rel="next"'


@dataclass(frozen=True)
class HookAttempt:
    """One attempt of the delivery log."""

    attempt_id: int
    guid: str
    delivered_at: float
    redelivery: bool
    ok: bool
    event: str


def _attempt(item: Any) -> HookAttempt:
    if not isinstance(item, dict):
        raise GitHubRequestError(200, "list the App's webhook deliveries: unexpected answer")
    at = datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00"))
    return HookAttempt(
        attempt_id=int(item["id"]),
        guid=str(item["guid"]),
        delivered_at=at.timestamp(),
        redelivery=bool(item["redelivery"]),
        ok=item.get("status") == "OK",
        event=str(item.get("event") or ""),
    )


def _next_cursor(headers: dict[str, Any]) -> str | None:
    link = next((str(v) for k, v in headers.items() if k.lower() == "link"), "")
    for part in link.split(","):
        if _NEXT in part:
            url = part.split(";", 1)[0].strip().strip("<>")
            cursor = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("cursor")
            return cursor[0] if cursor else None
    return None


class AppHookDeliveries:
    """The delivery log of the App behind ``tokens``."""

    def __init__(self, tokens: AppTokens) -> None:
        self.tokens = tokens

    def recent(self, since: float) -> list[HookAttempt]:
        """Attempts delivered at or after ``since`` (epoch seconds), newest first."""
        found: list[HookAttempt] = []
        params: dict[str, Any] = {"per_page": PER_PAGE}
        for _ in range(MAX_PAGES):
            headers, data = self.tokens.app_request(
                "list the App's webhook deliveries", "GET", "/app/hook/deliveries", params=params
            )
            if not isinstance(data, list):
                raise GitHubRequestError(200, "list the App's webhook deliveries: not a list")
            for item in data:
                attempt = _attempt(item)
                if attempt.delivered_at < since:
                    return found
                found.append(attempt)
            cursor = _next_cursor(headers)
            if cursor is None:
                break
            params = {"per_page": PER_PAGE, "cursor": cursor}
        return found

    def redeliver(self, attempt_id: int) -> None:
        """Ask GitHub to send the attempt's event again (it answers 202 and sends it)."""
        self.tokens.app_request(
            f"ask GitHub to redeliver webhook delivery {attempt_id}",
            "POST",
            f"/app/hook/deliveries/{attempt_id}/attempts",
            write=True,
        )
