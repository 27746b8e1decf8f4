"""The console log line: :class:`bot.observability.ConsoleLines` writes, for every event,
the text structlog's own ``ConsoleRenderer(colors=False)`` writes for it (it only costs
less), and leaves lines with a stack or an exception to structlog's renderer."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.observability import ConsoleLines

LEVELS = ["debug", "info", "warning", "warn", "error", "critical", "exception", "notset"]
# Keys that are columns of their own, and what makes a string value quoted.
SPECIAL = ["timestamp", "level", "event", "logger", "logger_name"]
text = st.text(alphabet=st.sampled_from(list("ab =\t\r\n\"'\\é\u200bZ9:/-_.")), max_size=12)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": text,
        "level": st.sampled_from(LEVELS) | text,
        "event": text | st.integers(),
        "logger": text,
        "logger_name": text,
    },
).flatmap(
    lambda columns: st.dictionaries(
        text.filter(lambda key: key not in [*SPECIAL, "stack", "exception", "exc_info"]),
        values,
        max_size=6,
    ).map(lambda rest: {**columns, **rest})
)


def structlog_line(event: Mapping[str, object]) -> str:
    return str(structlog.dev.ConsoleRenderer(colors=False)(None, "info", dict(event)))


@settings(max_examples=500, deadline=None)
@given(events)
def test_each_event_renders_as_structlogs_console_renderer_renders_it(
    event: dict[str, object],
) -> None:
    assert ConsoleLines()(None, "info", dict(event)) == structlog_line(event)


@pytest.mark.parametrize("character", list(" \t=\r\n\"'") + list("a:/-_.\\é\u200b"))
def test_a_string_is_quoted_where_structlog_quotes_it(character: str) -> None:
    for value in (character, f"a{character}b", f"{character}{character}"):
        event = {"event": "e", "key": value, "k2": [value], value: 1}
        assert ConsoleLines()(None, "info", dict(event)) == structlog_line(event)


def test_a_delivery_line_reads_as_before() -> None:
    event = {
        "timestamp": "2026-12-04T13:44:58.430410Z",
        "level": "info",
        "event": "delivery.stored",
        "delivery": "0-1796391898-2",
        "gh_event": "issues",
        "outcome": "queued",
        "action": "labeled",
        "store": "new",
        "status": 202,
        "client": "127.0.0.1:46862",
        "detail": "two words",
        "actor": None,
    }
    line = ConsoleLines()(None, "info", dict(event))
    assert line == (
        "2026-12-04T13:44:58.430410Z [info     ] delivery.stored                "
        "action=labeled actor=None client=127.0.0.1:46862 delivery=0-1796391898-2 "
        "detail='two words' gh_event=issues outcome=queued status=202 store=new"
    )
    assert line == structlog_line(event)


def test_a_line_with_an_exception_or_a_stack_is_structlogs_own() -> None:
    try:
        raise ValueError("the reason")
    except ValueError:
        with_exception = {"event": "job.failed", "level": "error", "exc_info": True}
        line = ConsoleLines()(None, "error", dict(with_exception))
    assert "Traceback" in line
    assert "ValueError: the reason" in line
    with_stack = {"event": "job.slow", "level": "warning", "stack": "Stack (most recent call):"}
    assert ConsoleLines()(None, "warning", dict(with_stack)) == structlog_line(with_stack)
    with_text = {"event": "job.failed", "level": "error", "exception": "Traceback: boom"}
    assert ConsoleLines()(None, "error", dict(with_text)) == structlog_line(with_text)
