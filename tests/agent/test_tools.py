"""The tools on a real worktree: path rules, each tool's errors, truncation, redaction,
and the read-only set's command allow-list (commands run in real bwrap)."""

from __future__ import annotations

import os
import re
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.agent import PathPolicy, ToolSet
from bot.agent.tools import MAX_OUTPUT_CHARS, MAX_WRITE_BYTES, Glob, ToolRefusal, truncate
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits


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


def test_definitions_are_valid_tool_schemas(
    tools: ToolSet, repo: Path, sandbox: BwrapSandbox
) -> None:
    defs = tools.definitions()
    assert [d["name"] for d in defs] == [
        "read_file",
        "list_files",
        "search",
        "edit_file",
        "create_file",
        "run_command",
        "finish",
    ]
    for d in defs:
        assert d["input_schema"]["type"] == "object"
        assert d["description"]
    read_only = ToolSet.read_only(repo, sandbox)
    assert read_only.names == ["read_file", "list_files", "search", "run_command", "finish"]
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
    result = tools.execute("read_file", {"path": path})
    assert result.is_error
    assert why in result.content


def test_symlink_escapes_are_refused_but_inner_links_work(
    tools: ToolSet, repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("outside\n")
    (repo / "escape").symlink_to(tmp_path / "secret.txt")
    (repo / "escdir").symlink_to(tmp_path)
    (repo / "inner").symlink_to(repo / "README.md")
    assert "symbolic link leads outside" in tools.execute("read_file", {"path": "escape"}).content
    assert (
        "symbolic link leads outside"
        in tools.execute("read_file", {"path": "escdir/secret.txt"}).content
    )
    assert (
        "symbolic link leads outside"
        in tools.execute("create_file", {"path": "escdir/new.txt", "content": "x"}).content
    )
    assert not (tmp_path / "new.txt").exists()
    assert "Adds numbers." in tools.execute("read_file", {"path": "inner"}).content


def test_protected_paths_refuse_writes_unless_allowed(tools: ToolSet, repo: Path) -> None:
    for path in [".github/workflows/ci.yml", "deep/dir/.envrc", "vendor/lib.py"]:
        result = tools.execute("create_file", {"path": path, "content": "x", "overwrite": True})
        assert result.is_error, path
        assert "protected path" in result.content
    edit = tools.execute(
        "edit_file", {"path": ".github/workflows/ci.yml", "old_text": "push", "new_text": "pull"}
    )
    assert edit.is_error
    assert (repo / ".github/workflows/ci.yml").read_text() == "on: push\n"
    # Reading a protected path is fine; writing an allowed one too.
    assert not tools.execute("read_file", {"path": ".github/workflows/ci.yml"}).is_error
    assert not tools.execute(
        "create_file", {"path": "vendor/allowed.txt", "content": "ok"}
    ).is_error


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
        result = tools.execute("create_file", {"path": path, "content": "x"})
        assert result.is_error, path
        assert "protected path" in result.content
    for path in accepted:
        assert not tools.execute("create_file", {"path": path, "content": "x"}).is_error, path


def test_protected_paths_match_names_with_newlines(tools: ToolSet, repo: Path) -> None:
    for path in [".github/workflows/evil\n.yml", "a\nb/.envrc"]:
        result = tools.execute("create_file", {"path": path, "content": "x"})
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


def test_hostile_globs_take_linear_time(tools: ToolSet, repo: Path) -> None:
    """A backtracking matcher needs hours for these; the tools must answer at once."""
    (repo / ("a" * 200)).write_text("")
    deep = repo.joinpath(*["d"] * 60)
    deep.mkdir(parents=True)
    (deep / "f").write_text("")
    results: list[str] = []

    def hostile() -> None:
        for glob in ["*a" * 40 + "*b", "**/" * 30 + "x", "**a" * 40 + "b"]:
            results.append(tools.execute("list_files", {"glob": glob}).content)
        protected = Glob("*a" * 40 + "*b")
        results.append(str(protected.match("a" * 4000)))

    worker = threading.Thread(target=hostile, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "a hostile glob hung the matcher"
    assert results == ["(no entries)", "(no entries)", "(no entries)", "False"]


def test_read_file_ranges_and_errors(tools: ToolSet, repo: Path) -> None:
    (repo / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 3001)))
    part = tools.execute("read_file", {"path": "long.txt", "start_line": 10, "end_line": 12})
    assert part.content == "    10\tline 10\n    11\tline 11\n    12\tline 12"
    capped = tools.execute("read_file", {"path": "long.txt"}).content
    assert "read on with start_line=2001" in capped
    assert (
        "past the end"
        in tools.execute("read_file", {"path": "long.txt", "start_line": 4000}).content
    )
    (repo / "blob.bin").write_bytes(b"\0\1\2" * 10)
    assert "binary file" in tools.execute("read_file", {"path": "blob.bin"}).content
    assert "no such file" in tools.execute("read_file", {"path": "missing.py"}).content
    assert "a directory" in tools.execute("read_file", {"path": ".github"}).content
    bad = tools.execute("read_file", {"path": "calc.py", "start_line": 0, "extra": 1})
    assert bad.is_error
    assert "start_line" in bad.content
    assert "extra" in bad.content
    assert tools.execute("read_file", "not a dict").is_error


def test_list_and_glob(tools: ToolSet, repo: Path) -> None:
    (repo / "pkg" / "sub").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("")
    (repo / "pkg" / "sub" / "b.py").write_text("")
    listing = tools.execute("list_files", {}).content.splitlines()
    assert ".github/" in listing
    assert "pkg/" in listing
    assert ".git/" not in listing
    assert ".git" not in listing
    globbed = tools.execute("list_files", {"glob": "**/*.py"}).content.splitlines()
    assert globbed == ["calc.py", "test_calc.py", "pkg/a.py", "pkg/sub/b.py"]
    assert tools.execute("list_files", {"path": "pkg", "glob": "*.py"}).content == "pkg/a.py"
    assert "not a directory" in tools.execute("list_files", {"path": "calc.py"}).content


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


def test_edit_file_exact_replacement(tools: ToolSet, repo: Path) -> None:
    (repo / "dup.py").write_text("x = 1\nx = 1\n")
    missing = tools.execute("edit_file", {"path": "dup.py", "old_text": "y = 1", "new_text": "z"})
    assert "was not found" in missing.content
    twice = tools.execute("edit_file", {"path": "dup.py", "old_text": "x = 1", "new_text": "z"})
    assert "occurs 2 times" in twice.content
    assert (repo / "dup.py").read_text() == "x = 1\nx = 1\n"
    every = tools.execute(
        "edit_file",
        {"path": "dup.py", "old_text": "x = 1", "new_text": "x = 2", "replace_all": True},
    )
    assert every.content == "edited dup.py: 2 replacement(s) at line 1"
    assert (repo / "dup.py").read_text() == "x = 2\nx = 2\n"
    assert (
        "use create_file"
        in tools.execute("edit_file", {"path": "new.py", "old_text": "a", "new_text": "b"}).content
    )
    assert tools.changed == {"dup.py"}


def test_editing_a_huge_file_is_refused_without_reading_it(tools: ToolSet, repo: Path) -> None:
    huge = repo / "huge.txt"
    with huge.open("wb") as fh:
        for _ in range(64):
            fh.write(b"a" * 1024 * 1024)
    tracemalloc.start()
    try:
        result = tools.execute("edit_file", {"path": "huge.txt", "old_text": "a", "new_text": "b"})
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
    tools.execute("edit_file", {"path": "calc.py", "old_text": "a - b", "new_text": "a + b"})
    assert (repo / "calc.py").stat().st_mtime_ns // 10**9 > before // 10**9


def test_create_file(tools: ToolSet, repo: Path, sandbox: BwrapSandbox) -> None:
    made = tools.execute("create_file", {"path": "pkg/deep/new.py", "content": "print(1)\n"})
    assert made.content == "created pkg/deep/new.py (9 characters)"
    assert (repo / "pkg/deep/new.py").read_text() == "print(1)\n"
    if sandbox.uid is not None:
        assert (repo / "pkg/deep/new.py").stat().st_uid == sandbox.uid
        assert (repo / "pkg").stat().st_uid == sandbox.uid
    again = tools.execute("create_file", {"path": "pkg/deep/new.py", "content": "x"})
    assert "already exists" in again.content
    assert not tools.execute(
        "create_file", {"path": "pkg/deep/new.py", "content": "x", "overwrite": True}
    ).is_error
    assert "is a directory" in tools.execute("create_file", {"path": "pkg", "content": "x"}).content
    huge = tools.execute("create_file", {"path": "huge.txt", "content": "x" * (3 * 1024 * 1024)})
    assert "larger than" in huge.content
    assert not (repo / "huge.txt").exists()


def test_run_command_in_the_sandbox(tools: ToolSet, sandboxed_repo: Path) -> None:
    ok = tools.execute("run_command", {"command": "pwd; ls"})
    assert not ok.is_error
    assert ok.content.startswith("exit code 0")
    assert "calc.py" in ok.content
    failed = tools.execute("run_command", {"command": "echo oops >&2; exit 3"})
    assert failed.is_error
    assert failed.content.startswith("exit code 3")
    assert "stderr:\noops" in failed.content
    slow = tools.execute("run_command", {"command": "sleep 5", "timeout_seconds": 0.5})
    assert slow.is_error
    assert "timeout" in slow.content
    assert [c.exit_code for c in tools.commands] == [0, 3, None]


def test_outputs_are_truncated_and_redacted(tools: ToolSet, repo: Path) -> None:
    token = "ghp_" + "A" * 36
    (repo / "leaky.txt").write_text(f"token {token} and hunter2-secret-value\n" + "y" * 50_000)
    out = tools.execute("read_file", {"path": "leaky.txt"}).content
    assert token not in out
    assert "hunter2-secret-value" not in out
    assert out.count("[redacted]") == 2
    assert "characters truncated" in out
    assert len(out) < MAX_OUTPUT_CHARS + 200
    assert truncate("abc", 10) == "abc"


def test_a_secret_cut_by_truncation_is_still_redacted(tools: ToolSet, repo: Path) -> None:
    secret = "hunter2-secret-value"
    head = MAX_OUTPUT_CHARS * 2 // 3
    # read_file prefixes the line with "     1\t" (7 characters): the cut falls in the secret.
    (repo / "cut.txt").write_text("x" * (head - 7 - 10) + secret + "y" * 50_000 + "\n")
    out = tools.execute("read_file", {"path": "cut.txt"}).content
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
    assert tools.execute(
        "edit_file", {"path": "calc.py", "old_text": "a", "new_text": "b"}
    ).content.startswith("unknown tool 'edit_file'")
    assert (repo / "calc.py").exists()


def test_finish_returns_the_summary(tools: ToolSet) -> None:
    done = tools.execute("finish", {"summary": "all good"})
    assert done.finished == "all good"
    assert tools.execute("finish", {"summary": ""}).is_error


def test_worktree_must_exist(sandbox: BwrapSandbox, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ToolSet.full(tmp_path / "missing", sandbox)
    assert os.path.isdir(tmp_path)


def test_commands_the_sandbox_refuses_are_errors_not_exceptions(tools: ToolSet, repo: Path) -> None:
    nul = tools.execute("run_command", {"command": "echo a\0b"})
    assert nul.is_error
    assert "the sandbox refused the command" in nul.content
    assert "NUL" in nul.content
    missing = ToolSet.full(repo, BwrapSandbox(bwrap="/nonexistent/bwrap"))
    unavailable = missing.execute("run_command", {"command": "true"})
    assert unavailable.is_error
    assert "the sandbox refused the command" in unavailable.content


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
        "path",
        "start_line",
        "end_line",
        "glob",
        "pattern",
        "old_text",
        "new_text",
        "content",
        "summary",
        "max_results",
    ]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(
        ["read_file", "list_files", "search", "edit_file", "create_file", "finish", "x"]
    ),
    tool_input=st.dictionaries(KEYS, JSON, max_size=4) | JSON,
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
    made = tools.execute("run_command", {"command": "mkfifo pipe && ln -s pipe pipe-link"})
    assert not made.is_error, made.content
    started = time.monotonic()
    for name, args in [
        ("read_file", {"path": "pipe"}),
        ("read_file", {"path": "pipe-link"}),
        ("create_file", {"path": "pipe", "content": "x", "overwrite": True}),
        ("create_file", {"path": "pipe-link", "content": "x", "overwrite": True}),
        ("edit_file", {"path": "pipe", "old_text": "a", "new_text": "b"}),
    ]:
        result = tools.execute(name, args)
        assert result.is_error, (name, args)
    assert tools.execute("search", {"pattern": "add"}).content.startswith("calc.py")
    assert time.monotonic() - started < 10
