"""Token counts by billing rate and their price, cache tokens included.

The Messages API reports four counts per response: ``input_tokens`` (after the last cache
breakpoint), ``cache_creation_input_tokens`` (written to the cache, billed at the cache-write
rate), ``cache_read_input_tokens`` (read from it, billed at the cache-read rate) and
``output_tokens``. https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching

:class:`TokenUsage` keeps those four apart because each has its own price; what a task
records is :class:`bot.core.tasks.Usage` (tokens and dollars), which
:meth:`TokenUsage.priced` derives.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from bot.core.tasks import Usage
from bot.settings import ModelPrice

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @classmethod
    def from_api(cls, usage: Any) -> TokenUsage:
        """From an SDK ``Usage`` object or a usage dict; missing counts are zero."""

        def get(name: str) -> int:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            return int(value or 0)

        return cls(
            input_tokens=get("input_tokens"),
            output_tokens=get("output_tokens"),
            cache_write_tokens=get("cache_creation_input_tokens"),
            cache_read_tokens=get("cache_read_input_tokens"),
        )

    @property
    def total_input(self) -> int:
        """Every prompt token the model processed, cached or not."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )

    def priced(self, dollars: float) -> Usage:
        """As a task records it: every prompt token as input, with what they cost."""
        return Usage(self.total_input, self.output_tokens, dollars)

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_read_tokens": self.cache_read_tokens,
        }


def cost(usage: TokenUsage, price: ModelPrice) -> Decimal:
    """Exact price in US dollars of ``usage`` (prices are dollars per million tokens)."""
    total = (
        usage.input_tokens * Decimal(str(price.input))
        + usage.output_tokens * Decimal(str(price.output))
        + usage.cache_write_tokens * Decimal(str(price.cache_write))
        + usage.cache_read_tokens * Decimal(str(price.cache_read))
    )
    return total / _MILLION


class UnknownModelPrice(LookupError):
    """No price is configured for the model, so a dollar limit cannot be enforced."""


def price_for(prices: dict[str, ModelPrice], model: str) -> ModelPrice:
    """The model's price; dated names (``claude-x-4-5-20250929``) fall back to the alias."""
    if model in prices:
        return prices[model]
    base, _, suffix = model.rpartition("-")
    if suffix.isdigit() and len(suffix) == 8 and base in prices:
        return prices[base]
    raise UnknownModelPrice(
        f"no price configured for model {model!r}; set VIBE_PRICES__{model}__input, "
        "__output, __cache_write and __cache_read (dollars per million tokens)"
    )
