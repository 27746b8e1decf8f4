"""The context engine (survey Eq. 2-3): retrieval, ranking, budgets and sanitising.

Public interface (import from the submodules):

- ``files.open_snapshot(repo, commit=None)``: a commit of a repository, or its files on disk.
- ``index.build_index(snapshot, cache_dir)``: the per-commit index, cached and incremental.
- ``rank.rank_files(index, issue_text, top=None)``: files ranked for a task, best first.
- ``pack.assemble_context(index, task, budget, ...)``: typed parts within a token budget.
- ``pack.search_code(index, query, top_k)``: ranked places for the agent's search tool.
- ``sanitize.sanitize_untrusted(text)`` / ``sanitize.frame_untrusted(text, source)``: hidden
  content removed, framed as data (``sanitize.DATA_FRAMING_RULE`` goes in the system prompt).
- ``terms.estimate_tokens(text)``: the token estimator every budget uses.
"""
