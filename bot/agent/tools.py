"""The agent's tools, bound to one worktree and one sandbox.

Every tool takes the model's JSON input and returns a :class:`ToolResult`; a failure (bad
input, a refused path, a missing file, a command that failed) is a result with
``is_error=True`` that the model can act on, never an exception through the loop (STYLE.md
item 8; anthropic-quickstarts ``agents/utils/tool_util.py``).

Path rules (DESIGN.md section 4 rule 4): a path is resolved against the worktree, following
symlinks, and refused when it lands outside the worktree (``..``, absolute paths, symlink
escapes), inside a ``.git`` directory, under ``/proc``, or, for writes, on a protected path
(``RepoConfig.protected_paths`` unless listed in ``paths.allowed``). Output that reaches the
model is capped with a visible truncation marker and passed through :func:`redact`.

Two sets: :meth:`ToolSet.full` (read, list, search, edit, create, run, finish) and
:meth:`ToolSet.read_only` for planning (no edit or create; commands only from an
allow-list, run without a shell).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core.config import DEFAULT_PROTECTED_PATHS
from bot.core.globs import Glob
from bot.core.redact import redact
from bot.sandbox.bwrap import DEFAULT_LIMITS, Sandbox, SandboxError, SandboxLimits

MAX_OUTPUT_CHARS = 30_000
MAX_READ_BYTES = 5 * 1024 * 1024
MAX_READ_LINES = 2_000
MAX_LIST_ENTRIES = 500
MAX_WALK_FILES = 100_000
MAX_SEARCH_RESULTS = 200
MAX_WRITE_BYTES = 2 * 1024 * 1024
SEARCH_TIMEOUT_SECONDS = 20.0
MAX_PATH_CHARS = 4096

# Programs the read-only (planning) tool set may run, with the subcommands allowed where the
# program has subcommands. They run as argument vectors, never through a shell.
READ_ONLY_COMMANDS: Mapping[str, frozenset[str] | None] = {
    "ls": None,
    "cat": None,
    "head": None,
    "tail": None,
    "wc": None,
    "grep": None,
    "rg": None,
    "find": None,
    "tree": None,
    "file": None,
    "stat": None,
    "du": None,
    "git": frozenset({"log", "show", "diff", "status", "blame", "grep", "ls-files", "shortlog"}),
}
# Long options that would make an allowed program write, execute or reach out, per program.
# git and GNU getopt accept any unambiguous abbreviation (``git grep --open-files-in=sh``
# runs a pager command), so an argument that begins one of these names is refused too.
FORBIDDEN_LONG_OPTIONS: Mapping[str, frozenset[str]] = {
    "git": frozenset(
        {"output", "ext-diff", "textconv", "exec-path", "upload-pack", "open-files-in-pager"}
    ),
    "rg": frozenset({"pre", "pre-glob"}),
    "tree": frozenset({"output"}),
    "file": frozenset({"compile"}),
}
# Harmless options whose full name begins a forbidden one; a full name wins over an
# abbreviation (``git diff --text``).
HARMLESS_LONG_OPTIONS = frozenset({"text"})
# Short and single-dash options to refuse. Short options may be clustered (``-iOcmd``), so
# those patterns match anywhere in a single-dash argument.
FORBIDDEN_ARGS: Mapping[str, re.Pattern[str]] = {
    "find": re.compile(r"^-(?:exec|execdir|ok|okdir|delete|fprint0?|fprintf|fls)$"),
    "git": re.compile(r"^-[^-]*O"),
    "tree": re.compile(r"^-[^-]*o"),
    "file": re.compile(r"^-[^-]*C"),
}


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer. ``finished`` holds the summary when the model called ``finish``."""

    content: str
    is_error: bool = False
    finished: str | None = None


class ToolRefusal(Exception):
    """Raised inside a tool to answer the model with an error result."""


@dataclass(frozen=True)
class CommandRecord:
    command: str
    exit_code: int | None
    limit: str | None
    output: str


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Keep the head and tail of ``text`` with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters truncated ...]\n{text[-tail:]}"


def _read_lines(stream: IO[bytes], limit: int, max_line: int = 4096) -> list[str]:
    """Up to ``limit`` lines, each cut at ``max_line`` bytes, never holding a whole long line."""
    lines: list[str] = []
    while len(lines) < limit:
        chunk = stream.readline(max_line)
        if not chunk:
            break
        line = chunk
        while not chunk.endswith(b"\n"):
            chunk = stream.readline(max_line)
            if not chunk:
                break
        lines.append(line.rstrip(b"\n").decode(errors="replace"))
    return lines


class PathPolicy:
    """Resolves model-supplied paths inside one worktree and says what is refused."""

    def __init__(
        self,
        root: Path,
        protected: Sequence[str] = DEFAULT_PROTECTED_PATHS,
        allowed: Sequence[str] = (),
    ) -> None:
        self.root = root.resolve(strict=True)
        # The same reading as the publish-time check (bot/workspace/git.py): a leading or
        # trailing "/" changes nothing, and a pattern also covers what is below its match.
        self._protected = [Glob(g) for g in (p.strip().strip("/") for p in protected) if g]
        self._allowed = [Glob(g) for g in (p.strip().strip("/") for p in allowed) if g]

    def resolve(self, raw: object, *, write: bool = False) -> Path:
        if not isinstance(raw, str) or not raw.strip():
            raise ToolRefusal("path must be a non-empty string")
        if "\0" in raw or len(raw) > MAX_PATH_CHARS:
            raise ToolRefusal("path contains a NUL byte or is too long")
        given = Path(raw)
        if given.is_absolute():
            lexical = Path(os.path.normpath(given))
            if lexical == Path("/proc") or Path("/proc") in lexical.parents:
                raise ToolRefusal(f"{raw}: paths under /proc are refused")
            if lexical != self.root and self.root not in lexical.parents:
                raise ToolRefusal(f"{raw}: outside the worktree; use a path relative to it")
            candidate = lexical
        else:
            candidate = Path(os.path.normpath(self.root / given))
            if candidate != self.root and self.root not in candidate.parents:
                raise ToolRefusal(f"{raw}: outside the worktree")
        resolved = candidate.resolve(strict=False)
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolRefusal(f"{raw}: a symbolic link leads outside the worktree")
        rel = self.relative(resolved)
        if ".git" in PurePosixPath(rel).parts:
            raise ToolRefusal(f"{raw}: the .git directory is off limits (the bot makes commits)")
        if write:
            self.check_writable(rel, raw)
        return resolved

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path != self.root else "."

    def check_writable(self, rel: str, raw: str) -> None:
        parts = rel.split("/")
        covering = ["/".join(parts[: n + 1]) for n in range(len(parts))]  # rel and its parents
        if any(glob.match(path) for glob in self._allowed for path in covering):
            return
        for glob in self._protected:
            if any(glob.match(path) for path in covering):
                raise ToolRefusal(
                    f"{raw}: protected path (matches {glob.pattern!r}); the repository's "
                    "config must allow it in paths.allowed"
                )


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReadFileInput(_Input):
    path: str
    start_line: int | None = Field(default=None, ge=1)
    end_line: int | None = Field(default=None, ge=1)


class ListFilesInput(_Input):
    path: str = "."
    glob: str | None = Field(default=None, max_length=500)


class SearchInput(_Input):
    pattern: str = Field(min_length=1, max_length=1000)
    path: str = "."
    glob: str | None = Field(default=None, max_length=200)
    max_results: int = Field(default=100, ge=1, le=MAX_SEARCH_RESULTS)


class EditFileInput(_Input):
    path: str
    old_text: str = Field(min_length=1)
    new_text: str
    replace_all: bool = False


class CreateFileInput(_Input):
    path: str
    content: str
    overwrite: bool = False


class RunCommandInput(_Input):
    command: str = Field(min_length=1, max_length=10_000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)


class FinishInput(_Input):
    summary: str = Field(min_length=1, max_length=20_000)


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    schema: type[_Input]
    handler: Callable[[Any], ToolResult]


@dataclass
class ToolSet:
    """Tools bound to one worktree and one sandbox; build with :meth:`full` or :meth:`read_only`.

    ``definitions()`` gives the Messages API ``tools`` list; ``execute(name, input)`` runs one
    call and always returns a :class:`ToolResult`.
    """

    policy: PathPolicy
    sandbox: Sandbox
    writable: bool
    secrets: Sequence[str] = ()
    command_limits: SandboxLimits = DEFAULT_LIMITS
    network: bool = False
    allow_hosts: tuple[str, ...] = ()
    allowed_commands: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    cancel: threading.Event | None = None
    commands: list[CommandRecord] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    _tools: dict[str, _Tool] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        tools = [
            _Tool(
                "read_file",
                "Read a text file of the repository, with line numbers. Optional 1-based "
                "start_line and end_line select a range; long files are cut at "
                f"{MAX_READ_LINES} lines per call.",
                ReadFileInput,
                self._read_file,
            ),
            _Tool(
                "list_files",
                "List a directory of the repository (directories end with '/'), or, with "
                "glob (e.g. '**/*.py'), the files under path matching it.",
                ListFilesInput,
                self._list_files,
            ),
            _Tool(
                "search",
                "Search file contents under path with a POSIX extended regular expression "
                "(grep -E syntax); optional glob filters file names (e.g. '*.py'). Returns "
                "path:line:text matches, capped at max_results.",
                SearchInput,
                self._search,
            ),
        ]
        if self.writable:
            tools += [
                _Tool(
                    "edit_file",
                    "Replace old_text with new_text in a file. old_text must match the file "
                    "exactly (whitespace included) and occur exactly once, unless "
                    "replace_all is true. Read the file first.",
                    EditFileInput,
                    self._edit_file,
                ),
                _Tool(
                    "create_file",
                    "Create a file with the given content (parent directories are created). "
                    "Refuses an existing file unless overwrite is true.",
                    CreateFileInput,
                    self._create_file,
                ),
            ]
        run_help = (
            "Run a shell command in the repository's sandbox (no network, no secrets, hard "
            "limits); returns the exit code and output."
            if self.writable
            else "Run one read-only command without a shell; allowed programs: "
            + ", ".join(sorted(self.allowed_commands))
            + "."
        )
        tools += [
            _Tool("run_command", run_help, RunCommandInput, self._run_command),
            _Tool(
                "finish",
                "Call when the task is done, with a short summary of what you changed and "
                "why, for the pull request.",
                FinishInput,
                self._finish,
            ),
        ]
        self._tools = {t.name: t for t in tools}

    @classmethod
    def full(
        cls,
        worktree: Path,
        sandbox: Sandbox,
        *,
        protected_paths: Sequence[str] = DEFAULT_PROTECTED_PATHS,
        allowed_paths: Sequence[str] = (),
        secrets: Sequence[str] = (),
        command_limits: SandboxLimits = DEFAULT_LIMITS,
        network: bool = False,
        allow_hosts: Sequence[str] = (),
        cancel: threading.Event | None = None,
    ) -> ToolSet:
        """All tools: read, list, search, edit, create, run (through a shell), finish."""
        return cls(
            policy=PathPolicy(worktree, protected_paths, allowed_paths),
            sandbox=sandbox,
            writable=True,
            secrets=secrets,
            command_limits=command_limits,
            network=network,
            allow_hosts=tuple(allow_hosts),
            cancel=cancel,
        )

    @classmethod
    def read_only(
        cls,
        worktree: Path,
        sandbox: Sandbox,
        *,
        secrets: Sequence[str] = (),
        command_limits: SandboxLimits = DEFAULT_LIMITS,
        allowed_commands: Mapping[str, frozenset[str] | None] = READ_ONLY_COMMANDS,
        cancel: threading.Event | None = None,
    ) -> ToolSet:
        """Planning tools: no edit or create; commands only from ``allowed_commands``."""
        return cls(
            policy=PathPolicy(worktree),
            sandbox=sandbox,
            writable=False,
            secrets=secrets,
            command_limits=command_limits,
            allowed_commands=allowed_commands,
            cancel=cancel,
        )

    @property
    def root(self) -> Path:
        return self.policy.root

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def definitions(self) -> list[dict[str, Any]]:
        """The ``tools`` parameter of a Messages API request, in a stable order."""
        out = []
        for tool in self._tools.values():
            schema = tool.schema.model_json_schema()
            schema.pop("title", None)
            for prop in schema.get("properties", {}).values():
                prop.pop("title", None)
            out.append({"name": tool.name, "description": tool.description, "input_schema": schema})
        return out

    def execute(self, name: str, tool_input: object) -> ToolResult:
        """Run one tool call; every failure becomes an ``is_error`` result."""
        tool = self._tools.get(name)
        if tool is None:
            return ToolResult(f"unknown tool {name!r}; available: {', '.join(self._tools)}", True)
        try:
            args = tool.schema.model_validate(tool_input)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            return ToolResult(f"invalid input for {name}: {problems}", True)
        try:
            result = tool.handler(args)
        except ToolRefusal as exc:
            result = ToolResult(str(exc), True)
        except (OSError, UnicodeError, ValueError) as exc:
            result = ToolResult(f"{name} failed: {type(exc).__name__}: {exc}", True)
        # Redact before cutting: a secret split by the truncation marker would no longer
        # match and half of it would reach the model.
        return ToolResult(
            truncate(redact(result.content, self.secrets)), result.is_error, result.finished
        )

    # -- tools -----------------------------------------------------------------------------

    def _read_file(self, args: ReadFileInput) -> ToolResult:
        path = self.policy.resolve(args.path)
        if not path.is_file():
            raise ToolRefusal(
                f"{args.path}: no such file" + (" (a directory)" if path.is_dir() else "")
            )
        size = path.stat().st_size
        if size > MAX_READ_BYTES:
            raise ToolRefusal(f"{args.path}: {size} bytes is too large to read; use search")
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            raise ToolRefusal(f"{args.path}: binary file")
        lines = data.decode("utf-8", errors="replace").splitlines()
        start = args.start_line or 1
        end = min(args.end_line or len(lines), len(lines), start + MAX_READ_LINES - 1)
        if args.end_line is not None and args.end_line < start:
            raise ToolRefusal("end_line is before start_line")
        if start > max(len(lines), 1):
            raise ToolRefusal(
                f"{args.path} has {len(lines)} lines; start_line {start} is past the end"
            )
        body = "\n".join(f"{n:>6}\t{lines[n - 1]}" for n in range(start, end + 1))
        note = ""
        if end < len(lines) and (args.end_line is None or end < args.end_line):
            note = f"\n[lines {start}-{end} of {len(lines)}; read on with start_line={end + 1}]"
        return ToolResult((body or "(empty file)") + note)

    def _list_files(self, args: ListFilesInput) -> ToolResult:
        base = self.policy.resolve(args.path)
        if not base.is_dir():
            raise ToolRefusal(f"{args.path}: not a directory")
        entries: list[str] = []
        if args.glob:
            glob = Glob(args.glob)
            seen = 0
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(d for d in dirnames if d != ".git")
                seen += len(filenames)
                for name in sorted(filenames):
                    found = Path(dirpath, name)
                    if glob.match(found.relative_to(base).as_posix()):
                        entries.append(self.policy.relative(found))
                if len(entries) > MAX_LIST_ENTRIES:
                    break
                if seen > MAX_WALK_FILES:
                    entries.append(f"[stopped after {MAX_WALK_FILES} files; narrow the path]")
                    break
        else:
            for child in sorted(base.iterdir()):
                if child.name == ".git":
                    continue
                entries.append(
                    child.name + ("/" if child.is_dir() and not child.is_symlink() else "")
                )
        more = len(entries) > MAX_LIST_ENTRIES
        text = "\n".join(entries[:MAX_LIST_ENTRIES]) or "(no entries)"
        if more:
            text += f"\n[more than {MAX_LIST_ENTRIES} entries; narrow the path or glob]"
        return ToolResult(text)

    def _search(self, args: SearchInput) -> ToolResult:
        base = self.policy.resolve(args.path)
        # grep -E matches in linear time, so a hostile pattern cannot hang the worker the
        # way a backtracking regex engine could; -r (not -R) does not follow symlinks and
        # skips FIFOs and devices; -s keeps unreadable files quiet. Output is read as it
        # comes and grep is stopped once enough matches arrived.
        argv = ["grep", "-rnsIE", "--exclude-dir=.git", "-m", "50", "--color=never"]
        if args.glob:
            argv.append(f"--include={args.glob}")
        argv += ["-e", args.pattern, "--", str(base)]
        expired = threading.Event()
        with subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        ) as proc:

            def expire() -> None:
                expired.set()
                proc.kill()

            timer = threading.Timer(SEARCH_TIMEOUT_SECONDS, expire)
            timer.start()
            try:
                lines = _read_lines(proc.stdout, args.max_results + 1) if proc.stdout else []
                if len(lines) > args.max_results:
                    proc.kill()  # enough: stop grep rather than read the rest
            except BaseException:
                proc.kill()
                raise
            finally:
                timer.cancel()
            error = proc.stderr.read(2000).decode(errors="replace") if proc.stderr else ""
            code = proc.wait()
        if expired.is_set() and not lines:
            raise ToolRefusal("search timed out; narrow the path or the pattern")
        if code == 2 and not lines:
            raise ToolRefusal("search failed: " + error.strip())
        prefix = str(self.root) + "/"
        lines = [line.removeprefix(prefix)[:500] for line in lines]
        if not lines:
            return ToolResult("no matches")
        text = "\n".join(lines[: args.max_results])
        if len(lines) > args.max_results:
            text += f"\n[more than {args.max_results} matches; refine the pattern]"
        elif expired.is_set():
            text += "\n[search timed out; there may be more matches]"
        return ToolResult(text)

    def _edit_file(self, args: EditFileInput) -> ToolResult:
        path = self.policy.resolve(args.path, write=True)
        if not path.is_file():
            raise ToolRefusal(f"{args.path}: no such file; use create_file for new files")
        size = path.stat().st_size
        if size > MAX_WRITE_BYTES:
            # Refused before reading: a command may have made a file of gigabytes, and the
            # edited text could not be written back anyway.
            raise ToolRefusal(
                f"{args.path}: {size} bytes is too large to edit (the limit is "
                f"{MAX_WRITE_BYTES}); change it with a command"
            )
        text = path.read_text(encoding="utf-8")
        count = text.count(args.old_text)
        if count == 0:
            raise ToolRefusal(
                f"{args.path}: old_text was not found; it must match exactly, including "
                "whitespace and indentation (read the file again)"
            )
        if count > 1 and not args.replace_all:
            raise ToolRefusal(
                f"{args.path}: old_text occurs {count} times; include more surrounding lines "
                "to make it unique, or set replace_all"
            )
        updated = text.replace(args.old_text, args.new_text)
        self._write(path, updated)
        line = text[: text.index(args.old_text)].count("\n") + 1
        return ToolResult(
            f"edited {self.policy.relative(path)}: {count} replacement(s) at line {line}"
        )

    def _create_file(self, args: CreateFileInput) -> ToolResult:
        path = self.policy.resolve(args.path, write=True)
        if path.is_dir():
            raise ToolRefusal(f"{args.path}: is a directory")
        if path.exists() and not path.is_file():
            raise ToolRefusal(f"{args.path}: not a regular file")
        if path.exists() and not args.overwrite:
            raise ToolRefusal(f"{args.path}: already exists; use edit_file or set overwrite")
        self._makedirs(path.parent)
        self._write(path, args.content)
        return ToolResult(f"created {self.policy.relative(path)} ({len(args.content)} characters)")

    def _run_command(self, args: RunCommandInput) -> ToolResult:
        command: str | list[str] = (
            args.command if self.writable else self._allowed_argv(args.command)
        )
        limits = self.command_limits
        if args.timeout_seconds is not None:
            limits = replace(limits, wall_seconds=min(limits.wall_seconds, args.timeout_seconds))
        try:
            result = self.sandbox.run(
                command,
                workdir=self.root,
                limits=limits,
                network=self.network,
                allow_hosts=self.allow_hosts,
                cancel=self.cancel,
            )
        except SandboxError as exc:
            raise ToolRefusal(f"the sandbox refused the command: {exc}") from None
        end = f"exit code {result.exit_code}" if result.exit_code is not None else "killed"
        if result.limit:
            end += f" ({result.limit} limit)"
        parts = [f"{end} after {result.duration:.1f} s"]
        if result.stdout:
            parts.append("stdout:\n" + result.stdout)
        if result.stderr:
            parts.append("stderr:\n" + result.stderr)
        if result.truncated:
            parts.append("[output truncated by the sandbox]")
        text = "\n".join(parts)
        self.commands.append(
            CommandRecord(args.command, result.exit_code, result.limit, truncate(text, 4000))
        )
        return ToolResult(text, is_error=result.exit_code != 0 or result.limit is not None)

    def _finish(self, args: FinishInput) -> ToolResult:
        return ToolResult("finished", finished=args.summary)

    # -- helpers ---------------------------------------------------------------------------

    def _allowed_argv(self, command: str) -> list[str]:
        if re.search(r"[;&|<>`$\n\\(){}]", command):
            raise ToolRefusal(
                "planning commands run without a shell: no pipes, redirects, substitutions "
                "or command separators"
            )
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise ToolRefusal(f"cannot parse the command: {exc}") from None
        program = argv[0] if argv else ""
        if program not in self.allowed_commands:
            raise ToolRefusal(
                f"{program!r} is not allowed while planning; allowed: "
                + ", ".join(sorted(self.allowed_commands))
            )
        subcommands = self.allowed_commands[program]
        if subcommands is not None and (len(argv) < 2 or argv[1] not in subcommands):
            raise ToolRefusal(
                f"{program}: allowed subcommands are {', '.join(sorted(subcommands))}"
            )
        forbidden = FORBIDDEN_ARGS.get(program)
        forbidden_long = FORBIDDEN_LONG_OPTIONS.get(program, frozenset())
        for arg in argv[1:]:
            name = arg[2:].partition("=")[0] if arg.startswith("--") else ""
            if (
                name
                and name not in HARMLESS_LONG_OPTIONS
                and any(option.startswith(name) for option in forbidden_long)
            ) or (forbidden is not None and not arg.startswith("--") and forbidden.search(arg)):
                raise ToolRefusal(f"argument {arg!r} is not allowed while planning")
        return argv

    def _makedirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir()
            self._chown(d)

    def _write(self, path: Path, text: str) -> None:
        data = text.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise ToolRefusal(f"content of {len(data)} bytes is larger than {MAX_WRITE_BYTES}")
        before = path.stat().st_mtime_ns if path.exists() else None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if before is None:
            self._chown(path)
        elif path.stat().st_mtime_ns // 10**9 <= before // 10**9:
            # Python's .pyc check (and make) compare whole-second mtimes plus size: an edit
            # of the same length within the second a test ran would run stale bytecode.
            later = (before // 10**9 + 1) * 10**9
            os.utime(path, ns=(later, later), follow_symlinks=False)
        self.changed.add(self.policy.relative(path))

    def _chown(self, path: Path) -> None:
        """Files the bot creates must stay writable by the sandbox's unprivileged uid."""
        uid = self.sandbox.uid
        if uid is not None and os.geteuid() == 0:
            os.chown(path, uid, uid, follow_symlinks=False)
