"""Context-enhanced: the agent starts from a pre-assembled, ranked context pack
(bot/context/) instead of discovering the repository through its tools."""

from __future__ import annotations

from bot.loop.strategies.base import Strategy


class ContextEnhanced(Strategy):
    name = "context"
    fix_rounds = 1
    draft_default = True

    def uses_context_pack(self) -> bool:
        return True
