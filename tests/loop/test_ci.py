"""The loop side of CI feedback on the fakes' ports: which events queue a review, the
settle re-read, one decision per head, and what each decision does on the PR."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.core import events as ev
from bot.core.ci import CheckResult, HeadChecks, PullHead, Round
from bot.core.forge import IssueText, PullInfo
from bot.core.markers import Marker
from bot.core.tasks import (
    Conclusion,
    Feedback,
    NewTask,
    Requirement,
    State,
    Step,
    TaskRecord,
    Usage,
    WorkResult,
)
from bot.loop import actions
from bot.loop import ci as loop_ci
from bot.loop.env import Env
from bot.loop.handlers import EventJob, handle, handle_ci
from bot.loop.iteration import Outcome
from bot.loop.ports import TaskStore
from bot.settings import load_settings
from bot.store.ci import SqlCiRounds
from bot.store.console import JobQuery, list_jobs
from bot.store.engine import init_db, make_engine
from bot.store.tables import Job, utcnow
from bot.store.tasks import SqlTaskStore

REPO = "acme/widgets"
REPO_ID = 42
BRANCH = "vibe/issue-1-make-add-add"
SHA = "a" * 40
PERSON = "c" * 40
FIXED = "d" * 40


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated database file; each test gets a copy (migrating is the slow part)."""
    path = tmp_path_factory.mktemp("ci-db") / "vibe.db"
    eng = make_engine(f"sqlite:///{path}")
    init_db(eng)
    eng.dispose()
    return path


@pytest.fixture
def engine(tmp_path: Path, migrated: Path) -> Iterator[Engine]:
    shutil.copy(migrated, tmp_path / "vibe.db")
    eng = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    yield eng
    eng.dispose()


def run(name: str, conclusion: str = "success", **kw: Any) -> CheckResult:
    return CheckResult(
        name=name,
        source=kw.get("source", "check_run"),
        status=kw.get("status", "completed"),
        conclusion=conclusion,
        app_slug="github-actions",
        title="",
        summary="",
        text=kw.get("text", ""),
        annotations=(),
        job_id=kw.get("job_id"),
        details_url=None,
        run_attempt=1,
    )


@dataclass
class FakeCi:
    """:class:`bot.loop.ports.CiChecks` in memory, counting what was asked."""

    checks: dict[str, tuple[CheckResult, ...]] = field(default_factory=dict)
    head: PullHead = field(default_factory=lambda: PullHead(SHA, True, True, True))
    logs: dict[int, str] = field(default_factory=dict)
    waiting: int = 0
    rerun_allowed: bool = True
    reruns: list[int] = field(default_factory=list)
    readied: list[int] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    def head_checks(self, sha: str) -> HeadChecks:
        self.calls.append("head_checks")
        return HeadChecks(sha, self.checks.get(sha, ()))

    def pull_head(self, pr_number: int) -> PullHead | None:
        self.calls.append("pull_head")
        return self.head

    def job_log_tail(self, job_id: int, max_bytes: int) -> str | None:
        self.calls.append("job_log_tail")
        return self.logs.get(job_id)

    def rerun_job(self, job_id: int) -> bool:
        self.reruns.append(job_id)
        return self.rerun_allowed

    def mark_ready_for_review(self, pr_number: int) -> None:
        self.readied.append(pr_number)

    def threads_waiting(self, pr_number: int) -> int:
        self.calls.append("threads_waiting")
        return self.waiting


@dataclass
class FakeHub:
    """The forge and the PRs: comments by marker, review requests."""

    config: str | None = None
    comments: dict[tuple[int, str], str] = field(default_factory=dict)
    reviews: list[tuple[int, str]] = field(default_factory=list)
    repo: str = REPO

    def default_branch(self) -> str:
        return "main"

    def read_file(self, path: str, ref: str) -> str | None:
        return self.config

    def issue_text(self, number: int) -> IssueText:
        return IssueText("Make add add", "")

    def pull(self, number: int) -> PullInfo | None:
        return None

    def react(self, number: int, comment_id: int | None, content: str) -> None:
        return None

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int:
        self.comments[(number, mark.kind)] = body
        return 1

    def find_or_create_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> int:
        return 5

    def update_pr_body(self, number: int, body: str) -> None:
        return None

    def request_review(self, number: int, login: str) -> None:
        self.reviews.append((number, login))

    def reply_in_thread(self, pr: int, comment_id: int, body: str) -> int:
        return 1

    def resolve_thread(self, pr: int, comment_id: int) -> None:
        return None

    def review_notes(self, pr: int, review_id: int) -> list[Any]:
        return []


@dataclass
class World:
    env: Env
    ci: FakeCi
    hub: FakeHub
    task: TaskRecord
    engine: Engine
    fixes: list[tuple[tuple[Feedback, ...], str]]
    settles: list[float]

    def review(self, *, settled: bool = True) -> str:
        return loop_ci.review_head(self.env, self.task.id, settled=settled, schedule=self._settle)

    def _settle(self, delay: float) -> bool:
        self.settles.append(delay)
        return True

    def push(self, sha: str) -> None:
        """The bot pushed ``sha`` (an iteration's commit), as the store records it."""
        store = SqlTaskStore(self.engine)
        _pushed(store, self.task.id, f"k-{sha[:4]}", sha)
        self.task = store.load(self.task.id)
        self.ci.head = PullHead(sha, True, True, self.ci.head.draft)


def _pushed(store: SqlTaskStore, task_id: int, key: str, sha: str) -> None:
    store.move(task_id, State.WORKING)
    begun = store.begin_iteration(task_id, key, "start", ())
    result = WorkResult("succeeded", (sha,), (), None, None, Usage(), 1.0, "done", None, ())
    store.record_pushed(task_id, begun.number, result)
    store.conclude(task_id, begun.number, Conclusion("succeeded", Step.DONE, pr_number=5))


def _new_task() -> NewTask:
    return NewTask(
        repo=REPO,
        number=1,
        model="conversational",
        branch=BRANCH,
        base="main",
        requester="writer",
        title="Make add add",
        instruction="add(2, 3) should be 5",
        requirements=(Requirement("Make add add", "issue"),),
        repo_id=REPO_ID,
    )


@pytest.fixture
def world(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> World:
    store = SqlTaskStore(engine)
    task, _ = store.find_or_create(_new_task())
    _pushed(store, task.id, "start", SHA)
    fixes: list[tuple[tuple[Feedback, ...], str]] = []

    def iterate(
        env: Env, task: TaskRecord, feedback: tuple[Feedback, ...], *, trigger: str, key: str
    ) -> Outcome:
        fixes.append((feedback, key))
        return Outcome(task, len(task.iterations) + 1, "succeeded", (FIXED,), 5)

    monkeypatch.setattr(actions, "iterate", iterate)
    hub = FakeHub(config="ci: {settle_seconds: 0}\n")
    ci = FakeCi()
    nothing = cast(Any, None)
    env = Env(
        settings=load_settings(data_dir=tmp_path, bot_login="vibe-bot[bot]"),
        tasks=store,
        forge=hub,
        prs=hub,
        workspaces=nothing,
        agent=nothing,
        sandbox=nothing,
        context=nothing,
        cancel=threading.Event(),
        ci=ci,
        ci_rounds=SqlCiRounds(engine),
    )
    return World(env, ci, hub, store.load(task.id), engine, fixes, [])


def news(sha: str = SHA, *, branch: str = BRANCH, fork: bool = False) -> ev.CiEvent:
    repo = ev.Repo("acme", "widgets", REPO, REPO_ID, "main", False, None, None)
    return ev.CiEvent(
        event="check_suite",
        action="completed",
        sender=None,
        installation_id=1,
        repo=repo,
        head_sha=sha,
        branches=(branch,),
        pull_numbers=(5,),
        fork=fork,
        name="github-actions",
        conclusion="failure",
    )


def ci_jobs(engine: Engine) -> list[Job]:
    with Session(engine) as session:
        return list(session.exec(select(Job).where(col(Job.kind) == loop_ci.CI_JOB)).all())


# ------------------------------------------------------------------------------ observe


def test_news_of_the_bots_head_queues_one_review_in_the_tasks_lane(world: World) -> None:
    rounds = SqlCiRounds(world.engine)
    first = loop_ci.observe(news(), world.env.tasks, rounds, world.engine)
    second = loop_ci.observe(news(), world.env.tasks, rounds, world.engine)
    assert first == f"ci: task {world.task.id} head aaaaaaa queued"
    assert second.endswith("waiting")
    jobs = ci_jobs(world.engine)
    assert len(jobs) == 1
    assert jobs[0].serial_key == f"repository:{REPO_ID}#1"
    assert jobs[0].payload["task_id"] == world.task.id
    assert jobs[0].payload["settled"] is False
    # The console's jobs page names the job's repository and number like any other job's.
    (row,) = list_jobs(world.engine, JobQuery(kind=loop_ci.CI_JOB)).rows
    assert (row.repository, row.number) == (REPO, world.task.number)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (news(PERSON), "ignored: ccccccc is not the commit the bot last pushed"),
        (news(fork=True), "ignored: CI of a fork's commit"),
        (news(branch="feature/x"), "ignored: CI of no task's branch"),
    ],
)
def test_news_of_other_commits_is_ignored_without_a_job(
    world: World, event: ev.CiEvent, reason: str
) -> None:
    assert loop_ci.observe(event, world.env.tasks, SqlCiRounds(world.engine), world.engine) == (
        reason
    )
    assert ci_jobs(world.engine) == []


def test_news_of_the_bots_own_check_is_ignored(world: World) -> None:
    own = frozenset({"vibe", "vibe-bot"})
    rounds = SqlCiRounds(world.engine)
    for name in ("vibe", "Vibe-Bot"):
        event = replace(news(), name=name)
        result = loop_ci.observe(event, world.env.tasks, rounds, world.engine, own)
        assert result == "ignored: the bot's own check"
    assert ci_jobs(world.engine) == []


def test_news_while_an_iteration_runs_queues_a_review_of_the_recorded_head(
    world: World,
) -> None:
    SqlTaskStore(world.engine).move(world.task.id, State.WORKING)
    rounds = SqlCiRounds(world.engine)
    queued = loop_ci.observe(news(FIXED), world.env.tasks, rounds, world.engine)
    assert queued.endswith("queued")
    assert len(ci_jobs(world.engine)) == 1


def test_news_before_iteration_one_recorded_its_pr_queues_a_review(world: World) -> None:
    """A fast CI finishes while iteration 1 still runs: the task has no PR and no pushed
    head in the store yet. The review, behind the iteration in its lane, reads them."""
    store = SqlTaskStore(world.engine)
    task, _ = store.find_or_create(
        replace(_new_task(), number=2, branch="vibe/issue-2-fast-ci", title="Fast CI")
    )
    store.move(task.id, State.WORKING)
    store.begin_iteration(task.id, "start-2", "start", ())
    rounds = SqlCiRounds(world.engine)
    event = replace(news(FIXED, branch="vibe/issue-2-fast-ci"), pull_numbers=())
    assert loop_ci.observe(event, store, rounds, world.engine) == (
        f"ci: task {task.id} head ddddddd queued"
    )
    assert [j.serial_key for j in ci_jobs(world.engine)] == [f"repository:{REPO_ID}#2"]
    store.move(task.id, State.FAILED)  # iteration 1 failed before a PR: nothing to review
    later = loop_ci.observe(event, store, rounds, world.engine)
    assert later == "ignored: the task has no PR yet"


def test_a_pr_from_elsewhere_or_closed_is_not_reviewed(world: World) -> None:
    world.ci.checks[SHA] = (run("tests", "failure"),)
    world.ci.head = PullHead(SHA, False, True, True)
    assert world.review().startswith("ignored: the PR is closed or not on a branch")
    world.ci.head = PullHead(SHA, True, False, True)
    assert world.review().startswith("ignored: the PR is closed")
    assert world.fixes == []


def test_a_settle_review_runs_later_in_the_same_lane(world: World) -> None:
    payload = {"task_id": world.task.id, "settled": True}
    assert loop_ci.schedule_review(world.engine, payload, "lane#1", 30.0)
    assert not loop_ci.schedule_review(world.engine, payload, "lane#1", 30.0)
    assert loop_ci.schedule_review(world.engine, payload, "lane#2", 0.0)
    job = next(j for j in ci_jobs(world.engine) if j.serial_key == "lane#1")
    run_after = (
        job.run_after if job.run_after.tzinfo else job.run_after.replace(tzinfo=utcnow().tzinfo)
    )
    assert run_after - utcnow() > timedelta(seconds=25)


# ------------------------------------------------------------------------------ review


def test_an_incomplete_suite_waits_and_decides_nothing(world: World) -> None:
    world.ci.checks[SHA] = (run("lint"), run("tests", status="in_progress"))
    assert world.review() == "waiting: the suite of aaaaaaa is not complete"
    assert world.ci.calls == ["head_checks"]  # one read, nothing else asked
    assert SqlCiRounds(world.engine).rounds(world.task.id) == ()


def test_a_complete_suite_settles_first_then_decides_once(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 12}\n"
    world.ci.checks[SHA] = (run("lint"), run("tests", "failure", job_id=7))
    world.ci.logs[7] = "FAILED test_calc.py::test_add - assert -1 == 5\n"
    assert world.review(settled=False) == "settling: aaaaaaa is read again in 12 s"
    assert world.settles == [12.0]
    assert world.fixes == []
    assert world.review().startswith("ci: fix of aaaaaaa: iteration")
    assert world.review() == "ignored: CI of aaaaaaa is decided"  # a redelivery, a late event
    assert len(world.fixes) == 1
    feedback, key = world.fixes[0]
    assert key == f"ci:{SHA}"
    assert [f.kind for f in feedback] == ["execution"]
    assert "FAILED test_calc.py::test_add" in feedback[0].text
    (decided,) = SqlCiRounds(world.engine).rounds(world.task.id)
    assert decided.outcome == "fix"
    assert decided.signature == ("check:tests", "test:test_calc.py::test_add")
    log = world.hub.comments[(5, "ci")]
    assert "failing: `tests`" in log
    assert "fixed in iteration" in log
    assert "pushed ddddddd" in log


def test_a_fix_begun_by_a_crashed_job_is_resumed_with_its_feedback(world: World) -> None:
    world.ci.checks[SHA] = (run("tests", "failure"),)
    store = SqlTaskStore(world.engine)
    feedback = (Feedback("execution", "CI check run `tests` concluded failure."),)
    store.move(world.task.id, State.WORKING)
    store.begin_iteration(world.task.id, f"ci:{SHA}", "ci", feedback)  # then the crash
    SqlCiRounds(world.engine).record(world.task.id, Round(SHA, "fix", failing=("tests",)))
    assert world.review().startswith("ci: fix of aaaaaaa resumed")
    assert world.fixes == [(feedback, f"ci:{SHA}")]


def test_vibe_status_lists_the_ci_rounds(world: World) -> None:
    world.ci.checks[SHA] = (run("tests", "failure"),)
    world.review()
    world.push(FIXED)
    world.ci.checks[FIXED] = (run("tests"),)
    assert world.review() == "ci: ddddddd green"
    task = world.env.tasks.load(world.task.id)
    actions.status(world.env, task, key="comment:4", where=1)
    reply = world.hub.comments[(1, "reply")]
    rounds = reply.partition("**CI rounds:**\n")[2].partition("\n\n")[0].splitlines()
    assert rounds[0].startswith(
        "- `aaaaaaa`: failed; fixing · failing: `tests` · fixed in iteration"
    )
    assert rounds[1].startswith("- `ddddddd`: all checks passed · all 1 checks passed")
    assert len(rounds) == 2


def test_a_lint_failure_is_compiler_feedback(world: World) -> None:
    world.ci.checks[SHA] = (run("ruff", "failure"), run("tests"))
    world.review()
    assert [f.kind for f in world.fixes[0][0]] == ["compiler"]


def test_a_persons_commit_on_top_hands_the_pr_over(world: World) -> None:
    world.ci.head = PullHead(PERSON, True, True, True)
    world.ci.checks[SHA] = (run("tests", "failure"),)
    assert world.review().startswith("ignored: the PR's head is a commit the bot did not push")
    assert world.fixes == []
    assert "job_log_tail" not in world.ci.calls
    again = loop_ci.observe(news(), world.env.tasks, SqlCiRounds(world.engine), world.engine)
    assert again == "ignored: CI of aaaaaaa is decided"


def test_green_marks_the_draft_ready_and_asks_the_requester(world: World) -> None:
    world.ci.checks[SHA] = (run("lint"), run("tests"), run("vibe", status="in_progress"))
    assert world.review() == "ci: aaaaaaa green"
    assert world.ci.readied == [5]
    assert world.hub.reviews == [(5, "writer")]
    status = world.hub.comments[(1, "status")]
    assert "marked ready for review; review requested from @writer" in status
    assert "all 2 checks passed" in status


def test_green_waits_for_threads_the_bot_answered(world: World) -> None:
    world.ci.waiting = 2
    world.ci.checks[SHA] = (run("tests"),)
    world.review()
    assert world.ci.readied == []
    assert world.hub.reviews == []
    assert "2 review thread(s) wait for an answer" in world.hub.comments[(1, "status")]


def test_ready_when_never_leaves_the_draft(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0, ready_when: never}\n"
    world.ci.checks[SHA] = (run("tests"),)
    world.review()
    assert world.ci.readied == []
    assert "threads_waiting" not in world.ci.calls


def test_auto_fix_off_says_so_on_the_pr(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0, auto_fix: false}\n"
    world.ci.checks[SHA] = (run("tests", "failure"),)
    assert world.review() == "ci: aaaaaaa halted (off)"
    assert world.fixes == []
    reply = world.hub.comments[(5, "reply")]
    assert "automatic CI fixes are off" in reply
    assert "`/vibe fix-ci` asks for one more fix" in reply


def test_the_same_failure_after_a_fix_stops_with_the_evidence(world: World) -> None:
    world.ci.checks[SHA] = (run("tests", "failure", job_id=7),)
    world.ci.logs[7] = "FAILED t.py::test_add\n"
    world.review()
    world.push(FIXED)
    world.ci.checks[FIXED] = (run("tests", "failure", job_id=8),)
    world.ci.logs[8] = "FAILED t.py::test_add\n"
    assert world.review() == "ci: ddddddd halted (repeat)"
    assert len(world.fixes) == 1
    reply = world.hub.comments[(5, "reply")]
    assert "the same failure came back after the fix of aaaaaaa" in reply
    assert "test:t.py::test_add" in reply


def test_the_cap_then_fix_ci_asks_for_one_more(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0, max_fix_iterations: 1}\n"
    world.ci.checks[SHA] = (run("tests", "failure"),)
    world.review()
    world.push(FIXED)
    world.ci.checks[FIXED] = (run("lint", "failure"),)
    assert world.review() == "ci: ddddddd halted (cap)"
    assert len(world.fixes) == 1
    task = world.env.tasks.load(world.task.id)
    out = loop_ci.fix_on_request(world.env, task, key="comment:9", where=5)
    assert out.startswith("ci: fix of ddddddd: iteration")
    assert world.fixes[-1][1] == "comment:9"
    rounds = SqlCiRounds(world.engine).rounds(world.task.id)
    assert [(r.outcome, r.manual) for r in rounds] == [("fix", False), ("fix", True)]


def test_fix_ci_twice_on_the_same_head_fixes_once_and_says_why(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0, auto_fix: false}\n"
    world.ci.checks[SHA] = (run("tests", "failure"),)
    assert world.review() == "ci: aaaaaaa halted (off)"
    task = world.env.tasks.load(world.task.id)
    out = loop_ci.fix_on_request(world.env, task, key="comment:9", where=5)
    assert out.startswith("ci: fix of aaaaaaa: iteration")
    # the fix pushed nothing the store knows of: the head is still SHA, its CI unchanged
    task = world.env.tasks.load(world.task.id)
    again = loop_ci.fix_on_request(world.env, task, key="comment:10", where=5)
    assert again == "fix-ci: this head was fixed once"
    assert [key for _, key in world.fixes] == ["comment:9"]
    reply = world.hub.comments[(5, "reply")]
    assert "I already tried to fix the CI failure on aaaaaaa" in reply
    assert "when CI fails on a newer commit" in reply
    rounds = SqlCiRounds(world.engine).rounds(world.task.id)
    assert [(r.outcome, r.manual) for r in rounds] == [("fix", True)]


def test_fix_ci_on_a_green_head_says_there_is_nothing_to_fix(world: World) -> None:
    world.ci.checks[SHA] = (run("tests"),)
    task = world.env.tasks.load(world.task.id)
    assert loop_ci.fix_on_request(world.env, task, key="comment:3", where=5) == "fix-ci: green"
    assert "nothing to fix" in world.hub.comments[(5, "reply")]
    assert world.fixes == []


def test_a_failed_job_is_re_run_once_and_a_pass_is_flaky(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0, rerun_failed_jobs: true}\n"
    world.ci.checks[SHA] = (run("tests", "failure", job_id=7), run("lint"))
    assert world.review() == "ci: aaaaaaa re-run 1 job(s)"
    assert world.ci.reruns == [7]
    world.ci.checks[SHA] = (run("tests", job_id=9), run("lint"))
    assert world.review() == "ci: aaaaaaa green"
    assert world.fixes == []
    log = world.hub.comments[(5, "ci")]
    assert "flaky, not fixed (failed, then passed on re-run with no code change): tests" in log
    assert world.ci.reruns == [7]


def test_a_review_before_the_re_run_started_waits_for_it(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0, rerun_failed_jobs: true}\n"
    world.ci.checks[SHA] = (run("tests", "failure", job_id=7), run("lint", job_id=8))
    assert world.review() == "ci: aaaaaaa re-run 1 job(s)"
    # GitHub said 201; the re-run's new check run is not there yet: the old one is latest
    assert world.review() == "waiting: the re-run on aaaaaaa has not started"
    assert world.fixes == []
    world.ci.checks[SHA] = (run("tests", "failure", job_id=9), run("lint", job_id=8))
    assert world.review().startswith("ci: fix of aaaaaaa")
    assert world.ci.reruns == [7]
    assert [r.outcome for r in SqlCiRounds(world.engine).rounds(world.task.id)] == ["fix"]


def test_a_refused_re_run_decides_at_once(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0, rerun_failed_jobs: true}\n"
    world.ci.rerun_allowed = False  # the App has Actions: read only (GitHub answers 403)
    world.ci.checks[SHA] = (run("tests", "failure", job_id=7),)
    assert world.review().startswith("ci: fix of aaaaaaa")
    assert world.ci.reruns == [7]
    assert [r.outcome for r in SqlCiRounds(world.engine).rounds(world.task.id)] == ["fix"]


def test_the_bots_own_app_checks_do_not_count(world: World) -> None:
    own = replace(run("phases", status="in_progress"), app_slug="vibe-bot")
    world.ci.checks[SHA] = (own, run("tests"))
    assert world.review() == "ci: aaaaaaa green"


def test_a_spent_task_budget_stops_ci_fixes(world: World) -> None:
    world.hub.config = "ci: {settle_seconds: 0}\nlimits: {dollars_per_task: 0.5}\n"
    SqlTaskStore(world.engine).add_usage(world.task.id, Usage(10, 10, 0.75))
    world.task = world.env.tasks.load(world.task.id)
    world.ci.checks[SHA] = (run("tests", "failure"),)
    assert world.review() == "ci: aaaaaaa halted (budget)"
    assert "dollar limit ($0.5)" in world.hub.comments[(5, "reply")]


# ------------------------------------------------------------------------------ routing


@dataclass
class Routed:
    """The parts of the wiring the routing of CI events uses."""

    engine: Engine
    runs: list[int] = field(default_factory=list)
    claims: bool = False

    def tasks(self, job: EventJob) -> TaskStore:
        return SqlTaskStore(self.engine)

    def follow_run(self, job: EventJob, run: ev.WorkflowRun) -> str:
        self.runs.append(run.run_id)
        return "workflow_run: task 1" if self.claims else "ignored: a run of no task"


def _event_job(world: World, name: str, payload: dict[str, Any]) -> EventJob:
    return EventJob(name, payload, "d-1", 1, 1, threading.Event(), world.env.settings, world.engine)


def _run_payload(title: str) -> dict[str, Any]:
    return {
        "action": "completed",
        "workflow_run": {
            "id": 77,
            "status": "completed",
            "conclusion": "failure",
            "display_title": title,
            "head_sha": SHA,
            "head_branch": BRANCH,
            "head_repository": {"full_name": REPO},
        },
        "repository": {"id": REPO_ID, "full_name": REPO, "owner": {"login": "acme"}},
    }


def test_a_completed_workflow_run_of_ci_queues_a_review(world: World) -> None:
    wiring = Routed(world.engine)
    result = handle(_event_job(world, "workflow_run", _run_payload("CI")), cast(Any, wiring))
    assert result == f"ci: task {world.task.id} head aaaaaaa queued"
    assert wiring.runs == [77]  # the executor saw it first, and did not claim it


def test_the_bots_own_runner_workflow_is_not_ci_feedback(world: World) -> None:
    wiring = Routed(world.engine, claims=True)
    result = handle(
        _event_job(world, "workflow_run", _run_payload("vibe task 1")), cast(Any, wiring)
    )
    assert result == "workflow_run: task 1"
    assert ci_jobs(world.engine) == []


def test_a_ci_job_without_a_task_is_ignored(world: World) -> None:
    job = _event_job(world, loop_ci.CI_JOB, {"task_id": "1", "repository": REPO})
    assert handle_ci(job, cast(Any, Routed(world.engine))) == "ignored: a ci job without a task"
