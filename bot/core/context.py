"""The context pack: what the context engine hands the loop for the agent's prompt.

The value of the loop's ContextBuilder port (:mod:`bot.loop.ports`), here so that the
context engine implementing it need not import the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ContextPack:
    text: str
    tokens: int
    sources: tuple[str, ...] = field(default_factory=tuple)
