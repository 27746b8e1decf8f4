"""Assembling the context for a model call, and the code search behind the agent's tool.

:func:`assemble_context` builds the typed parts (survey Eq. 2-3) for a task: ``instr`` (rules
and the requirement list), ``tool`` (tool definitions), ``know`` (instruction files and
project docs, then docs matched to the task), ``code`` (the repository map, then ranked
files), ``data`` (schemas, fixtures and configuration the task touches), ``tasks`` (plan and
checklist state) and ``mem`` (earlier iterations). Everything that comes from the repository
or from GitHub is sanitised and framed as data. Every development model gets the map and the
knowledge part (``files=False``); the context-enhanced model also gets ranked files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.context.budget import DEFAULT_SHARES, PART_ORDER, ContextPart, Item, allocate, capped
from bot.context.index import KNOWLEDGE_FILES, FileEntry, RepoIndex
from bot.context.rank import RankedFile, rank_files
from bot.context.terms import estimate_tokens, text_terms
from bot.core.sanitize import DATA_FRAMING_RULE, frame_untrusted, sanitize_untrusted

MAP_FILES = 60
MATCHED_DOCS = 3
MAX_DATA_FILES = 4
MAX_CODE_FILES = 40
# Within the code part: the map's share when ranked files follow it, and the most one file or
# document may take of its part, so that one huge file cannot crowd out the rest.
MAP_SHARE = 0.3
ITEM_SHARE = 0.5


MANIFEST_FILES = 20  # ranked files listed in a manifest
MANIFEST_SIGNALS = 3  # and each one's strongest retrieval signals


@dataclass(frozen=True)
class Omission:
    """An item the budget left out of its part entirely: which, and its size."""

    kind: str
    source: str
    tokens: int


@dataclass(frozen=True)
class ContextPack:
    parts: tuple[ContextPart, ...]
    budget: int
    ranked: tuple[RankedFile, ...] = ()
    left_out: tuple[Omission, ...] = ()

    def manifest(self) -> dict[str, Any]:
        """What went in and why (survey Eq. 2-3 made visible): each part kind's tokens
        against the budget L_max, each item with its tokens, the best-ranked files with
        their rank, score and strongest signals (the reason), and what was left out."""
        kinds: dict[str, int] = {}
        for part in self.parts:
            kinds[part.kind] = kinds.get(part.kind, 0) + part.tokens
        included = {p.source for p in self.parts}
        return {
            "budget": self.budget,
            "total_tokens": self.total_tokens,
            "kinds": [{"kind": k, "tokens": kinds[k]} for k in PART_ORDER if k in kinds],
            "items": [
                {"kind": p.kind, "source": p.source, "tokens": p.tokens, "truncated": p.truncated}
                for p in self.parts
            ],
            "files": [
                {
                    "rank": rank,
                    "path": r.path,
                    "score": round(r.score, 4),
                    "included": r.path in included,
                    "signals": {
                        name: round(value, 3)
                        for name, value in sorted(
                            r.signals.items(), key=lambda kv: kv[1], reverse=True
                        )[:MANIFEST_SIGNALS]
                        if value > 0
                    },
                }
                for rank, r in enumerate(self.ranked[:MANIFEST_FILES], start=1)
            ],
            "left_out": [
                {"kind": o.kind, "source": o.source, "tokens": o.tokens} for o in self.left_out
            ],
        }

    @property
    def total_tokens(self) -> int:
        return sum(p.tokens for p in self.parts)

    def render(self) -> str:
        return "".join(p.text for p in self.parts)

    def to_json(self) -> dict[str, object]:
        return {
            "budget": self.budget,
            "total_tokens": self.total_tokens,
            "parts": [
                {"kind": p.kind, "source": p.source, "tokens": p.tokens, "truncated": p.truncated}
                for p in self.parts
            ],
        }


def _block(title: str, body: str) -> str:
    return f"## {title}\n{body.rstrip()}\n\n"


def file_outline(entry: FileEntry) -> list[str]:
    """One line per class, function, method and module constant: line number and signature."""
    lines = []
    for d in entry.defs:
        if d.kind == "variable" and (d.parent or not d.name.isupper()):
            continue
        indent = "    " if d.parent else "  "
        lines.append(f"{indent}{d.line}: {sanitize_untrusted(d.signature)}")
    return lines


def repository_map(index: RepoIndex, ranked: Sequence[RankedFile], limit: int = MAP_FILES) -> str:
    """Outline of the best-ranked files: their classes, functions and methods, in rank order
    (aider's repository map: the ranking decides what is shown, signatures say what is there)."""
    lines: list[str] = []
    shown = 0
    for ranked_file in ranked:
        entry = index.files.get(ranked_file.path)
        if entry is None or entry.kind not in {"code", "test"}:
            continue
        lines.append(f"{entry.path}:")
        lines.extend(file_outline(entry))
        shown += 1
        if shown >= limit:
            break
    return "\n".join(lines)


def knowledge_items(index: RepoIndex, ranked: Sequence[RankedFile], cap: int) -> list[Item]:
    """Instruction files and project docs, then the docs that rank best for the task."""
    chosen = [name for name in KNOWLEDGE_FILES if name in index.files]
    # One README and one CONTRIBUTING are enough.
    seen_stems: set[str] = set()
    unique: list[str] = []
    for name in chosen:
        stem = name.rsplit("/", 1)[-1].split(".")[0].upper()
        if stem in seen_stems:
            continue
        seen_stems.add(stem)
        unique.append(name)
    matched = [
        r.path
        for r in ranked
        if r.score > 0
        and r.path in index.files
        and index.files[r.path].kind == "doc"
        and r.path not in unique
    ][:MATCHED_DOCS]
    paths = unique + matched
    texts = index.texts(paths)
    return [capped(p, _block(f"knowledge: {p}", frame_untrusted(texts[p], p)), cap) for p in paths]


def _code_items(
    index: RepoIndex, ranked: Sequence[RankedFile], kinds: set[str], limit: int, cap: int
) -> list[Item]:
    """Ranked files, whole where they fit within ``cap``; a larger one is given as its outline
    (every signature with its line number) rather than its first lines, so that the parts of
    it the task needs can be read with the tools, and the files after it still fit."""
    paths = [r.path for r in ranked if r.score > 0 and index.files[r.path].kind in kinds][:limit]
    texts = index.texts(paths)
    items = []
    for p in paths:
        whole = _block(f"file: {p}", frame_untrusted(texts[p], p))
        outline = file_outline(index.files[p])
        if estimate_tokens(whole) <= cap or not outline:
            items.append(capped(p, whole, cap))
            continue
        title = f"file: {p} (outline; {index.files[p].tokens} tokens in full)"
        body = frame_untrusted("\n".join(outline), p)
        items.append(Item(p, capped(p, _block(title, body), cap).text, truncated=True))
    return items


def assemble_context(
    index: RepoIndex,
    task: str,
    budget: int,
    *,
    instructions: str = "",
    requirements: Sequence[str] = (),
    tools: str = "",
    tasks: str = "",
    memory: Sequence[str] = (),
    files: bool = True,
    shares: dict[str, float] | None = None,
    knowledge: RepoIndex | None = None,
) -> ContextPack:
    """The context for ``task`` within ``budget`` tokens.

    ``task`` is the untrusted issue or comment text the work is about. ``instructions`` (the
    bot's own rules) are trusted; ``requirements``, ``tasks`` and ``memory`` entries come from
    people and earlier model output, so they are framed as data. With ``files=False`` the
    code part holds only the repository map. ``knowledge``, when given, is the index the
    knowledge part (instruction files, docs) is taken from: the base branch, so that a branch
    under work cannot rewrite the agent's instructions (DESIGN.md section 4 rule 3).
    """
    if budget <= 0:
        raise ValueError("the budget must be a positive number of tokens")
    ranked = rank_files(index, task)
    items: dict[str, list[Item]] = {kind: [] for kind in PART_ORDER}
    rules = "\n".join(x for x in (instructions.strip(), DATA_FRAMING_RULE) if x)
    items["instr"].append(Item("instructions", _block("instructions", rules)))
    if task.strip():
        items["instr"].append(Item("task", _block("task", frame_untrusted(task, "task"))))
    if requirements:
        listing = "\n".join(f"- [ ] {sanitize_untrusted(r)}" for r in requirements)
        items["instr"].append(
            Item("requirements", _block("requirements", frame_untrusted(listing, "requirements")))
        )
    if tools.strip():
        items["tool"].append(Item("tools", _block("tools", tools)))
    share = shares or DEFAULT_SHARES

    def cap(kind: str, fraction: float) -> int:
        return max(1, int(budget * share.get(kind, 0.0) * fraction))

    items["know"] = knowledge_items(knowledge or index, ranked, cap("know", ITEM_SHARE))
    repo_map = repository_map(index, ranked)
    if repo_map:
        map_cap = cap("code", MAP_SHARE if files else 1.0)
        framed_map = frame_untrusted(repo_map, "repository-map")
        items["code"].append(
            capped("repository-map", _block("repository map", framed_map), map_cap)
        )
    if files:
        code_cap = cap("code", ITEM_SHARE)
        items["code"].extend(_code_items(index, ranked, {"code", "test"}, MAX_CODE_FILES, code_cap))
        data_cap = cap("data", 1.0)
        items["data"] = _code_items(index, ranked, {"data", "config"}, MAX_DATA_FILES, data_cap)
    if tasks.strip():
        items["tasks"].append(Item("tasks", _block("plan", frame_untrusted(tasks, "tasks"))))
    for number, note in enumerate(memory, start=1):
        source = f"memory-{number}"
        items["mem"].append(
            Item(source, _block(f"earlier iteration {number}", frame_untrusted(note, source)))
        )
    present = {kind: values for kind, values in items.items() if values}
    parts = tuple(allocate(present, budget, shares))
    kept = {(p.kind, p.source) for p in parts}
    left_out = tuple(
        Omission(kind, item.source, estimate_tokens(item.text))
        for kind, values in present.items()
        for item in values
        if (kind, item.source) not in kept
    )
    return ContextPack(parts, budget, tuple(ranked), left_out)


@dataclass(frozen=True)
class SearchHit:
    path: str
    line: int
    score: float
    snippet: str


_CONTEXT_LINES = 2


def search_code(index: RepoIndex, query: str, top_k: int = 10) -> list[SearchHit]:
    """The best places for ``query`` (words, identifiers, an error message) in the repository:
    files ranked by the context engine, and in each the line that matches the most query
    terms, with a few lines around it. Backs the agent's ``search_code`` tool."""
    if top_k <= 0:
        return []
    terms = set(text_terms(query))
    if not terms:
        return []
    ranked = [r for r in rank_files(index, query) if r.score > 0][:top_k]
    texts = index.texts([r.path for r in ranked])
    literal = query.strip()
    hits: list[SearchHit] = []
    for r in ranked:
        lines = texts[r.path].splitlines()
        best_line, best = 0, -1.0
        for number, line in enumerate(lines):
            score = len(terms & set(text_terms(line))) + (2.0 if literal and literal in line else 0)
            if score > best:
                best_line, best = number, score
        start = max(0, best_line - _CONTEXT_LINES)
        snippet = "\n".join(lines[start : best_line + _CONTEXT_LINES + 1])
        hits.append(SearchHit(r.path, best_line + 1, r.score, sanitize_untrusted(snippet)))
    return hits


def pack_summary(pack: ContextPack) -> str:
    """One line per part, for logs and the command line."""
    rows = [
        f"{p.kind:6} {p.tokens:>7} {'(truncated) ' if p.truncated else ''}{p.source}"
        for p in pack.parts
    ]
    rows.append(f"total  {pack.total_tokens:>7} of {pack.budget}")
    return "\n".join(rows)
