"""The ``review:`` section of ``.github/vibe.yml``: strict, bounded, with the YAML 1.1
``on:`` key read as the word it is meant to be."""

from __future__ import annotations

import pytest

from bot.core.config import parse_repo_config


def test_defaults_review_nothing_and_bound_the_loop() -> None:
    config, problems = parse_repo_config("draft: true\n")
    assert problems == []
    review = config.review
    assert review.on == []
    assert review.forks is True
    assert review.before_ready is False
    assert (review.max_rounds, review.threshold, review.max_comments) == (2, "major", 20)


def test_a_full_section() -> None:
    text = (
        "review:\n"
        "  on: [opened, ready_for_review]\n"
        "  forks: false\n"
        "  instructions: |\n    Prefer ValueError.\n"
        "  before_ready: true\n"
        "  max_rounds: 3\n"
        "  threshold: minor\n"
        "  max_comments: 5\n"
    )
    config, problems = parse_repo_config(text)
    assert problems == []
    assert config.review.on == ["opened", "ready_for_review"]
    assert config.review.forks is False
    assert config.review.instructions == "Prefer ValueError.\n"
    assert (config.review.max_rounds, config.review.threshold) == (3, "minor")


def test_a_quoted_on_key_works_too() -> None:
    config, problems = parse_repo_config('review:\n  "on": [opened]\n')
    assert problems == []
    assert config.review.on == ["opened"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("review:\n  on: [closed]\n", "line 2: review.on.0:"),
        ("review:\n  on: [opened, opened, opened]\n", "line 2: review.on:"),
        ("review:\n  max_rounds: 50\n", "line 2: review.max_rounds:"),
        ("review:\n  max_rounds: -1\n", "line 2: review.max_rounds:"),
        ("review:\n  threshold: blocker\n", "line 2: review.threshold:"),
        ("review:\n  max_comments: 0\n", "line 2: review.max_comments:"),
        ("review:\n  instructions: " + "x" * 9000 + "\n", "line 2: review.instructions:"),
        ("review:\n  approve: true\n", "line 2: review.approve:"),
        ("review: yes\n", "line 1: review:"),
    ],
)
def test_bad_values_are_one_line_problems_and_defaults_are_kept(text: str, problem: str) -> None:
    config, problems = parse_repo_config(text)
    assert config.review.on == []
    assert len(problems) == 1
    assert str(problems[0]).startswith(problem)
