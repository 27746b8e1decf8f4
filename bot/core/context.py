"""The context pack: what the context engine hands the loop for the agent's prompt.

The value of the loop's ContextBuilder port (:mod:`bot.loop.ports`), here so that the
context engine implementing it need not import the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ContextPack:
    """The prompt's context, its size, where it came from, and (when the engine gives one)
    its manifest: what went in and why, and what was left out (JSON-ready)."""

    text: str
    tokens: int
    sources: tuple[str, ...] = field(default_factory=tuple)
    manifest: dict[str, Any] | None = None
