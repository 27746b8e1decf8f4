"""One ranking of repository files for a task, fused from the retrieval signals.

Each signal becomes one or two features in [0, 1] (see :data:`WEIGHTS`) and the ranking is
their weighted sum, multiplied by a prior on the file's kind (tests, examples, docs and
configuration are rarely what an issue asks to change, but stay reachable). Ties break on
the path, so the same index and issue always give the same ranking. The weights of the
first features were chosen by coordinate ascent on three of the benchmark's repositories
(pytest, requests, flask); ``options``, ``summary`` and the size preference were added with
those held fixed and are fitted on all nine, each repository counting the same whatever its
number of issues. The fitting procedure is judged by leave-one-repository-out
cross-validation (``tests/benchmarks/bench_localize.py --loro`` fits on eight repositories
and scores the ninth, for each). No rule names a repository.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bot.context.index import RepoIndex
from bot.context.query import IssueQuery, parse_issue
from bot.context.retrieve import Retriever, _saturate, _unit

# Feature -> weight. "<signal>" is the signal divided by its best score for the query,
# "<signal>_abs" its absolute value saturated to [0, 1) (1 - exp(-x)): structural evidence
# such as a path named in a traceback is strong on its own, not relative to other files.
WEIGHTS: dict[str, float] = {
    "bm25": 3.0,
    "outline": 1.5,
    "title": 2.0,
    "title_outline": 0.5,
    "paths_abs": 1.5,
    "modules_abs": 1.0,
    "symbols": 1.5,
    "phrases_abs": 2.0,
    "resolved_abs": 1.0,
    "graph": 0.3,
    "options": 3.0,
    "summary": 1.0,
}
# A mild preference for smaller files (score x (1 + tokens / 2000) ** -0.1: a 40k-token
# file loses 26 %): among equally likely files, a smaller one leaves room for more.
SIZE_SCALE_TOKENS = 2000.0
SIZE_EXPONENT = 0.1
ABSOLUTE = ("paths", "modules", "phrases", "resolved")
KIND_PRIOR: dict[str, float] = {
    "code": 1.0,
    "test": 0.35,
    "example": 0.4,
    "config": 0.3,
    "data": 0.2,
    "doc": 0.15,
    "other": 0.15,
}
INIT_PRIOR = 0.9


@dataclass(frozen=True)
class RankedFile:
    path: str
    score: float
    signals: dict[str, float] = field(default_factory=dict, compare=False)


def features(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {name: _unit(v) for name, v in values.items()}
    for name in ABSOLUTE:
        out[name + "_abs"] = _saturate(values[name])
    return out


def fuse(
    retriever: Retriever, query: IssueQuery, weights: dict[str, float] | None = None
) -> list[RankedFile]:
    weights = weights or WEIGHTS
    signals = retriever.signals(query)
    n = len(signals.paths)
    total = np.zeros(n)
    scaled = features(signals.values)
    for name, values in scaled.items():
        total += weights.get(name, 0.0) * values
    prior = np.array([KIND_PRIOR.get(kind, 0.15) for kind in retriever.kinds])
    init = np.array([INIT_PRIOR if p.endswith("/__init__.py") else 1.0 for p in signals.paths])
    tokens = np.array([retriever.index.files[p].tokens for p in signals.paths], dtype=float)
    size = (1.0 + tokens / SIZE_SCALE_TOKENS) ** -SIZE_EXPONENT
    total = total * prior * init * size
    order = sorted(range(n), key=lambda i: (-round(float(total[i]), 9), signals.paths[i]))
    return [
        RankedFile(
            signals.paths[i],
            round(float(total[i]), 6),
            {k: round(float(v[i]), 4) for k, v in scaled.items() if v[i] > 0},
        )
        for i in order
    ]


def retriever_for(index: RepoIndex) -> Retriever:
    """The retriever of an index, kept on it so that repeated queries stay warm."""
    cached = index.memo.get("retriever")
    if isinstance(cached, Retriever):
        return cached
    retriever = Retriever(index)
    index.memo["retriever"] = retriever
    return retriever


def rank_files(index: RepoIndex, issue_text: str, top: int | None = None) -> list[RankedFile]:
    """Files of ``index`` ranked for the issue text, best first."""
    ranked = fuse(retriever_for(index), parse_issue(issue_text))
    return ranked if top is None else ranked[:top]
