"""The one branch-name rule: the branch a task works on, and what git accepts as a branch.

A task's branch is a pure function of its issue number and title, so a job claimed again
after a crash finds the same branch (DESIGN.md section 2), and the loop that records the
task and the workspace that pushes it can never disagree on it.
"""

from __future__ import annotations

import re
import unicodedata

BRANCH_PREFIX = "vibe/"
MAX_SLUG = 40

_SLUG_DROP = re.compile(r"[^a-z0-9]+")


def slugify(title: str, limit: int = MAX_SLUG) -> str:
    """ASCII, lower-case, dash-separated, at most ``limit`` characters, never empty. A
    title that is too long is cut at the last dash in the second half of the limit, so the
    slug ends on a whole word where one is near."""
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _SLUG_DROP.sub("-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        cut = slug[:limit]
        slug = cut.rsplit("-", 1)[0] if "-" in cut[limit // 2 :] else cut
    return slug.strip("-") or "task"


def task_branch(number: int, title: str) -> str:
    """The deterministic branch of the task for issue ``number``: ``vibe/issue-<n>-<slug>``.
    (A task on a person's same-repository PR works on that PR's head branch instead.)"""
    if number < 1:
        raise ValueError("issue and PR numbers start at 1")
    return f"{BRANCH_PREFIX}issue-{number}-{slugify(title)}"


def valid_branch(name: str) -> bool:
    """git's ref-name rules (``git help check-ref-format``) for a branch, conservatively."""
    if not name or len(name) > 200 or name.startswith(("-", "/")) or name.endswith(("/", ".")):
        return False
    if any(ord(c) < 0x20 or c in " ~^:?*[\\\x7f" for c in name):
        return False
    if ".." in name or "//" in name or "@{" in name or name == "@":
        return False
    return not any(p.startswith(".") or p.endswith(".lock") for p in name.split("/"))
