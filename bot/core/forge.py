"""What the code host tells the loop: an issue's text, a pull request, a review's notes.

Values of the loop's Forge and PullRequests ports (:mod:`bot.loop.ports`), here so that the
adapters implementing those ports (:mod:`bot.github`, ``vibe run``'s terminal) need not
import the loop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PullInfo:
    """An existing PR as the loop needs it (``/vibe`` on a PR the bot did not open)."""

    number: int
    title: str
    body: str
    head_ref: str
    base_ref: str
    same_repo: bool
    author: str | None


@dataclass(frozen=True)
class IssueText:
    title: str
    body: str
    comments: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReviewNote:
    """One inline comment of a review: where it sits and what it says."""

    comment_id: int
    path: str
    line: int | None
    body: str
    author: str | None
    reply_to: int | None = None  # the thread's first comment, when this one is a reply
    start_line: int | None = None  # the first line of a multi-line comment
    side: str | None = None  # LEFT: the lines are the base's (removed lines), RIGHT: the head's


@dataclass(frozen=True)
class ReviewTarget:
    """A pull request as a review needs it: the commit reviewed, where its branches are,
    and whether it comes from a fork (whose code is reviewed read-only, never run)."""

    number: int
    title: str
    body: str
    head_sha: str
    head_ref: str
    base_ref: str
    same_repo: bool
    author: str | None
    open: bool
    draft: bool
