"""Iterative conversational collaboration (the default): a draft PR early, then one
iteration per review or ``/vibe`` comment, with one automatic round for failing checks."""

from __future__ import annotations

from bot.loop.strategies.base import Strategy


class Conversational(Strategy):
    name = "conversational"
    fix_rounds = 1
    draft_default = True
