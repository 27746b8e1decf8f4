"""A worker process of :func:`bot.context.index.parse_many`.

Reads ``[[path, blob, text], ...]`` as JSON on standard input and writes the parsed
entries (:meth:`bot.context.index.FileEntry.to_json`) as JSON on standard output. Started
with ``python -P -m`` so that nothing is imported from the working directory (it may be the
repository under analysis).
"""

from __future__ import annotations

import sys

import orjson

from bot.context.index import parse_file


def main() -> int:
    items = orjson.loads(sys.stdin.buffer.read())
    out = [parse_file(path, blob, text.encode("utf-8")).to_json() for path, blob, text in items]
    sys.stdout.buffer.write(orjson.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
