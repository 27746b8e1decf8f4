"""The repository's CI as feedback, end to end, for the cases around the happy path: a fork's
pull request, a flaky check and an always failing one with re-runs allowed, job logs past
their retention (410), and ``/vibe fix-ci`` when automatic fixes are off.

Its own stage: the App has ``actions: write`` (a job re-run needs it), the other CI tests
run with the manifest's ``actions: read``."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator

import pytest
from sqlmodel import Session, col, select

from bot.entrypoints.demo import CALC, WRITER, Stage, docstring, finish, fix_add, stage, wait_for
from bot.loop.ci import CI_JOB
from bot.store.engine import make_engine
from bot.store.tables import Job
from bot.testing.fake_github.ci import CiJob
from bot.testing.fake_github.server import DEFAULT_APP_PERMISSIONS
from tests.conftest import require
from tests.e2e.conftest import Bot
from tests.e2e.test_ci_feedback import bot_says, ci_log, iterations, make_repo, rounds, start

pytestmark = pytest.mark.slow

RERUN = "POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun"
LOGS = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs"
# Passes once calc.py adds; says where it fails as an annotation (a problem-matcher line).
ADDS = [
    "sh",
    "-c",
    "grep -q 'return a + b' calc.py || { echo 'calc.py:2: error: add() subtracts'; exit 1; }",
]


@pytest.fixture(scope="module")
def st(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")
    root = tmp_path_factory.mktemp("e2e-ci")
    with stage(root, permissions={**DEFAULT_APP_PERMISSIONS, "actions": "write"}) as world:
        bot = Bot(world, root / "bot.log")
        bot.start()
        try:
            yield world
        finally:
            bot.stop()


def idle(st: Stage) -> bool:
    """No event or ci job of the bot is waiting or running."""
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        with Session(engine) as session:
            busy = session.exec(
                select(Job).where(
                    col(Job.kind).in_(["event", CI_JOB]),
                    col(Job.status).in_(["queued", "running"]),
                )
            ).first()
    finally:
        engine.dispose()
    return busy is None


def ci_jobs(st: Stage) -> int:
    engine = make_engine(f"sqlite:///{st.data_dir / 'vibe.db'}")
    try:
        with Session(engine) as session:
            return len(session.exec(select(Job.id).where(col(Job.kind) == CI_JOB)).all())
    finally:
        engine.dispose()


def prompts_since(st: Stage, first: int) -> str:
    return "\n".join(json.dumps(r.body) for r in st.model.message_requests[first:])


def test_a_fork_prs_failing_ci_gets_nothing_from_the_bot(st: Stage) -> None:
    fails_in_fork = ["sh", "-c", "! grep -q FORK calc.py || { echo 'calc.py:1: bad'; exit 1; }"]
    repo = make_repo(st, "ci-fork", "{settle_seconds: 0.3}", [CiJob("tests", fails_in_fork)])
    st.model.add(docstring())
    number, pr = start(st, repo, "Document add() near a fork")
    wait_for(lambda: [r.outcome for r in rounds(st, repo, number)] == ["green"], "green", 90)
    wait_for(lambda: idle(st), "the bot idle", 60)
    branch = st.fake.issue(repo, pr).pull.head_ref  # type: ignore[union-attr]
    before = (len(st.fake.requests), len(st.model.message_requests), ci_jobs(st))
    hooks = len(st.fake.deliveries)

    # mallory's fork, on a branch named like the bot's, with a commit that fails CI
    fork = st.fake.fork(repo, "mallory")
    st.fake.commit(fork.full_name, branch, {"calc.py": CALC + "# FORK\n"}, "Mine", author="mallory")
    theirs = st.fake.open_pull(repo, "mallory", f"mallory:{branch}", "A fork's change")
    st.fake.ci.wait(60)
    head = st.fake.issue(repo, theirs).pull.head_sha  # type: ignore[union-attr]
    suites = [s for s in st.fake.ci.suites.values() if s.head_sha == head]
    assert [(s.app.slug, s.conclusion) for s in suites if s.app.slug == "github-actions"] == [
        ("github-actions", "failure")
    ]
    sent = [d for d in st.fake.deliveries[hooks:] if d.event in ("check_suite", "check_run")]
    assert sent
    assert all(d.status is not None and d.status < 300 for d in sent)  # the bot got them
    assert all(
        (d.payload.get("check_suite") or d.payload.get("check_run") or {}).get("pull_requests")
        == []
        for d in sent
    )
    wait_for(lambda: idle(st), "the bot handled the fork's CI news", 60)
    # Why each piece of news was dropped: a suite or run of a fork's head names no branch
    # (so no task's), a workflow run names the fork as its head repository.
    log = (st.data_dir.parent / "bot.log").read_text()
    why = {}
    for d in st.fake.deliveries[hooks:]:
        if d.payload.get("action") == "completed":
            line = next(
                x for x in log.splitlines() if "event.handled" in x and f"delivery={d.id}" in x
            )
            said = re.search(r"result=(\"[^\"]*\"|'[^']*')", line)
            assert said is not None
            why[d.event] = said[1][1:-1]
    assert why == {
        "check_run": "ignored: CI of no task's branch",
        "check_suite": "ignored: CI of no task's branch",
        "workflow_run": "ignored: CI of a fork's commit",
    }

    writes = [
        r.key
        for r in st.fake.requests[before[0] :]
        if (r.git and "receive-pack" in r.path) or (not r.git and r.method != "GET")
    ]
    assert [w for w in writes if "access_tokens" not in w] == []  # no comment, push, mark
    assert (len(st.model.message_requests), ci_jobs(st)) == before[1:]  # no run, no review
    assert not bot_says(st, repo, theirs, "")
    assert [r.outcome for r in rounds(st, repo, number)] == ["green"]
    assert iterations(st, repo, number) == [("start", "succeeded")]


def test_a_flaky_check_is_re_run_and_reported_not_fixed(st: Stage) -> None:
    config = "{settle_seconds: 0.3, rerun_failed_jobs: true}"
    repo = make_repo(st, "ci-flaky", config, [CiJob("tests", ["true"], fault="flaky")])
    st.model.add(docstring())
    since = len(st.fake.requests)
    number, pr = start(st, repo, "Document add() with a flaky CI")
    wait_for(lambda: not st.fake.issue(repo, pr).pull.draft, "ready for review", 90)  # type: ignore[union-attr]
    wait_for(lambda: "flaky, not fixed" in ci_log(st, repo, pr), "the flaky note", 30)
    log = ci_log(st, repo, pr)
    assert "re-running 1 failed job(s) once before deciding" not in log  # the round moved on
    assert "flaky, not fixed (failed, then passed on re-run with no code change): tests" in log
    (decided,) = rounds(st, repo, number)
    assert (decided.outcome, decided.failing) == ("green", ("tests",))
    assert st.fake.request_counts(since)[RERUN] == 1
    runs = [r for r in st.fake.ci.runs.values() if r.repo == repo]
    assert [r.attempt for r in runs] == [2]
    assert iterations(st, repo, number) == [("start", "succeeded")]


def test_an_always_failing_check_is_re_run_once_then_fixed_once(st: Stage) -> None:
    config = "{settle_seconds: 0.3, rerun_failed_jobs: true}"
    repo = make_repo(st, "ci-always", config, [CiJob("tests", ["true"], fault="always_fails")])
    st.model.add(docstring())
    st.model.add(fix_add())
    since = len(st.fake.requests)
    number, pr = start(st, repo, "Document add() with a broken CI")
    wait_for(lambda: bot_says(st, repo, pr, "I am not fixing it automatically"), "the stop", 120)
    reply = bot_says(st, repo, pr, "I am not fixing it automatically")[0]
    assert "the same failure came back after the fix of" in reply
    assert [r.outcome for r in rounds(st, repo, number)] == ["fix", "halt"]
    assert iterations(st, repo, number) == [("start", "succeeded"), ("ci", "succeeded")]
    # one re-run per head: the bot's first commit, then the fix's
    runs = [r for r in st.fake.ci.runs.values() if r.repo == repo]
    assert len({r.head_sha for r in runs}) == 2
    assert [r.attempt for r in runs] == [2, 2]
    assert st.fake.request_counts(since)[RERUN] == 2


def test_a_log_past_its_retention_still_gives_a_fix_with_the_annotations(st: Stage) -> None:
    repo = make_repo(
        st, "ci-gone", "{settle_seconds: 0.3}", [CiJob("tests", ADDS, fault="logs_gone")]
    )
    st.model.add(docstring())
    st.model.add(fix_add())
    first = len(st.model.message_requests)
    since = len(st.fake.requests)
    number, pr = start(st, repo, "Document add() with old logs")
    wait_for(lambda: not st.fake.issue(repo, pr).pull.draft, "ready for review", 120)  # type: ignore[union-attr]
    wait_for(lambda: len(rounds(st, repo, number)) == 2, "the green round", 30)
    assert iterations(st, repo, number) == [("start", "succeeded"), ("ci", "succeeded")]
    assert [r.outcome for r in rounds(st, repo, number)] == ["fix", "green"]
    gone = [r for r in st.fake.requests[since:] if r.key == LOGS]
    assert gone
    assert {r.status for r in gone} == {410}
    said = prompts_since(st, first)
    assert "CI check run `tests` concluded failure." in said
    assert "calc.py:2 [failure] add() subtracts" in said
    assert "The job's log is not available." in said


def test_fix_ci_with_auto_fix_off_fixes_once_per_head(st: Stage) -> None:
    repo = make_repo(
        st, "ci-manual", "{settle_seconds: 0.3, auto_fix: false}", [CiJob("tests", ADDS)]
    )
    st.model.add(docstring())
    number, pr = start(st, repo, "Document add() by hand")
    wait_for(lambda: bot_says(st, repo, pr, "automatic CI fixes are off"), "the halt", 90)
    assert iterations(st, repo, number) == [("start", "succeeded")]
    assert [(r.outcome, r.manual) for r in rounds(st, repo, number)] == [("halt", False)]

    st.model.add(finish("I could not find the cause."))  # a fix that changes nothing
    st.fake.comment(repo, pr, WRITER, "/vibe fix-ci")
    wait_for(lambda: len(iterations(st, repo, number)) == 2, "the asked-for fix", 90)
    wait_for(lambda: iterations(st, repo, number)[1][1] != "running", "its end", 90)
    wait_for(lambda: idle(st), "the bot idle", 60)
    assert iterations(st, repo, number)[1][0] == "ci"
    assert [(r.outcome, r.manual) for r in rounds(st, repo, number)] == [("fix", True)]
    used = len(st.model.message_requests)

    st.fake.comment(repo, pr, WRITER, "/vibe fix-ci")
    wait_for(
        lambda: bot_says(st, repo, pr, "I already tried to fix the CI failure on"),
        "the reply to the second command",
        60,
    )
    reply = bot_says(st, repo, pr, "I already tried to fix the CI failure on")[0]
    assert "when CI fails on a newer commit" in reply
    wait_for(lambda: idle(st), "the bot idle", 60)
    assert len(iterations(st, repo, number)) == 2
    assert len(st.model.message_requests) == used
    assert [(r.outcome, r.manual) for r in rounds(st, repo, number)] == [("fix", True)]

    st.fake.comment(repo, pr, WRITER, "/vibe status")
    wait_for(lambda: bot_says(st, repo, pr, "**CI rounds:**"), "the status reply", 60)
    status = bot_says(st, repo, pr, "**CI rounds:**")[0]
    assert "failed; fixing (asked with `/vibe fix-ci`) · failing: `tests`" in status
