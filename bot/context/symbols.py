"""Definitions, references and imports of one source file.

Python is parsed with tree-sitter (error-tolerant, so a half-written file still yields its
symbols). Other languages get a lexical fallback: definitions from the common keyword forms
(``function f``, ``class C``, ``fn f``, ``func f`` ...) and every identifier as a reference.
The result feeds the symbol index, the reference graph behind the repository map, and the
outline lines shown in it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import tree_sitter
import tree_sitter_python

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


_PY_QUERY = """
(class_definition name: (identifier) @class)
(function_definition name: (identifier) @function)
(module (expression_statement (assignment left: (identifier) @variable)))
(class_definition body: (block (expression_statement (assignment left: (identifier) @attribute))))
(import_statement name: (dotted_name) @import)
(import_statement name: (aliased_import name: (dotted_name) @import))
(import_from_statement module_name: (_) @from_module)
(import_from_statement) @from_statement
(identifier) @ref
"""


@cache
def _python() -> tuple[tree_sitter.Parser, tree_sitter.Query]:
    language = tree_sitter.Language(tree_sitter_python.language())
    return tree_sitter.Parser(language), tree_sitter.Query(language, _PY_QUERY)


def _enclosing_class(node: tree_sitter.Node) -> str:
    """Name of the class whose body holds ``node`` directly (not inside a function)."""
    parent = node.parent
    while parent is not None:
        if parent.type == "class_definition":
            name = parent.child_by_field_name("name")
            return name.text.decode("utf-8", "replace") if name and name.text else ""
        if parent.type == "function_definition":
            return ""
        parent = parent.parent
    return ""


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


def python_symbols(source: bytes, path: str) -> FileSymbols:
    parser, query = _python()
    tree = parser.parse(source)
    lines = source.decode("utf-8", "replace").splitlines()
    captures = tree_sitter.QueryCursor(query).captures(tree.root_node)
    result = FileSymbols()
    def_positions: set[int] = set()
    for kind in ("class", "function", "variable", "attribute"):
        for node in captures.get(kind, []):
            name = node.text.decode("utf-8", "replace") if node.text else ""
            parent = _enclosing_class(node.parent) if node.parent is not None else ""
            if kind == "function" and parent:
                kind_name = "method"
            elif kind == "attribute":
                kind_name = "variable"
            else:
                kind_name = kind
            row = node.start_point[0]
            result.defs.append(Definition(name, kind_name, row + 1, parent, _signature(lines, row)))
            def_positions.add(node.start_byte)
    for node in captures.get("ref", []):
        if node.start_byte not in def_positions and node.text:
            result.refs[node.text.decode("utf-8", "replace")] += 1
    imports: list[str] = []
    for node in captures.get("import", []):
        if node.text:
            imports.append(node.text.decode("utf-8", "replace"))
    for node in captures.get("from_module", []):
        if node.text:
            module = node.text.decode("utf-8", "replace")
            imports.append(_resolve_relative(module, path) if module.startswith(".") else module)
    result.imports = sorted(set(imports))
    for statement in captures.get("from_statement", []):
        module_node = statement.child_by_field_name("module_name")
        if module_node is None or not module_node.text:
            continue
        module = module_node.text.decode("utf-8", "replace")
        if module.startswith("."):
            module = _resolve_relative(module, path)
        for name_node in statement.children_by_field_name("name"):
            target = name_node
            alias = name_node
            if name_node.type == "aliased_import":
                target = name_node.child_by_field_name("name") or name_node
                alias = name_node.child_by_field_name("alias") or target
            if target.text and alias.text:
                name = target.text.decode("utf-8", "replace")
                result.names[alias.text.decode("utf-8", "replace")] = f"{module}.{name}"
    result.names = dict(sorted(result.names.items()))
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


def extract_symbols(source: bytes, path: str) -> FileSymbols:
    suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if suffix in {"py", "pyi"}:
        return python_symbols(source, path)
    if suffix in CODE_SUFFIXES:
        return generic_symbols(source)
    return FileSymbols()
