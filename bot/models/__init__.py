"""The five development models (survey section 8) as strategies over :mod:`bot.loop`."""

from __future__ import annotations

from bot.models.base import AgentOutcome, Brief, Result, Run, Stopped, Strategy
from bot.models.context import ContextEnhanced
from bot.models.conversational import Conversational
from bot.models.plan import PlanDriven, parse_plan
from bot.models.test import TestDriven
from bot.models.unconstrained import Unconstrained
from bot.settings import DevelopmentModel

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
    "AgentOutcome",
    "Brief",
    "PlanDriven",
    "Result",
    "Run",
    "Stopped",
    "Strategy",
    "parse_plan",
    "strategy_for",
]
