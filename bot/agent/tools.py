"""The agent's tools, bound to one worktree and one sandbox.

Every tool takes the model's JSON input and returns a :class:`ToolResult`; a failure (bad
input, a refused path, a missing file, a command that failed) is a result with
``is_error=True`` that the model can act on, never an exception through the loop (STYLE.md
item 8; anthropic-quickstarts ``agents/utils/tool_util.py``). The one exception is a sandbox
that cannot start (:class:`SandboxUnavailable`): not the model's to fix, it ends the
iteration as an infrastructure error.

Path rules (DESIGN.md section 4 rule 4): a path is resolved against the worktree, following
symlinks, and refused when it lands outside the worktree (``..``, absolute paths, symlink
escapes), inside a ``.git`` directory, under ``/proc``, or, for writes, on a protected path
(``RepoConfig.protected_paths`` unless listed in ``paths.allowed``), judged for the name
given and for the real target alike, and refused for a file with other hard links. The
resolved path is then opened beneath the worktree with no symlink at any component
(:mod:`bot.workspace.files`): the sandbox may swap a directory for a symlink between the
check and the I/O, and the kernel refuses it there. Files are checked by type before a byte
is read or written (a FIFO never blocks) and by size before they are read. Output that
reaches the model is capped with a visible truncation marker and passed through
:func:`redact`.

Files and commands are offered as the Anthropic-defined client tools Claude 4 models are
trained on, whose input schema is built into the model (the request names only type and
name; the API adds the tool's documented input tokens, see
``tests/benchmarks/bench_tool_tokens.py``): the text editor (``text_editor_20250728``,
named ``str_replace_based_edit_tool``: ``view``, ``str_replace``, ``create``, ``insert``;
https://docs.claude.com/en/docs/agents-and-tools/tool-use/text-editor-tool) and bash
(``bash_20250124``: ``command`` or ``restart``;
https://docs.claude.com/en/docs/agents-and-tools/tool-use/bash-tool). Only what has no
built-in stays ours: ``search``, ``finish`` and the planning set's ``run_command``.

Two sets: :meth:`ToolSet.full` (editor, bash, search, finish) and :meth:`ToolSet.read_only`
for planning: the editor with only ``view`` honoured (the other commands answer with an
``is_error`` result), and ``run_command`` with commands only from an allow-list, run without
a shell, in place of bash.

Both sets end with the tools of the repository's MCP servers (``mcp``, a
:class:`bot.agent.mcp.McpTools` started for the run), sorted by their ``mcp__<server>__<tool>``
names; the planning set gets only those the config marks ``read_only``. Their results are
capped and redacted here like every other tool's.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import stat
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, Final, Literal

import structlog
from anthropic.types import (
    ToolBash20250124Param,
    ToolParam,
    ToolTextEditor20250728Param,
    ToolUnionParam,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.core.config import DEFAULT_PROTECTED_PATHS
from bot.core.globs import Glob
from bot.core.redact import redact
from bot.sandbox.bwrap import (
    DEFAULT_LIMITS,
    Sandbox,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
)
from bot.workspace.files import (
    NotRegularFile,
    OutsideRoot,
    TooLarge,
    file_kind,
    makedirs_beneath,
    open_beneath,
    open_root,
    read_fd,
    walk_beneath,
)

if TYPE_CHECKING:
    from bot.agent.mcp import McpTools

log = structlog.get_logger(__name__)

EDITOR_TOOL: Final = "str_replace_based_edit_tool"
EDITOR_TYPE: Final = "text_editor_20250728"
BASH_TOOL: Final = "bash"
BASH_TYPE: Final = "bash_20250124"

MAX_OUTPUT_CHARS = 30_000
# What one ``view`` shows, whole lines only; sent as the editor's ``max_characters`` so the
# model knows the cap. Below MAX_OUTPUT_CHARS so the note saying how to read on survives.
MAX_VIEW_CHARS = 25_000
MAX_READ_BYTES = 5 * 1024 * 1024
MAX_READ_LINES = 2_000
SNIPPET_LINES = 4
MAX_LIST_ENTRIES = 500
MAX_WALK_FILES = 100_000
MAX_SEARCH_RESULTS = 200
MAX_WRITE_BYTES = 2 * 1024 * 1024
SEARCH_TIMEOUT_SECONDS = 20.0
MAX_PATH_CHARS = 4096
_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY

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
        try:
            resolved = candidate.resolve(strict=False)
        except RuntimeError:  # Python 3.11 reports ELOOP from resolve() this way
            raise ToolRefusal(f"{raw}: a loop of symbolic links") from None
        except OSError as exc:
            raise fs_refusal(raw, exc) from None
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolRefusal(f"{raw}: a symbolic link leads outside the worktree")
        rel = self.relative(resolved)
        if ".git" in PurePosixPath(rel).parts:
            raise ToolRefusal(f"{raw}: the .git directory is off limits (the bot makes commits)")
        if write:
            # Judged by the name given and by the real target: a symlink placed at a
            # protected directory (".github" -> elsewhere) or pointing into one ("ci" ->
            # ".github/workflows") makes both names refer to the protected file.
            self.check_writable(self.relative(candidate), raw)
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


def fs_refusal(raw: str, exc: OSError) -> ToolRefusal:
    """One line for the model about a file-system failure, naming only its own path."""
    if isinstance(exc, OutsideRoot):
        return ToolRefusal(f"{raw}: a symbolic link leads outside the worktree")
    if isinstance(exc, NotRegularFile):
        return ToolRefusal(f"{raw}: not a regular file (a {exc.kind})")
    if isinstance(exc, TooLarge):
        return ToolRefusal(f"{raw}: {exc.size} bytes is too large (the limit is {exc.limit})")
    reasons = {
        errno.ENOENT: "no such file or directory",
        errno.ELOOP: "a symbolic link on the way (changed since it was checked, or a loop)",
        errno.ENOTDIR: "a part of the path is not a directory",
        errno.EISDIR: "is a directory",
        errno.ENAMETOOLONG: "a name in the path is too long",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
    }
    code = exc.errno if exc.errno is not None else 0
    return ToolRefusal(f"{raw}: {reasons.get(code, os.strerror(code) if code else str(exc))}")


def display(name: str) -> str:
    """A file name as the model sees it: bytes that are not UTF-8 as ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EditorInput(_Input):
    """The text editor's input; its schema is built into the model (text_editor_20250728:
    https://docs.claude.com/en/docs/agents-and-tools/tool-use/text-editor-tool). Which
    parameters a command needs is checked by the command, with the error the model reads."""

    command: Literal["view", "str_replace", "create", "insert"]
    path: str
    view_range: tuple[int, int] | None = None
    old_str: str | None = None
    new_str: str | None = None
    file_text: str | None = None
    insert_line: int | None = None
    insert_text: str | None = None


class BashInput(_Input):
    """The bash tool's input (bash_20250124: ``command``, required unless ``restart``:
    https://docs.claude.com/en/docs/agents-and-tools/tool-use/bash-tool)."""

    command: str | None = Field(default=None, max_length=10_000)
    restart: bool = False


class SearchInput(_Input):
    pattern: str = Field(min_length=1, max_length=1000)
    path: str = "."
    glob: str | None = Field(default=None, max_length=200)
    max_results: int = Field(default=100, ge=1, le=MAX_SEARCH_RESULTS)


class RunCommandInput(_Input):
    command: str = Field(min_length=1, max_length=10_000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)


class FinishInput(_Input):
    summary: str = Field(min_length=1, max_length=20_000)


@dataclass(frozen=True)
class _Tool:
    """One tool. ``builtin`` is the definition of an Anthropic-defined tool (type and name
    only: the model knows its schema); without it the tool is ours, sent with
    ``description`` and the JSON schema of ``schema``."""

    name: str
    schema: type[_Input]
    handler: Callable[[Any], ToolResult]
    description: str = ""
    builtin: ToolUnionParam | None = None


def _text_param(args: EditorInput, name: str) -> str:
    value = getattr(args, name)
    if value is None:
        raise ToolRefusal(f"parameter `{name}` is required for command: {args.command}")
    return str(value)


def numbered(lines: Sequence[str], first: int) -> str:
    """Lines as ``cat -n`` shows them, which is how the reference implementation of the
    text editor answers ``view`` (anthropic-quickstarts computer-use-demo ``tools/edit.py``)."""
    return "\n".join(f"{n:>6}\t{line}" for n, line in enumerate(lines, start=first))


def snippet(text: str, line: int, added: int) -> str:
    """The edited region of ``text`` (from ``line``, ``added`` new lines) with a few lines
    of context, numbered, so the model sees the result without another ``view``."""
    lines = text.split("\n")
    first = max(1, line - SNIPPET_LINES)
    last = min(len(lines), line + added + SNIPPET_LINES)
    return numbered(lines[first - 1 : last], first)


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
    mcp: McpTools | None = None
    commands: list[CommandRecord] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    _tools: dict[str, _Tool] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        editor = _Tool(
            EDITOR_TOOL,
            EditorInput,
            self._editor,
            builtin=ToolTextEditor20250728Param(
                type=EDITOR_TYPE, name=EDITOR_TOOL, max_characters=MAX_VIEW_CHARS
            ),
        )
        search = _Tool(
            "search",
            SearchInput,
            self._search,
            "Search file contents under path with a POSIX extended regular expression "
            "(grep -E syntax); optional glob filters file names (e.g. '*.py'). Returns "
            "path:line:text matches, capped at max_results.",
        )
        finish = _Tool(
            "finish",
            FinishInput,
            self._finish,
            "Call when the task is done, with a short summary of what you changed and "
            "why, for the pull request.",
        )
        if self.writable:
            bash = _Tool(
                BASH_TOOL,
                BashInput,
                self._bash,
                builtin=ToolBash20250124Param(type=BASH_TYPE, name=BASH_TOOL),
            )
            tools = [editor, bash, search, finish]
        else:
            run = _Tool(
                "run_command",
                RunCommandInput,
                self._run_command,
                "Run one read-only command without a shell; allowed programs: "
                + ", ".join(sorted(self.allowed_commands))
                + ".",
            )
            tools = [editor, search, run, finish]
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
        mcp: McpTools | None = None,
    ) -> ToolSet:
        """All tools: the text editor, bash (a shell in the sandbox), search, finish, and
        the tools of the repository's MCP servers (``mcp``)."""
        return cls(
            policy=PathPolicy(worktree, protected_paths, allowed_paths),
            sandbox=sandbox,
            writable=True,
            secrets=secrets,
            command_limits=command_limits,
            network=network,
            allow_hosts=tuple(allow_hosts),
            cancel=cancel,
            mcp=mcp,
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
        mcp: McpTools | None = None,
    ) -> ToolSet:
        """Planning tools: the editor's ``view`` only (its other commands are refused),
        search, commands only from ``allowed_commands``, finish, and the MCP tools the
        repository's config marks ``read_only``."""
        return cls(
            policy=PathPolicy(worktree),
            sandbox=sandbox,
            writable=False,
            secrets=secrets,
            command_limits=command_limits,
            allowed_commands=allowed_commands,
            cancel=cancel,
            mcp=mcp,
        )

    @property
    def root(self) -> Path:
        return self.policy.root

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def definitions(self) -> list[ToolUnionParam]:
        """The ``tools`` parameter of a Messages API request, in a stable order (the head
        of the cached prefix)."""
        out: list[ToolUnionParam] = []
        for tool in self._tools.values():
            if tool.builtin is not None:
                out.append(tool.builtin)
                continue
            schema = tool.schema.model_json_schema()
            schema.pop("title", None)
            for prop in schema.get("properties", {}).values():
                prop.pop("title", None)
            out.append(ToolParam(name=tool.name, description=tool.description, input_schema=schema))
        if self.mcp is not None:
            out += self.mcp.definitions(read_only=not self.writable)
        return out

    def execute(self, name: str, tool_input: object) -> ToolResult:
        """Run one tool call; every failure becomes an ``is_error`` result."""
        if self.mcp is not None and self.mcp.offers(name, read_only=not self.writable):
            answer = self.mcp.call(name, tool_input)
            return ToolResult(truncate(redact(answer.content, self.secrets)), answer.is_error)
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
        except SandboxUnavailable:
            raise
        except OSError as exc:
            result = ToolResult(
                f"{name} failed: {fs_refusal(getattr(args, 'path', ''), exc)}", True
            )
        except (UnicodeError, ValueError) as exc:
            result = ToolResult(f"{name} failed: {type(exc).__name__}: {exc}", True)
        except Exception as exc:  # a tool's failure is the model's data, never the loop's end
            log.warning("agent.tool_crashed", tool=name, error=repr(exc), exc_info=True)
            result = ToolResult(f"{name} failed: {type(exc).__name__}", True)
        # Redact before cutting: a secret split by the truncation marker would no longer
        # match and half of it would reach the model.
        return ToolResult(
            truncate(redact(result.content, self.secrets)), result.is_error, result.finished
        )

    # -- tools -----------------------------------------------------------------------------

    def _rel(self, raw: str, *, write: bool = False) -> str:
        """The checked path relative to the worktree, to open beneath it."""
        return self.policy.relative(self.policy.resolve(raw, write=write))

    def _open(self, raw: str, rel: str, flags: int) -> int:
        """``rel`` opened beneath the worktree with no symlink at any component: the policy
        judged exactly this path, and a swap since then fails here."""
        with open_root(self.root) as root:
            try:
                return open_beneath(root.fd, rel, flags, follow=False)
            except OSError as exc:
                raise fs_refusal(raw, exc) from None

    def _editor(self, args: EditorInput) -> ToolResult:
        if args.command == "view":
            return self._view(args)
        if not self.writable:
            raise ToolRefusal(
                f"{args.command} is refused: this is a planning run and files cannot be "
                "changed; only the view command works here"
            )
        if args.command == "str_replace":
            return self._str_replace(args)
        if args.command == "insert":
            return self._insert(args)
        return self._create(args)

    def _view(self, args: EditorInput) -> ToolResult:
        """A file with line numbers (all of it, or ``view_range`` [start, end] with -1 for
        the end), or a directory's names two levels deep, hidden ones left out, as the
        editor's ``view`` is documented."""
        rel = self._rel(args.path)
        fd = self._open(args.path, rel, _READ)
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                if args.view_range is not None:
                    raise ToolRefusal("view_range applies to files, not directories")
                return ToolResult(self._tree(fd, rel))
            if info.st_size > MAX_READ_BYTES:
                raise ToolRefusal(
                    f"{args.path}: {info.st_size} bytes is too large to view; use search, or "
                    "head or sed -n through bash"
                )
            data = read_fd(fd, args.path, MAX_READ_BYTES)
        except OSError as exc:
            raise fs_refusal(args.path, exc) from None
        finally:
            os.close(fd)
        if b"\0" in data[:8192]:
            raise ToolRefusal(f"{args.path}: binary file")
        lines = data.decode("utf-8", errors="replace").splitlines()
        total = len(lines)
        start, end = 1, total
        if args.view_range is not None:
            start, end = args.view_range
            if not 1 <= start <= max(total, 1):
                raise ToolRefusal(
                    f"invalid view_range: {args.path} has {total} lines; the first element "
                    f"must be from 1 to {max(total, 1)}"
                )
            if end == -1:
                end = total
            elif end < start:
                raise ToolRefusal(
                    f"invalid view_range: the second element {end} is before the first "
                    f"{start} (-1 reads to the end of the file)"
                )
            elif end > total:
                raise ToolRefusal(
                    f"invalid view_range: {args.path} has {total} lines; the second element "
                    f"{end} is past the end (-1 reads to the end of the file)"
                )
        shown: list[str] = []
        size = 0
        for line in lines[start - 1 : end]:
            if len(shown) >= MAX_READ_LINES or (shown and size + len(line) + 8 > MAX_VIEW_CHARS):
                break
            shown.append(line)
            size += len(line) + 8
        body = numbered(shown, start) or "(empty file)"
        last = start + len(shown) - 1
        if last < end:
            body += (
                f"\n[lines {start}-{last} of {total} shown; view on with view_range "
                f"[{last + 1}, {end if end < total else -1}]]"
            )
        return ToolResult(body)

    @staticmethod
    def _tree(fd: int, rel: str) -> str:
        """The names under the directory ``fd``, two levels deep, hidden ones (and what is
        under them) left out, directories ending with "/"; the walk follows no symlink."""
        prefix = "" if rel == "." else rel + "/"
        entries: list[str] = []
        for seen, entry in enumerate(
            walk_beneath(
                fd,
                prune=lambda path, name: name.startswith("."),
                max_names_per_dir=MAX_LIST_ENTRIES,
                max_depth=2,
            ),
            start=1,
        ):
            if seen > MAX_WALK_FILES:
                entries.append(f"[stopped after {MAX_WALK_FILES} names; view a subdirectory]")
                break
            if entry.path.count("/") > 1:
                continue  # a third level: the walk reads it to list the second level's dirs
            if entry.kind == "cut":
                entries.append(f"[{display(prefix + entry.path)}: more names not listed]")
                continue
            if entry.path.rpartition("/")[2].startswith("."):
                continue
            mark = "/" if entry.kind == "directory" else ""
            entries.append(display(prefix + entry.path) + mark)
            if len(entries) > MAX_LIST_ENTRIES:
                entries[-1] = f"[more than {MAX_LIST_ENTRIES} entries; view a subdirectory]"
                break
        head = (
            f"Files and directories up to 2 levels deep in {display(rel)}, excluding hidden items:"
        )
        return "\n".join([head, *entries]) if entries else head + "\n(no entries)"

    def _search(self, args: SearchInput) -> ToolResult:
        rel = self._rel(args.path)
        fd = self._open(args.path, rel, _READ)
        try:
            lines, error, code, expired = self._grep(fd, rel, args)
        finally:
            os.close(fd)
        if expired and not lines:
            raise ToolRefusal("search timed out; narrow the path or the pattern")
        if code == 2 and not lines:
            raise ToolRefusal("search failed: " + error.strip())
        lines = [line[:500] for line in lines]
        if not lines:
            return ToolResult("no matches")
        text = "\n".join(lines[: args.max_results])
        if len(lines) > args.max_results:
            text += f"\n[more than {args.max_results} matches; refine the pattern]"
        elif expired:
            text += "\n[search timed out; there may be more matches]"
        return ToolResult(text)

    def _grep(self, fd: int, rel: str, args: SearchInput) -> tuple[list[str], str, int, bool]:
        """grep over the file or directory open at ``fd`` (pinned: grep starts in it or
        reads it as its input, never from a path a swapped symlink could redirect).

        grep -E matches in linear time, so a hostile pattern cannot hang the worker the way a
        backtracking regex engine could; -r (not -R) follows no symlink below its start and
        -D skip passes over FIFOs, sockets and devices
        (https://www.gnu.org/software/grep/manual/grep.html#File-and-Directory-Selection);
        -s keeps unreadable files quiet. Output is read as it comes and grep is stopped once
        enough matches arrived."""
        argv = ["grep", "-rnsIE", "-D", "skip", "--exclude-dir=.git", "-m", "50", "--color=never"]
        if args.glob:
            argv.append(f"--include={args.glob}")
        argv += ["-e", args.pattern]
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        if not is_dir:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ToolRefusal(f"{args.path}: not a regular file or directory")
            argv += ["-H", f"--label={rel}", "-"]
        expired = threading.Event()
        with subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL if is_dir else fd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=f"/proc/{os.getpid()}/fd/{fd}" if is_dir else self.root,
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
        if is_dir and rel != ".":
            lines = [f"{rel}/{line}" for line in lines]
        return lines, error, code, expired.is_set()

    def _rewrite(self, raw: str, change: Callable[[str], tuple[str, str]]) -> ToolResult:
        """Apply ``change`` (text -> new text and the answer) to an existing file, opened
        once beneath the worktree and written through the same descriptor."""
        rel = self._rel(raw, write=True)
        fd = self._open(raw, rel, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            info = self._writable(fd, raw)
            if info.st_size > MAX_WRITE_BYTES:
                # Refused before reading: a command may have made a file of gigabytes, and
                # the edited text could not be written back anyway.
                raise ToolRefusal(
                    f"{raw}: {info.st_size} bytes is too large to edit (the limit is "
                    f"{MAX_WRITE_BYTES}); change it with a command"
                )
            text = read_fd(fd, raw, MAX_WRITE_BYTES).decode("utf-8")
            updated, answer = change(text)
            self._write(fd, updated, info)
        except OSError as exc:
            raise fs_refusal(raw, exc) from None
        finally:
            os.close(fd)
        self.changed.add(rel)
        return ToolResult(answer)

    def _str_replace(self, args: EditorInput) -> ToolResult:
        """Replace ``old_str``, which must occur exactly once (the documented rule; 0 or 2+
        matches change nothing and say so), with ``new_str`` (empty when left out)."""
        old = _text_param(args, "old_str")
        if not old:
            raise ToolRefusal("old_str must not be empty")
        new = args.new_str or ""

        def change(text: str) -> tuple[str, str]:
            count = text.count(old)
            if count == 0:
                raise ToolRefusal(
                    f"No replacement was performed: old_str did not appear verbatim in "
                    f"{args.path}. It must match exactly, including whitespace and "
                    "indentation; view the file again."
                )
            if count > 1:
                lines: list[str] = []
                at = text.find(old)
                while at != -1 and len(lines) < 20:
                    lines.append(str(text.count("\n", 0, at) + 1))
                    at = text.find(old, at + 1)
                raise ToolRefusal(
                    f"No replacement was performed: old_str occurs {count} times in "
                    f"{args.path} (at lines {', '.join(lines)}). Include more surrounding "
                    "lines to make it unique."
                )
            line = text.count("\n", 0, text.index(old)) + 1
            updated = text.replace(old, new, 1)
            return updated, (
                f"Successfully replaced text at exactly one location in {display(args.path)} "
                f"(line {line}):\n{snippet(updated, line, new.count(chr(10)))}"
            )

        return self._rewrite(args.path, change)

    def _insert(self, args: EditorInput) -> ToolResult:
        """Insert ``insert_text`` after line ``insert_line`` (0: at the beginning)."""
        inserted = _text_param(args, "insert_text")
        after = args.insert_line
        if after is None:
            raise ToolRefusal("parameter `insert_line` is required for command: insert")

        def change(text: str) -> tuple[str, str]:
            lines = text.splitlines(keepends=True)
            if not 0 <= after <= len(lines):
                raise ToolRefusal(
                    f"insert_line {after} is out of range: {args.path} has {len(lines)} lines "
                    "(0 inserts at the beginning)"
                )
            head = "".join(lines[:after])
            if head and not head.endswith("\n"):
                head += "\n"
            block = inserted if inserted.endswith("\n") else inserted + "\n"
            updated = head + block + "".join(lines[after:])
            return updated, (
                f"Inserted {block.count(chr(10))} line(s) after line {after} of "
                f"{display(args.path)}:\n{snippet(updated, after + 1, block.count(chr(10)) - 1)}"
            )

        return self._rewrite(args.path, change)

    def _create(self, args: EditorInput) -> ToolResult:
        """A new file with ``file_text`` (parent directories made). An existing file is
        refused: the built-in tool's contract is that create does not overwrite."""
        content = _text_param(args, "file_text")
        rel = self._rel(args.path, write=True)
        if len(content.encode("utf-8")) > MAX_WRITE_BYTES:
            raise ToolRefusal(
                f"file_text of {len(content.encode('utf-8'))} bytes is larger than "
                f"{MAX_WRITE_BYTES}"
            )
        if rel == ".":
            raise ToolRefusal(f"{args.path}: is a directory")
        parent = rel.rpartition("/")[0]
        flags = os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CREAT | os.O_EXCL
        with open_root(self.root) as root:
            try:
                if parent:
                    makedirs_beneath(root.fd, parent, on_create=self._chown_at)
                try:
                    fd = open_beneath(root.fd, rel, flags, follow=False)
                except FileExistsError:
                    kind = os.stat(rel, dir_fd=root.fd, follow_symlinks=False).st_mode
                    if stat.S_ISDIR(kind):
                        raise ToolRefusal(f"{args.path}: is a directory") from None
                    raise ToolRefusal(
                        f"{args.path}: already exists; create does not overwrite files, "
                        "change it with str_replace or insert"
                    ) from None
            except OSError as exc:
                raise fs_refusal(args.path, exc) from None
        try:
            self._writable(fd, args.path)
            self._chown_fd(fd)
            self._write(fd, content, None)
        except OSError as exc:
            raise fs_refusal(args.path, exc) from None
        finally:
            os.close(fd)
        self.changed.add(rel)
        return ToolResult(
            f"File created successfully at: {display(rel)} ({len(content)} characters)"
        )

    def _bash(self, args: BashInput) -> ToolResult:
        """One command through a shell in the sandbox. Each call is a fresh sandboxed
        command at the repository root (the runner keeps no session), so ``restart`` has
        nothing to restart and says so rather than pretending."""
        if args.restart:
            if args.command is not None:
                raise ToolRefusal("give either command or restart, not both")
            return ToolResult(
                "Nothing to restart: every bash call runs in a fresh sandboxed shell at the "
                "repository root, so no state (working directory, variables) carries over."
            )
        if args.command is None:
            raise ToolRefusal("parameter `command` is required unless restart is true")
        return self._sandboxed(args.command, args.command, self.command_limits)

    def _run_command(self, args: RunCommandInput) -> ToolResult:
        limits = self.command_limits
        if args.timeout_seconds is not None:
            limits = replace(limits, wall_seconds=min(limits.wall_seconds, args.timeout_seconds))
        return self._sandboxed(self._allowed_argv(args.command), args.command, limits)

    def _sandboxed(self, command: str | list[str], shown: str, limits: SandboxLimits) -> ToolResult:
        try:
            result = self.sandbox.run(
                command,
                workdir=self.root,
                limits=limits,
                network=self.network,
                allow_hosts=self.allow_hosts,
                cancel=self.cancel,
            )
        except SandboxUnavailable:
            # Not the model's to fix: the loop ends the iteration as an infrastructure error.
            raise
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
            CommandRecord(shown, result.exit_code, result.limit, truncate(text, 4000))
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

    @staticmethod
    def _writable(fd: int, raw: str) -> os.stat_result:
        """The file open at ``fd`` if it may be written: a regular file with one name (a
        hard link is another name for the same file, perhaps a protected one)."""
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolRefusal(f"{raw}: is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ToolRefusal(f"{raw}: not a regular file (a {file_kind(info.st_mode)})")
        if info.st_nlink > 1:
            raise ToolRefusal(
                f"{raw}: the file has {info.st_nlink - 1} other hard link(s) and may be a "
                "protected file under another name; change it with a command"
            )
        return info

    def _write(self, fd: int, text: str, before: os.stat_result | None) -> None:
        data = text.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise ToolRefusal(f"content of {len(data)} bytes is larger than {MAX_WRITE_BYTES}")
        os.ftruncate(fd, 0)
        view = memoryview(data)
        offset = 0
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        if before is not None and os.fstat(fd).st_mtime_ns // 10**9 <= before.st_mtime_ns // 10**9:
            # Python's .pyc check (and make) compare whole-second mtimes plus size: an edit
            # of the same length within the second a test ran would run stale bytecode.
            later = (before.st_mtime_ns // 10**9 + 1) * 10**9
            os.utime(fd, ns=(later, later))

    def _chown_fd(self, fd: int) -> None:
        """Files the bot creates must stay writable by the sandbox's unprivileged uid."""
        uid = self.sandbox.uid
        if uid is not None and os.geteuid() == 0:
            os.fchown(fd, uid, uid)

    def _chown_at(self, parent: int, name: str) -> None:
        uid = self.sandbox.uid
        if uid is not None and os.geteuid() == 0:
            os.chown(name, uid, uid, dir_fd=parent, follow_symlinks=False)
