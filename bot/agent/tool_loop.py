"""The agent loop: check limits, call the model, run the tools it asked for, repeat.

Small on purpose, with typed exits (STYLE.md item 7; mini-swe-agent ``agents/default.py``):
:class:`Finished`, :class:`LimitReached`, :class:`Refused`, :class:`Errored` and
:class:`Stopped`, defined in :mod:`bot.core.agent` so that the loop matches on the
same values. It is synchronous (it runs in a worker thread) and never raises for anything
the model, the tools or the API do, with one exception: a sandbox that cannot start
(:class:`bot.sandbox.bwrap.SandboxUnavailable`) is the operator's to fix, and passes through
as the infrastructure error it is.

Public API::

    report = run_agent(settings, tools=ToolSet.full(worktree, sandbox, ...),
                       task=AgentTask(instruction=..., context=...),
                       limits=AgentLimits.from_settings(settings, repo_config.limits),
                       recorder=SqlStepRecorder(engine, run_key), cancel=ctx.cancel,
                       review=worktree_review(tools, base_sha))
    match report.exit:
        case Finished(summary): ...
        case LimitReached(which, detail): ...      # push what exists, say why
        case Errored(reason, retryable=True): ...  # try the job again later
        ...

Prompt caching: tool definitions and the system blocks (rules, then the task context) are
byte-stable across steps and carry ``cache_control`` breakpoints; the last block of the
newest message carries a third one that moves forward every step, so each request reads
the previous request's whole prefix from cache (incremental conversation caching,
https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from anthropic import Anthropic

from bot.agent import prompts
from bot.agent.client import ModelError, Turn, make_client, stream_turn
from bot.agent.cost import TokenUsage, UnknownModelPrice, cost, price_for
from bot.agent.record import (
    RECORD_TEXT_CHARS,
    StepRecord,
    StepRecorder,
    ToolCallRecord,
    clip,
    tool_input_text,
)
from bot.agent.tools import ToolResult, ToolSet, display, truncate
from bot.core.agent import (
    AgentExit,
    AgentOutcome,
    Errored,
    Finished,
    LimitReached,
    Refused,
    Stopped,
)
from bot.core.config import RepoLimits
from bot.core.redact import redact
from bot.observability import model_usage
from bot.settings import Settings
from bot.workspace.files import open_root, read_beneath, readlink_beneath

EPHEMERAL: dict[str, str] = {"type": "ephemeral"}
MAX_STREAM_RETRIES = 2
MAX_SILENT_TURNS = 3
TRIMMED = "[output removed to fit the context window]"


@dataclass(frozen=True)
class AgentLimits:
    """Spend limits for one run, checked before every model call (DESIGN.md 4.10)."""

    steps: int
    input_tokens: int
    output_tokens: int
    dollars: float
    seconds: float

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        repo: RepoLimits | None = None,
        *,
        task_dollars_spent: float = 0.0,
        task_seconds_spent: float = 0.0,
    ) -> AgentLimits:
        """Iteration limits from settings, tightened by the repo config and by what is left
        of the task's own budget."""
        lim = settings.limits
        steps = lim.steps_per_iteration
        dollars = lim.dollars_per_iteration
        minutes = lim.minutes_per_iteration
        task_dollars = lim.dollars_per_task
        task_minutes = lim.minutes_per_task
        if repo is not None:
            steps = min(steps, repo.steps_per_iteration or steps)
            dollars = min(dollars, repo.dollars_per_iteration or dollars)
            minutes = min(minutes, repo.minutes_per_iteration or minutes)
            task_dollars = min(task_dollars, repo.dollars_per_task or task_dollars)
            task_minutes = min(task_minutes, repo.minutes_per_task or task_minutes)
        return cls(
            steps=steps,
            input_tokens=lim.input_tokens_per_iteration,
            output_tokens=lim.output_tokens_per_iteration,
            dollars=max(0.0, min(dollars, task_dollars - task_dollars_spent)),
            seconds=max(0.0, min(minutes * 60, task_minutes * 60 - task_seconds_spent)),
        )


@dataclass(frozen=True)
class AgentTask:
    """What the agent is asked. ``instruction`` is the person's request (framed as untrusted
    data here); ``context`` is the pre-assembled context pack (``bot/context``), stable for
    the whole run; ``rules`` adds development-model rules to the system prompt."""

    instruction: str
    context: str = ""
    rules: str = ""


@dataclass(frozen=True, kw_only=True)
class AgentReport(AgentOutcome):
    """The loop's :class:`AgentOutcome` (``usage`` priced exactly), plus what only this
    run knows: the tokens by billing rate, its wall time and the whole conversation."""

    tokens: TokenUsage
    duration: float
    messages: list[dict[str, Any]] = field(repr=False)


Review = Callable[[], str]


class Conversation:
    """The request under construction: stable head, growing messages."""

    def __init__(self, tools: ToolSet, task: AgentTask) -> None:
        self.tools = tools.definitions()
        rules = prompts.SYSTEM_RULES
        if not tools.writable:
            rules += "\n" + prompts.READ_ONLY_RULES
        if tools.mcp is not None and tools.mcp.definitions(read_only=not tools.writable):
            rules += "\n" + prompts.MCP_RULES
        if task.rules:
            rules += "\n" + task.rules
        self.rules = rules
        self.context = task.context
        first = prompts.TASK_HEADER + "\n" + prompts.untrusted("task", task.instruction)
        self.messages: list[dict[str, Any]] = [
            {"role": "user", "content": [{"type": "text", "text": first}]}
        ]

    def system(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [
            {"type": "text", "text": self.rules, "cache_control": EPHEMERAL}
        ]
        if self.context:
            blocks.append({"type": "text", "text": self.context, "cache_control": EPHEMERAL})
        return blocks

    def request(self, model: str, max_tokens: int) -> dict[str, Any]:
        """The next request. Breakpoints: the system blocks, the newest message, and the
        message that was newest in the previous request, so that request's cache entry is
        hit exactly however many blocks the last turn added (the API looks back only 20
        blocks from a breakpoint; at most 4 breakpoints are allowed)."""
        messages = list(self.messages)
        marked = [len(messages) - 1]
        if len(messages) >= 3:
            marked.append(len(messages) - 3)
        for index in marked:
            content = list(messages[index]["content"])
            content[-1] = {**content[-1], "cache_control": EPHEMERAL}
            messages[index] = {"role": messages[index]["role"], "content": content}
        return {
            "model": model,
            "max_tokens": max_tokens,
            "tools": self.tools,
            "system": self.system(),
            "messages": messages,
        }

    def add(self, role: str, content: list[dict[str, Any]]) -> None:
        self.messages.append({"role": role, "content": content})

    def trim(self) -> bool:
        """Shrink the request once it was refused as too large: drop old tool outputs, or
        failing that, half of the context pack. Says whether anything changed."""
        changed = False
        for message in self.messages[:-2]:
            if message["role"] != "user":
                continue
            for i, block in enumerate(message["content"]):
                if block.get("type") == "tool_result" and len(str(block.get("content"))) > 200:
                    message["content"][i] = {**block, "content": TRIMMED}
                    changed = True
        if not changed and len(self.context) > 1000:
            self.context = truncate(self.context, len(self.context) // 2)
            changed = True
        return changed


@dataclass
class _Run:
    limits: AgentLimits
    started: float = field(default_factory=time.monotonic)
    steps: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    dollars: Decimal = Decimal(0)
    self_review: str | None = None

    def limit_reached(self) -> LimitReached | None:
        lim = self.limits
        elapsed = time.monotonic() - self.started
        if self.steps >= lim.steps:
            return LimitReached("steps", f"{self.steps} of {lim.steps} steps used")
        if self.usage.total_input >= lim.input_tokens:
            return LimitReached(
                "input_tokens", f"{self.usage.total_input} of {lim.input_tokens} input tokens used"
            )
        if self.usage.output_tokens >= lim.output_tokens:
            return LimitReached(
                "output_tokens",
                f"{self.usage.output_tokens} of {lim.output_tokens} output tokens used",
            )
        if self.dollars >= Decimal(str(lim.dollars)):
            return LimitReached("dollars", f"${self.dollars:.4f} of ${lim.dollars:.2f} spent")
        if elapsed >= lim.seconds:
            return LimitReached("wall_time", f"{elapsed:.1f} s of {lim.seconds:.1f} s used")
        return None


def run_agent(
    settings: Settings,
    *,
    tools: ToolSet,
    task: AgentTask,
    limits: AgentLimits | None = None,
    model: str | None = None,
    client: Anthropic | None = None,
    recorder: StepRecorder | None = None,
    cancel: threading.Event | None = None,
    review: Review | None = None,
) -> AgentReport:
    """Run the agent until it finishes, hits a limit, is refused, fails or is stopped.

    ``review`` (see :func:`worktree_review`) is shown to the agent once, the first time it
    calls ``finish``; it may then continue working ("self" feedback). ``cancel`` (``/vibe
    stop``, shutdown) is checked before each model call and each tool call, and passed to
    the sandbox through the tool set.
    """
    model = model or settings.model
    run = _Run(limits or AgentLimits.from_settings(settings))
    conversation = Conversation(tools, task)

    def outcome(exit_: AgentExit) -> AgentReport:
        return AgentReport(
            exit=exit_,
            usage=run.usage.priced(float(run.dollars)),
            steps=run.steps,
            self_review=run.self_review,
            tokens=run.usage,
            duration=time.monotonic() - run.started,
            messages=conversation.messages,
        )

    try:
        price = price_for(settings.prices, model)
    except UnknownModelPrice as exc:
        return outcome(Errored(str(exc)))
    if client is None and settings.anthropic_api_key is None:
        return outcome(Errored("no model access: set VIBE_ANTHROPIC_API_KEY"))
    own_client = client is None
    active = client if client is not None else make_client(settings)

    def drive() -> AgentReport:
        stream_failures = 0
        trimmed = False
        silent_turns = 0

        while True:
            if cancel is not None and cancel.is_set():
                return outcome(Stopped())
            reached = run.limit_reached()
            if reached is not None:
                return outcome(reached)
            step_started = datetime.now(UTC)
            t0 = time.monotonic()
            request = conversation.request(model, settings.max_output_tokens)
            summary: dict[str, Any] = {
                "messages": len(request["messages"]),
                "attempt": stream_failures + 1,
            }
            remaining = run.limits.seconds - (time.monotonic() - run.started)
            try:
                turn = stream_turn(
                    active, request, timeout=min(600.0, max(5.0, remaining)), cancel=cancel
                )
            except ModelError as err:
                _record(recorder, run.steps + 1, step_started, t0, model, summary, error=err.reason)
                if err.kind == "cancelled":
                    return outcome(Stopped())
                reached = run.limit_reached()
                if reached is not None:
                    return outcome(reached)
                if err.kind == "stream_broken" and stream_failures < MAX_STREAM_RETRIES:
                    stream_failures += 1
                    continue
                if err.kind == "too_large" and not trimmed and conversation.trim():
                    trimmed = True
                    continue
                return outcome(
                    Errored(err.reason, err.retryable, err.kind, retry_after=err.retry_after)
                )
            stream_failures = 0
            summary["request_id"] = turn.request_id
            run.steps += 1
            run.usage += turn.usage
            step_cost = cost(turn.usage, price)
            run.dollars += step_cost
            model_usage(
                model,
                {
                    "input": turn.usage.input_tokens,
                    "output": turn.usage.output_tokens,
                    "cache_write": turn.usage.cache_write_tokens,
                    "cache_read": turn.usage.cache_read_tokens,
                },
                float(step_cost),
            )
            conversation.add("assistant", turn.content or [{"type": "text", "text": "(no output)"}])

            if turn.stop_reason == "refusal":
                _record(recorder, run.steps, step_started, t0, model, summary, turn, [], step_cost)
                return outcome(Refused(turn.text or "the model declined the task"))

            deadline = run.started + run.limits.seconds
            results, records, finished = _run_tools(turn, tools, cancel, deadline)
            feedback: str | None = None
            if finished is not None and review is not None and run.self_review is None:
                run.self_review = _review_text(review)
                results[-1] = {**results[-1], "content": run.self_review}
                records[-1] = ToolCallRecord(
                    records[-1].id, "finish", records[-1].input, False, clip(run.self_review, 4000)
                )
                finished, feedback = None, "self"
            if turn.tool_calls:
                silent_turns = 0
                conversation.add("user", results)
            else:
                silent_turns += 1
                conversation.add("user", [{"type": "text", "text": prompts.NO_TOOL_NUDGE}])
            _record(
                recorder,
                run.steps,
                step_started,
                t0,
                model,
                summary,
                turn,
                records,
                step_cost,
                feedback,
            )
            if finished is not None:
                return outcome(Finished(finished))
            if cancel is not None and cancel.is_set():
                return outcome(Stopped())
            if silent_turns >= MAX_SILENT_TURNS:
                return outcome(
                    Errored(f"the model answered {silent_turns} times without using a tool")
                )

    try:
        return drive()
    finally:
        if own_client:
            active.close()


def _run_tools(
    turn: Turn, tools: ToolSet, cancel: threading.Event | None, deadline: float
) -> tuple[list[dict[str, Any]], list[ToolCallRecord], str | None]:
    """Run the turn's tool calls in order; every call gets a result block. A ``finish``
    call's result goes last, so the self-review can take its place. Calls left when the
    wall-time budget (``deadline``, monotonic) is spent are not run: one turn may ask for
    a hundred commands."""
    results: list[dict[str, Any]] = []
    records: list[ToolCallRecord] = []
    finished: str | None = None
    cut_off = turn.stop_reason == "max_tokens"
    finish: tuple[dict[str, Any], ToolCallRecord] | None = None
    for call in turn.tool_calls:
        if cut_off:
            result = ToolResult(prompts.CUT_OFF_NUDGE, is_error=True)
        elif cancel is not None and cancel.is_set():
            result = ToolResult("not run: the task was stopped", is_error=True)
        elif call["name"] != "finish" and time.monotonic() >= deadline:
            result = ToolResult("not run: the wall-time limit was reached", is_error=True)
        else:
            result = tools.execute(call["name"], call["input"])
        if result.finished is not None:
            finished = result.finished
        block = {
            "type": "tool_result",
            "tool_use_id": call["id"],
            "content": result.content,
            "is_error": result.is_error,
        }
        record = ToolCallRecord(
            call["id"],
            call["name"],
            tool_input_text(call["input"]),
            result.is_error,
            clip(result.content, RECORD_TEXT_CHARS),
        )
        if result.finished is not None:
            finish = (block, record)
        else:
            results.append(block)
            records.append(record)
    if finish is not None:
        results.append(finish[0])
        records.append(finish[1])
    return results, records, finished


def _review_text(review: Review) -> str:
    return prompts.SELF_REVIEW + "\n" + truncate(review(), 20_000)


def _record(
    recorder: StepRecorder | None,
    index: int,
    started_at: datetime,
    t0: float,
    model: str,
    request: dict[str, Any],
    turn: Turn | None = None,
    calls: list[ToolCallRecord] | None = None,
    step_cost: Decimal = Decimal(0),
    feedback: str | None = None,
    error: str | None = None,
) -> None:
    if recorder is None:
        return
    recorder.record(
        StepRecord(
            index=index,
            started_at=started_at,
            duration=time.monotonic() - t0,
            model_duration=turn.duration if turn is not None else 0.0,
            model=model,
            request=request,
            text=clip(turn.text, RECORD_TEXT_CHARS) if turn is not None else "",
            stop_reason=turn.stop_reason if turn is not None else None,
            tool_calls=calls or [],
            usage=turn.usage if turn is not None else TokenUsage(),
            cost=float(step_cost),
            feedback="self" if feedback == "self" else None,
            error=error,
        )
    )


# The self-review shows at most this much (the text is cut to 14,000 characters anyway):
# the tracked diff is read from git as a stream and git is stopped past the cap; new files
# are read by the host beneath the worktree, smallest first, each and all together capped.
MAX_REVIEW_DIFF_BYTES = 64 * 1024
MAX_REVIEW_FILE_BYTES = 16 * 1024
MAX_REVIEW_NEW_BYTES = 32 * 1024
MAX_REVIEW_NEW_FILES = 20
MAX_REVIEW_LISTING_BYTES = 1024 * 1024
MAX_REVIEW_SKIPPED_NAMED = 50
REVIEW_GIT_SECONDS = 60.0


def _git_head(root: Path, args: list[str], limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a git command's output, and whether more was cut: git is
    stopped rather than read to the end, so a huge diff never enters the bot's memory."""
    argv = ["git", "-c", f"safe.directory={root}", "-c", "core.fsmonitor=false", "-C", str(root)]
    with subprocess.Popen(
        [*argv, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
        timer = threading.Timer(REVIEW_GIT_SECONDS, proc.kill)
        timer.start()
        try:
            out = proc.stdout.read(limit + 1) if proc.stdout else b""
        finally:
            timer.cancel()
            proc.kill()
    return out[:limit], len(out) > limit


def _new_file_diff(name: str, data: bytes) -> str:
    """``data`` as git shows an added file."""
    shown = display(name)
    head = f"diff --git a/{shown} b/{shown}\nnew file mode 100644\n"
    if not data:
        return head
    if b"\0" in data[:8192]:
        return head + f"Binary file b/{shown} added\n"
    lines = data.decode("utf-8", "replace").split("\n")
    end = "" if data.endswith(b"\n") else "\n\\ No newline at end of file"
    if not end:
        lines.pop()
    body = "\n".join("+" + line for line in lines)
    return f"{head}--- /dev/null\n+++ b/{shown}\n@@ -0,0 +1,{len(lines)} @@\n{body}{end}\n"


def _new_files(root: Path) -> str:
    """Untracked files as added-file diffs within the caps, each read beneath the worktree
    with no symlink followed (a symlink shows as its target text, as git shows it), and a
    line naming what the caps left out."""
    listing, cut = _git_head(
        root, ["ls-files", "--others", "--exclude-standard", "-z"], MAX_REVIEW_LISTING_BYTES
    )
    names = [n.decode("utf-8", "surrogateescape") for n in listing.split(b"\0") if n]
    if cut:
        names.pop()  # the last name may be cut short
    sized: list[tuple[int, str, os.stat_result]] = []
    with open_root(root) as top:
        for name in names:
            try:
                info = os.stat(name, dir_fd=top.fd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode):
                sized.append((info.st_size, name, info))
        sized.sort()
        parts: list[str] = []
        skipped: list[str] = []
        total = 0
        for size, name, info in sized:
            if size > MAX_REVIEW_FILE_BYTES:
                skipped.append(f"{display(name)} ({size} bytes, over the per-file cap)")
                continue
            if total + size > MAX_REVIEW_NEW_BYTES or len(parts) >= MAX_REVIEW_NEW_FILES:
                skipped.append(f"{display(name)} ({size} bytes, over the cap for new files)")
                continue
            try:
                if stat.S_ISLNK(info.st_mode):
                    target = readlink_beneath(top.fd, name)
                    shown = display(name)
                    parts.append(
                        f"diff --git a/{shown} b/{shown}\nnew file mode 120000\n"
                        f"+{display(target)}\n"
                    )
                    continue
                data = read_beneath(top.fd, name, MAX_REVIEW_FILE_BYTES, follow=False)
            except OSError:
                continue  # swapped, grown or removed since the listing
            total += len(data)
            parts.append(_new_file_diff(name, data))
    if cut:
        skipped.append(f"more untracked files than a listing of {MAX_REVIEW_LISTING_BYTES} bytes")
    if skipped:
        named = "; ".join(skipped[:MAX_REVIEW_SKIPPED_NAMED])
        more = len(skipped) - MAX_REVIEW_SKIPPED_NAMED
        parts.append(
            f"[new files not shown: {named}" + (f"; and {more} more" if more > 0 else "") + "]\n"
        )
    return "".join(parts)


def worktree_review(tools: ToolSet, base: str, checks: Callable[[], str] | None = None) -> Review:
    """The self-review text: the worktree's diff against ``base`` (new files included, within
    the ``MAX_REVIEW_*`` caps, naming what they leave out) and the latest check results
    (``checks()`` if given, else the agent's last command)."""
    root = tools.root

    def review() -> str:
        raw, cut = _git_head(
            root,
            ["diff", "--no-ext-diff", "--no-textconv", "--no-color", base, "--"],
            MAX_REVIEW_DIFF_BYTES,
        )
        diff = raw.decode("utf-8", "replace")
        if cut:
            diff += f"\n[the diff of tracked files is cut at {MAX_REVIEW_DIFF_BYTES} bytes]\n"
        diff += _new_files(root)
        if checks is not None:
            latest = checks()
        elif tools.commands:
            last = tools.commands[-1]
            latest = f"$ {last.command}\n{last.output}"
        else:
            latest = "no checks were run in this iteration"
        text = (
            f"## Your changes\n{truncate(diff, 14_000) or '(no changes)'}\n\n"
            f"## Latest check results\n{latest}"
        )
        return redact(text, tools.secrets)

    return review
