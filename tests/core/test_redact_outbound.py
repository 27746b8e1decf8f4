"""Issue 14: the credential shapes :func:`bot.core.redact.redact` removes from every text
that leaves the host, also when invisible characters split them, and the host directories
:func:`bot.core.redact.hide_paths` hides."""

from __future__ import annotations

import random
import re
import string
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.redact import (
    REDACTED,
    TOKEN_PATTERN,
    Redactor,
    fold_letters,
    hide_paths,
    might_hold_token,
    redact,
)
from bot.core.sanitize import DEFAULT_IGNORABLE

TOKENS = [
    "ghp_" + "a1B2c3D4" * 5,
    "ghs_" + "Z" * 36,
    "github_pat_11ABCDEFG0_" + "x" * 40,
    "sk-ant-api03-" + "k" * 40,
    "sk-proj-" + "Q" * 40,
    "v1." + "0123456789abcdef" * 2 + "01234567",
    "AKIAIOSFODNN7EXAMPLE",
    "ASIAY34FZKBOKMUTVV7A",
    "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg\n-----END EC PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN cut short by a truncation",
    "xoxb-1234567890-abcdefghij",
    "AIza" + "S" * 35,
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
    "https://x-access-token:hunter2hunter2@github.com/o/r.git",
]
# The parts of each token that must never be shown.
CORES = [
    "a1B2c3D4",
    "Z" * 36,
    "x" * 40,
    "k" * 40,
    "Q" * 40,
    "0123456789abcdef",
    "IOSFODNN7EXAMPLE",
    "Y34FZKBOKMUTVV7A",
    "wJalrXUtnFEMI",
    "MHcCAQEEIBkg",
    "MIIEvQIBADAN",
    "1234567890-abcdefghij",
    "S" * 35,
    "eyJhbGciOiJIUzI1NiJ9",
    "hunter2hunter2",
]
IGNORABLE = [chr(c) for low, high in DEFAULT_IGNORABLE for c in range(low, min(high, low + 3) + 1)]


@pytest.mark.parametrize(("token", "core"), list(zip(TOKENS, CORES, strict=True)))
def test_each_credential_shape_is_redacted(token: str, core: str) -> None:
    out = redact(f"before {token} after")
    assert core not in out
    assert REDACTED in out
    assert out.startswith("before ")


def test_configured_secrets_and_ordinary_text() -> None:
    assert redact("use s3cr3t-value-1 now", ["s3cr3t-value-1"]) == f"use {REDACTED} now"
    text = "A plain sentence with sha 0123456789abcdef0123456789abcdef01234567 and sk-8."
    assert redact(text) == text


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(list(zip(TOKENS, CORES, strict=True))),
    st.lists(st.tuples(st.integers(0, 200), st.sampled_from(IGNORABLE)), max_size=6),
    st.text(max_size=20),
    st.text(max_size=20),
)
def test_invisible_characters_cannot_split_a_token(
    pair: tuple[str, str], inserts: list[tuple[int, str]], before: str, after: str
) -> None:
    token, core = pair
    chars = list(token)
    for position, char in inserts:
        chars.insert(position % (len(chars) + 1), char)
    out = redact(f"{before} {''.join(chars)} {after}", ["a-configured-secret"])
    visible = "".join(c for c in out if c not in IGNORABLE and ord(c) < 0xE0000)
    assert core not in visible


def test_host_paths_are_labelled_where_they_are_paths() -> None:
    paths = [("/srv/vibe", "<data>"), ("/srv/vibe/workspaces", "<workspaces>"), ("/tmp", "<tmp>")]
    text = (
        "/srv/vibe/workspaces/w/slot-1/a.py, '/srv/vibe/db' (/tmp/x) "
        "/srv/vibe-other /tmpfs https://example.com/tmp/y"
    )
    assert hide_paths(text, paths) == (
        "<workspaces>/w/slot-1/a.py, '<data>/db' (<tmp>/x) "
        "/srv/vibe-other /tmpfs https://example.com/tmp/y"
    )


def test_every_character_the_pattern_takes_for_a_letter_folds_to_that_letter() -> None:
    """The ground of :func:`might_hold_token`: a character that TOKEN_PATTERN's
    case-insensitive parts take for an ASCII letter folds to exactly that letter (so a
    literal spelled in any such characters folds to the literal). Checked for every code
    point."""
    letter = re.compile("(?i)[a-z]")
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if letter.fullmatch(char) is None:
            continue
        taken_for = [x for x in string.ascii_lowercase if re.fullmatch(f"(?i){x}", char)]
        assert [fold_letters(char)] == taken_for, hex(code)


SHAPES = [*TOKENS, "aws_session_token: " + "A" * 20, "https://u:p@h"]
ODD_LETTERS = {"i": ["I", "\u0131", "\u0130"], "s": ["S", "\u017f"], "k": ["K", "\u212a"]}


def pieces(samples: list[str], alphabet: str, most: int) -> st.SearchStrategy[list[str]]:
    """Up to ``most`` pieces of text: some of ``samples``, any text, and runs of the letters
    in ``alphabet`` (where credential literals and the odd letters ``re`` folds are)."""
    return st.lists(
        st.one_of(
            st.sampled_from(samples),
            st.text(max_size=20),
            st.text(alphabet=alphabet, max_size=30),
        ),
        max_size=most,
    )


@settings(max_examples=400, deadline=None)
@given(
    pieces(SHAPES, "akisghptvwxz_-.:/ABIKS1\u0130\u0131\u017f\u212a", 6),
    st.randoms(use_true_random=False),
)
def test_no_text_the_pattern_matches_is_skipped_by_the_prefilter(
    parts: list[str], rnd: random.Random
) -> None:
    """Whatever the case of its letters, a text that holds a credential shape is searched."""
    text = "".join(parts)
    text = "".join(
        rnd.choice([c, c.upper(), *ODD_LETTERS.get(c, [])]) if c.isalpha() else c for c in text
    )
    if TOKEN_PATTERN.search(text) is not None:
        assert might_hold_token(text), text


def test_a_redactor_prepares_its_secrets_once_and_redacts_as_redact_does() -> None:
    secrets = ["hunter2-hunter2", "s\u200bplit-secret-value", ""]
    redactor = Redactor(secrets)
    assert redactor.secrets == ("hunter2-hunter2", "split-secret-value")
    for text in [
        "plain words, nothing to hide",
        "pw hunter2-hunter2 and ghp_" + "a" * 36,
        "split-secret-value in a log line",
        "AUTHORIZATION: BEARER abcdefgh12345678",
        "authorization: bearer abcdefgh12345678".replace("i", "\u0131"),
    ]:
        assert redactor(text) == redact(text, secrets)
    assert REDACTED in redactor("authorization: bearer abcdefgh12345678".replace("i", "\u0131"))
    assert redactor("plain words, nothing to hide") == "plain words, nothing to hide"


SECRETS = ["hunter2-hunter2", "s\u200bplit-secret-value", "multi\nline"]


@settings(max_examples=400, deadline=None)
@given(
    pieces(
        [*SHAPES, *SECRETS, "split-secret-value", "multi", "line"],
        "akisghptvwxz_-.:/\n\u200b\u00adABIKS1\u0130\u0131",
        8,
    ),
    st.randoms(use_true_random=False),
)
def test_texts_a_redactor_leaves_alone_are_each_unchanged_by_it(
    texts: list[str], rnd: random.Random
) -> None:
    """The one check of a log line's values (bot/observability.py) never passes a value that
    its own redaction would change: a secret or credential shape in any one of them, split
    by invisible characters or not, fails the check."""
    redactor = Redactor(SECRETS)
    texts = ["".join(rnd.choice([c, "\u200b" + c]) for c in text) for text in texts]
    if redactor.leaves_alone(texts):
        assert [redactor(text) for text in texts] == texts


def test_a_log_lines_values_are_checked_at_once_and_redacted_each_when_needed() -> None:
    redactor = Redactor(["hunter2-hunter2", "multi\nline"])
    plain = ["delivery.stored", "issues", "queued", "127.0.0.1:50000", "2026-12-04T09:00:00Z"]
    assert redactor.leaves_alone(plain)
    assert redactor.leaves_alone([])
    assert not redactor.leaves_alone([*plain, "pw hunter2-hunter2"])
    assert not redactor.leaves_alone([*plain, "ghp_" + "a" * 36])
    assert not redactor.leaves_alone([*plain, "g\u200bhp_" + "a" * 36])  # split by a ZWSP
    assert not redactor.leaves_alone(["AUTHORIZATION: bearer x".replace("I", "\u0130")])
    # A secret across two values is no secret in either, but the check may not tell: it
    # says "redact each", which leaves both as they are.
    across = ["multi", "line"]
    assert not redactor.leaves_alone(across)
    assert [redactor(text) for text in across] == across
