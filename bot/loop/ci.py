"""The repository's own CI as feedback on the bot's PR (issue 16).

Two steps, so that no CI event waits or asks GitHub anything it need not:

1. :func:`observe`, in the ``event`` job of a :class:`~bot.core.events.CiEvent` (any lane,
   no GitHub call): is the commit the head the bot last pushed to its own PR (or is an
   iteration running, whose push the store may not have recorded yet), from a branch of
   this repository, and not decided yet? Then a ``ci`` job is queued in the task's lane
   (one waiting per lane: the events of one suite queue one job).
2. :func:`review_head`, in the ``ci`` job: the PR's head must still be the bot's commit (a
   person's commit on top hands the PR to them), the head's suite must be complete; then
   ``ci.settle_seconds`` later (a second ``ci`` job queued with a run-at time, not a sleep)
   the checks are read again and decided (:func:`bot.core.ci.decide`). The decision is
   recorded once per head (:class:`~bot.loop.ports.CiRounds`), then carried out: a fix
   iteration, a re-run of failed jobs, the draft marked ready for review, or a reply saying
   why the failure is not fixed.

``/vibe fix-ci`` (:func:`fix_on_request`) asks for one fix of the current head past the
cap and the ``auto_fix`` switch. Each round is shown in the CI log comment on the PR and in
the task's status comment; fix iterations appear in the PR body's iteration table with the
trigger ``ci``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, get_args

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from bot.core import events as ev
from bot.core.ci import (
    LOG_TAIL_BYTES,
    OWN_CHECK,
    CheckResult,
    CiPolicy,
    Facts,
    Fix,
    Green,
    Halt,
    HeadChecks,
    PullHead,
    Rerun,
    Round,
    ci_feedback,
    classify,
    counted,
    decide,
    own_names,
    render_ci_log,
    rerun_jobs,
    signature,
)
from bot.core.config import RepoConfig
from bot.core.markers import Marker, marker, with_marker
from bot.core.redact import redact
from bot.core.render import Final, Phase, console_link, render_status, status_marker
from bot.core.tasks import Checkpoint, TaskRecord
from bot.jobs.queue import enqueue
from bot.loop import actions as loop
from bot.loop.env import Env, repo_config
from bot.loop.iteration import FinalOutcome, Outcome
from bot.loop.ports import CiChecks, CiRounds, EditsComments, TaskStore
from bot.store.engine import write_transaction
from bot.store.tables import Job, utcnow

log = structlog.get_logger(__name__)

CI_JOB = "ci"
_FINAL_ITERATION: tuple[FinalOutcome, ...] = get_args(FinalOutcome)


def pushed_head(task: TaskRecord) -> str | None:
    """The last commit the bot pushed to the task's branch, as the store recorded it."""
    for it in reversed(task.iterations):
        if it.commits:
            return it.commits[-1]
    return None


def task_lane(repo: str, repo_id: int | None, number: int) -> str:
    """The task's lane, as ingest names it (:func:`bot.ingest.deliveries.task_lane`)."""
    return f"repository:{repo_id}#{number}" if repo_id is not None else f"{repo}#{number}"


def schedule_review(engine: Engine, payload: Mapping[str, Any], lane: str, delay: float) -> bool:
    """Queue a ``ci`` job in ``lane`` to run in ``delay`` seconds unless one is waiting
    there; True if this call queued it."""
    with write_transaction(engine) as conn:
        waiting = conn.execute(
            select(Job.id)
            .where(
                col(Job.kind) == CI_JOB, col(Job.status) == "queued", col(Job.serial_key) == lane
            )
            .limit(1)
        ).first()
        if waiting is not None:
            return False
        enqueue(
            conn,
            CI_JOB,
            dict(payload),
            serial_key=lane,
            run_after=utcnow() + timedelta(seconds=delay),
        )
    return True


def _not_ours(task: TaskRecord) -> str | None:
    if not task.owns_pr:
        return "the PR is a person's, the task only borrowed it"
    if task.pr_number is None:
        return "the task has no PR yet"
    if task.state.terminal:
        return f"the task is {task.state.value}"
    return None


def _decided(rounds: Sequence[Round], sha: str) -> Round | None:
    return next((r for r in rounds if r.sha == sha and r.outcome != "rerun"), None)


def observe(
    event: ev.CiEvent,
    tasks: TaskStore,
    rounds: CiRounds,
    engine: Engine,
    own: frozenset[str] = frozenset({OWN_CHECK}),
) -> str:
    """CI news in the ``event`` job: queue a ``ci`` job for the bot's own head, else say
    why not. Asks GitHub nothing. ``own``: the names of the bot's own check run and App
    (case-insensitive), whose news is not CI feedback."""
    if event.fork:
        return "ignored: CI of a fork's commit"
    if event.name.casefold() in own:
        return "ignored: the bot's own check"
    task = next(
        (
            found
            for branch in dict.fromkeys(event.branches)
            if (found := tasks.find_by_branch(event.repo.full_name, branch, event.repo.id))
        ),
        None,
    )
    if task is None:
        return "ignored: CI of no task's branch"
    # While an iteration runs, its push (and the PR it opens) can reach CI before the store
    # records them: the review, queued behind the iteration in the task's lane, reads the
    # recorded head and PR. A fast CI finishes while iteration 1 still runs.
    why = _not_ours(task)
    if why is not None and not (task.pr_number is None and task.state.busy):
        return f"ignored: {why}"
    if pushed_head(task) != event.head_sha and not task.state.busy:
        return f"ignored: {event.head_sha[:7]} is not the commit the bot last pushed"
    if _decided(rounds.rounds(task.id), event.head_sha) is not None:
        return f"ignored: CI of {event.head_sha[:7]} is decided"
    payload = {
        "task_id": task.id,
        # "repository" and "number" as every job names them: the console's jobs page shows them.
        "repository": event.repo.full_name,
        "number": task.number,
        "repo_id": event.repo.id,
        "installation_id": event.installation_id,
        "settled": False,
    }
    lane = task_lane(event.repo.full_name, event.repo.id, task.number)
    queued = schedule_review(engine, payload, lane, 0.0)
    return f"ci: task {task.id} head {event.head_sha[:7]} " + ("queued" if queued else "waiting")


# ----------------------------------------------------------------------------- review


def _budget_spent(env: Env, task: TaskRecord, config: RepoConfig) -> str | None:
    """Which of the task's limits is spent (DESIGN.md section 4 rule 10), if one is."""
    dollars = config.limits.dollars_per_task or env.settings.limits.dollars_per_task
    minutes = config.limits.minutes_per_task or env.settings.limits.minutes_per_task
    if task.usage.cost >= dollars:
        return f"dollar limit (${dollars:g})"
    if sum(it.duration for it in task.iterations) >= minutes * 60:
        return f"time limit ({minutes:g} minutes)"
    return None


def _logs(ci: CiChecks, failing: Sequence[CheckResult], secrets: Sequence[str]) -> dict[str, str]:
    logs: dict[str, str] = {}
    for check in failing:
        if check.job_id is None:
            continue
        tail = ci.job_log_tail(check.job_id, LOG_TAIL_BYTES)
        if tail is not None:
            logs[check.name] = redact(tail, secrets)
    return logs


def _names(checks: Sequence[CheckResult]) -> tuple[str, ...]:
    return tuple(sorted({c.name for c in checks}))


def ci_log_marker(task_id: int) -> Marker:
    """The CI log comment of a task, on its PR."""
    return marker("ci", task=task_id)


def _publish_log(env: Env, task: TaskRecord, rounds: CiRounds) -> None:
    """The CI log comment on the PR: every round of the task, oldest first."""
    if task.pr_number is None:
        return
    mark = ci_log_marker(task.id)
    body = redact(render_ci_log(rounds.rounds(task.id)), env.secrets)
    env.forge.upsert_comment(task.pr_number, mark, with_marker(body, mark))


def _show(env: Env, task: TaskRecord, rounds: CiRounds, phases: Sequence[Phase]) -> None:
    """The CI log on the PR, and the task's status comment with this round's phases under
    the last iteration's final line."""
    _publish_log(env, task, rounds)
    last = task.iterations[-1] if task.iterations else None
    outcome = next((o for o in _FINAL_ITERATION if last is not None and o == last.outcome), None)
    if last is None or outcome is None:
        return
    final = Final(outcome, last.duration, last.usage, last.checks, reason=last.error)
    mark = status_marker(task.id)
    link = console_link(env.settings.public_url, task.id)
    body = render_status(task.id, last.number, task.model, list(phases), final, env.secrets, link)
    known = task.status_comment_id  # one PATCH by the kept id (bot.loop.status)
    edited = (
        known is not None
        and isinstance(env.forge, EditsComments)
        and env.forge.edit_comment(task.number, known, mark, body)
    )
    if not edited:
        env.forge.upsert_comment(task.number, mark, body)


def _check_list(checks: Sequence[CheckResult], policy: CiPolicy) -> str:
    return ", ".join(f"{c.name} ({c.conclusion}, {classify(c.name, policy)})" for c in checks)


def review_head(env: Env, task_id: int, *, settled: bool, schedule: Callable[[float], bool]) -> str:
    """The ``ci`` job: decide the bot's head once its suite is complete and settled."""
    ci, rounds = env.ci, env.ci_rounds
    if ci is None or rounds is None:
        return "ignored: no CI here"
    task = env.tasks.load(task_id)
    why = _not_ours(task)
    sha = pushed_head(task)
    if why is not None or sha is None or task.pr_number is None:
        return f"ignored: {why or 'nothing pushed'}"
    earlier = rounds.rounds(task.id)
    done = _decided(earlier, sha)
    if done is not None:
        if done.outcome == "fix" and _fix_unfinished(task, f"ci:{sha}"):
            return _resume_fix(env, task, sha)
        return f"ignored: CI of {sha[:7]} is decided"
    # Cheapest first: an incomplete suite (most CI events) costs one read of the checks.
    checks = ci.head_checks(sha)
    mine = counted(checks, own_names(env.settings.bot_login or ""))
    if not mine or not all(c.completed for c in mine):
        return f"waiting: the suite of {sha[:7]} is not complete"
    # GitHub answers a re-run before it replaces the job's check run: until then the
    # head's checks are the failed ones, complete, and would be taken for the re-run's.
    rerun = next((r for r in earlier if r.sha == sha and r.outcome == "rerun"), None)
    if rerun is not None and {c.job_id for c in mine} & rerun_jobs(rerun):
        return f"waiting: the re-run on {sha[:7]} has not started"
    config = repo_config(env, task.base, task.number)
    if not settled and config.ci.settle_seconds > 0:
        schedule(config.ci.settle_seconds)
        return f"settling: {sha[:7]} is read again in {config.ci.settle_seconds:g} s"
    pull = ci.pull_head(task.pr_number)
    if pull is None or not pull.open or not pull.same_repo:
        return "ignored: the PR is closed or not on a branch of this repository"
    if pull.sha != sha:
        note = "the PR's head is a commit the bot did not push: it is the person's now"
        rounds.record(task.id, Round(sha, "superseded", note=note))
        return f"ignored: {note}"
    return _decide(env, ci, rounds, task, checks, config, pull, earlier, key=f"ci:{sha}")


def _fix_unfinished(task: TaskRecord, key: str) -> bool:
    return any(
        it.key == key and it.checkpoint is not Checkpoint.CONCLUDED for it in task.iterations
    )


def _resume_fix(env: Env, task: TaskRecord, sha: str) -> str:
    """A fix iteration begun by an earlier run of the job: the loop resumes it by its key,
    with the feedback it was begun with."""
    key = f"ci:{sha}"
    begun = next(it for it in task.iterations if it.key == key)
    out = loop.iterate(env, task, begun.feedback, trigger="ci", key=key)
    return f"ci: fix of {sha[:7]} resumed, iteration {out.iteration} {out.outcome}"


def _decide(
    env: Env,
    ci: CiChecks,
    rounds: CiRounds,
    task: TaskRecord,
    checks: HeadChecks,
    config: RepoConfig,
    pull: PullHead,
    earlier: tuple[Round, ...],
    *,
    key: str,
    manual: bool = False,
) -> str:
    policy = config.ci.policy()
    facts = Facts(
        rounds=earlier,
        budget_spent=_budget_spent(env, task, config),
        manual=manual,
        ignore=own_names(env.settings.bot_login or ""),
    )
    decision = decide(checks, policy, facts)
    rerun: list[int] = []
    if isinstance(decision, Rerun):
        rerun = [j for j in decision.job_ids if ci.rerun_job(j)]
        if not rerun:  # GitHub refused (no Actions: write, the run still going): decide now
            policy = replace(policy, rerun_failed_jobs=False)
            decision = decide(checks, policy, facts)
    logs: dict[str, str] = {}
    if isinstance(decision, Fix | Halt) and any(c.failed for c in decision.failing):
        failing = tuple(c for c in decision.failing if c.failed)
        logs = _logs(ci, failing, env.secrets)
        decision = decide(checks, policy, facts, signature(failing, logs))
    sha = checks.sha
    short = sha[:7]
    log.info("ci.decided", task=task.id, head=short, decision=type(decision).__name__)
    match decision:
        case None:
            return f"waiting: the suite of {short} is not complete"
        case Green(flaky):
            return _green(env, ci, rounds, task, pull, policy, checks, flaky)
        case Rerun(_, failing_names):
            note = f"re-running {len(rerun)} failed job(s) once before deciding"
            jobs = tuple(f"job:{j}" for j in rerun)
            if not rounds.record(task.id, Round(sha, "rerun", jobs, failing_names, note=note)):
                return f"ignored: CI of {short} is decided"
            _show(env, task, rounds, [Phase(f"CI on {short}", "running", note)])
            return f"ci: {short} re-run {len(rerun)} job(s)"
        case Fix(failing, flaky):
            sig = signature(failing, logs)
            flaky_note = f"flaky: {', '.join(flaky)}; " if flaky else ""
            decided = Round(sha, "fix", sig, _names(failing), manual, f"{flaky_note}fixing")
            over = ("rerun", "halt") if manual else ("rerun",)
            if not rounds.record(task.id, decided, over=over):
                return f"ignored: CI of {short} is decided"
            detail = _check_list(failing, policy)
            _show(env, task, rounds, [Phase(f"CI on {short}", "failed", detail)])
            feedback = ci_feedback(failing, policy, logs)
            out = loop.iterate(env, task, feedback, trigger="ci", key=key)
            after = env.tasks.load(task.id)
            rounds.annotate(task.id, sha, _fix_note(after, out, flaky_note))
            _publish_log(env, after, rounds)
            return f"ci: fix of {short}: iteration {out.iteration} {out.outcome}"
        case Halt(reason, failing, evidence, flaky):
            names = _names(failing)
            flaky_note = f"; flaky: {', '.join(flaky)}" if flaky else ""
            rounds.record(task.id, Round(sha, "halt", (), names, False, evidence + flaky_note))
            again = "" if reason == "unfixable" else " `/vibe fix-ci` asks for one more fix."
            loop.reply(
                env,
                task.pr_number or task.number,
                key,
                f"CI failed on {short} ({_check_list(failing, policy)}); I am not fixing it "
                f"automatically: {evidence}{flaky_note}.{again}",
            )
            _show(env, task, rounds, [Phase(f"CI on {short}", "failed", f"not fixed: {evidence}")])
            return f"ci: {short} halted ({reason})"


MAX_CHANGE_NOTE = 200


def _fix_note(task: TaskRecord, out: Outcome, flaky_note: str) -> str:
    """What the fix did, for the CI log: its outcome, commits and its summary's first line."""
    pushed = f"pushed {', '.join(c[:7] for c in out.commits)}" if out.commits else "nothing pushed"
    it = next((i for i in task.iterations if i.number == out.iteration), None)
    lines = it.summary.strip().splitlines() if it is not None else []
    changed = f": {lines[0][:MAX_CHANGE_NOTE]}" if lines else ""
    return f"{flaky_note}fixed in iteration {out.iteration} ({out.outcome}; {pushed}){changed}"


def _green(
    env: Env,
    ci: CiChecks,
    rounds: CiRounds,
    task: TaskRecord,
    pull: PullHead,
    policy: CiPolicy,
    checks: HeadChecks,
    flaky: tuple[str, ...],
) -> str:
    sha = checks.sha
    passed = len(counted(checks, own_names(env.settings.bot_login or "")))
    parts = [f"all {passed} checks passed"]
    if flaky:
        parts.append(
            "flaky, not fixed (failed, then passed on re-run with no code change): "
            + ", ".join(flaky)
        )
    phases = [Phase(f"CI on {sha[:7]}", "done", "; ".join(parts))]
    assert task.pr_number is not None
    if policy.ready_when == "never":
        parts.append("left as it is (`ci.ready_when: never`)")
    elif not pull.draft:
        parts.append("the PR is ready for review")
    else:
        waiting = ci.threads_waiting(task.pr_number)
        if waiting:
            note = f"not marked ready: {waiting} review thread(s) wait for an answer"
            parts.append(note)
            phases.append(Phase("Ready for review", "pending", note))
        else:
            ci.mark_ready_for_review(task.pr_number)
            if env.prs is not None:
                env.prs.request_review(task.pr_number, task.requester)
            note = f"marked ready for review; review requested from @{task.requester}"
            parts.append(note)
            phases.append(Phase("Ready for review", "done", note))
    if not rounds.record(task.id, Round(sha, "green", failing=flaky, note="; ".join(parts))):
        return f"ignored: CI of {sha[:7]} is decided"
    _show(env, task, rounds, phases)
    env.note(f"CI green on {sha[:7]}: " + "; ".join(parts))
    return f"ci: {sha[:7]} green"


# ------------------------------------------------------------------------- /vibe fix-ci


def fix_on_request(env: Env, task: TaskRecord, *, key: str, where: int) -> str:
    """``/vibe fix-ci``: one fix of the failing checks of the bot's head, past the cap and
    the ``auto_fix`` switch; once per command (the iteration is keyed by the comment)."""
    ci, rounds = env.ci, env.ci_rounds
    if ci is None or rounds is None:
        loop.reply(env, where, key, "CI fixes need GitHub; there is no CI here.")
        return "fix-ci: no CI"
    why = _not_ours(task)
    sha = pushed_head(task)
    if why is not None or sha is None or task.pr_number is None:
        loop.reply(env, where, key, f"I cannot fix CI here: {why or 'nothing is pushed yet'}.")
        return "fix-ci: not ours"
    pull = ci.pull_head(task.pr_number)
    if pull is None or not pull.open or not pull.same_repo or pull.sha != sha:
        loop.reply(
            env,
            where,
            key,
            "I cannot fix CI here: the PR's head is not the commit I last pushed, so it is "
            "yours now.",
        )
        return "fix-ci: not the bot's head"
    checks = ci.head_checks(sha)
    mine = counted(checks, own_names(env.settings.bot_login or ""))
    if not mine or not all(c.completed for c in mine):
        loop.reply(env, where, key, f"CI on {sha[:7]} has not finished; ask again when it has.")
        return "fix-ci: suite not complete"
    if all(c.passed for c in mine):
        loop.reply(env, where, key, f"Every check passed on {sha[:7]}; there is nothing to fix.")
        return "fix-ci: green"
    earlier = rounds.rounds(task.id)
    done = _decided(earlier, sha)
    if done is not None and done.outcome == "fix":
        # One fix per head commit, asked for or not: the same failure again is not news.
        loop.reply(
            env,
            where,
            key,
            f"I already tried to fix the CI failure on {sha[:7]} ({done.note or 'fixing'}). "
            "I fix CI once per commit: `/vibe fix-ci` works again when CI fails on a newer "
            "commit.",
        )
        return "fix-ci: this head was fixed once"
    config = repo_config(env, task.base, task.number)
    return _decide(env, ci, rounds, task, checks, config, pull, earlier, key=key, manual=True)
