"""The fit of the ranker's free weights (tests/benchmarks/localize_fit.py): every repository
counts the same in its objective, whatever its number of issues."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bot.context.rank import WEIGHTS

FIT = Path(__file__).resolve().parents[1] / "benchmarks" / "localize_fit.py"


@pytest.fixture(scope="module")
def localize_fit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("localize_fit", FIT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def _case(fit: ModuleType, repo: str, n: int, by: str) -> object:
    """Ten files; the gold one (the last: it loses ties) has only the ``by`` feature, the
    nine others as much of the other one of ``summary`` and ``options``: the gold file is
    first when ``by`` weighs more, tenth otherwise."""
    names = sorted(WEIGHTS)
    matrix = np.zeros((10, len(names)))
    other = "options" if by == "summary" else "summary"
    matrix[9, names.index(by)] = 1.0
    matrix[:9, names.index(other)] = 1.0
    return fit.Case(
        f"{repo}-{n}", repo, names, matrix, np.ones(10), np.zeros(10), [9], np.full(10, 100.0)
    )


def test_each_repository_counts_the_same_in_the_objective(localize_fit: ModuleType) -> None:
    many = [_case(localize_fit, "big/repo", n, "summary") for n in range(6)]
    few = [_case(localize_fit, "small/repo", n, "options") for n in range(2)]
    weights = {**WEIGHTS, "summary": 1.0, "options": 0.0}
    assert localize_fit.mean_scores(many + few, weights, 0.0)["acc5"] == pytest.approx(6 / 8)
    assert localize_fit.repository_mean(many + few, weights, 0.0)["acc5"] == pytest.approx(1 / 2)


def test_two_small_repositories_outweigh_one_big_one(localize_fit: ModuleType) -> None:
    """Six issues of one repository need ``summary`` to weigh more than ``options``; one
    issue each of two others need the opposite, and no weights serve both. Over instances
    the big repository would win six to two; over repositories the two win."""
    cases = [_case(localize_fit, "big/repo", n, "summary") for n in range(6)]
    cases += [_case(localize_fit, "small/one", 0, "options")]
    cases += [_case(localize_fit, "small/two", 0, "options")]
    weights, exponent = localize_fit.fit(cases)
    assert weights["options"] > weights["summary"]
    assert localize_fit.repository_mean(cases, weights, exponent)["acc5"] == pytest.approx(2 / 3)
    assert localize_fit.mean_scores(cases, weights, exponent)["acc5"] == pytest.approx(2 / 8)
