"""Lexical terms and the token estimator shared by retrieval, budgets and benchmarks.

Terms are identifiers, lower-cased, plus their snake_case and CamelCase parts, so that an
issue saying "combine by coords" meets a function named ``combine_by_coords`` and
"PolyFit" meets ``poly_fit``. Tokens (the budget unit) are estimated as characters / 4
rounded up: cheap, deterministic, and within a few per cent of Claude's tokenizer on code
and English. Every budget decision in the package uses :func:`estimate_tokens`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z0-9])|[A-Z]?[a-z0-9]+|[A-Z]+")

# Short English function words that carry no signal; identifiers are never dropped
# whole, only these parts.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "too",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


def estimate_tokens(text: str) -> int:
    """Tokens of ``text``: characters / 4, rounded up (0 for the empty string)."""
    return math.ceil(len(text) / 4)


def split_identifier(ident: str) -> list[str]:
    """Lower-cased parts of a snake_case / CamelCase / mixed identifier."""
    parts: list[str] = []
    for chunk in ident.split("_"):
        if chunk:
            parts.extend(p.lower() for p in _CAMEL_RE.findall(chunk))
    return parts


# The terms of identifiers seen before, as a plain dict: index builds look up hundreds of
# thousands of identifiers, mostly repeated, and a dict lookup inline costs a tenth of a
# call to an lru_cache wrapper. Emptied when full; identifiers longer than 64 characters
# (generated names, hashes) are never kept.
_TERMS: dict[str, tuple[str, ...]] = {}
_TERMS_MAX = 65536


def identifier_terms(ident: str) -> tuple[str, ...]:
    """The identifier itself (lower-cased, without surrounding underscores) and its parts."""
    terms = _TERMS.get(ident)
    if terms is None:
        terms = _split_terms(ident)
        if len(ident) <= 64:
            if len(_TERMS) >= _TERMS_MAX:
                _TERMS.clear()
            _TERMS[ident] = terms
    return terms


def _split_terms(ident: str) -> tuple[str, ...]:
    whole = ident.strip("_").lower()
    if len(whole) < 2 or whole.isdigit():
        return ()
    out = [whole] if whole not in STOPWORDS else []
    parts = split_identifier(ident)
    if len(parts) > 1:
        out.extend(p for p in parts if len(p) > 1 and not p.isdigit() and p not in STOPWORDS)
    return tuple(out)


def text_terms(text: str) -> Iterator[str]:
    for match in IDENT_RE.finditer(text):
        yield from identifier_terms(match.group())


def term_counts(text: str) -> Counter[str]:
    """Counts of :func:`text_terms`, splitting each distinct identifier once (into a plain
    dict: a Counter's ``+=`` on a new key is a Python call; a third of the time)."""
    out: dict[str, int] = {}
    get = out.get
    known = _TERMS.get
    for ident, count in Counter(IDENT_RE.findall(text)).items():
        terms = known(ident)
        for term in identifier_terms(ident) if terms is None else terms:
            out[term] = get(term, 0) + count
    return Counter(out)


def path_terms(path: str) -> list[str]:
    """Terms of a repository path: directory and file names without the extension."""
    stem = path.rsplit(".", 1)[0] if "." in path.rsplit("/", 1)[-1] else path
    return list(text_terms(stem.replace("/", " ").replace("-", "_")))
