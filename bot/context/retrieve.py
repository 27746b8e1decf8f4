"""Retrieval signals over a :class:`~bot.context.index.RepoIndex`.

Each signal scores every indexed file for an :class:`~bot.context.query.IssueQuery`:

- ``bm25``: Okapi BM25 over path words plus file text (identifier-split terms);
- ``outline``: BM25 over path words and the names a file defines (its outline), which does
  not reward a file for merely being long;
- ``title`` / ``title_outline``: the same two for the issue title alone;
- ``paths``: files the issue names by path, including traceback frames whose prefix is
  foreign (``site-packages/``, a home directory); scored by how many trailing path
  components agree, shared between equally good candidates;
- ``modules``: dotted names resolved to modules (``_pytest.assertion.rewrite``);
- ``symbols``: files defining identifiers the issue mentions, weighted by how specific the
  name is (defined in one file or in forty) and where it was mentioned;
- ``phrases``: files containing error messages or command-line options quoted in the issue;
- ``options``: files using a setting the issue spells with hyphens (``ignore-paths`` is
  ``ignore_paths`` in code);
- ``summary``: BM25 over module docstrings, what a file is for in its authors' words;
- ``resolved``: names the issue's code uses through its own imports (``import xarray as xr``
  then ``xr.where``), followed through package re-exports to the defining file;
- ``graph``: a repository-map PageRank over the definition/reference and import graph,
  personalised by the files the structural signals point at (the method of aider's
  repomap, https://aider.chat/docs/repomap.html).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from bot.context.index import RepoIndex
from bot.context.query import IssueQuery

K1 = 1.2
B = 0.75
MAX_PHRASE_FILES = 12
MAX_OPTION_FILES = 12
# A mention of one of these names alone (or a traceback frame matching only the name) says
# nothing about which of the repository's files it is.
GENERIC_FILENAMES = frozenset(
    {"__init__.py", "__main__.py", "setup.py", "conftest.py", "index.js", "index.ts", "mod.rs",
     "lib.rs", "main.go", "main.py", "utils.py", "util.py", "base.py", "core.py", "common.py"}
)  # fmt: skip


class BM25:
    """Okapi BM25 over term-count documents.

    Postings are built lazily, per query term, and memoised: loading an index for one
    query (the command line) then costs only the terms that query uses, while a long-lived
    index (the agent's search tool) warms up as it is used.
    """

    def __init__(self, docs: list[dict[str, int]]) -> None:
        self.docs = docs
        self.n = len(docs)
        lengths = np.array([sum(d.values()) for d in docs], dtype=float)
        avg = float(lengths.mean()) if self.n else 1.0
        self.norm = K1 * (1 - B + B * lengths / (avg or 1.0))
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """Documents holding ``term`` and their BM25 term weights (idf included)."""
        cached = self._postings.get(term)
        if cached is not None:
            return cached
        hits = [(i, tf) for i, doc in enumerate(self.docs) if (tf := doc.get(term))]
        ids = np.array([i for i, _ in hits], dtype=np.int64)
        tfs = np.array([tf for _, tf in hits], dtype=float)
        idf = math.log(1 + (self.n - len(hits) + 0.5) / (len(hits) + 0.5))
        weights = idf * tfs * (K1 + 1) / (tfs + self.norm[ids]) if len(hits) else tfs
        self._postings[term] = (ids, weights)
        return ids, weights

    def scores(self, terms: dict[str, int] | list[str]) -> np.ndarray:
        """Scores of every document; a query term repeated in the query counts
        logarithmically more (an issue that says "chunks" nine times is about chunks)."""
        out = np.zeros(self.n)
        counts = terms if isinstance(terms, dict) else dict.fromkeys(terms, 1)
        for term, tf in counts.items():
            if tf <= 0:
                continue
            ids, weights = self.postings(term)
            if len(ids):
                np.add.at(out, ids, weights * (1 + math.log(tf)))
        return out


@dataclass
class Signals:
    paths: list[str]
    values: dict[str, np.ndarray]


class Retriever:
    """Precomputed structures over one index; build once, query many times."""

    def __init__(self, index: RepoIndex) -> None:
        self.index = index
        self.paths = sorted(index.files)
        self.pos = {p: i for i, p in enumerate(self.paths)}
        entries = [index.files[p] for p in self.paths]
        self.entries = entries
        self.kinds = [e.kind for e in entries]
        self.bm25 = BM25([e.terms for e in entries])
        self.outline = BM25([e.outline for e in entries])
        self.summary = BM25([e.summary for e in entries])

        self.definers: dict[str, set[int]] = defaultdict(set)
        self.class_members: dict[str, set[int]] = defaultdict(set)
        for i, entry in enumerate(entries):
            for d in entry.defs:
                self.definers[d.name].add(i)
                if d.parent:
                    self.class_members[f"{d.parent}.{d.name}"].add(i)
        self.by_filename: dict[str, list[int]] = defaultdict(list)
        self.modules: dict[str, list[int]] = defaultdict(list)
        for i, path in enumerate(self.paths):
            parts = path.split("/")
            self.by_filename[parts[-1]].append(i)
            if parts[-1].endswith((".py", ".pyi")):
                mod = [*parts[:-1], parts[-1].rsplit(".", 1)[0]]
                if mod[-1] == "__init__":
                    mod = mod[:-1]
                for start in range(len(mod)):
                    self.modules[".".join(mod[start:])].append(i)
        self._graph = self._build_graph()

    def _build_graph(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src: list[int] = []
        dst: list[int] = []
        weight: list[float] = []
        for i, path in enumerate(self.paths):
            refs = self.index.files[path].refs
            for name, count in refs.items():
                targets = self.definers.get(name)
                if not targets or len(targets) > 20:
                    continue
                mul = 0.1 if name.startswith("_") else 1.0
                w = mul * math.sqrt(count) / len(targets)
                for j in targets:
                    if j != i:
                        src.append(i)
                        dst.append(j)
                        weight.append(w)
            for module in self.index.files[path].imports:
                imported = self._module_file(module)
                if imported is not None and imported != i:
                    src.append(i)
                    dst.append(imported)
                    weight.append(1.0)
        return np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64), np.array(weight)

    # -- structural signals ----------------------------------------------------------------

    def path_scores(self, query: IssueQuery) -> np.ndarray:
        out = np.zeros(len(self.paths))
        for mention, weight in query.paths.items():
            parts = [p for p in mention.split("/") if p]
            if not parts:
                continue
            best: list[int] = []
            best_n = 0
            for i in self.by_filename.get(parts[-1], []):
                cand = self.paths[i].split("/")
                n = 0
                while n < min(len(cand), len(parts)) and cand[-1 - n] == parts[-1 - n]:
                    n += 1
                if n > best_n:
                    best, best_n = [i], n
                elif n == best_n:
                    best.append(i)
            if not best:
                continue
            if best_n >= 2:
                strength = 1.0
            elif parts[-1] in GENERIC_FILENAMES:
                strength = 0.0
            elif len(parts) == 1:
                strength = 0.7
            else:
                strength = 0.15
            for i in best:
                out[i] += math.log1p(weight) * strength / len(best)
        return out

    def module_scores(self, query: IssueQuery) -> np.ndarray:
        out = np.zeros(len(self.paths))
        for dotted, weight in query.dotted.items():
            parts = dotted.split(".")
            for end in range(len(parts), 0, -1):
                for start in range(end):
                    name = ".".join(parts[start:end])
                    if end - start < 2 and start > 0:
                        continue
                    targets = self.modules.get(name)
                    if targets:
                        for i in targets:
                            out[i] += math.log1p(weight) * (end - start) / len(targets)
                        break
                else:
                    continue
                break
        return out

    def _module_file(self, dotted: str) -> int | None:
        targets = self.modules.get(dotted)
        return targets[0] if targets and len(targets) == 1 else None

    def resolve(self, qualified: str, hops: int = 4) -> int | None:
        """The file defining ``qualified`` (``xarray.where``), following re-exports such as
        ``from .core.computation import where`` in a package's ``__init__``."""
        parts = qualified.split(".")
        for split in range(len(parts) - 1, 0, -1):
            module = self._module_file(".".join(parts[:split]))
            if module is None:
                continue
            name = parts[split]
            entry = self.index.files[self.paths[module]]
            if any(d.name == name and not d.parent for d in entry.defs):
                return module
            target = entry.names.get(name)
            if target and hops > 0:
                rest = ".".join(parts[split + 1 :])
                return self.resolve(f"{target}.{rest}" if rest else target, hops - 1)
            return None
        return None

    def resolved_scores(self, query: IssueQuery) -> np.ndarray:
        out = np.zeros(len(self.paths))
        for qualified, weight in query.qualified.items():
            found = self.resolve(qualified)
            if found is not None:
                out[found] += math.log1p(weight)
        return out

    def symbol_scores(self, query: IssueQuery) -> np.ndarray:
        out = np.zeros(len(self.paths))
        n = max(len(self.paths), 1)
        for ident, weight in query.identifiers.items():
            targets = self.definers.get(ident)
            if not targets:
                continue
            specificity = math.log(1 + n / len(targets)) / len(targets)
            for i in targets:
                out[i] += math.log1p(weight) * specificity
        for func, weight in query.frame_functions.items():
            targets = self.definers.get(func)
            if targets and len(targets) <= 5:
                for i in targets:
                    out[i] += 0.5 * math.log1p(weight) / len(targets)
        for dotted in query.dotted:
            parts = dotted.split(".")
            for a, b in itertools.pairwise(parts):
                targets = self.class_members.get(f"{a}.{b}")
                if targets and len(targets) <= 5:
                    for i in targets:
                        out[i] += 1.0 / len(targets)
        return out

    def option_scores(self, query: IssueQuery) -> np.ndarray:
        """Files that use a setting the issue names with hyphens (``ignore-paths`` is read as
        ``ignore_paths`` in code), weighted by how few files use it."""
        out = np.zeros(len(self.paths))
        n = max(len(self.paths), 1)
        for name, weight in query.options.items():
            users = set(self.definers.get(name, ()))
            users.update(i for i, e in enumerate(self.entries) if name in e.refs)
            if 0 < len(users) <= MAX_OPTION_FILES:
                for i in users:
                    out[i] += math.log1p(weight) * math.log(1 + n / len(users)) / len(users)
        return out

    def phrase_scores(self, query: IssueQuery) -> np.ndarray:
        out = np.zeros(len(self.paths))
        if not query.phrases:
            return out
        texts = self.index.texts(self.paths)
        for phrase in query.phrases:
            hits = [i for i, p in enumerate(self.paths) if phrase in texts[p]]
            if 0 < len(hits) <= MAX_PHRASE_FILES:
                for i in hits:
                    out[i] += 1.0 / len(hits)
        return out

    def graph_scores(self, personal: np.ndarray, iterations: int = 30) -> np.ndarray:
        n = len(self.paths)
        src, dst, weight = self._graph
        if n == 0:
            return np.zeros(0)
        out_weight = np.bincount(src, weights=weight, minlength=n)
        p = personal / personal.sum() if personal.sum() > 0 else np.full(n, 1.0 / n)
        rank = p.copy()
        damping = 0.85
        norm = np.where(out_weight > 0, out_weight, 1.0)
        for _ in range(iterations):
            flow = np.bincount(dst, weights=rank[src] * weight / norm[src], minlength=n)
            dangling = rank[out_weight == 0].sum()
            rank = damping * (flow + dangling * p) + (1 - damping) * p
        return np.asarray(rank)

    def signals(self, query: IssueQuery) -> Signals:
        values = {
            "bm25": self.bm25.scores(query.terms),
            "outline": self.outline.scores(query.terms),
            "title": self.bm25.scores(query.title_terms),
            "title_outline": self.outline.scores(query.title_terms),
            "summary": self.summary.scores(query.terms),
            "paths": self.path_scores(query),
            "modules": self.module_scores(query),
            "symbols": self.symbol_scores(query),
            "phrases": self.phrase_scores(query),
            "resolved": self.resolved_scores(query),
            "options": self.option_scores(query),
        }
        personal = _saturate(values["paths"]) + _saturate(values["modules"])
        personal = personal + _saturate(values["resolved"])
        personal = personal + _unit(values["symbols"])
        values["graph"] = self.graph_scores(personal)
        return Signals(self.paths, values)


def _unit(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else values


def _saturate(values: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 - np.exp(-values))
