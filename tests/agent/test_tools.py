"""The tools on a real worktree: path rules, each tool's errors, truncation, redaction,
and the read-only set's command allow-list (commands run in real bwrap). Files and commands
go through the Anthropic-defined text editor and bash tools, called with the inputs their
built-in schemas define."""

from __future__ import annotations

import os
import re
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.agent import PathPolicy, ToolResult, ToolSet
from bot.agent.tools import (
    MAX_OUTPUT_CHARS,
    MAX_VIEW_CHARS,
    MAX_WRITE_BYTES,
    Glob,
    ToolRefusal,
    truncate,
)
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits, SandboxUnavailable

EDITOR = "str_replace_based_edit_tool"


def view(tools: ToolSet, path: str, view_range: list[int] | None = None) -> ToolResult:
    call: dict[str, object] = {"command": "view", "path": path}
    if view_range is not None:
        call["view_range"] = view_range
    return tools.execute(EDITOR, call)


def create(tools: ToolSet, path: str, text: str) -> ToolResult:
    return tools.execute(EDITOR, {"command": "create", "path": path, "file_text": text})


def replace_once(tools: ToolSet, path: str, old: str, new: str) -> ToolResult:
    return tools.execute(
        EDITOR, {"command": "str_replace", "path": path, "old_str": old, "new_str": new}
    )


def insert(tools: ToolSet, path: str, line: int, text: str) -> ToolResult:
    call = {"command": "insert", "path": path, "insert_line": line, "insert_text": text}
    return tools.execute(EDITOR, call)


def bash(tools: ToolSet, command: str) -> ToolResult:
    return tools.execute("bash", {"command": command})


@pytest.fixture
def tools(repo: Path, sandbox: BwrapSandbox) -> ToolSet:
    return ToolSet.full(
        repo,
        sandbox,
        secrets=["hunter2-secret-value"],
        command_limits=SandboxLimits(wall_seconds=20),
        protected_paths=[".github/workflows/**", ".git/**", "**/.envrc", "vendor/**"],
        allowed_paths=["vendor/allowed.txt"],
    )


def test_definitions_are_the_built_in_tools_plus_our_own(
    tools: ToolSet, repo: Path, sandbox: BwrapSandbox
) -> None:
    defs = cast(list[dict[str, Any]], tools.definitions())
    assert defs[:2] == [
        {"type": "text_editor_20250728", "name": EDITOR, "max_characters": MAX_VIEW_CHARS},
        {"type": "bash_20250124", "name": "bash"},
    ]
    assert [d["name"] for d in defs] == [EDITOR, "bash", "search", "finish"]
    for d in defs[2:]:
        assert d["input_schema"]["type"] == "object"
        assert d["description"]
    read_only = ToolSet.read_only(repo, sandbox)
    assert read_only.names == [EDITOR, "search", "run_command", "finish"]
    assert "bash" not in read_only.names
    assert tools.definitions() == defs  # stable, for prompt caching


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/proc/self/environ", "under /proc"),
        ("/proc", "under /proc"),
        ("/etc/passwd", "outside the worktree"),
        ("../outside.txt", "outside the worktree"),
        ("a/../../outside.txt", "outside the worktree"),
        (".git/config", ".git directory"),
        ("sub/.git/config", ".git directory"),
        ("", "non-empty string"),
        ("bad\0name", "NUL byte"),
        ("x" * 5000, "too long"),
    ],
)
def test_paths_are_refused(tools: ToolSet, path: str, why: str) -> None:
    result = view(tools, path)
    assert result.is_error
    assert why in result.content
    assert create(tools, path + "-new" if path else path, "x").is_error


def test_symlink_escapes_are_refused_but_inner_links_work(
    tools: ToolSet, repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("outside\n")
    (repo / "escape").symlink_to(tmp_path / "secret.txt")
    (repo / "escdir").symlink_to(tmp_path)
    (repo / "inner").symlink_to(repo / "README.md")
    assert "symbolic link leads outside" in view(tools, "escape").content
    assert "symbolic link leads outside" in view(tools, "escdir/secret.txt").content
    assert "symbolic link leads outside" in create(tools, "escdir/new.txt", "x").content
    assert "symbolic link leads outside" in replace_once(tools, "escape", "outside", "x").content
    assert "symbolic link leads outside" in insert(tools, "escape", 0, "x").content
    assert not (tmp_path / "new.txt").exists()
    assert (tmp_path / "secret.txt").read_text() == "outside\n"
    assert "Adds numbers." in view(tools, "inner").content
    assert "outside the worktree" in view(tools, "../outside.txt").content
    assert "outside the worktree" in create(tools, "a/../../x.txt", "x").content
    assert not (repo.parent / "x.txt").exists()


def test_protected_paths_refuse_writes_unless_allowed(tools: ToolSet, repo: Path) -> None:
    for path in [".github/workflows/new.yml", "deep/dir/.envrc", "vendor/lib.py"]:
        result = create(tools, path, "x")
        assert result.is_error, path
        assert "protected path" in result.content
        assert not (repo / path).exists()
    for result in [
        replace_once(tools, ".github/workflows/ci.yml", "push", "pull"),
        insert(tools, ".github/workflows/ci.yml", 0, "name: x"),
    ]:
        assert result.is_error
        assert "protected path" in result.content
    assert (repo / ".github/workflows/ci.yml").read_text() == "on: push\n"
    # Viewing a protected path is fine; writing an allowed one too.
    assert not view(tools, ".github/workflows/ci.yml").is_error
    assert not create(tools, "vendor/allowed.txt", "ok").is_error


def test_protected_paths_read_like_the_publish_check(
    repo: Path, sandbox: BwrapSandbox, tmp_path: Path
) -> None:
    """A pattern covers what is below its match, and slashes around it change nothing, as in
    bot.workspace.git.protected_paths_hit (which refuses the push)."""
    protected = ["docs/secret", "build/", "/infra", "  keys  "]
    allowed = ["docs/secret/public"]
    tools = ToolSet.full(repo, sandbox, protected_paths=protected, allowed_paths=allowed)
    refused = ["docs/secret/a.txt", "build/out.bin", "infra/main.tf", "keys/k.pem"]
    accepted = ["docs/secret/public/readme.md", "docs/secretive.md", "builder.txt"]
    for path in refused:
        result = create(tools, path, "x")
        assert result.is_error, path
        assert "protected path" in result.content
    for path in accepted:
        assert not create(tools, path, "x").is_error, path


def test_protected_paths_match_names_with_newlines(tools: ToolSet, repo: Path) -> None:
    for path in [".github/workflows/evil\n.yml", "a\nb/.envrc"]:
        result = create(tools, path, "x")
        assert result.is_error, path
        assert "protected path" in result.content
        assert not (repo / path).exists()


def _reference_glob(pattern: str) -> re.Pattern[str]:
    """The glob rules as a plain backtracking regex: exact, and fine on tiny inputs."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


@settings(max_examples=500, deadline=None)
@given(st.text("ab/*?.", max_size=10), st.text("ab/.\n", max_size=12))
def test_glob_agrees_with_the_reference_rules(pattern: str, path: str) -> None:
    assert Glob(pattern).match(path) == bool(_reference_glob(pattern).match(path))


def test_hostile_globs_take_linear_time(repo: Path, sandbox: BwrapSandbox) -> None:
    """A backtracking matcher needs hours for these; the path rules must answer at once."""
    hostile_globs = ["*a" * 40 + "*b", "**/" * 30 + "x", "**a" * 40 + "b"]
    tools = ToolSet.full(repo, sandbox, protected_paths=hostile_globs)
    deep = "/".join(["d"] * 60)
    results: list[str] = []

    def hostile() -> None:
        results.append(create(tools, "a" * 200, "").content)
        results.append(create(tools, deep + "/f", "").content)
        results.append(str(Glob(hostile_globs[0]).match("a" * 4000)))

    worker = threading.Thread(target=hostile, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "a hostile glob hung the matcher"
    assert results[0].startswith("File created successfully")
    assert results[1].startswith("File created successfully")
    assert results[2] == "False"


def test_view_numbers_lines_and_honours_ranges(tools: ToolSet, repo: Path) -> None:
    (repo / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 3001)))
    part = view(tools, "long.txt", [10, 12])
    assert part.content == "    10\tline 10\n    11\tline 11\n    12\tline 12"
    assert not part.is_error
    tail = view(tools, "long.txt", [2999, -1]).content
    assert tail == "  2999\tline 2999\n  3000\tline 3000"
    (repo / "short.txt").write_text("x\n" * 3000)
    capped = view(tools, "short.txt").content
    assert capped.startswith("     1\tx\n")
    assert "[lines 1-2000 of 3000 shown; view on with view_range [2001, -1]]" in capped
    bounded = view(tools, "short.txt", [100, 2500]).content
    assert "view on with view_range [2100, 2500]" in bounded
    for bad_range, why in [
        ([4000, -1], "the first element must be from 1 to 3000"),
        ([0, 5], "the first element must be from 1 to 3000"),
        ([20, 10], "is before the first"),
        ([1, 3001], "past the end"),
    ]:
        result = view(tools, "long.txt", bad_range)
        assert result.is_error, bad_range
        assert why in result.content, (bad_range, result.content)
    assert "view_range.1: Field required" in view(tools, "long.txt", [1]).content
    (repo / "empty.txt").write_text("")
    assert view(tools, "empty.txt").content == "(empty file)"
    (repo / "blob.bin").write_bytes(b"\0\1\2" * 10)
    assert "binary file" in view(tools, "blob.bin").content
    assert "no such file" in view(tools, "missing.py").content
    bad = tools.execute(EDITOR, {"command": "view", "path": "calc.py", "extra": 1})
    assert bad.is_error
    assert "extra" in bad.content
    undo = tools.execute(EDITOR, {"command": "undo_edit", "path": "calc.py"})
    assert undo.is_error
    assert "command" in undo.content
    assert tools.execute(EDITOR, "not a dict").is_error


def test_view_caps_by_characters_at_whole_lines(tools: ToolSet, repo: Path) -> None:
    (repo / "wide.txt").write_text("".join(f"{i:04d}" + "w" * 996 + "\n" for i in range(1, 101)))
    out = view(tools, "wide.txt").content
    shown = [line for line in out.splitlines() if not line.startswith("[")]
    assert len(out) <= MAX_VIEW_CHARS + 200
    assert all(line.endswith("w" * 996) for line in shown)
    last = len(shown)
    assert f"view on with view_range [{last + 1}, -1]" in out
    rest = view(tools, "wide.txt", [last + 1, -1]).content
    assert rest.split("\t", 1)[1].startswith(f"{last + 1:04d}")


def test_view_lists_a_directory_two_levels_deep(tools: ToolSet, repo: Path) -> None:
    (repo / "pkg" / "sub" / "deeper").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("")
    (repo / "pkg" / "sub" / "b.py").write_text("")
    (repo / "pkg" / "sub" / "deeper" / "c.py").write_text("")
    (repo / "pkg" / ".hidden").write_text("")
    listing = view(tools, ".").content.splitlines()
    assert listing[0].startswith("Files and directories up to 2 levels deep in .")
    assert "calc.py" in listing
    assert "pkg/" in listing
    assert "pkg/a.py" in listing
    assert "pkg/sub/" in listing
    assert "pkg/sub/b.py" not in listing  # a third level
    assert not any(".git" in line or ".hidden" in line for line in listing[1:])
    sub = view(tools, "pkg").content.splitlines()
    assert sub[1:] == ["pkg/a.py", "pkg/sub/", "pkg/sub/b.py", "pkg/sub/deeper/"]
    assert "view_range applies to files" in view(tools, "pkg", [1, 2]).content


def test_search_regex_caps_and_hostile_patterns(tools: ToolSet, repo: Path) -> None:
    hits = tools.execute("search", {"pattern": r"def [a-z]+\(", "glob": "*.py"})
    assert hits.content == "calc.py:1:def add(a, b):"
    (repo / "many.txt").write_text("match\n" * 40)
    capped = tools.execute("search", {"pattern": "match", "max_results": 5}).content
    assert capped.count("many.txt:") == 5
    assert "more than 5 matches" in capped
    assert tools.execute("search", {"pattern": "zzz-nothing"}).content == "no matches"
    (repo / "redos.txt").write_text("a" * 5000 + "!\n")
    slow = tools.execute("search", {"pattern": "(a+)+$"})
    assert slow.content == "no matches"  # linear-time engine: no catastrophic backtracking
    (repo / "minified.js").write_text("x" * 2_000_000 + "needle\n")
    long_line = tools.execute("search", {"pattern": "needle"}).content
    assert long_line.startswith("minified.js:1:xxx")
    assert len(long_line) <= 500
    broken = tools.execute("search", {"pattern": "(unclosed"})
    assert broken.is_error
    assert "search failed" in broken.content


def test_str_replace_must_match_exactly_once(tools: ToolSet, repo: Path) -> None:
    (repo / "dup.py").write_text("x = 1\nx = 1\ny = 2\n")
    missing = replace_once(tools, "dup.py", "z = 1", "z")
    assert missing.is_error
    assert "did not appear verbatim" in missing.content
    twice = replace_once(tools, "dup.py", "x = 1", "z")
    assert twice.is_error
    assert "occurs 2 times in dup.py (at lines 1, 2)" in twice.content
    assert (repo / "dup.py").read_text() == "x = 1\nx = 1\ny = 2\n"
    assert tools.changed == set()
    once = replace_once(tools, "dup.py", "x = 1\ny = 2", "x = 1\ny = 3")
    assert not once.is_error
    assert once.content.startswith("Successfully replaced text at exactly one location")
    assert "(line 2)" in once.content
    assert "     3\ty = 3" in once.content  # the edited region, numbered
    assert (repo / "dup.py").read_text() == "x = 1\nx = 1\ny = 3\n"
    dropped = tools.execute(
        EDITOR, {"command": "str_replace", "path": "dup.py", "old_str": "y = 3\n"}
    )
    assert not dropped.is_error  # new_str left out: the text is removed
    assert (repo / "dup.py").read_text() == "x = 1\nx = 1\n"
    needs = tools.execute(EDITOR, {"command": "str_replace", "path": "dup.py", "new_str": "a"})
    assert needs.is_error
    assert "parameter `old_str` is required for command: str_replace" in needs.content
    assert "old_str must not be empty" in replace_once(tools, "dup.py", "", "a").content
    assert "no such file" in replace_once(tools, "new.py", "a", "b").content
    assert tools.changed == {"dup.py"}


def test_insert_after_a_line(tools: ToolSet, repo: Path) -> None:
    (repo / "ins.py").write_text("a\nb\nc")  # no newline at the end
    top = insert(tools, "ins.py", 0, "start")
    assert not top.is_error
    assert (repo / "ins.py").read_text() == "start\na\nb\nc"
    middle = insert(tools, "ins.py", 2, "x\ny\n")
    assert "Inserted 2 line(s) after line 2" in middle.content
    assert "     3\tx" in middle.content
    assert (repo / "ins.py").read_text() == "start\na\nx\ny\nb\nc"
    insert(tools, "ins.py", 6, "end")
    assert (repo / "ins.py").read_text() == "start\na\nx\ny\nb\nc\nend\n"
    out_of_range = insert(tools, "ins.py", 9, "z")
    assert out_of_range.is_error
    assert "insert_line 9 is out of range: ins.py has 7 lines" in out_of_range.content
    wrong_name = tools.execute(
        EDITOR, {"command": "insert", "path": "ins.py", "insert_line": 1, "new_str": "z"}
    )
    assert wrong_name.is_error
    assert "parameter `insert_text` is required for command: insert" in wrong_name.content
    no_line = tools.execute(EDITOR, {"command": "insert", "path": "ins.py", "insert_text": "z"})
    assert "parameter `insert_line` is required" in no_line.content
    assert (repo / "ins.py").read_text() == "start\na\nx\ny\nb\nc\nend\n"


def test_editing_a_huge_file_is_refused_without_reading_it(tools: ToolSet, repo: Path) -> None:
    huge = repo / "huge.txt"
    with huge.open("wb") as fh:
        for _ in range(64):
            fh.write(b"a" * 1024 * 1024)
    tracemalloc.start()
    try:
        result = replace_once(tools, "huge.txt", "a", "b")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.is_error
    assert "too large to edit" in result.content
    assert str(MAX_WRITE_BYTES) in result.content
    assert peak < 4 * 1024 * 1024
    assert huge.stat().st_size == 64 * 1024 * 1024


def test_same_length_edit_invalidates_bytecode_caches(tools: ToolSet, repo: Path) -> None:
    before = (repo / "calc.py").stat().st_mtime_ns
    replace_once(tools, "calc.py", "a - b", "a + b")
    assert (repo / "calc.py").stat().st_mtime_ns // 10**9 > before // 10**9


def test_create_makes_new_files_only(tools: ToolSet, repo: Path, sandbox: BwrapSandbox) -> None:
    made = create(tools, "pkg/deep/new.py", "print(1)\n")
    assert made.content == "File created successfully at: pkg/deep/new.py (9 characters)"
    assert (repo / "pkg/deep/new.py").read_text() == "print(1)\n"
    if sandbox.uid is not None:
        assert (repo / "pkg/deep/new.py").stat().st_uid == sandbox.uid
        assert (repo / "pkg").stat().st_uid == sandbox.uid
    again = create(tools, "pkg/deep/new.py", "x")
    assert again.is_error
    assert "already exists; create does not overwrite" in again.content
    assert (repo / "pkg/deep/new.py").read_text() == "print(1)\n"
    assert "is a directory" in create(tools, "pkg", "x").content
    huge = create(tools, "huge.txt", "x" * (3 * 1024 * 1024))
    assert "larger than" in huge.content
    assert not (repo / "huge.txt").exists()
    needs = tools.execute(EDITOR, {"command": "create", "path": "other.py"})
    assert "parameter `file_text` is required for command: create" in needs.content
    assert not (repo / "other.py").exists()


@pytest.mark.bwrap
def test_bash_runs_in_the_sandbox(
    sandboxed_repo: Path, sandbox: BwrapSandbox, canary_env: str
) -> None:
    host_only = sandboxed_repo.parent / "host-only-marker"
    host_only.write_text("the host's file system\n")
    tools = ToolSet.full(sandboxed_repo, sandbox, command_limits=SandboxLimits(wall_seconds=2))
    ok = bash(tools, f"pwd; ls; env; cat {host_only} || echo hidden-from-the-sandbox")
    assert not ok.is_error, ok.content
    assert ok.content.startswith("exit code 0")
    assert "calc.py" in ok.content
    assert canary_env not in ok.content  # a cleared environment
    assert "hidden-from-the-sandbox" in ok.content  # no host paths outside the worktree
    assert "the host's file system" not in ok.content
    failed = bash(tools, "echo oops >&2; exit 3")
    assert failed.is_error
    assert failed.content.startswith("exit code 3")
    assert "stderr:\noops" in failed.content
    slow = bash(tools, "sleep 5")
    assert slow.is_error
    assert "timeout" in slow.content
    assert [c.exit_code for c in tools.commands] == [0, 3, None]
    restart = tools.execute("bash", {"restart": True})
    assert not restart.is_error
    assert "fresh sandboxed shell" in restart.content
    assert "required unless restart" in tools.execute("bash", {}).content
    assert "not both" in tools.execute("bash", {"command": "true", "restart": True}).content
    assert not bash(tools, "cd .github").is_error
    assert "workflows" not in bash(tools, "ls").content  # each call starts at the root


def test_outputs_are_truncated_and_redacted(tools: ToolSet, repo: Path) -> None:
    token = "ghp_" + "A" * 36
    # One over-long line: view shows at least one whole line, and the cap cuts it.
    (repo / "leaky.txt").write_text(f"token {token} and hunter2-secret-value " + "y" * 50_000)
    out = view(tools, "leaky.txt").content
    assert token not in out
    assert "hunter2-secret-value" not in out
    assert out.count("[redacted]") == 2
    assert "characters truncated" in out
    assert len(out) < MAX_OUTPUT_CHARS + 200
    assert truncate("abc", 10) == "abc"


def test_a_secret_cut_by_truncation_is_still_redacted(tools: ToolSet, repo: Path) -> None:
    secret = "hunter2-secret-value"
    head = MAX_OUTPUT_CHARS * 2 // 3
    # view prefixes the line with "     1\t" (7 characters): the cut falls in the secret.
    (repo / "cut.txt").write_text("x" * (head - 7 - 10) + secret + "y" * 50_000 + "\n")
    out = view(tools, "cut.txt").content
    assert "characters truncated" in out
    assert secret[:10] not in out
    assert "[redacted]" in out


def test_read_only_tools_allow_only_listed_commands(repo: Path, sandbox: BwrapSandbox) -> None:
    tools = ToolSet.read_only(repo, sandbox, command_limits=SandboxLimits(wall_seconds=20))
    assert not tools.execute("run_command", {"command": "ls -la"}).is_error
    assert not tools.execute("run_command", {"command": "grep -rn -o add ."}).is_error
    assert not tools.execute("run_command", {"command": "git grep -n add"}).is_error
    log = tools.execute("run_command", {"command": "git log --oneline"})
    assert "init" in log.content
    assert not tools.execute("run_command", {"command": "git diff --text HEAD"}).is_error
    assert not tools.execute(
        "run_command", {"command": "git log --output-indicator-new=+"}
    ).is_error
    for command, why in [
        ("rm -rf .", "not allowed while planning"),
        ("python3 -V", "not allowed while planning"),
        ("ls; rm calc.py", "without a shell"),
        ("cat calc.py > out", "without a shell"),
        ("echo $(id)", "without a shell"),
        ("git push origin main", "allowed subcommands"),
        ("git -c core.pager=sh log", "allowed subcommands"),
        ("find . -delete", "not allowed while planning"),
        ("find . -exec rm {} +", "without a shell"),
        ("git diff --output=x", "not allowed while planning"),
        ("git diff --output x", "not allowed while planning"),
        ("git grep -Orm -e add", "not allowed while planning"),
        ("git grep -iOrm add", "not allowed while planning"),
        ("git show --textconv HEAD", "not allowed while planning"),
        ("find . -fprint out", "not allowed while planning"),
        ("rg --pre=sh add", "not allowed while planning"),
        ("tree -o out", "not allowed while planning"),
        ("file -C -m magic", "not allowed while planning"),
        ("git grep --open-files-in=touch add", "not allowed while planning"),
        ("git grep --op=touch add", "not allowed while planning"),
        ("git diff --ext HEAD", "not allowed while planning"),
        ("git show --textc HEAD", "not allowed while planning"),
        ("rg --pre-g=x --pre=sh add", "not allowed while planning"),
        ("file --comp -m magic", "not allowed while planning"),
        ("cat 'unterminated", "cannot parse"),
    ]:
        result = tools.execute("run_command", {"command": command})
        assert result.is_error, command
        assert why in result.content, (command, result.content)
    assert "def add" in view(tools, "calc.py").content
    for result in [
        replace_once(tools, "calc.py", "a - b", "a + b"),
        create(tools, "new.py", "x"),
        insert(tools, "calc.py", 0, "x"),
    ]:
        assert result.is_error
        assert "is refused: this is a planning run" in result.content
    assert tools.execute("bash", {"command": "touch x"}).content.startswith("unknown tool 'bash'")
    assert (repo / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert not (repo / "new.py").exists()
    assert not (repo / "x").exists()
    assert tools.changed == set()


def test_finish_returns_the_summary(tools: ToolSet) -> None:
    done = tools.execute("finish", {"summary": "all good"})
    assert done.finished == "all good"
    assert tools.execute("finish", {"summary": ""}).is_error


def test_worktree_must_exist(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ToolSet.full(tmp_path / "missing", sandbox)
    assert os.path.isdir(tmp_path)


def test_commands_the_sandbox_refuses_are_errors_not_exceptions(tools: ToolSet, repo: Path) -> None:
    nul = bash(tools, "echo a\0b")
    assert nul.is_error
    assert "the sandbox refused the command" in nul.content
    assert "NUL" in nul.content
    missing = ToolSet.full(repo, BwrapSandbox(bwrap="/nonexistent/bwrap"))
    # A sandbox that cannot run is the operator's to fix, not the model's: it ends the
    # iteration as an infrastructure error (tests/loop/test_sandbox_infra.py).
    with pytest.raises(SandboxUnavailable, match="bubblewrap is not installed"):
        missing.execute("bash", {"command": "true"})


SEGMENTS = [
    "..",
    ".",
    "a",
    "",
    ".git",
    "proc",
    "/proc",
    "/",
    "link",
    "inner",
    "b",
    "~",
    "a/..",
    "\\\\",
]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(parts=st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=8), absolute=st.booleans())
def test_no_path_resolves_outside_the_worktree(
    repo: Path, tmp_path: Path, parts: list[str], absolute: bool
) -> None:
    if not (repo / "link").is_symlink():
        (repo / "a" / "b").mkdir(parents=True)
        (repo / "link").symlink_to(tmp_path)
        (repo / "inner").symlink_to(repo / "a")
    policy = PathPolicy(repo)
    raw = ("/" if absolute else "") + "/".join(parts)
    try:
        resolved = policy.resolve(raw, write=True)
    except ToolRefusal:
        return
    root = repo.resolve()
    assert resolved == root or root in resolved.parents
    assert ".git" not in resolved.relative_to(root).parts
    assert not str(resolved).startswith("/proc")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(
    [
        "command",
        "path",
        "view_range",
        "old_str",
        "new_str",
        "file_text",
        "insert_line",
        "insert_text",
        "restart",
        "glob",
        "pattern",
        "summary",
        "max_results",
    ]
)
COMMANDS = st.sampled_from(["view", "str_replace", "create", "insert", "undo_edit"])


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from([EDITOR, "search", "finish", "x"]),
    tool_input=st.dictionaries(KEYS, JSON, max_size=4)
    | st.builds(lambda c, d: {**d, "command": c}, COMMANDS, st.dictionaries(KEYS, JSON, max_size=4))
    | JSON,
)
def test_any_model_input_gives_a_result_never_an_exception(
    repo: Path, sandbox: BwrapSandbox, name: str, tool_input: object
) -> None:
    tools = ToolSet.full(repo, sandbox)
    result = tools.execute(name, tool_input)
    assert isinstance(result.content, str)
    assert result.content
    assert (repo / "calc.py").exists()


def test_fifos_made_by_commands_cannot_hang_the_tools(tools: ToolSet, sandboxed_repo: Path) -> None:
    made = bash(tools, "mkfifo pipe && ln -s pipe pipe-link")
    assert not made.is_error, made.content
    started = time.monotonic()
    for result in [
        view(tools, "pipe"),
        view(tools, "pipe-link"),
        create(tools, "pipe", "x"),
        create(tools, "pipe-link", "x"),
        replace_once(tools, "pipe", "a", "b"),
        insert(tools, "pipe-link", 0, "b"),
    ]:
        assert result.is_error, result.content
    assert tools.execute("search", {"pattern": "add"}).content.startswith("calc.py")
    assert time.monotonic() - started < 10
