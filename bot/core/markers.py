"""Hidden markers in bot-owned text (STYLE.md item 11), so it is found and updated.

Every comment or PR body the bot writes ends with one HTML comment such as
``<!-- vibe:status task=7 -->``. GitHub renders nothing for it, and a retried job looks
for the marker before posting, so a crash and a second attempt leave one comment, not two
(DESIGN.md section 2). The same markers let the bot recognise its own text.

Markers are parsed only from text whose author is the bot: a person can paste a marker
into a comment, so callers check the author before trusting what a marker says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = frozenset({"task", "status", "reply", "plan", "config", "dispatch", "ci", "review"})

_KEY = re.compile(r"^[a-z_]{1,32}$")
_VALUE = re.compile(r"^[A-Za-z0-9_.:/#@\-]{1,200}$")
_MARKER = re.compile(
    r"<!-- vibe:([a-z]{1,16})((?: [a-z_]{1,32}=[A-Za-z0-9_.:/#@\-]{1,200}){0,16}) -->"
)


class MarkerError(ValueError):
    """A marker was asked for with a kind, key or value it cannot carry."""


@dataclass(frozen=True)
class Marker:
    kind: str
    fields: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        for k, v in self.fields:
            if k == key:
                return v
        return None

    def render(self) -> str:
        body = "".join(f" {k}={v}" for k, v in self.fields)
        return f"<!-- vibe:{self.kind}{body} -->"

    def __str__(self) -> str:
        return self.render()


def marker(kind: str, **fields: str | int) -> Marker:
    """Build a marker; keys are sorted so the same fields always render the same text."""
    if kind not in KINDS:
        raise MarkerError(f"unknown marker kind {kind!r}")
    items: list[tuple[str, str]] = []
    for key in sorted(fields):
        value = str(fields[key])
        if not _KEY.match(key):
            raise MarkerError(f"marker key {key!r} is not lower-case letters")
        if not _VALUE.match(value):
            raise MarkerError(f"marker value {value!r} for {key!r} has characters it cannot carry")
        items.append((key, value))
    return Marker(kind, tuple(items))


def find_markers(text: str | None) -> list[Marker]:
    """Every well-formed marker in ``text``, in order."""
    if not text:
        return []
    out = []
    for match in _MARKER.finditer(text):
        kind = match.group(1)
        if kind not in KINDS:
            continue
        pairs = tuple((k, v) for k, v in (part.split("=", 1) for part in match.group(2).split()))
        out.append(Marker(kind, pairs))
    return out


def find_marker(text: str | None, kind: str) -> Marker | None:
    """The first marker of ``kind`` in ``text``, or None."""
    for found in find_markers(text):
        if found.kind == kind:
            return found
    return None


def carries(text: str | None, wanted: Marker) -> bool:
    """Whether ``text`` carries exactly this marker (same kind and fields)."""
    return any(found == wanted for found in find_markers(text))


def with_marker(text: str, mark: Marker) -> str:
    """``text`` with any earlier marker of the same kind replaced by ``mark`` at the end."""
    cleaned = _MARKER.sub(lambda m: "" if m.group(1) == mark.kind else m.group(0), text)
    return cleaned.rstrip() + "\n\n" + mark.render() + "\n"


def strip_markers(text: str) -> str:
    """``text`` without any vibe markers (for showing bot text back to the agent)."""
    return _MARKER.sub("", text).rstrip()
