"""The lexical Python reader, the persistent index's reuse by blob id, parallel parsing, and
the signals added for generalisation (option names, module docstrings)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

import bot.context.index as index_module
from bot.context.files import DirectorySnapshot, GitCommitSnapshot, SnapshotError, blob_id
from bot.context.index import build_index, parse_file, parse_many
from bot.context.pack import assemble_context
from bot.context.query import parse_issue
from bot.context.rank import rank_files, retriever_for
from bot.context.symbols import mask_python, module_docstring, python_symbols
from tests.support.context import commit_all, git, write_tree

TRICKY = b'''#!/usr/bin/env python
"""Module docstring mentioning def fake(): and class Fake: in prose."""
from __future__ import annotations
from .base import (Base,
    helper as assist)
from pkg.util import one, \\
    two
import os.path, json as j

LIMIT: int = 3
TEMPLATE = """
def not_a_function():
    pass
"""


@decorator(
    option=1,
)
class Outer(Base):
    """A class."""

    size = 2
    if os.name == "nt":
        windows_only = True

    class Inner:
        depth = 1

        def inner_method(self):
            local = "# not a comment"
            return local

    async def fetch(self, url):
        def nested():
            value = 1
            return value
        return nested


def top(a,
b):
    return Outer(a).size
'''


def test_the_lexical_reader_finds_definitions_scopes_and_imports() -> None:
    symbols = python_symbols(TRICKY, "pkg/mod.py")
    defs = {(d.name, d.kind, d.parent) for d in symbols.defs}
    assert defs == {
        ("LIMIT", "variable", ""),
        ("TEMPLATE", "variable", ""),
        ("Outer", "class", ""),
        ("size", "variable", "Outer"),
        ("Inner", "class", "Outer"),
        ("depth", "variable", "Inner"),
        ("inner_method", "method", "Inner"),
        ("fetch", "method", "Outer"),
        ("nested", "function", ""),
        ("top", "function", ""),
    }
    lines = TRICKY.decode().splitlines()
    for d in symbols.defs:  # line numbers survive the blanking of strings and comments
        assert d.name in lines[d.line - 1]
        assert d.signature == lines[d.line - 1].strip()
    assert symbols.imports == ["json", "os.path", "pkg.base", "pkg.util"]
    assert symbols.names == {
        "Base": "pkg.base.Base",
        "assist": "pkg.base.helper",
        "one": "pkg.util.one",
        "two": "pkg.util.two",
    }
    assert "not_a_function" not in symbols.refs  # inside a string
    assert symbols.refs["Outer"] == 1  # the use in top(), not the definition
    assert "def" not in symbols.refs
    assert "self" in symbols.refs


def test_blanking_keeps_lines_and_columns_and_survives_unclosed_strings() -> None:
    text = 'x = "a # b"  # c\ny = """\nz\n"""; w = 1\nopen = """never closed\n'
    masked = mask_python(text)
    assert len(masked.splitlines()) == len(text.splitlines())
    assert len(masked.splitlines()[0]) == len(text.splitlines()[0])
    assert "w = 1" in masked
    assert "z" not in masked
    assert "never" not in masked
    broken = python_symbols(b"def broken(:\n    pass\nclass Ok:\n    pass\n", "a.py")
    assert [d.name for d in broken.defs] == ["broken", "Ok"]


def test_module_docstrings() -> None:
    text = '# c\n\n"""Parses dates.\n\nMore."""\nx = 1\n'
    assert module_docstring(text, "a.py") == "Parses dates.\n\nMore."
    assert module_docstring("x = 1\n'''late'''\n", "a.py") == ""
    assert module_docstring('"""Not Python."""', "a.md") == ""


def test_an_edited_file_is_parsed_again_by_blob_id_and_the_rest_reused(
    project: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = build_index(DirectorySnapshot(project), cache)
    assert first.parsed == len(first.files) + len(first.skipped)
    old_blob = first.files["shop/pricing.py"].blob
    new_text = "def apply_discount(amount, code):\n    return amount * 0.9\n"
    write_tree(project, {"shop/pricing.py": new_text})

    second = build_index(DirectorySnapshot(project), cache)
    assert second.parsed == 1  # only the edited file
    entry = second.files["shop/pricing.py"]
    assert entry.blob == blob_id(new_text.encode()) != old_blob
    assert [d.signature for d in entry.defs] == ["def apply_discount(amount, code):"]
    # Every reused entry is exactly what parsing its content again gives.
    for path, reused in second.files.items():
        content = (project / path).read_bytes()
        assert reused == parse_file(path, blob_id(content), content)
    assert second.to_json() == build_index(DirectorySnapshot(project), tmp_path / "fresh").to_json()

    # Committing the edit changes no blob: the commit's index parses nothing.
    commit = commit_all(project, "cheaper")
    assert build_index(GitCommitSnapshot(project, commit), cache).parsed == 0


def test_parallel_parsing_gives_the_serial_result(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = DirectorySnapshot(project)
    listed = snapshot.list_files()
    contents = snapshot.read_many([f.path for f in listed])
    items = [(f.path, f.blob, contents[f.path]) for f in listed]
    monkeypatch.setattr(index_module, "PARALLEL_MIN_BYTES", 0)
    serial = parse_many(items, workers=1)
    # this thread parses one share, worker processes the others
    assert parse_many(items, workers=2) == serial
    assert parse_many(items, workers=3) == serial


@pytest.mark.parametrize(
    ("script", "timeout", "message"),
    [
        ("echo 'MemoryError: out of memory' >&2; exit 3", 30.0, "parsing failed: MemoryError"),
        ("exec sleep 30", 0.5, "parsing took longer than 0.5 s"),
    ],
    ids=["fails", "hangs"],
)
def test_a_parse_worker_that_fails_or_hangs_is_a_clear_error(
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    script: str,
    timeout: float,
    message: str,
) -> None:
    snapshot = DirectorySnapshot(project)
    listed = snapshot.list_files()
    contents = snapshot.read_many([f.path for f in listed])
    items = [(f.path, f.blob, contents[f.path]) for f in listed]
    worker = tmp_path / "python"
    worker.write_text(f"#!/bin/sh\ncat > /dev/null\n{script}\n")
    worker.chmod(0o755)
    monkeypatch.setattr(index_module, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(index_module, "PARSE_TIMEOUT_SECONDS", timeout)
    monkeypatch.setattr(sys, "executable", str(worker))
    with pytest.raises(SnapshotError, match=message):
        parse_many(items, workers=2)


def test_a_hyphenated_option_finds_the_code_that_reads_it(project: Path, tmp_path: Path) -> None:
    write_tree(
        project,
        {
            "shop/settings.py": "def load(raw):\n    return raw.get('x')\n",
            "shop/checkout.py": "def pay(cfg):\n    return cfg.allow_partial_refunds\n",
        },
    )
    index = build_index(DirectorySnapshot(project), tmp_path / "cache")
    query = parse_issue("Setting `allow-partial-refunds = true` in shop.toml has no effect")
    assert query.options["allow_partial_refunds"] == 1
    signals = retriever_for(index).signals(query)
    scores = dict(zip(signals.paths, signals.values["options"], strict=True))
    assert scores["shop/checkout.py"] > 0
    assert scores["shop/settings.py"] == 0
    assert rank_files(index, query.text)[0].path == "shop/checkout.py"


def test_a_file_too_big_for_its_share_is_packed_as_its_outline(
    project: Path, tmp_path: Path
) -> None:
    body = "".join(
        f"def apply_rule_{n}(cart):\n    return cart.total() * {n} / 100  # pad {'x' * 60}\n\n"
        for n in range(60)
    )
    write_tree(project, {"shop/rules.py": body})
    index = build_index(DirectorySnapshot(project), tmp_path / "cache")
    pack = assemble_context(index, "apply_rule_50 in shop/rules.py rounds wrongly", 3_000)
    (part,) = [p for p in pack.parts if p.source == "shop/rules.py"]
    assert part.truncated
    assert "(outline;" in part.text
    assert "def apply_rule_50(cart):" in part.text  # its signature, though far down the file
    assert "return cart.total()" not in part.text
    small = [p for p in pack.parts if p.source == "shop/cart.py"]
    assert small
    assert not small[0].truncated  # a file that fits still comes whole


def test_module_docstrings_are_searched(project: Path, tmp_path: Path) -> None:
    write_tree(
        project,
        {"shop/tax.py": '"""Value-added levy computation."""\n\ndef vat(x):\n    return x\n'},
    )
    index = build_index(DirectorySnapshot(project), tmp_path / "cache")
    assert index.files["shop/tax.py"].summary["levy"] == 1
    signals = retriever_for(index).signals(parse_issue("the levy is wrong"))
    scores = dict(zip(signals.paths, signals.values["summary"], strict=True))
    assert max(scores, key=lambda p: scores[p]) == "shop/tax.py"


def test_a_new_worktree_of_the_repository_starts_from_the_shared_cache(
    project: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = build_index(DirectorySnapshot(project), cache)
    other = tmp_path / "task-worktree"
    git(project, "worktree", "add", "-q", str(other))
    write_tree(other, {"shop/cart.py": "class Cart:\n    pass\n"})
    second = build_index(DirectorySnapshot(other), cache)
    assert second.key == first.key
    assert second.parsed == 1  # only the file the task changed
    assert second.to_json() == build_index(DirectorySnapshot(other), tmp_path / "fresh").to_json()
    # A plain folder (no git) keeps a folder of its own.
    plain = tmp_path / "plain"
    write_tree(plain, {"a.py": "x = 1\n"})
    assert build_index(DirectorySnapshot(plain), cache).key != first.key


@pytest.mark.parametrize(
    "hostile",
    [
        b"from a import (\n" * 60_000,
        b"from a import b, \\\n" * 60_000,
        b'x = """\n' + b"'''\n" * 100_000,
        b"".join(b" " * (i % 400) + b"if x:\n" for i in range(2_500)),
        b"class A:\n" + b"    " * 200_000,
    ],
    ids=["open-parens", "backslashes", "open-strings", "deep-indents", "long-indent"],
)
def test_hostile_source_is_read_in_linear_time(hostile: bytes) -> None:
    started = time.perf_counter()
    python_symbols(hostile, "hostile.py")
    # A quadratic pattern took tens of seconds on the first input; these take well under one.
    assert time.perf_counter() - started < 10
