"""What the bot needs of its GitHub App, and what GitHub says the App (or token) has.

:func:`needs` lists the App permissions and webhook events the enabled features use;
:func:`gaps` compares them with the App's ``GET /app`` answer, one line per gap, so a
missing permission shows in ``GET /`` and ``/readyz`` instead of as a job that fails later.
:class:`AppCheck` is the typed result of :meth:`bot.github.client.GitHub.app_check`.

GitHub's names: permissions as in ``GET /app`` (``pull_requests``, ...), levels ``read``
< ``write`` < ``admin``
(https://docs.github.com/en/rest/apps/apps#get-the-authenticated-app and
https://docs.github.com/en/apps/creating-github-apps/registering-a-github-app/choosing-permissions-for-a-github-app);
events as in the App's "Subscribe to events" list
(https://docs.github.com/en/webhooks/webhook-events-and-payloads). ``installation`` and
``installation_repositories`` reach every App without a subscription, so they are not asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.github.auth import AuthKind

_LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}

# permission -> (the name on the App's settings page, the level, what needs it)
_BASE_PERMISSIONS: dict[str, tuple[str, str, str]] = {
    "contents": ("Contents", "write", "clone, push the task's branch, read .github/vibe.yml"),
    "issues": ("Issues", "write", "read issues, post status comments and replies"),
    "pull_requests": ("Pull requests", "write", "open and update pull requests, read reviews"),
    "metadata": ("Metadata", "read", "read repositories and collaborators' permissions"),
}
_ACTIONS_PERMISSIONS: dict[str, tuple[str, str, str]] = {
    "actions": ("Actions", "write", "the actions executor dispatches and follows workflow runs"),
}
# event -> what needs it
_BASE_EVENTS: dict[str, str] = {
    "issues": "the trigger label on an issue",
    "issue_comment": "/vibe commands in comments",
    "pull_request": "a merged or closed pull request ends its task",
    "pull_request_review": "reviews are feedback for the next iteration",
    "pull_request_review_comment": "/vibe commands in inline review comments",
}
_ACTIONS_EVENTS: dict[str, str] = {
    "workflow_run": "the actions executor follows the runs it dispatched",
}


@dataclass(frozen=True)
class Need:
    name: str  # GitHub's API name (``pull_requests``, ``workflow_run``)
    label: str  # as the App's settings page shows it
    level: str  # ``read`` or ``write``; empty for an event
    reason: str


@dataclass(frozen=True)
class Needs:
    """The App permissions and webhook events the enabled features use."""

    permissions: tuple[Need, ...]
    events: tuple[Need, ...]


def needs(*, actions_executor: bool) -> Needs:
    """What the bot needs; the ``actions`` executor adds Actions: write and ``workflow_run``."""
    perms = dict(_BASE_PERMISSIONS)
    events = dict(_BASE_EVENTS)
    if actions_executor:
        perms.update(_ACTIONS_PERMISSIONS)
        events.update(_ACTIONS_EVENTS)
    return Needs(
        tuple(Need(k, label, level, why) for k, (label, level, why) in perms.items()),
        tuple(Need(k, k, "", why) for k, why in events.items()),
    )


def gaps(permissions: Mapping[str, Any], events: Iterable[Any], wanted: Needs) -> list[str]:
    """One line per permission or event of ``wanted`` that the App lacks."""
    out: list[str] = []
    for need in wanted.permissions:
        has = str(permissions.get(need.name) or "none")
        if _LEVELS.get(has, 0) < _LEVELS[need.level]:
            out.append(
                f"GitHub App permission {need.label}: {has}, needs {need.level} ({need.reason}); "
                "change it in the App's settings, then accept it on each installation"
            )
    subscribed = {str(e) for e in events}
    for need in wanted.events:
        if need.name not in subscribed:
            out.append(
                f"GitHub App event {need.name}: not subscribed ({need.reason}); "
                "tick it under 'Subscribe to events' in the App's settings"
            )
    return out


@dataclass(frozen=True)
class AppCheck:
    """What GitHub says about the bot's credentials.

    ``login``: the bot's identity (``<slug>[bot]`` for an App, the token's user), ``None``
    when GitHub could not be asked. ``owner``: the account that owns the App, or the
    token's user. ``findings``: one line per problem, for the missing list.
    """

    kind: AuthKind
    login: str | None
    owner: str | None
    findings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.findings
