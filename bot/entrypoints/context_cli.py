"""``vibe context rank`` and ``vibe context pack``: the context engine from the command line.

Both read an issue from a file and a repository from a directory (its files on disk, or a
commit with ``--commit``), keep the index in ``--cache-dir`` (default
``<VIBE_DATA_DIR>/context-index``) and print JSON with ``--json``. The JSON shapes are
stable; benchmarks and operators rely on them. Bad input exits with status 2 and a message
on standard error.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from bot.context.files import SnapshotError, open_snapshot
from bot.context.index import RepoIndex, build_index
from bot.context.pack import assemble_context, pack_summary
from bot.context.rank import rank_files

MAX_ISSUE_BYTES = 1024 * 1024

app = typer.Typer(
    help="Rank repository files for an issue and assemble context packs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def read_issue(path: Path) -> str:
    """The issue text of ``path``; raises ValueError with a reason for unusable files."""
    if not path.is_file():
        raise ValueError(f"issue file {path} does not exist or is not a file")
    try:
        size = path.stat().st_size
        if size > MAX_ISSUE_BYTES:
            raise ValueError(f"issue file {path} is {size} bytes; the limit is {MAX_ISSUE_BYTES}")
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read issue file {path}: {exc.strerror}") from None
    if b"\0" in raw:
        raise ValueError(f"issue file {path} is binary, not text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"issue file {path} is not UTF-8 text") from None
    if not text.strip():
        raise ValueError(f"issue file {path} is empty")
    return text


def _cache_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    # The settings (pydantic, SQLAlchemy: a second of start-up) only when they are needed.
    from bot.settings import SettingsError, load_settings

    try:
        return load_settings().data_dir / "context-index"
    except SettingsError as exc:
        raise _fail(str(exc)) from None


def _load(
    repo: Path, commit: str | None, cache_dir: Path | None, issue_file: Path
) -> tuple[RepoIndex, str]:
    if not repo.is_dir():
        raise _fail(f"repository {repo} does not exist or is not a directory")
    try:
        issue = read_issue(issue_file)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        index = build_index(open_snapshot(repo, commit), _cache_dir(cache_dir))
    except (SnapshotError, OSError) as exc:
        raise _fail(str(exc)) from None
    return index, issue


RepoOption = Annotated[Path, typer.Option("--repo", help="Repository directory.")]
IssueOption = Annotated[Path, typer.Option("--issue-file", help="File holding the issue text.")]
CommitOption = Annotated[
    str | None, typer.Option("--commit", help="Index this commit instead of the files on disk.")
]
CacheOption = Annotated[Path | None, typer.Option("--cache-dir", help="Where indexes are kept.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command()
def rank(
    repo: RepoOption,
    issue_file: IssueOption,
    top: Annotated[int, typer.Option("--top", help="How many files to print.")] = 20,
    commit: CommitOption = None,
    cache_dir: CacheOption = None,
    as_json: JsonOption = False,
) -> None:
    """Rank the repository's files for the issue, best first."""
    if top <= 0:
        raise _fail("--top must be a positive number")
    started = time.perf_counter()
    index, issue = _load(repo, commit, cache_dir, issue_file)
    ranked = rank_files(index, issue, top)
    elapsed_ms = round(1000 * (time.perf_counter() - started), 1)
    if as_json:
        files = [{"path": r.path, "score": r.score} for r in ranked]
        typer.echo(json.dumps({"files": files, "elapsed_ms": elapsed_ms}))
        return
    for number, r in enumerate(ranked, start=1):
        typer.echo(f"{number:3}. {r.score:8.4f}  {r.path}")
    typer.echo(f"({len(index.files)} files indexed, {elapsed_ms} ms)")


@app.command()
def pack(
    repo: RepoOption,
    issue_file: IssueOption,
    budget: Annotated[int, typer.Option("--budget", help="Token budget.")],
    commit: CommitOption = None,
    cache_dir: CacheOption = None,
    as_json: JsonOption = False,
) -> None:
    """Assemble the context pack for the issue within the budget."""
    if budget <= 0:
        raise _fail("--budget must be a positive number of tokens")
    index, issue = _load(repo, commit, cache_dir, issue_file)
    result = assemble_context(index, issue, budget)
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    typer.echo(pack_summary(result))
