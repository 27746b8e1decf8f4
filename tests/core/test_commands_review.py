"""Issue 18's verbs in the grammar: ``/vibe review [focus]`` and ``/vibe fix`` (alone; with
words it stays an instruction), both listed by the help generated from the table."""

from __future__ import annotations

import pytest

from bot.core.commands import Verb, help_text, parse_commands


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/vibe review", (Verb.REVIEW, "")),
        ("/vibe review: error handling", (Verb.REVIEW, "error handling")),
        (
            "/vibe REVIEW the parser\nespecially unicode",
            (Verb.REVIEW, "the parser\nespecially unicode"),
        ),
        ("@vibe-bot review", (Verb.REVIEW, "")),
        ("/vibe fix", (Verb.FIX, "")),
        ("/vibe fix.", (Verb.FIX, "")),
        ("/vibe fix\nthanks!", (Verb.FIX, "")),
        ("/vibe fix the typo in README", (Verb.RUN, "fix the typo in README")),
        ("/vibe fix-ci", (Verb.FIX_CI, "")),
        ("/vibe reveiw", (Verb.UNKNOWN, "reveiw")),
        ("```\n/vibe review\n```", None),
        ("> /vibe fix", None),
    ],
)
def test_review_and_fix_parse(body: str, expected: tuple[Verb, str] | None) -> None:
    commands = parse_commands(body, "vibe-bot[bot]")
    got = (commands[0].verb, commands[0].text) if commands else None
    assert got == expected


def test_an_oversized_focus_is_capped_with_the_body() -> None:
    (command,) = parse_commands("/vibe review " + "x" * 200_000)
    assert command.verb is Verb.REVIEW
    assert len(command.text) < 70_000


def test_help_lists_review_and_fix() -> None:
    text = help_text()
    assert "`/vibe review [focus]`" in text
    assert "never approves" in text
    assert "`/vibe fix`" in text
