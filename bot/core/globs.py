"""Path globs matched in time linear in the path, whatever the pattern. No I/O."""

from __future__ import annotations


class Glob:
    """A gitignore-like glob: ``**`` crosses directories, ``*`` and ``?`` do not.

    Matched by a bit-parallel NFA (Shift-And), so the time is linear in the path's length
    whatever the pattern: a backtracking regex takes exponential time on a glob such as
    ``*a*a*a*a*a*a*a*b``, and globs come from the model (steerable by issue text) and from
    repository config. Every character counts alike, newlines included.
    """

    def __init__(self, pattern: str) -> None:
        # One NFA position per token; bit i set means "tokens [0, i) matched so far".
        consume_any = 0  # "?" tokens: one character other than "/"
        consume_lit: dict[str, int] = {}  # literal tokens, by character
        loop_any = 0  # "**" tokens: stay put on any character
        loop_plain = 0  # "*" tokens: stay put on any character but "/"
        skip1 = 0  # star tokens may match nothing
        skip3 = 0  # "**/" may match nothing at all (entry, star and slash)
        n = 0
        i = 0
        while i < len(pattern):
            bit = 1 << n
            if pattern.startswith("**/", i):
                # An entry position that may skip the whole group, then "**", then "/".
                skip1 |= bit
                skip3 |= bit
                loop_any |= bit << 1
                skip1 |= bit << 1
                consume_lit["/"] = consume_lit.get("/", 0) | (bit << 2)
                n += 2
                i += 3
            elif pattern.startswith("**", i):
                loop_any |= bit
                skip1 |= bit
                i += 2
            elif pattern[i] == "*":
                loop_plain |= bit
                skip1 |= bit
                i += 1
            elif pattern[i] == "?":
                consume_any |= bit
                i += 1
            else:
                consume_lit[pattern[i]] = consume_lit.get(pattern[i], 0) | bit
                i += 1
            n += 1
        self.pattern = pattern
        self._accept = 1 << n
        self._skip1 = skip1
        self._skip3 = skip3
        self._consume_other = consume_any
        self._consume = {c: m | consume_any for c, m in consume_lit.items()}
        self._consume["/"] = consume_lit.get("/", 0)
        self._loop_other = loop_any | loop_plain
        self._loop_slash = loop_any
        self._start = self._close(1)

    def _close(self, state: int) -> int:
        while True:
            wider = state | ((state & self._skip1) << 1) | ((state & self._skip3) << 3)
            if wider == state:
                return state
            state = wider

    def match(self, path: str) -> bool:
        """True when the whole of ``path`` matches the pattern."""
        state = self._start
        consume, other = self._consume, self._consume_other
        for ch in path:
            loop = self._loop_slash if ch == "/" else self._loop_other
            state = self._close(((state & consume.get(ch, other)) << 1) | (state & loop))
            if not state:
                return False
        return bool(state & self._accept)


def shadows(globs: list[Glob], path: str) -> bool:
    """True when a symlink at ``path`` would stand where ``globs`` protect something: the
    path is covered, or it is a directory a pattern names literally (a link placed at
    ``.github`` or ``.github/workflows`` shadows ``.github/workflows/**``). Patterns that
    start with a wildcard (``**/.bashrc``) protect a name, not a directory, and leave links
    elsewhere alone."""
    below = path + "/"
    return covers(globs, path) or any(_literal_prefix(g.pattern).startswith(below) for g in globs)


def _literal_prefix(pattern: str) -> str:
    cut = min((i for i in (pattern.find("*"), pattern.find("?")) if i >= 0), default=len(pattern))
    return pattern[:cut]


def covers(globs: list[Glob], path: str) -> bool:
    """True when ``path`` or one of its parent directories matches one of ``globs``: a
    pattern also covers what is below its match (``.github/workflows`` covers its files)."""
    parts = path.split("/")
    return any(g.match("/".join(parts[:n])) for n in range(1, len(parts) + 1) for g in globs)
