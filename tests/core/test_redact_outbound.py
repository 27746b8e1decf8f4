"""Issue 14: the credential shapes :func:`bot.core.redact.redact` removes from every text
that leaves the host, also when invisible characters split them, and the host directories
:func:`bot.core.redact.hide_paths` hides."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.redact import REDACTED, hide_paths, redact
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
