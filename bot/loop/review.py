"""Reviewing a pull request: ``/vibe review [focus]``, ``review.on``, and the reviewer of the
bot's own PR before a person looks (issue 18).

The order of steps: read the PR (:class:`~bot.loop.ports.Reviews`), its config from the
base branch, check out its head read-only, read its diff, rank the changed files with the
context engine and cut the diff to the budget (:func:`bot.core.review.cut_by_rank`), run the
agent with the read-only tool set on a prompt that frames the diff as untrusted data, parse
its findings, and post ONE review (event COMMENT) whose inline comments all sit on lines of
the diff (:func:`bot.core.review.compose_review`). A fork's PR is reviewed the same way:
read-only tools, no secrets in the sandbox, and the only write is the review itself
(``review.forks: false`` turns that off).

:func:`assess` is the part the reviewer-coder loop reuses on a task's own worktree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from bot.core.agent import AgentRequest, Errored, Finished, LimitReached, Refused, Stopped
from bot.core.config import RepoConfig
from bot.core.errors import Declined
from bot.core.forge import ReviewTarget
from bot.core.markers import marker
from bot.core.redact import redact
from bot.core.review import (
    Answer,
    DiffCut,
    FileDiff,
    Finding,
    Guidance,
    ReviewDraft,
    ReviewRound,
    ReviewScope,
    Severity,
    at_or_above,
    compose_review,
    cut_by_rank,
    gitattributes_skips,
    parse_diff,
    parse_findings,
    render_rounds,
    review_prompt,
)
from bot.core.tasks import Feedback, TaskRecord, Usage
from bot.loop.env import Env, repo_config
from bot.loop.errors import AgentUnavailable, StopRequested
from bot.loop.iteration import Outcome

log = structlog.get_logger(__name__)

GUIDANCE_FILES = ("REVIEW.md", "AGENTS.md")


@dataclass(frozen=True)
class Assessment:
    """What the reviewer found in a diff, what it read, and what it cost."""

    answer: Answer
    files: tuple[FileDiff, ...]
    cut: DiffCut
    usage: Usage
    steps: int


def _guidance(env: Env, config: RepoConfig, base_ref: str) -> str:
    texts = {name: env.forge.read_file(name, base_ref) or "" for name in GUIDANCE_FILES}
    return Guidance(config.review.instructions, texts["REVIEW.md"], texts["AGENTS.md"]).render()


def assess(
    env: Env,
    workdir: Path,
    diff_text: str,
    *,
    base_ref: str,
    title: str,
    description: str,
    config: RepoConfig,
    focus: str = "",
    cancel: threading.Event | None = None,
    spent: Usage | None = None,
) -> Assessment:
    """Run the reviewer over ``diff_text`` (the worktree at ``workdir`` is the head, read
    with the read-only tools). ``spent``: the task's spend so far, which the task's limits
    count. Raises :class:`AgentUnavailable` when the model API may come back,
    :class:`Declined` when the reviewer could not finish."""
    files = parse_diff(diff_text)
    attributes = gitattributes_skips(env.forge.read_file(".gitattributes", base_ref))
    paths = [f.path for f in files]
    query = " ".join([title, focus, *paths[:50]])
    pack = env.context.build(
        workdir, query, enhanced=True, named_files=paths[:50], knowledge_ref=base_ref
    )
    ranks = {
        str(f["path"]): int(f["rank"])
        for f in (pack.manifest or {}).get("files", [])
        if "path" in f
    }
    cut = cut_by_rank(files, ranks, env.settings.context_budget_tokens, attributes)
    prompt = review_prompt(
        title=title,
        description=description,
        diff_text="\n".join(f.text for f in cut.read),
        guidance=_guidance(env, config, base_ref),
        focus=focus,
        not_read=cut.not_read,
    )
    outcome = env.agent.run(
        AgentRequest(
            workdir=workdir,
            instruction=prompt,
            context=pack.text,
            read_only=True,
            config=config,
            network=False,
            task_dollars_spent=spent.cost if spent is not None else 0.0,
        ),
        cancel=cancel or env.cancel,
        on_step=lambda _step: None,
    )
    match outcome.exit:
        case Finished(summary):
            answer = parse_findings(summary)
        case Errored(reason, retryable=True):
            raise AgentUnavailable(reason)
        case Stopped(reason):
            raise StopRequested(reason)
        case LimitReached() as limit:
            raise Declined(f"The review stopped early: {limit.reason}.")
        case Refused(reason) | Errored(reason):
            raise Declined(f"The review could not be written: {reason}")
    log.info(
        "review.assessed",
        findings=len(answer.findings),
        problems=len(answer.problems),
        files_read=len(cut.read),
        not_read=len(cut.not_read),
        cost=round(outcome.usage.cost, 6),
    )
    return Assessment(answer, files, cut, outcome.usage, outcome.steps)


def cost_note(usage: Usage) -> str:
    return f"Cost: {usage.tokens:,} tokens, ${usage.cost:.4f}."


def draft_review(
    assessment: Assessment, config: RepoConfig, *, key: str, focus: str, secrets: list[str]
) -> ReviewDraft:
    scope = ReviewScope(
        files_read=len(assessment.cut.read),
        not_read=assessment.cut.not_read,
        focus=focus,
        cost=cost_note(assessment.usage),
    )
    return compose_review(
        assessment.answer,
        assessment.cut.read,
        scope,
        mark=marker("review", key=key),
        secrets=secrets,
        max_comments=config.review.max_comments,
    )


@dataclass(frozen=True)
class ReviewRequest:
    number: int
    key: str  # what asked: one review per key
    focus: str = ""
    automatic: bool = False  # review.on, not a person's command


def review_pull(env: Env, request: ReviewRequest) -> str:
    """Review PR ``request.number`` and post one review; returns what was done."""
    reviews = env.reviews
    if reviews is None:
        raise Declined("Reviews need a pull request on GitHub.")
    target = reviews.review_target(request.number)
    if target is None:
        raise Declined(f"Pull request #{request.number} was not found.")
    if not target.open:
        if request.automatic:
            return "ignored: the pull request is closed"
        raise Declined("This pull request is closed.")
    config = repo_config(env, target.base_ref, request.number)
    if not target.same_repo and not config.review.forks:
        if request.automatic:
            return "ignored: reviews of forks' pull requests are off"
        raise Declined(
            "Reviews of pull requests from forks are turned off here (`review.forks: false`)."
        )
    mark = marker("review", key=request.key)
    found = reviews.find_review(request.number, mark)
    if found is not None:
        return f"review: already posted ({found})"
    return _review(env, target, config, request)


def _review(env: Env, target: ReviewTarget, config: RepoConfig, request: ReviewRequest) -> str:
    reviews = env.reviews
    assert reviews is not None
    checkout = env.workspaces.open_pull(
        target.number, target.base_ref, target.head_ref if target.same_repo else None
    )
    try:
        commit = checkout.head()
        assessment = assess(
            env,
            checkout.path,
            checkout.diff(),
            base_ref=target.base_ref,
            title=target.title,
            description=target.body,
            config=config,
            focus=request.focus,
        )
    finally:
        checkout.close()
    draft = draft_review(
        assessment, config, key=request.key, focus=request.focus, secrets=env.secrets
    )
    review_id = reviews.create_review(
        target.number, commit, draft.body, [c.payload() for c in draft.comments]
    )
    log.info(
        "review.posted",
        review=review_id,
        inline=len(draft.comments),
        in_body=len(draft.in_body),
        cost=round(assessment.usage.cost, 6),
    )
    return f"review: {len(draft.comments)} inline, {len(draft.in_body)} in the body"


# ------------------------------------------------------- the reviewer-coder loop


Again = Callable[[TaskRecord, tuple[Feedback, ...], str], Outcome]


def _as_feedback(finding: Finding) -> Feedback:
    text = f"[{finding.severity.label}] {finding.title}"
    if finding.body and finding.body != finding.title:
        text += f": {finding.body}"
    if finding.suggestion:
        text += f"\nSuggested replacement:\n{finding.suggestion}"
    return Feedback(
        "self",
        text,
        author=None,
        path=finding.path,
        line=finding.line,
        start_line=finding.start_line,
        side=finding.side,
    )


def before_ready(env: Env, out: Outcome, *, key: str, again: Again) -> Outcome:
    """``review.before_ready``: when an iteration of the bot's own PR ends green, review
    its diff; the findings at or above ``review.threshold`` are ``self`` feedback for one
    more iteration (``again``), at most ``review.max_rounds`` times, and no more once a
    round brings nothing new or a finding comes back. The rounds are iterations of their
    own (trigger ``self-review``) and one log comment on the PR, edited in place: the
    person sees the end state, not a review per round."""
    task = out.task
    config = repo_config(env, task.base, task.number)
    policy = config.review
    if (
        not policy.before_ready
        or policy.max_rounds == 0
        or out.outcome != "succeeded"
        or not task.owns_pr
        or task.pr_number is None
        or env.reviews is None
    ):
        return out
    threshold = Severity.named(policy.threshold) or Severity.MAJOR
    seen: set[tuple[str, int | None, str]] = set()
    rounds: list[ReviewRound] = []
    usage = Usage()
    pr = task.pr_number
    for number in range(1, policy.max_rounds + 1):
        checkout = env.workspaces.open_pull(pr, task.base, task.branch)
        try:
            assessment = assess(
                env,
                checkout.path,
                checkout.diff(),
                base_ref=task.base,
                title=task.title,
                description=task.instruction,
                config=config,
                spent=env.tasks.load(task.id).usage,
            )
        finally:
            checkout.close()
        env.tasks.add_usage(task.id, assessment.usage)
        usage = usage + assessment.usage
        found = at_or_above(assessment.answer.findings, threshold)
        new = tuple(f for f in found if f.key not in seen)
        repeated = tuple(f for f in found if f.key in seen)
        seen.update(f.key for f in found)
        if not new or repeated:
            stop = "the same finding came back" if repeated else "no new findings"
            rounds.append(ReviewRound(number, len(assessment.answer.findings), found, None, stop))
            env.note(f"self-review round {number}: {stop}")
            break
        rounds.append(ReviewRound(number, len(assessment.answer.findings), new, out.iteration + 1))
        env.note(f"self-review round {number}: {len(new)} findings at or above {threshold.label}")
        _log_rounds(env, pr, task.id, rounds, policy.threshold, policy.max_rounds, usage)
        out = again(
            env.tasks.load(task.id), tuple(_as_feedback(f) for f in new), f"{key}/review-{number}"
        )
        rounds[-1] = replace(rounds[-1], iteration=out.iteration, outcome=out.outcome)
        if out.outcome != "succeeded":
            break
        task = out.task
    _log_rounds(env, pr, task.id, rounds, policy.threshold, policy.max_rounds, usage)
    return out


def _log_rounds(
    env: Env,
    pr: int,
    task_id: int,
    rounds: list[ReviewRound],
    threshold: str,
    max_rounds: int,
    usage: Usage,
) -> None:
    body = render_rounds(rounds, threshold=threshold, max_rounds=max_rounds, cost=cost_note(usage))
    env.forge.upsert_comment(pr, marker("review", key=f"task-{task_id}"), redact(body, env.secrets))
