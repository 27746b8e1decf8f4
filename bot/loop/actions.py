"""The refinement loop (survey Eq. 4): start a task, iterate on feedback, accept or abandon.

Only this module knows the order of steps (DESIGN.md section 3). It talks to the outside
through :mod:`bot.loop.ports` and keeps its state in the task store (``env.tasks``), so a
job that is claimed again after a crash finds the same task, the same iteration (keyed by
the trigger), the same branch, PR and status comment, and finishes the work instead of
repeating it (DESIGN.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog

from bot.core.attempts import pick_problem, picked
from bot.core.branches import task_branch
from bot.core.ci import round_line
from bot.core.config import RepoConfig
from bot.core.errors import Declined
from bot.core.events import Actor
from bot.core.render import (
    console_link,
    render_failure,
    render_pr_body,
    render_refusal,
    render_reply,
    render_status_reply,
    reply_marker,
)
from bot.core.tasks import (
    DevelopmentModel,
    Feedback,
    NewTask,
    Requirement,
    State,
    Step,
    TaskRecord,
    allowed,
)
from bot.loop import review
from bot.loop.attempts import expire_attempts
from bot.loop.env import Env, repo_config
from bot.loop.iteration import Outcome, run_iteration
from bot.loop.ports import TaskStore
from bot.loop.strategies import PlanDriven, strategy_for
from bot.settings import Settings

log = structlog.get_logger(__name__)


def _limits_view(settings: Settings, config: RepoConfig) -> dict[str, float | int]:
    lim = config.limits
    return {
        "steps_per_iteration": lim.steps_per_iteration or settings.limits.steps_per_iteration,
        "dollars_per_iteration": lim.dollars_per_iteration or settings.limits.dollars_per_iteration,
        "dollars_per_task": lim.dollars_per_task or settings.limits.dollars_per_task,
        "minutes_per_iteration": lim.minutes_per_iteration or settings.limits.minutes_per_iteration,
        "minutes_per_task": lim.minutes_per_task or settings.limits.minutes_per_task,
    }


@dataclass(frozen=True)
class StartRequest:
    number: int
    requester: str
    key: str
    model: DevelopmentModel | None = None
    instruction: str = ""
    comment_id: int | None = None
    on_pr: bool = False
    repo_id: int | None = None  # GitHub's repository id, when the forge is GitHub
    attempts: int | None = None  # ``/vibe attempts=N``: best-of-N for this iteration


def start(env: Env, req: StartRequest) -> Outcome:
    """A writer asked for work on an issue (label or ``/vibe``) or on an existing PR."""
    env.forge.react(req.number, req.comment_id, "eyes")
    existing = env.tasks.find(env.forge.repo, req.number, req.repo_id)
    if existing is None and req.on_pr:
        existing = _task_of_own_pr(env, req)
    if existing is not None and existing.state is not State.QUEUED:
        if existing.state.busy:  # this job was claimed again after a crash: resume
            return run_iteration(
                env, existing, trigger="start", key=req.key, mode=_mode_for(existing)
            )
        if not existing.state.terminal:  # a live task: the request is feedback for it
            text = req.instruction or "Continue with the task."
            fb = (Feedback("human", text, author=req.requester),)
            return iterate(env, existing, fb, trigger="comment", key=req.key, attempts=req.attempts)
        existing = env.tasks.reopen(existing.id)
    if existing is None:
        existing = _create(env, req)
    task = existing
    if req.instruction and req.instruction not in (r.text for r in task.requirements):
        task = task.with_requirement(req.instruction, "require")
        env.tasks.set_requirements(task.id, task.requirements)
    model = req.model or task.model
    if model != task.model:
        env.tasks.set_model(task.id, model)
        task = replace(task, model=model)
    out = run_iteration(
        env, task, trigger="start", key=req.key, mode=_mode_for(task), attempts=req.attempts
    )
    return _reviewed(env, out, req.key)


def _reviewed(env: Env, out: Outcome, key: str) -> Outcome:
    """``review.before_ready``: the reviewer reviews a green iteration of the bot's own PR
    and its findings drive up to ``review.max_rounds`` more iterations (trigger
    ``self-review``, feedback kind ``self``; :func:`bot.loop.review.before_ready`)."""

    def again(task: TaskRecord, feedback: tuple[Feedback, ...], round_key: str) -> Outcome:
        return run_iteration(
            env, task, trigger="self-review", key=round_key, feedback=feedback, mode="work"
        )

    return review.before_ready(env, out, key=key, again=again)


def _task_of_own_pr(env: Env, req: StartRequest) -> TaskRecord | None:
    """``/vibe`` on the bot's own PR before the iteration that opened it recorded its
    number: the task is the one whose branch the PR's head is (the bot opened it there);
    the number is recorded now, and no second task is made on the same branch."""
    pull = env.forge.pull(req.number)
    if pull is None or not pull.same_repo or pull.author is None:
        return None
    if not env.settings.bot_identity().is_self(Actor(pull.author, None, True)):
        return None
    task = env.tasks.find_by_branch(env.forge.repo, pull.head_ref, req.repo_id)
    return None if task is None else env.tasks.record_pr(task.id, req.number)


def _mode_for(task: TaskRecord) -> str:
    """Plan while a plan-driven task has no approved plan; otherwise work."""
    if task.state in (State.AWAITING_APPROVAL, State.PLANNING):
        return "plan"
    if isinstance(strategy_for(task.model), PlanDriven) and not task.plan:
        return "plan"
    return "work"


def _create(env: Env, req: StartRequest) -> TaskRecord:
    if req.on_pr:
        pull = env.forge.pull(req.number)
        if pull is None:
            raise Declined(f"pull request #{req.number} was not found")
        if not pull.same_repo:
            raise Declined(
                "I only work on branches of this repository; this pull request comes from a fork"
            )
        config = repo_config(env, pull.base_ref, req.number)
        model = req.model or config.model or env.settings.default_model
        new = NewTask(
            repo=env.forge.repo,
            number=req.number,
            model=model,
            branch=pull.head_ref,
            base=pull.base_ref,
            requester=req.requester,
            title=pull.title,
            instruction=req.instruction or pull.title,
            requirements=(Requirement(req.instruction or pull.title, "issue"),),
            pr_number=req.number,
            owns_pr=False,
            repo_id=req.repo_id,
        )
    else:
        base = env.forge.default_branch()
        issue = env.forge.issue_text(req.number)
        config = repo_config(env, base, req.number)
        model = req.model or config.model or env.settings.default_model
        instruction = issue.body.strip() or issue.title
        if issue.comments:
            instruction += "\n\nDiscussion by writers:\n" + "\n---\n".join(issue.comments)
        new = NewTask(
            repo=env.forge.repo,
            number=req.number,
            model=model,
            branch=task_branch(req.number, issue.title),
            base=base,
            requester=req.requester,
            title=issue.title,
            instruction=instruction,
            requirements=(Requirement(issue.title, "issue"),),
            repo_id=req.repo_id,
        )
    task, _ = env.tasks.find_or_create(new)
    return task


def iterate(
    env: Env,
    task: TaskRecord,
    feedback: tuple[Feedback, ...],
    *,
    trigger: str,
    key: str,
    attempts: int | None = None,
) -> Outcome:
    """A review, review comments or ``/vibe <text>`` on the PR: iteration k+1."""
    out = run_iteration(
        env,
        task,
        trigger=trigger,
        key=key,
        feedback=feedback,
        mode=_mode_for(task),
        attempts=attempts,
    )
    return _reviewed(env, out, key)


def require(env: Env, task: TaskRecord, text: str, *, author: str, key: str) -> Outcome:
    """``/vibe require <text>``: the requirement joins the list, then iteration k+1."""
    updated = task.with_requirement(text.strip(), "require")
    if updated is not task:
        env.tasks.set_requirements(task.id, updated.requirements)
    fb = (Feedback("human", f"New requirement: {text.strip()}", author=author),)
    return run_iteration(
        env, updated, trigger="require", key=key, feedback=fb, mode=_mode_for(updated)
    )


def approve(env: Env, task: TaskRecord, *, key: str, where: int) -> Outcome | None:
    """``/vibe approve`` of a plan: execute its steps."""
    if task.state is not State.AWAITING_APPROVAL:
        reply(env, where, key, "There is no plan waiting for approval on this task.")
        return None
    return run_iteration(env, task, trigger="approve", key=key, mode="execute")


def halt(tasks: TaskStore, task: TaskRecord) -> None:
    """Stop ``task``: a running iteration stops within seconds (it reads the request
    between steps); a task at rest is abandoned. ``/vibe stop`` and the console's stop."""
    if task.state.busy or not allowed(task.state, Step.ABANDON):
        tasks.request_stop(task.id)
    else:
        tasks.abandon(task.id, stop_running=True)


def stop(env: Env, task: TaskRecord, *, key: str, where: int, author: str) -> None:
    """``/vibe stop``: a running iteration stops within seconds; the task is abandoned."""
    halt(env.tasks, task)
    if task.state.busy:
        reply(env, where, key, f"Stopping, as @{author} asked. Nothing half-done will be pushed.")
        return
    reply(env, where, key, f"Stopped, as @{author} asked: the task is abandoned.")


def retry(env: Env, task: TaskRecord, *, key: str) -> Outcome:
    """``/vibe retry``: run the last iteration's feedback again as a new iteration."""
    last = task.iterations[-1] if task.iterations else None
    feedback = tuple(f for f in last.feedback if f.kind == "human") if last else ()
    if task.state.terminal:
        task = env.tasks.reopen(task.id)
    return run_iteration(
        env, task, trigger="retry", key=key, feedback=feedback, mode=_mode_for(task)
    )


def _refresh_pr_body(env: Env, task_id: int, summary: str) -> None:
    """Write the PR body again from the task as stored (its PR, when the bot owns one)."""
    current = env.tasks.load(task_id)
    if current.pr_number is not None and env.prs is not None and current.owns_pr:
        env.prs.update_pr_body(
            current.pr_number,
            render_pr_body(
                current,
                summary,
                env.secrets,
                console_link(env.settings.public_url, current.id),
            ),
        )


def undo(env: Env, task: TaskRecord, *, key: str, where: int) -> str | None:
    """``/vibe undo``: revert the last iteration's commits as one new commit and push."""
    last = next((it for it in reversed(task.iterations) if it.commits), None)
    if last is None:
        reply(env, where, key, "There is nothing to undo: no iteration pushed commits yet.")
        return None
    base = last.base_sha
    if base is None:
        reply(env, where, key, f"I cannot undo iteration {last.number}: its start is unknown.")
        return None
    checkout = env.workspaces.open(
        task.branch,
        task.base,
        shared=not task.owns_pr,
        requester=task.requester,
    )
    try:
        sha = checkout.revert_since(base, f"vibe: undo iteration {last.number} (#{task.number})")
        if sha is not None:
            checkout.publish()
    finally:
        checkout.close()
    if sha is None:
        reply(env, where, key, f"Iteration {last.number} left nothing to revert.")
        return None
    env.tasks.mark_reverted(task.id, last.number)
    env.note(f"undo: reverted iteration {last.number} in {sha[:7]}")
    # the body first: the reply says it is done, so everything it names is written
    _refresh_pr_body(env, task.id, last.summary)
    reply(env, where, key, f"Reverted iteration {last.number} in {sha[:7]}.")
    return sha


def pick(env: Env, task: TaskRecord, number: int, *, key: str, where: int, by: str) -> str | None:
    """``/vibe pick <number>``: one new commit on the task branch with attempt ``number``'s
    files. A new commit rather than a force-push: the PR's history keeps what was chosen
    first and shows the switch, and nobody's checkout of the branch is rewritten. Refused
    when the attempts expired or the branch moved since (a commit would be lost)."""
    it = next((i for i in reversed(task.iterations) if i.attempts is not None), None)
    latest = it is not None and it.number == task.iterations[-1].number
    found = it.attempts if it is not None else None
    problem = pick_problem(found, number, latest)
    attempt = found.attempt(number) if found is not None else None
    if problem is not None or it is None or found is None or attempt is None or not attempt.sha:
        reply(env, where, key, f"I cannot pick attempt {number}: {problem}.")
        return None
    checkout = env.workspaces.open(task.branch, task.base, shared=False, requester=task.requester)
    try:
        head = checkout.head()
        if head != found.head:
            reply(
                env,
                where,
                key,
                f"I cannot pick attempt {number}: `{task.branch}` moved since the attempts ran "
                f"(its head is {head[:7]}, not {str(found.head)[:7]}), and a pick must not drop "
                "those commits.",
            )
            return None
        message = f"vibe: pick attempt {number} of iteration {it.number} (#{task.number})"
        sha = checkout.take_tree(attempt.sha, message)
        if sha is not None:
            checkout.publish()
    finally:
        checkout.close()
    now = sha or head
    env.tasks.record_attempts(task.id, it.number, picked(found, number, by, now))
    env.note(f"pick: attempt {number} of iteration {it.number} in {now[:7]}")
    _refresh_pr_body(env, task.id, attempt.summary or it.summary)
    reply(env, where, key, f"Attempt {number} is now the head of `{task.branch}` ({now[:7]}).")
    return now


def status(env: Env, task: TaskRecord, *, key: str, where: int) -> None:
    config = repo_config(env, task.base, where)
    rounds = env.ci_rounds.rounds(task.id) if env.ci_rounds is not None else ()
    env.forge.upsert_comment(
        where,
        reply_marker(key),
        render_status_reply(
            task,
            _limits_view(env.settings, config),
            key,
            env.secrets,
            [round_line(r) for r in rounds],
        ),
    )


def accept(env: Env, task: TaskRecord, reason: str) -> None:
    if allowed(task.state, Step.ACCEPT):
        env.tasks.move(task.id, State.ACCEPTED)
        env.note(f"task accepted ({reason})")
        _end_attempts(env, task)


def abandon(env: Env, task: TaskRecord, reason: str) -> None:
    if allowed(task.state, Step.ABANDON):
        env.tasks.abandon(task.id, stop_running=task.state.busy)
        env.note(f"task abandoned ({reason})")
        _end_attempts(env, task)


def _end_attempts(env: Env, task: TaskRecord) -> None:
    """The task ended: its attempt branches go. A running iteration (stopping now) pushes
    none, so only a task at rest has any to delete."""
    if task.owns_pr and not task.state.busy:
        expire_attempts(env, task)


def say_abandoned(env: Env, task: TaskRecord, key: str, reason: str) -> None:
    """The issue was closed: say on it that the task is abandoned, and on the task's PR,
    which is left open for people to close or take over."""
    running = ""
    if task.state.busy:
        running = " The running iteration stops; nothing half-done is pushed."
    again = "Reopen the issue and comment `/vibe` to start again."
    reply(env, task.number, key, f"The task is abandoned: {reason}.{running} {again}")
    if task.pr_number is not None and env.prs is not None:
        reply(
            env,
            task.pr_number,
            key,
            f"Issue #{task.number} was closed, so this task is abandoned; this pull request is "
            "left as it is for people to close or take over.",
        )


def reply(env: Env, where: int, key: str, text: str) -> None:
    """A one-time reply, keyed by what it answers, so a retried job does not post twice."""
    env.forge.upsert_comment(where, reply_marker(key), render_reply(text, key, env.secrets))


def refuse(env: Env, where: int, key: str, reason: str) -> None:
    """A refusal, answered once (keyed by the delivery that asked)."""
    env.forge.upsert_comment(where, reply_marker(key), render_refusal(reason, key, env.secrets))


def fail_visibly(env: Env, where: int, key: str, reason: str) -> None:
    env.forge.upsert_comment(where, reply_marker(key), render_failure(reason, key, env.secrets))
