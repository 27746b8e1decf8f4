"""Hidden markers: round trip, replacement, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.markers import (
    MarkerError,
    carries,
    find_marker,
    find_markers,
    marker,
    strip_markers,
    with_marker,
)


def test_round_trip_and_stable_order() -> None:
    m = marker("status", task=7, repo="octo/hello-world")
    assert m.render() == "<!-- vibe:status repo=octo/hello-world task=7 -->"
    found = find_marker(f"hello\n{m}\n", "status")
    assert found == m
    assert found is not None
    assert found.get("task") == "7"
    assert found.get("missing") is None


def test_with_marker_replaces_earlier_marker_of_same_kind() -> None:
    text = with_marker("body", marker("task", task=1))
    text = with_marker(text, marker("task", task=2))
    assert [m.get("task") for m in find_markers(text)] == ["2"]
    assert carries(text, marker("task", task=2))
    assert not carries(text, marker("task", task=1))
    mixed = with_marker(text, marker("status", task=2))
    assert [m.kind for m in find_markers(mixed)] == ["task", "status"]
    assert strip_markers(mixed) == "body"


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("nope", {"task": 1}),
        ("task", {"Task": 1}),
        ("task", {"task": "1 -->"}),
        ("task", {"task": "a b"}),
        ("task", {"task": ""}),
        ("task", {"task": "x" * 201}),
    ],
)
def test_refuses_what_it_cannot_carry(kind: str, fields: dict[str, object]) -> None:
    with pytest.raises(MarkerError):
        marker(kind, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "<!-- vibe:unknown task=1 -->",
        "<!-- vibe:task task=1-->",
        "<!--vibe:task task=1 -->",
        "<!-- vibe:task task=1 --",
    ],
)
def test_malformed_markers_are_not_found(text: str | None) -> None:
    assert find_markers(text) == []


@given(st.text(max_size=400))
def test_any_text_parses_without_error(text: str) -> None:
    for found in find_markers(text):
        assert find_marker(found.render(), found.kind) == found


def test_long_hostile_text_is_fast() -> None:
    text = "<!-- vibe:task " + "a=b " * 100_000
    assert find_markers(text) == []
