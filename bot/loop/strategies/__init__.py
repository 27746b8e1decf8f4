"""The five development models (survey section 8) as strategies over :mod:`bot.loop`."""

from __future__ import annotations

from bot.core.tasks import DevelopmentModel
from bot.loop.strategies.base import Brief, Result, Run, Strategy
from bot.loop.strategies.context import ContextEnhanced
from bot.loop.strategies.conversational import Conversational
from bot.loop.strategies.plan import PlanDriven, parse_plan
from bot.loop.strategies.test import TestDriven
from bot.loop.strategies.unconstrained import Unconstrained

STRATEGIES: dict[DevelopmentModel, Strategy] = {
    "unconstrained": Unconstrained(),
    "conversational": Conversational(),
    "plan": PlanDriven(),
    "test": TestDriven(),
    "context": ContextEnhanced(),
}


def strategy_for(name: DevelopmentModel) -> Strategy:
    return STRATEGIES[name]


__all__ = [
    "STRATEGIES",
    "Brief",
    "PlanDriven",
    "Result",
    "Run",
    "Strategy",
    "parse_plan",
    "strategy_for",
]
