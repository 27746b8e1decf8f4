"""Issue 14: whose text may reach the agent, write permission apart (policy, no I/O)."""

from __future__ import annotations

from bot.core.events import Actor
from bot.core.policy import BotIdentity

BOT = BotIdentity("vibe-bot[bot]", allowed_bots=frozenset({"merge-helper[bot]"}))


def test_people_are_heeded_and_the_bot_never_is() -> None:
    assert BOT.heeds(Actor("ann", 1, False))
    assert not BOT.heeds(Actor("vibe-bot[bot]", 2, True))
    assert not BOT.heeds(Actor("vibe-bot", 2, True))  # GraphQL drops the suffix


def test_bots_only_when_allow_listed() -> None:
    assert not BOT.heeds(Actor("dependabot[bot]", 3, True))
    assert not BOT.heeds(Actor("renovate", 4, True))  # type "Bot" without the suffix
    assert BOT.heeds(Actor("merge-helper[bot]", 5, True))
    assert BOT.heeds(Actor("merge-helper", 5, True))
