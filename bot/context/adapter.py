"""The loop's ContextBuilder port over the context engine (:mod:`bot.context`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import structlog

from bot.context.files import SnapshotError, open_snapshot
from bot.context.index import KNOWLEDGE_FILES, RepoIndex, build_index
from bot.context.pack import assemble_context
from bot.context.terms import estimate_tokens
from bot.core.context import ContextPack
from bot.core.sanitize import frame_untrusted, sanitize_untrusted
from bot.workspace.files import open_root, read_head_beneath

log = structlog.get_logger(__name__)


MAX_FILE_CHARS = 24_000
NOTED_SKIPS = 5


def _read_text(root: int, rel: str) -> str | None:
    """The start of a regular file beneath the worktree (in-tree symlinks followed, none
    leading out), or None: named files come from issue text, and setup commands ran."""
    try:
        data = read_head_beneath(root, rel, MAX_FILE_CHARS * 4)  # UTF-8: 4 bytes at most
    except OSError:
        return None
    return data.decode("utf-8", "replace")[:MAX_FILE_CHARS]


def _skipped_note(skipped: dict[str, str]) -> str:
    """Say which files the snapshot's caps left out (names are repository data)."""
    if not skipped:
        return ""
    names = ", ".join(sanitize_untrusted(p)[:200] for p in list(skipped)[:NOTED_SKIPS])
    more = f" and {len(skipped) - NOTED_SKIPS} more" if len(skipped) > NOTED_SKIPS else ""
    reason = next(iter(skipped.values()))
    return (
        f"## note\n{len(skipped)} files were left out of the context ({reason}): "
        f"{names}{more}. Read them with the tools if they matter.\n\n"
    )


class ProjectContext:
    """:class:`bot.loop.ports.ContextBuilder` over the context engine (:mod:`bot.context`).

    Every model gets the knowledge part and the repository map; the context-enhanced model
    also gets the ranked files (``assemble_context(files=True)``), all under the token
    budget. Should the tree not be indexable, the pack falls back to the knowledge files
    (:data:`bot.context.index.KNOWLEDGE_FILES`) and the files the issue names."""

    def __init__(self, budget_tokens: int, cache_dir: Path | None = None) -> None:
        self.budget = budget_tokens
        self.cache_dir = cache_dir

    def build(
        self,
        workdir: Path,
        query: str,
        *,
        enhanced: bool,
        named_files: Sequence[str],
        knowledge_ref: str | None = None,
    ) -> ContextPack:
        try:
            snapshot = open_snapshot(workdir)
            index = build_index(snapshot, self.cache_dir)
        except SnapshotError as exc:
            log.warning("context.index_failed", error=str(exc))
            return self._basic(workdir, named_files)
        note = _skipped_note(snapshot.skipped)
        budget = max(1, self.budget - estimate_tokens(note))
        knowledge = self._knowledge(workdir, knowledge_ref) if knowledge_ref else None
        pack = assemble_context(index, query, budget, files=enhanced, knowledge=knowledge)
        manifest = pack.manifest()
        # The budget as configured (L_max), and the files the snapshot's caps left out.
        manifest["budget"] = self.budget
        manifest["skipped_files"] = [
            {"path": path, "reason": reason} for path, reason in list(snapshot.skipped.items())[:50]
        ]
        return ContextPack(
            pack.render() + note,
            pack.total_tokens + estimate_tokens(note),
            tuple(f"{p.kind}:{p.source}" for p in pack.parts),
            manifest,
        )

    def _knowledge(self, workdir: Path, ref: str) -> RepoIndex | None:
        """The index of the base branch (``origin/<ref>`` in a task's worktree, ``<ref>``
        in a local checkout), where instruction files are read from."""
        for rev in (f"origin/{ref}", ref):
            try:
                return build_index(open_snapshot(workdir, commit=rev), self.cache_dir)
            except SnapshotError:
                continue
        log.warning("context.base_unreadable", ref=ref)
        return None

    def _basic(self, workdir: Path, named_files: Sequence[str]) -> ContextPack:
        parts: list[str] = []
        sources: list[str] = []
        used = 0
        with open_root(workdir) as root:
            texts = {rel: _read_text(root.fd, rel) for rel in dict.fromkeys(named_files)}
            knowledge = {rel: _read_text(root.fd, rel) for rel in KNOWLEDGE_FILES}
        for rel, text in (*knowledge.items(), *texts.items()):
            if text is None or rel in sources:
                continue
            block = frame_untrusted(text, rel)
            tokens = estimate_tokens(block)
            if used + tokens > self.budget:
                continue
            parts.append(block)
            sources.append(rel)
            used += tokens
        return ContextPack("\n\n".join(parts), used, tuple(sources))
