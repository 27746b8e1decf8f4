"""The job boundary of ``bot/bootstrap.py``: each layer's error, raised in a job run by the
worker pool that bootstrap builds, ends as retry-at, dead or done on the job's row."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from structlog.testing import capture_logs

from bot.bootstrap import GitHubSetup, build_queue, build_worker, event_job
from bot.core.errors import Declined
from bot.core.policy import AllowList
from bot.entrypoints import demo
from bot.github import GitHub, RetrySettings, StaticToken
from bot.github.retry import GitHubUnavailable
from bot.jobs.queue import JobContext, enqueue
from bot.loop.errors import AgentUnavailable, Interrupted
from bot.loop.handlers import EventJob
from bot.settings import Settings
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import Delivery, Job, JobRun
from bot.testing.fake_github import FakeClock, FakeGitHub
from tests.github.conftest import app_key

REPO = "acme/widgets"
HOUR = 3600.0


@dataclass
class World:
    fake: FakeGitHub
    hub: GitHub
    clock: FakeClock


@pytest.fixture
def world() -> Iterator[World]:
    clock = FakeClock()  # shared: the adapter's waits and the fake's reset times agree
    with FakeGitHub(clock=clock) as fake:
        fake.create_repo(REPO, {"README.md": "# widgets\n"}, collaborators={"alice": "write"})
        hub = GitHub(
            StaticToken(fake.user_token("alice")),
            api_url=fake.api_url,
            bot_login="alice",
            clock=clock,
            retry=RetrySettings(min_write_interval=0.0),
        )
        yield World(fake, hub, clock)
        hub.close()


def rate_limited(world: World) -> None:
    reset = int(world.clock.now() + 3 * HOUR)
    world.fake.inject("GET", "/repos/{owner}/{repo}", "primary_rate_limit", reset_at=reset)
    world.hub.repo(REPO).default_branch()


def secondary_limit(world: World) -> None:
    # Longer than the adapter may sleep inside a job: handed to the queue.
    world.fake.inject(
        "GET", "/repos/{owner}/{repo}", "secondary_rate_limit", retry_after=int(2 * HOUR)
    )
    world.hub.repo(REPO).default_branch()


def bad_gateway(world: World) -> None:
    world.fake.inject("GET", "/repos/{owner}/{repo}", "502", times=10)
    world.hub.repo(REPO).default_branch()


def not_found(world: World) -> None:
    world.hub.repo("acme/no-such-repo").default_branch()


def validation_failed(world: World) -> None:
    world.hub.repo(REPO).find_or_create_pull("vibe/no-such-branch", "main", "t", "b")


def forbidden(world: World) -> None:
    reader = GitHub(
        StaticToken(world.fake.user_token("rita")),  # read access only
        api_url=world.fake.api_url,
        clock=world.clock,
        retry=RetrySettings(min_write_interval=0.0),
    )
    number = world.fake.open_issue(REPO, "alice", "t")
    try:
        reader.repo(REPO).add_labels(number, ["x"])
    finally:
        reader.close()


def model_overloaded(world: World) -> None:
    raise AgentUnavailable("the model API is overloaded", retry_at=world.clock.now() + 600)


def model_down(_world: World) -> None:
    raise AgentUnavailable("the model API answered 500")


def interrupted(_world: World) -> None:
    raise Interrupted("interrupted: the worker stopped or lost its lease")


def declined(_world: World) -> None:
    raise Declined("there is no plan to approve")


def broken(_world: World) -> None:
    raise RuntimeError("a bug")


def fine(world: World) -> None:
    world.hub.repo(REPO).default_branch()


@dataclass(frozen=True)
class Case:
    """A handler failing one way, and what its job's row shows after that one run."""

    fail: Callable[[World], None]
    status: str  # queued (a retry), dead or done
    error: str | None = None  # how last_error starts
    # when the cause said to come back (epoch seconds, from the world's clock before the
    # run); None: no time named, the queue's backoff decides
    at: Callable[[float], float] | None = None


CASES: dict[str, Case] = {
    "github_rate_limit_reset": Case(
        rate_limited, "queued", "GitHubUnavailable", at=lambda now: int(now + 3 * HOUR) + 1.0
    ),
    "github_secondary_retry_after": Case(
        secondary_limit, "queued", "GitHubUnavailable", at=lambda now: now + 2 * HOUR
    ),
    "github_502": Case(
        bad_gateway, "queued", "GitHubUnavailable: read the repository: GitHub answered 502"
    ),
    "github_404": Case(not_found, "dead", "GitHubRequestError: GitHub answered 404"),
    "github_422": Case(validation_failed, "dead", "GitHubRequestError: GitHub answered 422"),
    "github_403": Case(forbidden, "dead", "GitHubRequestError: GitHub answered 403"),
    "model_retry_after": Case(
        model_overloaded, "queued", "AgentUnavailable", at=lambda now: now + 600
    ),
    "model_unavailable": Case(model_down, "queued", "AgentUnavailable: the model API"),
    "loop_interrupted": Case(interrupted, "queued", "Interrupted: interrupted"),
    "loop_declined": Case(declined, "dead", "Declined: there is no plan to approve"),
    "unclassified": Case(broken, "queued", "RuntimeError: a bug"),
    "returned": Case(fine, "done"),
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    init_db(eng)
    yield eng
    eng.dispose()


def run_once(
    engine: Engine, tmp_path: Path, kind: str, handler: Callable[[JobContext], None], job_id: int
) -> tuple[Job, list[str | None]]:
    """Run the worker pool bootstrap builds until job ``job_id`` has ended one run; the job
    row and the outcomes of its runs."""
    settings = Settings(data_dir=tmp_path / "data", heartbeat_seconds=0.05, max_attempts=5)
    pool = build_worker(settings, build_queue(settings, engine), handlers={kind: handler})
    pool.poll_interval = 0.02
    pool.start()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            with Session(engine) as session:
                ended = session.exec(
                    select(JobRun).where(JobRun.job_id == job_id, col(JobRun.outcome).is_not(None))
                ).first()
            if ended is not None:
                break
            time.sleep(0.02)
    finally:
        pool.stop(grace=5)
    with Session(engine) as session:
        job = session.get(Job, job_id)
        runs = session.exec(select(JobRun).where(JobRun.job_id == job_id)).all()
        assert job is not None
        return job, [r.outcome for r in runs]


def epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


@pytest.mark.parametrize("name", list(CASES))
def test_each_error_kind_ends_its_job_as_retry_at_dead_or_done(
    name: str, world: World, engine: Engine, tmp_path: Path
) -> None:
    case = CASES[name]
    with write_transaction(engine) as conn:
        job_id = enqueue(conn, name, {}, max_attempts=5)
    now = world.clock.now()
    before = time.time()
    job, outcomes = run_once(engine, tmp_path, name, lambda _ctx: case.fail(world), job_id)
    assert (job.status, job.attempts) == (case.status, 1)
    assert outcomes == [{"queued": "retry"}.get(case.status, case.status)]
    if case.error is None:
        assert job.last_error is None
    else:
        assert job.last_error is not None
        assert job.last_error.startswith(case.error), job.last_error
    if case.status != "queued":
        assert job.finished_at is not None
    elif case.at is not None:
        # the time the cause named is honoured, not the queue's seconds of backoff
        assert epoch(job.run_after) == pytest.approx(case.at(now), abs=1.5)
    else:
        # no time named: the queue's backoff (5 s, with jitter) decides
        assert before < epoch(job.run_after) < time.time() + 10


def test_a_retry_on_the_last_attempt_ends_the_job_dead(engine: Engine, tmp_path: Path) -> None:
    with write_transaction(engine) as conn:
        job_id = enqueue(conn, "limited", {}, max_attempts=1)

    def limited(_ctx: JobContext) -> None:
        raise AgentUnavailable("the model API is overloaded", retry_at=time.time() + 600)

    job, outcomes = run_once(engine, tmp_path, "limited", limited, job_id)
    assert (job.status, job.attempts, outcomes) == ("dead", 1, ["dead"])
    assert job.last_error == "AgentUnavailable: the model API is overloaded"


def test_the_event_job_hands_its_stored_delivery_to_the_loop(
    engine: Engine, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with Session(engine) as session:
        session.add(
            Delivery(id="d-1", event="issues", action="opened", outcome="queued", payload={"n": 1})
        )
        session.commit()
    with write_transaction(engine) as conn:
        stored = enqueue(conn, "event", {}, delivery_id="d-1")
        missing = enqueue(conn, "event", {})
    seen: list[EventJob] = []
    handler = event_job(lambda: settings, engine, seen.append)
    job, outcomes = run_once(engine, tmp_path, "event", handler, stored)
    assert (job.status, outcomes) == ("done", ["done"])
    [got] = seen
    assert (got.event_name, got.event_payload, got.delivery_id, got.job_id, got.attempt) == (
        "issues",
        {"n": 1},
        "d-1",
        stored,
        1,
    )
    job, outcomes = run_once(engine, tmp_path, "event", handler, missing)
    assert (job.status, job.attempts, outcomes) == ("dead", 1, ["dead"])
    assert job.last_error == "UnknownDelivery: the job has no stored delivery (none named)"
    assert len(seen) == 1


# ------------------------------------------------------- who the bot is, whom it serves


def app_settings(fake: FakeGitHub, tmp_path: Path, **extra: object) -> Settings:
    creds = fake.create_app("my-vibe", owner="octo-org", private_key_pem=app_key())
    return Settings(
        data_dir=tmp_path / "data",
        github_api_url=fake.api_url,
        github_app_id=creds.app_id,
        github_private_key=creds.private_key_pem,
        **extra,  # type: ignore[arg-type]
    )


def test_the_bots_login_and_allow_list_come_from_get_app(world: World, tmp_path: Path) -> None:
    job_settings = GitHubSetup(app_settings(world.fake, tmp_path)).identified()
    bot = job_settings.bot_identity()
    assert bot.login == "my-vibe[bot]"
    assert bot.allowed == AllowList(owners=frozenset({"octo-org"}))


def test_vibe_bot_login_and_an_allow_list_still_win(world: World, tmp_path: Path) -> None:
    settings = app_settings(
        world.fake, tmp_path, bot_login="other[bot]", allowed_repositories=["acme/widgets"]
    )
    bot = GitHubSetup(settings).identified().bot_identity()
    assert bot.login == "other[bot]"
    assert bot.allowed == AllowList(repositories=frozenset({"acme/widgets"}))


def test_with_a_token_the_bot_is_the_tokens_user(world: World, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        github_api_url=world.fake.api_url,
        github_token=world.fake.user_token("rita"),
    )
    bot = GitHubSetup(settings).identified().bot_identity()
    assert (bot.login, bot.allowed) == ("rita", AllowList(owners=frozenset({"rita"})))


def test_without_githubs_answer_a_job_waits_rather_than_guess_the_login(
    world: World, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        github_api_url=world.fake.api_url,
        github_token="ghp_" + "x" * 36,
    )
    with pytest.raises(GitHubUnavailable, match="GitHub did not say who the bot is"):
        GitHubSetup(settings).identified()


def test_a_strangers_delivery_is_stored_and_refused_without_work(tmp_path: Path) -> None:
    """A public App installed by a stranger: the stranger's /vibe arrives through the real
    webhook path, is stored (202) and its job ends done with one log line, no GitHub write,
    no installation token for the stranger's repository and no model request."""
    stranger = "mallory/widgets"
    with demo.stage(tmp_path) as st:
        st.fake.create_repo(stranger, {"README.md": "# mine\n"}, collaborators={"mallory": "admin"})
        st.fake.install_app("mallory")
        settings = st.settings()
        engine = make_engine(settings.effective_database_url)
        with capture_logs() as logs, demo.service(settings, st.port):
            number = st.fake.open_issue(stranger, "mallory", "Widgets", "please")
            st.fake.comment(stranger, number, "mallory", "/vibe add a widget")

            def finished() -> list[Job]:
                with Session(engine) as session:
                    jobs = session.exec(select(Job).where(Job.kind == "event")).all()
                done = len(jobs) == 2 and all(j.status == "done" for j in jobs)
                return list(jobs) if done else []

            jobs = demo.wait_for(finished, "both jobs done")
        with Session(engine) as session:
            deliveries = session.exec(select(Delivery)).all()
        engine.dispose()
        assert sorted(d.event for d in deliveries) == ["issue_comment", "issues"]
        assert {j.delivery_id for j in jobs} == {d.id for d in deliveries}
        assert [c.user for c in st.fake.comments(stranger, number)] == ["mallory"]
        assert st.model.message_requests == []
        # Nothing read or written on the stranger's repository, no token asked for it.
        asked = {r.template for r in st.fake.responses}
        assert not [t for t in asked if t.startswith("/repos") or "access_tokens" in t], asked
        refusals = [e for e in logs if "not an allowed owner" in str(e)]
        assert len(refusals) == 2  # one line per delivery
        assert {e["delivery"] for e in refusals} == {d.id for d in deliveries}
