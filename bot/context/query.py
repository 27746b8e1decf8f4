"""What an issue says about code: the structural signals retrieval looks for.

An issue names code in a handful of recognisable ways: file paths (often inside traceback
frames, with a foreign prefix such as ``site-packages/`` or ``~/code/``), dotted module and
attribute names (``xr.combine_by_coords``, ``_pytest.assertion.rewrite``), identifiers in code
spans and code blocks, the function names of traceback frames, error messages, and command
line options. :func:`parse_issue` pulls those out of the (sanitised) text; each carries a
weight for how much it says (the title and tracebacks say more than prose).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from bot.context.terms import IDENT_RE, STOPWORDS, text_terms
from bot.core.sanitize import sanitize_untrusted

MAX_QUERY_CHARS = 200_000
# Structural patterns only look at the start of each line: real paths, frames and messages
# are short, and bounded lines keep every pattern fast on hostile input.
MAX_LINE_CHARS = 1_000

_FENCE_OPEN_RE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_INLINE_RE = re.compile(r"`([^`\n]{1,200})`")
_PATH_RE = re.compile(
    r"(?<![\w/.-])((?:[A-Za-z]:)?[\w~.-]*(?:[/\\][\w.-]+)*\.[A-Za-z][A-Za-z0-9]{0,5})\b"
)
# Line-bounded on purpose ([ \t], never \s across lines): these run on hostile text.
_FRAME_RE = re.compile(
    r"""(?:File[ \t]+"?([^"\n,]{1,300}?)"?,?[ \t]+line[ \t]+\d+,?[ \t]+in[ \t]+([\w<>.]+))"""
    r"""|(?:File[ \t]+([^\s:]+\.\w+):\d+,?[ \t]+in[ \t]+([\w.<>]+))"""
    r"""|(?:^[ \t]*([\w./\\~-]+\.\w+):\d+:(?:[ \t]*in[ \t]+([\w<>.]+))?)""",
    re.MULTILINE,
)
_DOTTED_RE = re.compile(r"(?<![\w.])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?![\w])")
_ERROR_RE = re.compile(
    r"^[ \tE>]*(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception|Warning|Exit|Failure|Interrupt))"
    r"(?::\s*(.+))?$",
    re.MULTILINE,
)
_HYPHENATED_RE = re.compile(r"(?<![\w-])[a-z][a-z0-9]+(?:-[a-z0-9]+)+(?![\w-])")
_IMPORT_AS_RE = re.compile(
    r"^[ \t]*import[ \t]+([\w.]+)(?:[ \t]+as[ \t]+(\w+))?[ \t]*$", re.MULTILINE
)
_FROM_IMPORT_RE = re.compile(
    r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+\(?([\w \t,]+?)\)?[ \t]*$", re.MULTILINE
)
_OPTION_RE = re.compile(r"(?<![\w-])(--[a-z][\w-]{2,})")
_OPTION_WORDS_RE = re.compile(r"(?<![\w-])-{0,2}([a-z][a-z0-9]*(?:-[a-z0-9]+){1,4})(?![\w-])")
_CODE_SUFFIX_RE = re.compile(
    r"\.(?:py|pyi|pyx|js|jsx|ts|tsx|go|rs|java|c|h|cc|cpp|rb|cfg|toml|ini|yml|yaml|json|txt|rst|md)$"
)


@dataclass
class IssueQuery:
    """Signals extracted from an issue, each with a weight."""

    text: str
    title: str
    terms: Counter[str] = field(default_factory=Counter)
    title_terms: list[str] = field(default_factory=list)
    paths: Counter[str] = field(default_factory=Counter)
    dotted: Counter[str] = field(default_factory=Counter)
    identifiers: Counter[str] = field(default_factory=Counter)
    frame_functions: Counter[str] = field(default_factory=Counter)
    phrases: list[str] = field(default_factory=list)
    qualified: Counter[str] = field(default_factory=Counter)
    # Hyphenated option and setting names as code spells them (``ignore-paths`` ->
    # ``ignore_paths``).
    options: Counter[str] = field(default_factory=Counter)


def _split_fences(text: str) -> tuple[list[str], str]:
    """Fenced code blocks (CommonMark: a run of three or more backticks or tildes, closed by
    a run of the same character at least as long) and the prose around them. Line by line,
    so that no input makes it slow; an unclosed fence runs to the end, as on GitHub."""
    blocks: list[str] = []
    prose: list[str] = []
    fence = ""
    current: list[str] = []
    for line in text.split("\n"):
        match = _FENCE_OPEN_RE.match(line)
        if not fence:
            if match:
                fence = match.group(1)
                current = []
            else:
                prose.append(line)
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
            if not line.strip().strip(fence[0]):
                blocks.append("\n".join(current))
                fence = ""
                prose.append("")
            else:
                current.append(line)
        else:
            current.append(line)
    if fence:
        blocks.append("\n".join(current))
    return blocks, "\n".join(prose)


def _code_regions(text: str) -> tuple[list[str], list[str], str]:
    blocks, prose = _split_fences(text)
    return blocks, _INLINE_RE.findall(prose), prose


def _normal_path(raw: str) -> str:
    path = raw.replace("\\", "/").strip().strip("'\"()[]<>,:")
    path = re.sub(r"^[A-Za-z]:/", "/", path)
    while path.startswith(("./", "~/")):
        path = path[2:]
    return path.lstrip("/")


def _looks_like_code(ident: str) -> bool:
    return (
        "_" in ident.strip("_")
        or ident.startswith("_")
        or (any(c.isupper() for c in ident[1:]) and any(c.islower() for c in ident))
    )


def _phrase_segments(message: str) -> list[str]:
    """Literal pieces of an error message likely to appear verbatim in the source."""
    pieces = re.split(r"""['"`{}()\[\]<>]|\b0x[0-9a-f]+\b|\b\d[\d.]*\b""", message)
    return [p.strip(" .:,;") for p in pieces if len(p.strip(" .:,;")) >= 16]


# Environment reports (``pip freeze``, ``xr.show_versions()``, ``pytest`` session headers)
# name dozens of packages and say nothing about where the bug is.
_NOISE_LINE_RE = re.compile(
    r"^[ \t]*(?:[\w.\[\]-]+[ \t]*(?:==|:|[ \t])[ \t]*v?\d+\.\d[\w.+-]*(?:\s*[|(,].*)?"
    r"|platform \w+ -- Python.*|rootdir:.*|plugins:.*|cachedir:.*|[\w.-]+ *: *None)[ \t]*$",
    re.MULTILINE,
)


def _without_noise(text: str) -> str:
    return _NOISE_LINE_RE.sub("", text)


def parse_issue(raw: str) -> IssueQuery:
    full = sanitize_untrusted(raw[:MAX_QUERY_CHARS])
    text = "\n".join(line[:MAX_LINE_CHARS] for line in full.split("\n"))
    lines = text.strip().splitlines()
    title = lines[0].strip().lstrip("#").strip() if lines else ""
    query = IssueQuery(text=full, title=title)
    query.terms.update(text_terms(_without_noise(full)))
    query.terms.update(text_terms(title))
    query.title_terms = list(dict.fromkeys(text_terms(title)))
    blocks, spans, prose = _code_regions(text)

    for match in _FRAME_RE.finditer(text):
        path = match.group(1) or match.group(3) or match.group(5)
        func = match.group(2) or match.group(4) or match.group(6)
        if path:
            query.paths[_normal_path(path)] += 2
        if func:
            query.frame_functions[func.rsplit(".", 1)[-1]] += 1
    for match in _PATH_RE.finditer(text):
        raw_path = match.group(1)
        if _CODE_SUFFIX_RE.search(raw_path):
            query.paths[_normal_path(raw_path)] += 1

    for match in _DOTTED_RE.finditer(text):
        dotted = match.group(1)
        if not _CODE_SUFFIX_RE.search(dotted) and not re.fullmatch(r"[\d.]+", dotted):
            query.dotted[dotted] += 1

    def add_idents(chunk: str, weight: float, code: bool) -> None:
        for ident in IDENT_RE.findall(chunk):
            if len(ident) < 3 or ident.lower() in STOPWORDS:
                continue
            if code or _looks_like_code(ident):
                query.identifiers[ident] += int(weight)

    add_idents(title, 3, False)
    for span in spans:
        add_idents(span, 2, True)
    for block in blocks:
        add_idents(_without_noise(block), 1, True)
    add_idents(_without_noise(prose), 1, False)

    phrases: list[str] = []
    for match in _ERROR_RE.finditer(text):
        if match.group(2):
            phrases.extend(_phrase_segments(match.group(2)))
    for span in spans:
        if len(span) >= 12 and " " in span:
            phrases.extend(_phrase_segments(span))
    phrases.extend(m.group(1) for m in _OPTION_RE.finditer(text))
    for span in spans:
        phrases.extend(m.group(0) for m in _HYPHENATED_RE.finditer(span))
    query.phrases = list(dict.fromkeys(phrases))[:40]
    for match in _OPTION_WORDS_RE.finditer(_without_noise(text)):
        words = match.group(1).split("-")
        if not any(w.isdigit() for w in words):
            query.options["_".join(words)] += 1
    query.qualified = _qualified_names(text, query.dotted)
    return query


def _qualified_names(text: str, dotted: Counter[str]) -> Counter[str]:
    """Fully qualified names the issue's own code refers to: ``import xarray as xr`` then
    ``xr.where(...)`` means ``xarray.where``; ``from seaborn import objects as so`` then
    ``so.Plot`` means ``seaborn.objects.Plot``."""
    aliases: dict[str, str] = {}
    for match in _IMPORT_AS_RE.finditer(text):
        module, alias = match.group(1), match.group(2)
        if alias:
            aliases[alias] = module
        else:
            top = module.split(".")[0]
            aliases[top] = top
    out: Counter[str] = Counter()
    for match in _FROM_IMPORT_RE.finditer(text):
        module = match.group(1)
        for item in match.group(2).split(","):
            words = item.split()
            if not words:
                continue
            aliases[words[-1]] = f"{module}.{words[0]}"
            out[f"{module}.{words[0]}"] += 1
    for name, weight in dotted.items():
        head, _, rest = name.partition(".")
        if head in aliases:
            out[f"{aliases[head]}.{rest}"] += weight
    return out
