"""The one error every layer may raise to decline a request: the bot will not do what was
asked, and the message is the reply to post (a person's commit in the range of ``/vibe
undo``, a fork's pull request, a plan command for a model without plans)."""

from __future__ import annotations


class Declined(Exception):
    """The bot will not do what was asked; the message is the reply to post."""
