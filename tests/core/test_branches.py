"""The one branch-name rule (:mod:`bot.core.branches`), table-tested."""

from __future__ import annotations

import pytest

from bot.core.branches import slugify, task_branch, valid_branch

LONG_TITLE = "Add a greeting to the README file of this project please"


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Add a greeting", "add-a-greeting"),
        ("Fix the add() function", "fix-the-add-function"),
        ("Fix: crash on ÜBER-long café names!!", "fix-crash-on-uber-long-cafe-names"),
        ("Ünïcödé  title!!", "unicode-title"),
        ("../../etc/passwd; rm -rf /", "etc-passwd-rm-rf"),
        ("", "task"),
        ("日本語のみ", "task"),
        ("a" * 300, "a" * 40),
        ("a" * 39 + " bcd", "a" * 39),
        (
            "make the parser handle deeply nested brackets correctly",
            "make-the-parser-handle-deeply-nested",
        ),
        # Cut at the last whole word: "...-of", not "...-of-thi".
        (LONG_TITLE, "add-a-greeting-to-the-readme-file-of"),
    ],
)
def test_slugs_are_short_ascii_and_end_on_a_word(title: str, slug: str) -> None:
    assert slugify(title) == slug
    assert len(slug) <= 40
    assert valid_branch(task_branch(1, title))


def test_task_branches_are_deterministic() -> None:
    assert task_branch(7, LONG_TITLE) == "vibe/issue-7-add-a-greeting-to-the-readme-file-of"
    assert task_branch(7, LONG_TITLE) == task_branch(7, LONG_TITLE)
    with pytest.raises(ValueError, match="start at 1"):
        task_branch(0, "x")


@pytest.mark.parametrize(
    "name", ["", "-x", "a..b", "a b", "a~1", "x.lock", "a/.hidden", "a//b", "@", "x@{1}", "a\n"]
)
def test_invalid_branch_names(name: str) -> None:
    assert not valid_branch(name)
