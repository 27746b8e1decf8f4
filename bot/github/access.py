"""What the bot needs of its GitHub App, and what GitHub says the App (or token) has.

:func:`needs` lists the App permissions and webhook events the enabled features use, from
the table that builds the App's manifest (:mod:`bot.github.manifest`);
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
from bot.github.manifest import (
    PERMISSION_TITLES,
    Executor,
    events_of,
    features,
    permissions_of,
)

_LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}


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


def needs(executor: Executor = "local", *, allow_workflow_changes: bool = False) -> Needs:
    """What the enabled features need: the same table (:data:`bot.github.manifest.FEATURES`)
    that builds the manifest of ``vibe setup``, so the check asks exactly what it asked for."""
    chosen = features(executor, allow_workflow_changes)
    perms = tuple(
        Need(
            name,
            PERMISSION_TITLES[name],
            level,
            "; ".join(f.why for f in chosen if name in f.permissions),
        )
        for name, level in permissions_of(chosen).items()
    )
    events = tuple(
        Need(event, event, "", "; ".join(f.why for f in chosen if event in f.events))
        for event in events_of(chosen)
    )
    return Needs(perms, events)


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
