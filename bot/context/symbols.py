"""Definitions, references and imports of one source file.

Python is read lexically (:func:`python_symbols`; error-tolerant, so a half-written file
still yields its symbols). Other languages get a simpler fallback: definitions from the
common keyword forms (``function f``, ``class C``, ``fn f``, ``func f`` ...) and every
identifier as a reference.
The result feeds the symbol index, the reference graph behind the repository map, and the
outline lines shown in it.
"""

from __future__ import annotations

import keyword
import re
from collections import Counter
from dataclasses import dataclass, field

from bot.context.terms import IDENT_RE

MAX_SIGNATURE_CHARS = 160


@dataclass(slots=True)
class Definition:
    name: str
    kind: str  # "class", "function", "method", "variable"
    line: int  # 1-based
    parent: str  # enclosing class name, or ""
    signature: str

    def to_json(self) -> list[object]:
        return [self.name, self.kind, self.line, self.parent, self.signature]

    @classmethod
    def from_json(cls, row: list[object]) -> Definition:
        name, kind, line, parent, signature = row
        if not isinstance(line, int):
            raise ValueError("malformed definition")
        return cls(str(name), str(kind), line, str(parent), str(signature))


@dataclass
class FileSymbols:
    defs: list[Definition] = field(default_factory=list)
    refs: Counter[str] = field(default_factory=Counter)
    imports: list[str] = field(default_factory=list)
    # Names bound by ``from M import a as b``: "b" -> "M.a" (M absolute), which is how a
    # package re-exports what its submodules define.
    names: dict[str, str] = field(default_factory=dict)


# Python is read lexically: string literals and comments are blanked out first (line and
# column numbers kept), then the lines that can open a scope or define a name are found by one
# pattern and walked with an indentation stack. Error-tolerant like a parser, and several
# times faster than a full parse on large trees (tests/benchmarks/bench_context_speed.py).
_MASK_RE = re.compile(
    r'"""[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*(?:"""|\Z)'
    r"|'''[^'\\]*(?:(?:\\[\s\S]|'(?!''))[^'\\]*)*(?:'''|\Z)"
    r'|"[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*"'
    r"|'[^'\\\n]*(?:\\[\s\S][^'\\\n]*)*'"
    r"|#[^\n]*"
)
# Blocks and assignments are looked at only up to three levels deep: deeper ones can neither
# define a module variable or class attribute nor sit between a class and its methods
# (except in classes nested deeper still), and skipping them skips most lines of a body.
# The line patterns start with the newline before the line, not ``^``, and are matched in
# "\n" + code: a pattern that starts with a literal is searched for that character, one
# starting with ``^`` is tried at every position (twice as slow, four times for imports).
_LINE_RE = re.compile(
    r"\n([ \t]*+)(?:async[ \t]+)?(def|class)[ \t]+([A-Za-z_]\w*)"
    r"|\n([ \t]{0,12}+)(?:"
    r"(if|elif|else|for|while|with|try|except|finally|async)\b"
    r"|([A-Za-z_]\w*)[ \t]*(?::(?!=)[^=\n]*(?:=(?!=)|$)|=(?!=))"
    r")",
    re.MULTILINE,
)
# ``\b`` before a word character is ``(?<!\w)``, found faster.
_REF_RE = re.compile(r"\b[A-Za-z_]\w*")
# The same for ASCII text, where both match alike: Unicode ``\b`` costs a third of an
# index build's reference scan, and almost every source file is ASCII.
_REF_ASCII_RE = re.compile(r"\b[A-Za-z_]\w*", re.ASCII)
_IMPORT_RE = re.compile(r"\n[ \t]*import[ \t]+([^\n;\\]+(?:\\\n[^\n;\\]*)*)")
_FROM_RE = re.compile(
    r"\n[ \t]*from[ \t]+([.\w]+)[ \t]+import[ \t]+(\([^)]{0,4000}\)|[^\n;\\]*(?:\\\n[^\n;\\]*)*)"
)
_KEYWORDS = frozenset(keyword.kwlist)


def _blank(match: re.Match[str]) -> str:
    text = match.group()
    newlines = text.count("\n")
    if not newlines:
        return " " * len(text)
    return "\n" * newlines + " " * (len(text) - text.rfind("\n") - 1)


def mask_python(text: str) -> str:
    """``text`` with string literals and comments blanked, line and column numbers kept."""
    return _MASK_RE.sub(_blank, text)


@dataclass(slots=True)
class _Scope:
    indent: int
    kind: str  # "class", "def" or "block"
    name: str
    body: int = -1  # indentation of the scope's statements, once one is seen


def _signature(lines: list[str], line: int) -> str:
    text = lines[line].strip() if line < len(lines) else ""
    return text[:MAX_SIGNATURE_CHARS]


def _resolve_relative(module: str, path: str) -> str:
    """``from ..x import y`` in ``pkg/sub/mod.py`` -> ``pkg.x``."""
    dots = len(module) - len(module.lstrip("."))
    package = path.rsplit("/", 1)[0].split("/") if "/" in path else []
    if dots > 1:
        package = package[: len(package) - (dots - 1)]
    rest = module[dots:]
    return ".".join([*package, rest] if rest else package)


def _python_imports(code: str, path: str, result: FileSymbols) -> None:
    """``code``: the masked text after a newline (see :data:`_LINE_RE`)."""
    imports: list[str] = []
    for match in _IMPORT_RE.finditer(code):
        for item in match.group(1).split(","):
            words = item.split()
            if words:
                imports.append(words[0])
    for match in _FROM_RE.finditer(code):
        module = match.group(1)
        if module == "__future__":
            continue
        absolute = _resolve_relative(module, path) if module.startswith(".") else module
        imports.append(absolute)
        for item in match.group(2).strip("()\\ \t\n").split(","):
            words = item.replace("\\", " ").split()
            if not words or words[0] == "*":
                continue
            alias = words[2] if len(words) >= 3 and words[1] == "as" else words[0]
            result.names[alias] = f"{absolute}.{words[0]}"
    result.imports = sorted(set(imports))
    result.names = dict(sorted(result.names.items()))


def python_symbols(source: bytes, path: str) -> FileSymbols:
    text = source.decode("utf-8", "replace")
    code = "\n" + mask_python(text)
    lines = text.splitlines()
    result = FileSymbols()
    stack: list[_Scope] = []
    defined: Counter[str] = Counter()
    row, last = -1, 0
    for match in _LINE_RE.finditer(code):
        # The match starts at the newline that ends the line before: ``row`` is 0-based.
        start = match.start() + 1
        row += code.count("\n", last, start)
        last = start
        space, head, name, block_space, block, target = match.groups()
        space = space if head else block_space
        indent = len(space.expandtabs(8)) if "\t" in space else len(space)
        while stack and stack[-1].indent >= indent:
            stack.pop()
        top = stack[-1] if stack else None
        if top is not None and top.body < 0:
            top.body = indent
        if head:
            parent = ""
            for scope in reversed(stack):
                if scope.kind != "block":
                    parent = scope.name if scope.kind == "class" else ""
                    break
            kind = "class" if head == "class" else ("method" if parent else "function")
            result.defs.append(Definition(name, kind, row + 1, parent, _signature(lines, row)))
            defined[name] += 1
            stack.append(_Scope(indent, "class" if head == "class" else "def", name))
        elif block:
            stack.append(_Scope(indent, "block", block))
        else:
            at_module = top is None and indent == 0
            in_class = top is not None and top.kind == "class" and indent == top.body
            if (at_module or in_class) and target not in _KEYWORDS:
                parent = top.name if top is not None else ""
                signature = _signature(lines, row)
                result.defs.append(Definition(target, "variable", row + 1, parent, signature))
                defined[target] += 1
    refs = Counter((_REF_ASCII_RE if code.isascii() else _REF_RE).findall(code))
    for word in _KEYWORDS.intersection(refs):
        del refs[word]
    refs.subtract(defined)
    result.refs = Counter({k: v for k, v in refs.items() if v > 0})
    _python_imports(code, path, result)
    result.defs.sort(key=lambda d: (d.line, d.name))
    return result


_GENERIC_DEF_RE = re.compile(
    r"^[ \t]*(?:export\s+)?(?:default\s+)?(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?"
    r"(?:public\s+|private\s+|protected\s+|static\s+|abstract\s+|final\s+)*"
    r"(class|interface|struct|enum|trait|impl|type|function|func|fn|def|module|object)"
    r"\s+([A-Za-z_][A-Za-z0-9_]*)",
    re.MULTILINE,
)
_KIND = {"function": "function", "func": "function", "fn": "function", "def": "function"}


def generic_symbols(source: bytes) -> FileSymbols:
    text = source.decode("utf-8", "replace")
    lines = text.splitlines()
    result = FileSymbols()
    for match in _GENERIC_DEF_RE.finditer(text):
        line = text.count("\n", 0, match.start(2))
        kind = _KIND.get(match.group(1), "class")
        result.defs.append(Definition(match.group(2), kind, line + 1, "", _signature(lines, line)))
    defined = Counter(d.name for d in result.defs)
    result.refs = Counter(IDENT_RE.findall(text)) - defined
    return result


CODE_SUFFIXES = frozenset(
    [
        "py",
        "pyi",
        "pyx",
        "js",
        "jsx",
        "mjs",
        "cjs",
        "ts",
        "tsx",
        "go",
        "rs",
        "java",
        "kt",
        "kts",
        "scala",
        "c",
        "h",
        "cc",
        "cpp",
        "cxx",
        "hpp",
        "hh",
        "cs",
        "rb",
        "php",
        "swift",
        "m",
        "mm",
        "lua",
        "pl",
        "pm",
        "r",
        "jl",
        "ex",
        "exs",
        "erl",
        "hs",
        "ml",
        "mli",
        "clj",
        "dart",
        "groovy",
        "sh",
        "bash",
        "zsh",
        "ps1",
        "sql",
        "vue",
        "svelte",
    ]
)


_DOCSTRING_RE = re.compile(
    r"\A(?:[ \t]*(?:#[^\n]*)?\n)*[ \t]*[rRuU]?"
    r"""(?:\"\"\"([\s\S]*?)\"\"\"|'\'\'([\s\S]*?)'\'\'|"([^"\n]*)")"""
)
MAX_DOCSTRING_CHARS = 4000


def module_docstring(text: str, path: str) -> str:
    """The docstring of a Python module (what it is for, in its authors' words), or ""."""
    if not path.endswith((".py", ".pyi")):
        return ""
    match = _DOCSTRING_RE.match(text[: 2 * MAX_DOCSTRING_CHARS])
    if not match:
        return ""
    return next(g for g in match.groups() if g is not None)[:MAX_DOCSTRING_CHARS]


def extract_symbols(source: bytes, path: str) -> FileSymbols:
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in {"py", "pyi"}:
        return python_symbols(source, path)
    if suffix in CODE_SUFFIXES:
        return generic_symbols(source)
    return FileSymbols()
