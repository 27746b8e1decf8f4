"""The ``/vibe`` command grammar: a table of anchored patterns with their help beside them.

A command is a line that starts (after at most three spaces, as Markdown allows) with
``/vibe`` or ``@<bot-login>`` (with or without the ``[bot]`` suffix), in any case, followed
by a space or the end of the line. Lines inside fenced code blocks (```` ``` ```` and
``~~~``), quoted lines (``> /vibe``), lines indented as code (four spaces or more) and HTML
comments (``<!-- -->``, hidden when rendered) are not commands.

Multi-line instructions: the text of a command is the rest of its line plus every line
after it up to the next command line (or the end of the comment), so an instruction can
carry paragraphs and code blocks. Commands without an argument (``approve``, ``stop``,
``retry``, ``undo``, ``status``, ``fix-ci``, ``fix``, ``help``) must stand alone on their line; the
lines after them are ordinary commentary.

An instruction is free text, but a reserved word with the wrong arguments (``/vibe stop
now``) or a lone word within two edits of a subcommand (``/vibe halp``, ``/vibe stpo``) is
taken as a mistyped command and yields :attr:`Verb.UNKNOWN`, answered with the help,
rather than starting a task whose instruction is "halp". Other lone words (``/vibe
again``) are instructions.

Input is capped at :data:`bot.core.events.MAX_BODY_CHARS` (GitHub's own limit for a
comment body) and
:data:`MAX_COMMANDS` commands, every
pattern is anchored and linear, and HTML comments are removed with a linear scan, so any
input parses in time proportional to its length. (Table-with-help idea: prow's
``pkg/plugins/lgtm/lgtm.go``, ``LGTMRe`` and ``helpProvider``.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from bot.core.attempts import MAX_ATTEMPTS
from bot.core.events import MAX_BODY_CHARS

# Only the first command is acted on; a few more are kept for callers that list them.
MAX_COMMANDS = 20


class Verb(StrEnum):
    RUN = "run"
    PLAN = "plan"
    TEST = "test"
    APPROVE = "approve"
    REQUIRE = "require"
    STOP = "stop"
    RETRY = "retry"
    UNDO = "undo"
    STATUS = "status"
    FIX_CI = "fix-ci"
    REVIEW = "review"
    FIX = "fix"
    PICK = "pick"
    HELP = "help"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Command:
    """One command in a comment. ``text`` is the instruction or requirement (empty when
    none); for :attr:`Verb.UNKNOWN` it is what was not understood. ``line`` is 1-based."""

    verb: Verb
    text: str
    line: int
    attempts: int | None = None  # ``/vibe attempts=N ...``: best-of-N for this iteration
    error: str | None = None  # why an UNKNOWN command is wrong, when the grammar can say


@dataclass(frozen=True)
class Syntax:
    """One row of the grammar: ``pattern`` must match the whole rest of the command line
    (after ``/vibe``); ``takes_text`` means its text continues on the following lines;
    ``needs_text`` means an empty text is a mistake."""

    verb: Verb
    pattern: re.Pattern[str]
    usage: str
    help: str
    takes_text: bool = False
    needs_text: bool = False


def _with_text(word: str) -> re.Pattern[str]:
    return re.compile(word + r":?(?:\s+(?P<text>.*))?", re.IGNORECASE)


def _alone(word: str) -> re.Pattern[str]:
    return re.compile(word + r"[.!?]?\s*", re.IGNORECASE)


GRAMMAR: tuple[Syntax, ...] = (
    Syntax(
        Verb.PLAN,
        _with_text("plan"),
        "/vibe plan [instruction]",
        "plan-driven: explore read-only, post a plan as a checklist, and change nothing "
        "until a writer answers `/vibe approve`.",
        takes_text=True,
    ),
    Syntax(
        Verb.TEST,
        _with_text("test"),
        "/vibe test [instruction]",
        "test-driven: first a failing test that captures the request (red), then the "
        "change until it passes (green).",
        takes_text=True,
    ),
    Syntax(
        Verb.APPROVE,
        _alone("approve"),
        "/vibe approve",
        "approve the posted plan; the bot then carries it out step by step.",
    ),
    Syntax(
        Verb.REQUIRE,
        _with_text("require"),
        "/vibe require <text>",
        "add a requirement to the task's checklist, then iterate to meet it.",
        takes_text=True,
        needs_text=True,
    ),
    Syntax(
        Verb.STOP,
        _alone("stop"),
        "/vibe stop",
        "stop the running iteration within seconds (nothing half-done is pushed) and end the task.",
    ),
    Syntax(Verb.RETRY, _alone("retry"), "/vibe retry", "run the last iteration again."),
    Syntax(Verb.UNDO, _alone("undo"), "/vibe undo", "revert the last iteration's commits."),
    Syntax(
        Verb.STATUS,
        _alone("status"),
        "/vibe status",
        "reply with the task's state, iterations, cost and limits.",
    ),
    Syntax(
        Verb.FIX_CI,
        _alone("fix-ci"),
        "/vibe fix-ci",
        "fix the failing CI checks of the pull request's head once more, past "
        "`ci.max_fix_iterations` and `ci.auto_fix: false`.",
    ),
    Syntax(
        Verb.REVIEW,
        _with_text("review"),
        "/vibe review [focus]",
        "on a pull request (anyone's), post one review with inline comments on the "
        "changed lines, each with a severity and a suggested fix; it only comments, never "
        "approves.",
        takes_text=True,
    ),
    Syntax(
        Verb.FIX,
        _alone("fix"),
        "/vibe fix",
        "in reply to one of the bot's review comments: on the bot's own pull request, "
        "iterate with that comment as feedback; on another's, reply with a suggested change.",
    ),
    Syntax(
        Verb.PICK,
        re.compile(r"pick(?:\s+(?P<text>\S+))?\s*", re.IGNORECASE),
        "/vibe pick <attempt>",
        "make another of the last iteration's attempts the head of the task branch (a new "
        "commit with that attempt's files, so the PR's history stays as it was).",
    ),
    Syntax(Verb.HELP, _alone("help"), "/vibe help", "show this help."),
    Syntax(
        Verb.RUN,
        re.compile(r"(?P<text>.*)"),
        "/vibe [attempts=N] [instruction]",
        "on an issue, start a task (the issue is the task, the instruction adds to it); on "
        "a pull request, iterate with the instruction as feedback. `attempts=N` (1 to "
        f"{MAX_ATTEMPTS}) runs N independent attempts and the repository's checks choose one.",
        takes_text=True,
    ),
)

# "fix" is reserved only alone: "/vibe fix the parser" stays an instruction.
_RESERVED = frozenset(s.verb.value for s in GRAMMAR if s.verb not in (Verb.RUN, Verb.FIX))
_LONE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_-]{2,19}[.!?]?")
_TYPO_DISTANCE = 2


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (both words are at most 20 characters here)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _mistyped(rest: str, following: str) -> bool:
    """A reserved word with wrong arguments, or a lone word close to a subcommand, or a
    bare ``/vibe`` whose next line starts with a reserved word (``/vibe`` then ``stop`` on
    the next line is not the instruction "stop")."""
    said = rest or following
    first_word = said.split(maxsplit=1)[0].lower().rstrip(".!?:") if said.strip() else ""
    if first_word in _RESERVED:
        return True
    if following or _LONE_WORD.fullmatch(rest) is None:
        return False
    return any(_edit_distance(first_word, word) <= _TYPO_DISTANCE for word in _RESERVED)


_FENCE = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)")
_QUOTE = re.compile(r" {0,3}>")


@lru_cache(maxsize=64)
def _trigger(bot_login: str) -> re.Pattern[str]:
    login = bot_login.strip()
    if login.lower().endswith("[bot]"):
        login = login[: -len("[bot]")]
    triggers = [r"/vibe"]
    if login:
        triggers.append("@" + re.escape(login) + r"(?:\[bot\])?[:,]?")
    return re.compile(r" {0,3}(?:" + "|".join(triggers) + r")(?=\s|$)(?P<rest>.*)", re.IGNORECASE)


def _strip_html_comments(text: str) -> str:
    """Remove ``<!-- ... -->`` spans (an unclosed one hides the rest, as GitHub renders)."""
    parts: list[str] = []
    pos = 0
    while (start := text.find("<!--", pos)) != -1:
        parts.append(text[pos:start])
        end = text.find("-->", start + 4)
        if end == -1:
            return "".join(parts)
        pos = end + 3
    parts.append(text[pos:])
    return "".join(parts)


def _command_lines(lines: list[str], trigger: re.Pattern[str]) -> list[tuple[int, str]]:
    """Indices of command lines and the rest of each line after the trigger."""
    found: list[tuple[int, str]] = []
    fence: str | None = None
    for index, line in enumerate(lines):
        opening = _FENCE.match(line)
        if fence is not None:
            if (
                opening is not None
                and opening["fence"][0] == fence[0]
                and len(opening["fence"]) >= len(fence)
                and not opening["info"].strip()
            ):
                fence = None
            continue
        # An info string with a backtick is inline code, not a fence (CommonMark 4.5).
        if opening is not None and not (opening["fence"][0] == "`" and "`" in opening["info"]):
            fence = opening["fence"]
            continue
        if _QUOTE.match(line):
            continue
        match = trigger.match(line)
        if match is not None:
            found.append((index, match["rest"].strip()))
    return found


_ATTEMPTS = re.compile(r"attempts\s*=\s*(?P<n>\S*)(?:\s+(?P<text>.*))?", re.IGNORECASE)


def _number(word: str | None, limit: int) -> int | None:
    """``word`` as a whole number from 1 to ``limit``, else None (a short digit string
    only: ``int()`` of thousands of digits is slow and refused)."""
    if word is None or not word.isascii() or not word.isdigit() or len(word) > 3:
        return None
    value = int(word)
    return value if 1 <= value <= limit else None


def _attempts_run(option: re.Match[str], rest: str, following: str, line: int) -> Command:
    """``/vibe attempts=N [instruction]``: the run command with a number of attempts."""
    count = _number(option["n"], MAX_ATTEMPTS)
    if count is None:
        error = (
            f"`attempts={option['n'][:20]}` is not a number of attempts: write a whole number "
            f"from 1 to {MAX_ATTEMPTS}, as in `/vibe attempts=3 fix the parser`."
        )
        return Command(Verb.UNKNOWN, rest, line, error=error)
    text = "\n".join(part for part in ((option["text"] or "").strip(), following) if part)
    return Command(Verb.RUN, text, line, attempts=count)


def _pick(match: re.Match[str], rest: str, line: int) -> Command:
    number = _number(match["text"], MAX_ATTEMPTS)
    if number is None:
        error = (
            f"`/vibe pick` takes the number of an attempt, from 1 to {MAX_ATTEMPTS}, as in "
            "`/vibe pick 2`."
        )
        return Command(Verb.UNKNOWN, rest, line, error=error)
    return Command(Verb.PICK, str(number), line)


def _interpret(rest: str, following: str, line: int) -> Command:
    option = _ATTEMPTS.fullmatch(rest)
    if option is not None:
        return _attempts_run(option, rest, following, line)
    for syntax in GRAMMAR:
        match = syntax.pattern.fullmatch(rest)
        if match is None:
            continue
        if syntax.verb is Verb.PICK:
            return _pick(match, rest, line)
        if not syntax.takes_text:
            return Command(syntax.verb, "", line)
        text = "\n".join(part for part in ((match["text"] or "").strip(), following) if part)
        if syntax.needs_text and not text:
            return Command(Verb.UNKNOWN, rest, line)
        if syntax.verb is Verb.RUN and _mistyped(rest, following):
            return Command(Verb.UNKNOWN, rest, line)
        return Command(syntax.verb, text, line)
    return Command(Verb.UNKNOWN, rest, line)


def parse_commands(text: str, bot_login: str = "") -> list[Command]:
    """The commands in a comment body, in order, at most :data:`MAX_COMMANDS` (empty when
    there are none)."""
    body = _strip_html_comments(text[:MAX_BODY_CHARS])
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = _command_lines(lines, _trigger(bot_login))[: MAX_COMMANDS + 1]
    commands = []
    for n, (index, rest) in enumerate(found[:MAX_COMMANDS]):
        end = found[n + 1][0] if n + 1 < len(found) else len(lines)
        following = "\n".join(lines[index + 1 : end]).strip()
        commands.append(_interpret(rest, following, index + 1))
    return commands


def help_text(*, trigger_label: str = "vibe", bot_login: str | None = None) -> str:
    """The reply to ``/vibe help`` and to a command that was not understood."""
    mention = (
        f" (`@{bot_login.removesuffix('[bot]')}` works in place of `/vibe`)" if bot_login else ""
    )
    # The catch-all row is matched last but read first.
    rows = [f"- `{s.usage}`: {s.help}" for s in (GRAMMAR[-1], *GRAMMAR[:-1])]
    return "\n".join(
        [
            f"**vibe-bot commands**: write one at the start of a line{mention}.",
            "",
            *rows,
            "",
            "The lines after a command belong to its instruction, up to the next command. "
            "Only the first command of a comment is acted on. Commands inside code blocks "
            "or quotes are ignored; editing a comment does not repeat its command.",
            "",
            f"Labels: `{trigger_label}` starts a task on an issue with the default model; "
            "`vibe:plan`, `vibe:test`, `vibe:unconstrained`, `vibe:conversational` and "
            "`vibe:context` choose the development model.",
            "",
            "Only people with write access to the repository can use these.",
        ]
    )
