"""Fitting typed content into a token budget, deterministically.

Every part kind has a share of the budget. A part's items are taken in order, whole while
they fit; the first item that does not fit is cut to the room left (if that room is worth
using) and carries a visible marker saying how much was left out; the items after it are
dropped. Room a part does not use passes to the parts after it in :data:`PART_ORDER`, so a
small repository still gets a full pack. The sum of the part sizes never exceeds the budget,
and since tokens are characters / 4 rounded up (:func:`~bot.context.terms.estimate_tokens`),
neither does the concatenation of the parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot.context.terms import estimate_tokens

# Stable parts first so that a prompt cache hits across iterations and tasks: the rules and
# tool definitions change with the bot's version, the knowledge and the repository map with
# the commit, the rest with the task.
PART_ORDER = ("instr", "tool", "know", "code", "data", "tasks", "mem")
DEFAULT_SHARES: Mapping[str, float] = {
    "instr": 0.08,
    "tool": 0.07,
    "know": 0.15,
    "code": 0.55,
    "data": 0.05,
    "tasks": 0.05,
    "mem": 0.05,
}
MIN_TRUNCATED_TOKENS = 48


def truncation_marker(shown: int, total: int) -> str:
    return f"\n[... truncated by the context budget: {shown} of {total} tokens shown ...]\n"


@dataclass(frozen=True)
class Item:
    """One piece of content for a part, in the order it should be kept."""

    source: str
    text: str
    truncated: bool = False


@dataclass(frozen=True)
class ContextPart:
    kind: str
    source: str
    text: str
    tokens: int
    truncated: bool


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut (at a line boundary where possible) to at most ``limit`` tokens."""
    total = estimate_tokens(text)
    if total <= limit:
        return text, False
    marker = truncation_marker(0, total)
    room = limit * 4 - len(marker) - 8
    if room <= 0:
        return "", True
    cut = text[:room]
    newline = cut.rfind("\n")
    if newline > room // 2:
        cut = cut[: newline + 1]
    result = cut + truncation_marker(estimate_tokens(cut), total)
    while estimate_tokens(result) > limit and cut:
        cut = cut[: max(0, len(cut) - 16)]
        result = cut + truncation_marker(estimate_tokens(cut), total)
    return (result, True) if estimate_tokens(result) <= limit else ("", True)


def capped(source: str, text: str, limit: int) -> Item:
    """An item whose text is cut to at most ``limit`` tokens (with the marker); empty, and so
    left out, when the room is too small for a useful fragment."""
    if limit < MIN_TRUNCATED_TOKENS and estimate_tokens(text) > limit:
        return Item(source, "", True)
    cut, truncated = truncate(text, limit)
    return Item(source, cut, truncated)


def fill(kind: str, items: Sequence[Item], limit: int) -> list[ContextPart]:
    """As many of ``items`` as fit in ``limit`` tokens, the last one possibly truncated."""
    parts: list[ContextPart] = []
    left = limit
    for item in items:
        tokens = estimate_tokens(item.text)
        if tokens == 0:
            continue
        if tokens <= left:
            parts.append(ContextPart(kind, item.source, item.text, tokens, item.truncated))
            left -= tokens
            continue
        if left >= MIN_TRUNCATED_TOKENS:
            text, _ = truncate(item.text, left)
            if text:
                used = estimate_tokens(text)
                parts.append(ContextPart(kind, item.source, text, used, True))
                left -= used
        break
    return parts


def allocate(
    items: Mapping[str, Sequence[Item]], budget: int, shares: Mapping[str, float] | None = None
) -> list[ContextPart]:
    """Fill every kind within its share of ``budget``; unused room flows to later kinds."""
    if budget <= 0:
        raise ValueError("the budget must be a positive number of tokens")
    shares = dict(shares or DEFAULT_SHARES)
    unknown = set(items) - set(PART_ORDER)
    if unknown:
        raise ValueError(f"unknown context part kinds: {sorted(unknown)}")
    weight = sum(shares.get(kind, 0.0) for kind in PART_ORDER if items.get(kind))
    # First pass: each kind's share, in order; the room it leaves goes to later kinds.
    result: list[ContextPart] = []
    carry = 0
    spent = 0
    present = [kind for kind in PART_ORDER if items.get(kind)]
    for position, kind in enumerate(present):
        share = shares.get(kind, 0.0) / weight if weight > 0 else 0.0
        last = position == len(present) - 1
        limit = budget - spent if last else int(budget * share) + carry
        limit = min(limit, budget - spent)
        parts = fill(kind, items[kind], limit)
        used = sum(p.tokens for p in parts)
        carry = limit - used
        spent += used
        result.extend(parts)
    # Second pass: what is still free goes back, in order, to kinds that were cut short.
    free = budget - spent
    if free > 0:
        final: list[ContextPart] = []
        for kind in PART_ORDER:
            mine = [p for p in result if p.kind == kind]
            complete = sum(1 for p in mine if not p.truncated) == len(items.get(kind, ()))
            if mine and free > 0 and not complete:
                current = sum(p.tokens for p in mine)
                redone = fill(kind, items[kind], current + free)
                free -= sum(p.tokens for p in redone) - current
                mine = redone
            final.extend(mine)
        result = final
    return result
