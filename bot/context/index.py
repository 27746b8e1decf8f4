"""The per-commit repository index: terms, symbols and references of every indexable file.

An index describes one :class:`~bot.context.files.Snapshot`. It is cached as gzipped JSON in
a directory the caller owns (beside the workspace mirror), one file per commit (or one for a
work tree), and built incrementally: entries are keyed by git blob id, so a new commit
re-reads and re-parses only the files whose content changed; everything else is copied from
the newest cached index of the same repository (every work tree of one git repository
shares the folder: :func:`repo_key`). The result is identical to a full rebuild (tested),
and :attr:`RepoIndex.parsed` says how many files were parsed. A large cold build parses in
worker processes (:func:`parse_many`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import orjson

from bot.context.files import Snapshot, SnapshotError, content_excluded, repository_dir
from bot.context.symbols import CODE_SUFFIXES, Definition, extract_symbols, module_docstring
from bot.context.terms import estimate_tokens, identifier_terms, path_terms, term_counts

INDEX_VERSION = 10
KEEP_INDEXES = 8
MAX_PARSE_WORKERS = 4
# Below this much source, starting worker processes costs more than it saves.
PARALLEL_MIN_BYTES = 4 * 1024 * 1024
# What a parse worker's start-up and the passing of its share cost, counted as bytes of
# source it would parse meanwhile: its share is that much smaller than this thread's.
# sympy's 26 MB in two shares: 1.66 s with none, 1.48 s with this (bench_context_speed.py).
WORKER_START_BYTES = 2 * 1024 * 1024
PARSE_TIMEOUT_SECONDS = 600

DOC_SUFFIXES = frozenset({"md", "rst", "txt", "adoc", "asciidoc", "org", "textile"})
CONFIG_SUFFIXES = frozenset(
    {"toml", "cfg", "ini", "yaml", "yml", "json", "xml", "conf", "properties", "env", "mk"}
)
CONFIG_NAMES = frozenset({"makefile", "dockerfile", "setup.py", "noxfile.py", "tox.ini"})
DATA_SUFFIXES = frozenset({"csv", "tsv", "sql", "graphql", "proto", "avsc", "jsonl", "xsd"})
# The one list of knowledge files: instruction files for coding agents first, then the
# project's own front doors. The pack reads them from the base branch (DESIGN.md 4.3).
KNOWLEDGE_FILES = (
    "AGENTS.md",
    "CLAUDE.md",
    ".github/copilot-instructions.md",
    "README.md",
    "README.rst",
    "README.txt",
    "README",
    "CONTRIBUTING.md",
    "CONTRIBUTING.rst",
    ".github/CONTRIBUTING.md",
)
# Folders of scripts that show or measure the project rather than make it: documentation,
# examples, and the ``tutorials`` and ``galleries`` of sphinx-gallery sites (matplotlib's
# layout). Plural only: an application may well have a ``gallery`` package of its own.
EXAMPLE_DIRS = frozenset(
    {
        *("doc", "docs", "example", "examples", "demo", "demos", "samples"),
        *("tutorials", "galleries", "benchmarks", "bench"),
    }
)
TEST_DIRS = frozenset({"test", "tests", "testing", "spec", "specs", "__tests__", "e2e"})


def file_kind(path: str) -> str:
    """``code``, ``test``, ``example``, ``doc``, ``config``, ``data`` or ``other``."""
    parts = path.split("/")
    name = parts[-1].lower()
    suffix = name.rsplit(".", 1)[-1] if "." in name else ""
    if name in CONFIG_NAMES:
        return "config"
    if suffix in CODE_SUFFIXES:
        stem = name.rsplit(".", 1)[0]
        if (
            any(p.lower() in TEST_DIRS or p.lower().startswith("test") for p in parts[:-1])
            or stem.startswith("test_")
            or stem.endswith(("_test", "_tests", ".test", ".spec"))
            or stem in {"conftest", "test", "tests"}
        ):
            return "test"
        if any(p.lower() in EXAMPLE_DIRS for p in parts[:-1]):
            return "example"
        return "code"
    if suffix in DOC_SUFFIXES or name in {"readme", "license", "changelog", "authors"}:
        return "doc"
    if suffix in CONFIG_SUFFIXES:
        return "config"
    if suffix in DATA_SUFFIXES:
        return "data"
    return "other"


@dataclass
class FileEntry:
    path: str
    blob: str
    size: int
    tokens: int
    kind: str
    terms: dict[str, int]  # BM25 document: the text's terms plus the path's
    outline: dict[str, int]  # path terms (twice) plus the terms of every defined name
    summary: dict[str, int]  # terms of the module docstring
    defs: list[Definition]
    refs: dict[str, int]
    imports: list[str]
    names: dict[str, str]

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "blob": self.blob,
            "size": self.size,
            "tokens": self.tokens,
            "kind": self.kind,
            "terms": self.terms,
            "outline": self.outline,
            "summary": self.summary,
            "defs": [d.to_json() for d in self.defs],
            "refs": self.refs,
            "imports": self.imports,
            "names": self.names,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> FileEntry:
        terms = data["terms"]
        outline = data["outline"]
        summary = data["summary"]
        refs = data["refs"]
        defs = data["defs"]
        imports = data["imports"]
        names = data["names"]
        if not (isinstance(terms, dict) and isinstance(refs, dict)):
            raise ValueError("malformed index entry")
        if not (isinstance(defs, list) and isinstance(imports, list)):
            raise ValueError("malformed index entry")
        if not (
            isinstance(names, dict) and isinstance(outline, dict) and isinstance(summary, dict)
        ):
            raise ValueError("malformed index entry")
        return cls(
            path=str(data["path"]),
            blob=str(data["blob"]),
            size=int(str(data["size"])),
            tokens=int(str(data["tokens"])),
            kind=str(data["kind"]),
            # The cache is this module's own output, checked above for its shape; copying
            # every term would double the time an index takes to load.
            terms=cast(dict[str, int], terms),
            outline=cast(dict[str, int], outline),
            summary=cast(dict[str, int], summary),
            defs=[Definition.from_json(row) for row in defs],
            refs=cast(dict[str, int], refs),
            imports=[str(i) for i in imports],
            names=cast(dict[str, str], names),
        )


def parse_file(path: str, blob: str, content: bytes) -> FileEntry:
    text = content.decode("utf-8", "replace")
    symbols = extract_symbols(content, path)
    terms = term_counts(text)
    outline: Counter[str] = Counter()
    for term in path_terms(path):
        terms[term] += 1
        outline[term] += 2
    for definition in symbols.defs:
        outline.update(identifier_terms(definition.name))
    return FileEntry(
        path=path,
        blob=blob,
        size=len(content),
        tokens=estimate_tokens(text),
        kind=file_kind(path),
        terms=dict(sorted(terms.items())),
        outline=dict(sorted(outline.items())),
        summary=dict(sorted(term_counts(module_docstring(text, path)).items())),
        defs=symbols.defs,
        refs=dict(sorted(symbols.refs.items())),
        imports=symbols.imports,
        names=symbols.names,
    )


def _parse_in_process(chunk: list[tuple[str, str, bytes]]) -> list[FileEntry]:
    # The contents passed content_excluded(), so they are UTF-8 and survive JSON unchanged.
    payload = orjson.dumps([[path, blob, content.decode("utf-8")] for path, blob, content in chunk])
    # Files, not pipes: feeding a pipe is a Python loop in this thread that needs the GIL
    # for every 4 KB, while the calling thread holds it parsing its own share; the worker
    # then waited for its input until that share was done (measured: two shares took
    # longer than one).
    with (
        tempfile.TemporaryFile() as source,
        tempfile.TemporaryFile() as sink,
        tempfile.TemporaryFile() as errors,
    ):
        source.write(payload)
        source.seek(0)
        try:
            proc = subprocess.run(
                [sys.executable, "-P", "-m", "bot.context.parse_worker"],
                stdin=source,
                stdout=sink,
                stderr=errors,
                check=False,
                timeout=PARSE_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            raise SnapshotError(f"parsing took longer than {PARSE_TIMEOUT_SECONDS} s") from None
        if proc.returncode != 0:
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip().splitlines()
            raise SnapshotError(f"parsing failed: {message[-1] if message else proc.returncode}")
        sink.seek(0)
        return [FileEntry.from_json(row) for row in orjson.loads(sink.read())]


def idle_cpus() -> int:
    """CPUs this process may use that are not already busy (1-minute load average), at most
    :data:`MAX_PARSE_WORKERS`: on a loaded machine, extra parse processes only queue for the
    same cores and pay their start-up on top (measured in bench_context_speed.py)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    idle = (cpus or 1) - int(os.getloadavg()[0] + 0.5)
    return max(1, min(idle, MAX_PARSE_WORKERS))


def parse_many(items: list[tuple[str, str, bytes]], workers: int | None = None) -> list[FileEntry]:
    """:func:`parse_file` of every ``(path, blob, content)``, in order. With more than one
    worker (default: :func:`idle_cpus`) and at least :data:`PARALLEL_MIN_BYTES` to read,
    the files are dealt into that many shares, largest first so that they come out even;
    this thread parses the first and worker processes the others
    (:mod:`bot.context.parse_worker`, fresh interpreters: the bot's threads are never
    forked). The result is the same as parsing in turn (tested)."""
    count = idle_cpus() if workers is None else workers
    total = sum(len(content) for _, _, content in items)
    if count < 2 or total < PARALLEL_MIN_BYTES or len(items) < 2 * count:
        return [parse_file(path, blob, content) for path, blob, content in items]
    chunks: list[list[tuple[str, str, bytes]]] = [[] for _ in range(count)]
    loads = [0] + [WORKER_START_BYTES] * (count - 1)  # a worker starts later than this thread
    for item in sorted(items, key=lambda i: -len(i[2])):
        lightest = loads.index(min(loads))
        chunks[lightest].append(item)
        loads[lightest] += len(item[2])
    with ThreadPoolExecutor(count - 1) as pool:
        others = pool.map(_parse_in_process, chunks[1:])
        parsed = [parse_file(path, blob, content) for path, blob, content in chunks[0]]
        parsed.extend(entry for chunk in others for entry in chunk)
    by_path = {entry.path: entry for entry in parsed}
    return [by_path[path] for path, _, _ in items]


@dataclass
class RepoIndex:
    """Every indexable file of one snapshot, sorted by path."""

    key: str
    commit: str | None
    files: dict[str, FileEntry]
    skipped: dict[str, tuple[str, str]]  # path -> (blob, reason)
    snapshot: Snapshot | None = field(default=None, compare=False, repr=False)
    parsed: int = field(default=0, compare=False)
    build_seconds: float = field(default=0.0, compare=False)
    memo: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    def to_json(self) -> dict[str, object]:
        return {
            "version": INDEX_VERSION,
            "key": self.key,
            "commit": self.commit,
            "files": [self.files[p].to_json() for p in sorted(self.files)],
            "skipped": {p: list(self.skipped[p]) for p in sorted(self.skipped)},
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> RepoIndex:
        if data.get("version") != INDEX_VERSION:
            raise ValueError("index version mismatch")
        files = data["files"]
        skipped = data["skipped"]
        if not (isinstance(files, list) and isinstance(skipped, dict)):
            raise ValueError("malformed index")
        entries = [FileEntry.from_json(f) for f in files]
        commit = data.get("commit")
        return cls(
            key=str(data["key"]),
            commit=str(commit) if commit is not None else None,
            files={e.path: e for e in entries},
            skipped={str(p): (str(v[0]), str(v[1])) for p, v in skipped.items()},
        )

    def texts(self, paths: list[str]) -> dict[str, str]:
        if self.snapshot is None:
            raise SnapshotError("index is detached from its repository")
        # A file swapped or removed since the listing reads as empty, never from elsewhere.
        raw = self.snapshot.read_many(paths)
        return {p: raw.get(p, b"").decode("utf-8", "replace") for p in paths}


def repo_key(snapshot: Snapshot) -> str:
    """The cache folder of a repository: every work tree of one git repository (each task's
    worktree of the bot's mirror) shares it, so a new task starts from the entries an
    earlier one parsed; any other directory has its own. Sharing is safe because an entry
    is reused only for the same path with the same blob id (the same content)."""
    root = snapshot.root.resolve()
    try:
        common = repository_dir(root)
    except SnapshotError:
        common = None
    return hashlib.sha256(str(common or root).encode()).hexdigest()[:16]


def _cache_name(commit: str | None) -> str:
    return f"{commit}.json.gz" if commit else "worktree.json.gz"


def _load(path: Path) -> RepoIndex | None:
    try:
        with gzip.open(path, "rb") as fh:
            return RepoIndex.from_json(orjson.loads(fh.read()))
    except (OSError, ValueError, KeyError, EOFError, TypeError):
        return None


def _save(index: RepoIndex, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / _cache_name(index.commit)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        # Level 1: the cache is rewritten on every new commit; a third of the default
        # level's compression time for a file about a quarter larger. orjson writes it in a
        # tenth of json's time (0.25 s for 1,500 files) and reads it in about half.
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) as fh,
        ):
            fh.write(orjson.dumps(index.to_json()))
        Path(tmp).replace(target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    cached = sorted(directory.glob("*.json.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in cached[KEEP_INDEXES:]:
        old.unlink(missing_ok=True)


def _newest(directory: Path) -> RepoIndex | None:
    if not directory.is_dir():
        return None
    cached = sorted(directory.glob("*.json.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in cached:
        index = _load(path)
        if index is not None:
            return index
    return None


def build_index(
    snapshot: Snapshot, cache_dir: Path | None = None, workers: int | None = None
) -> RepoIndex:
    """The index of ``snapshot``, from ``cache_dir`` when possible, updated incrementally.
    Files to parse are spread over ``workers`` processes (default: one per idle CPU, see
    :func:`idle_cpus`) when there are enough of them to repay starting processes."""
    started = time.perf_counter()
    key = repo_key(snapshot)
    directory = cache_dir / key if cache_dir is not None else None
    listed = snapshot.list_files()
    if directory is not None and snapshot.commit is not None:
        exact = _load(directory / _cache_name(snapshot.commit))
        if exact is not None:
            exact.snapshot = snapshot
            exact.build_seconds = time.perf_counter() - started
            return exact
    previous = _newest(directory) if directory is not None else None
    known: dict[str, FileEntry] = {}
    known_skipped: dict[str, tuple[str, str]] = {}
    if previous is not None:
        known = {e.blob + "\0" + e.path: e for e in previous.files.values()}
        known_skipped = {v[0] + "\0" + p: v for p, v in previous.skipped.items()}
    files: dict[str, FileEntry] = {}
    skipped: dict[str, tuple[str, str]] = {}
    todo = []
    for item in listed:
        ident = item.blob + "\0" + item.path
        if ident in known:
            files[item.path] = known[ident]
        elif ident in known_skipped:
            skipped[item.path] = known_skipped[ident]
        else:
            todo.append(item)
    contents = snapshot.read_many([item.path for item in todo])
    parse: list[tuple[str, str, bytes]] = []
    for item in todo:
        content = contents.get(item.path)
        if content is None:
            continue
        reason = content_excluded(content)
        if reason is not None:
            skipped[item.path] = (item.blob, reason)
        else:
            parse.append((item.path, item.blob, content))
    for entry in parse_many(parse, workers):
        files[entry.path] = entry
    index = RepoIndex(
        key=key,
        commit=snapshot.commit,
        files=dict(sorted(files.items())),
        skipped=dict(sorted(skipped.items())),
        snapshot=snapshot,
        parsed=len(todo),
    )
    changed = (
        previous is None
        or previous.commit != index.commit
        or bool(todo)
        or previous.files.keys() != files.keys()
    )
    if directory is not None and changed:
        _save(index, directory)
    index.build_seconds = time.perf_counter() - started
    return index
