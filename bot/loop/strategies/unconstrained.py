"""Unconstrained automation: one run to a finished PR, no intermediate check-ins.

The agent keeps going on its own compiler and execution feedback (up to three extra rounds)
instead of waiting for a person, and the PR is opened ready for review unless the
repository's config asks for drafts explicitly.
"""

from __future__ import annotations

from bot.loop.strategies.base import Strategy


class Unconstrained(Strategy):
    name = "unconstrained"
    fix_rounds = 3
    draft_default = False
