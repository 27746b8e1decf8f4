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
from bot.core.sanitize import frame_untrusted

log = structlog.get_logger(__name__)


MAX_FILE_CHARS = 24_000


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
            index = build_index(open_snapshot(workdir), self.cache_dir)
        except SnapshotError as exc:
            log.warning("context.index_failed", error=str(exc))
            return self._basic(workdir, named_files)
        knowledge = self._knowledge(workdir, knowledge_ref) if knowledge_ref else None
        pack = assemble_context(index, query, self.budget, files=enhanced, knowledge=knowledge)
        return ContextPack(
            pack.render(), pack.total_tokens, tuple(f"{p.kind}:{p.source}" for p in pack.parts)
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
        root = workdir.resolve()
        for rel in (*KNOWLEDGE_FILES, *named_files):
            path = (workdir / rel).resolve()
            if rel in sources or not path.is_relative_to(root) or not path.is_file():
                continue
            block = frame_untrusted(path.read_text(errors="replace")[:MAX_FILE_CHARS], rel)
            tokens = estimate_tokens(block)
            if used + tokens > self.budget:
                continue
            parts.append(block)
            sources.append(rel)
            used += tokens
        return ContextPack("\n\n".join(parts), used, tuple(sources))
