"""The job queue and worker pool on real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.jobs.queue import (
    Dead,
    Done,
    JobContext,
    NewJob,
    Queue,
    Retry,
    Verdict,
    Worker,
    describe,
    enqueue,
    enqueue_many,
    requeue_dead,
)
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import Delivery, Job, JobRun, utcnow


@dataclass
class Clock:
    # A second ahead, so jobs enqueued with the real clock just after are already due.
    now: datetime = field(default_factory=lambda: utcnow() + timedelta(seconds=1))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    init_db(eng)
    yield eng
    eng.dispose()


def add(engine: Engine, kind: str = "k", key: str | None = None, **payload: object) -> int:
    with write_transaction(engine) as conn:
        return enqueue(conn, kind, payload, serial_key=key, max_attempts=3)


def job(engine: Engine, job_id: int) -> Job:
    with Session(engine) as session:
        found = session.get(Job, job_id)
        assert found is not None
        return found


def runs(engine: Engine, job_id: int) -> list[JobRun]:
    with Session(engine) as session:
        return list(session.exec(select(JobRun).where(JobRun.job_id == job_id)))


def test_claim_complete_and_only_known_kinds(engine: Engine) -> None:
    q = Queue(engine)
    other = add(engine, kind="other")
    mine = add(engine, kind="k", n=1)
    claimed = q.claim("w1", ["k"])
    assert claimed is not None
    assert (claimed.id, claimed.payload, claimed.attempt) == (mine, {"n": 1}, 1)
    assert q.claim("w1", ["k"]) is None
    assert q.settle(mine, "w1", 1, Done()) == "done"
    assert job(engine, mine).status == "done"
    assert job(engine, other).status == "queued"
    assert [r.outcome for r in runs(engine, mine)] == ["done"]


def test_lapsed_lease_is_claimed_again_and_old_owner_loses(engine: Engine) -> None:
    clock = Clock()
    q = Queue(engine, lease_seconds=10, clock=clock)
    job_id = add(engine)
    first = q.claim("w1", ["k"])
    assert first is not None
    assert q.claim("w2", ["k"]) is None
    clock.advance(5)
    assert q.heartbeat(job_id, "w1")
    clock.advance(9)
    assert q.claim("w2", ["k"]) is None  # the heartbeat extended the lease
    clock.advance(2)
    second = q.claim("w2", ["k"])
    assert second is not None
    assert second.attempt == 2
    assert not q.heartbeat(job_id, "w1")
    assert q.settle(job_id, "w1", 1, Done()) == "lost"
    assert q.settle(job_id, "w2", 2, Done()) == "done"
    assert job(engine, job_id).status == "done"
    assert [r.outcome for r in sorted(runs(engine, job_id), key=lambda r: r.attempt)] == [
        "lost",
        "done",
    ]


def test_a_job_whose_worker_dies_on_every_attempt_ends_dead(engine: Engine) -> None:
    clock = Clock()
    q = Queue(engine, lease_seconds=10, clock=clock)
    job_id = add(engine)  # max_attempts=3
    for attempt in (1, 2, 3):
        claimed = q.claim(f"w{attempt}", ["k"])
        assert claimed is not None
        assert claimed.attempt == attempt
        clock.advance(11)  # the worker was killed: no heartbeat, no outcome
    assert q.claim("w4", ["k"]) is None
    dead = job(engine, job_id)
    assert (dead.status, dead.attempts, dead.lease_owner) == ("dead", 3, None)
    assert dead.last_error is not None
    assert "stopped without an outcome on all 3 attempts" in dead.last_error
    last = max(runs(engine, job_id), key=lambda r: r.attempt)
    assert (last.attempt, last.outcome) == (3, "lost")


def test_failures_back_off_then_die_with_redacted_error(engine: Engine) -> None:
    clock = Clock()
    q = Queue(engine, retry_base_seconds=10, clock=clock, secrets=["hunter2-secret-value"])
    job_id = add(engine)
    token = "ghp_" + "a" * 36
    for attempt in (1, 2):
        claimed = q.claim("w", ["k"])
        assert claimed is not None
        assert claimed.attempt == attempt
        status = q.settle(job_id, "w", attempt, Retry(f"boom {token} hunter2-secret-value"))
        assert status == "queued"
        assert q.claim("w", ["k"]) is None  # backing off
        clock.advance(10 * 2**attempt)
    claimed = q.claim("w", ["k"])
    assert claimed is not None
    assert q.settle(job_id, "w", 3, Retry("final")) == "dead"
    dead = job(engine, job_id)
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", 3, "final")
    errors = [r.error or "" for r in runs(engine, job_id)]
    assert all(token not in e and "hunter2" not in e for e in errors)
    assert any("[redacted]" in e for e in errors)


def test_same_serial_key_waits_in_order_other_keys_do_not(engine: Engine) -> None:
    q = Queue(engine)
    a1 = add(engine, key="o/r#1")
    a2 = add(engine, key="o/r#1")
    b1 = add(engine, key="o/r#2")
    first = q.claim("w", ["k"])
    second = q.claim("w", ["k"])
    assert (first and first.id, second and second.id) == (a1, b1)
    assert q.claim("w", ["k"]) is None
    assert q.settle(a1, "w", 1, Done()) == "done"
    third = q.claim("w", ["k"])
    assert third is not None
    assert third.id == a2


def test_a_long_lane_does_not_starve_other_lanes(engine: Engine) -> None:
    q = Queue(engine)
    add(engine, key="o/r#1")
    assert q.claim("w1", ["k"]) is not None  # a long task runs on o/r#1
    for _ in range(40):  # comments pile up behind it
        add(engine, key="o/r#1")
    other = add(engine, key="o/r#2")
    unkeyed = add(engine)
    first = q.claim("w2", ["k"])
    second = q.claim("w3", ["k"])
    assert first is not None
    assert second is not None
    assert [first.id, second.id] == [other, unkeyed]
    assert q.claim("w4", ["k"]) is None


def test_worker_pool_never_runs_one_key_twice_at_once(engine: Engine) -> None:
    keys = [f"o/r#{n % 4}" for n in range(24)]
    ids = [add(engine, key=key, key_name=key) for key in keys]
    active: dict[str, int] = {}
    overlaps: list[str] = []
    seen: list[int] = []
    lock = threading.Lock()

    def handler(ctx: JobContext) -> None:
        key = str(ctx.payload["key_name"])
        with lock:
            active[key] = active.get(key, 0) + 1
            if active[key] > 1:
                overlaps.append(key)
            seen.append(ctx.job_id)
        time.sleep(0.01)
        with lock:
            active[key] -= 1

    pools = [
        Worker(Queue(engine), {"k": handler}, heartbeat_seconds=0.05, concurrency=3, name=f"p{i}")
        for i in range(2)
    ]
    for pool in pools:
        pool.start()
    deadline = time.monotonic() + 60
    while len(seen) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pool in pools:
        pool.stop(grace=5)
    assert overlaps == []
    assert sorted(seen) == sorted(ids)
    assert {job(engine, i).status for i in ids} == {"done"}


class Hopeless(Exception):
    """An error the test's judge calls hopeless."""


class Finished(Exception):
    """An error the test's judge says leaves nothing to do."""


class Limited(Exception):
    def __init__(self, reset: datetime) -> None:
        super().__init__("rate limited")
        self.reset = reset


def judge(exc: Exception) -> Verdict:
    """A job boundary for the tests: each kind of error to its verdict."""
    match exc:
        case Hopeless():
            return Dead(str(exc))
        case Finished():
            return Done()
        case Limited(reset=reset):
            return Retry(describe(exc), at=reset)
    return Retry(describe(exc))


def test_the_judge_decides_dead_at_once_done_or_retry(engine: Engine) -> None:
    hopeless = add(engine, kind="hopeless")
    finished = add(engine, kind="finished")
    flaky = add(engine, kind="flaky")
    calls: list[str] = []

    def perm(_ctx: JobContext) -> None:
        calls.append("hopeless")
        raise Hopeless("cannot succeed: 422 Validation Failed")

    def nothing_left(_ctx: JobContext) -> None:
        calls.append("finished")
        raise Finished("the task ended meanwhile")

    def fails_once(ctx: JobContext) -> None:
        calls.append(f"flaky{ctx.attempt}")
        if ctx.attempt == 1:
            raise RuntimeError("transient")

    queue = Queue(engine, retry_base_seconds=0.01)
    pool = Worker(
        queue,
        {"hopeless": perm, "finished": nothing_left, "flaky": fails_once},
        judge=judge,
        heartbeat_seconds=0.05,
        poll_interval=0.02,
    )
    pool.start()
    deadline = time.monotonic() + 20
    while job(engine, flaky).status != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    pool.stop(grace=5)
    dead = job(engine, hopeless)
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert dead.last_error == "cannot succeed: 422 Validation Failed"
    assert (job(engine, finished).status, job(engine, finished).attempts) == ("done", 1)
    assert job(engine, flaky).status == "done"
    assert [r.outcome for r in runs(engine, flaky)] == ["retry", "done"]
    assert calls.count("hopeless") == 1
    assert calls.count("finished") == 1
    assert "flaky1" in calls
    assert "flaky2" in calls


def test_without_a_judge_every_failure_is_retried_until_spent(engine: Engine) -> None:
    job_id = add(engine, kind="broken")  # max_attempts=3

    def broken(ctx: JobContext) -> None:
        raise Hopeless(f"attempt {ctx.attempt}")

    pool = Worker(
        Queue(engine, retry_base_seconds=0.01),
        {"broken": broken},
        heartbeat_seconds=0.05,
        poll_interval=0.02,
    )
    pool.start()
    deadline = time.monotonic() + 20
    while job(engine, job_id).status != "dead" and time.monotonic() < deadline:
        time.sleep(0.05)
    pool.stop(grace=5)
    dead = job(engine, job_id)
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", 3, "Hopeless: attempt 3")
    outcomes = [r.outcome for r in sorted(runs(engine, job_id), key=lambda r: r.attempt)]
    assert outcomes == ["retry", "retry", "dead"]


def test_a_retry_waits_until_the_time_the_cause_named(engine: Engine) -> None:
    """A rate limit that resets in an hour must not burn the attempts in a minute."""
    job_id = add(engine, kind="limited")
    reset = datetime.now(UTC) + timedelta(hours=1)
    failed = threading.Event()

    def rate_limited(_ctx: JobContext) -> None:
        failed.set()
        raise Limited(reset)

    pool = Worker(
        Queue(engine, retry_base_seconds=0.01),
        {"limited": rate_limited},
        judge=judge,
        heartbeat_seconds=0.05,
        poll_interval=0.02,
    )
    pool.start()
    assert failed.wait(10)
    deadline = time.monotonic() + 10
    while job(engine, job_id).status != "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
    pool.stop(grace=5)
    waiting = job(engine, job_id)
    assert (waiting.status, waiting.attempts) == ("queued", 1)
    assert waiting.run_after.replace(tzinfo=UTC).timestamp() == pytest.approx(
        reset.timestamp(), abs=1
    )
    assert waiting.last_error == "Limited: rate limited"


def test_a_run_that_cannot_renew_its_lease_is_cancelled(engine: Engine) -> None:
    """The database stops answering the heartbeat (here: the table is gone for a while);
    once the lease has lapsed another worker may claim the job, so this run must stop."""
    job_id = add(engine, kind="cut_off")
    cancelled: list[bool] = []

    def cut_off(ctx: JobContext) -> None:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE job RENAME TO job_away"))
        try:
            cancelled.append(ctx.cancel.wait(10))
        finally:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE job_away RENAME TO job"))

    pool = Worker(
        Queue(engine, lease_seconds=0.5),
        {"cut_off": cut_off},
        heartbeat_seconds=0.05,
        concurrency=1,
        poll_interval=0.02,
    )
    pool.start()
    deadline = time.monotonic() + 20
    while not cancelled and time.monotonic() < deadline:
        time.sleep(0.05)
    pool.stop(grace=5)
    assert cancelled == [True]
    assert job(engine, job_id).status == "done"  # the handler returned; the lease was still its own


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be printed")


def test_a_failure_that_cannot_be_recorded_does_not_kill_the_worker_thread(
    engine: Engine,
) -> None:
    broken = add(engine, kind="broken")
    later = add(engine, kind="fine")
    ran: list[int] = []

    def raise_unprintable(_ctx: JobContext) -> None:
        raise Unprintable

    def fine(ctx: JobContext) -> None:
        ran.append(ctx.job_id)

    pool = Worker(
        Queue(engine, lease_seconds=30),
        {"broken": raise_unprintable, "fine": fine},
        heartbeat_seconds=0.05,
        concurrency=1,
        poll_interval=0.02,
    )
    pool.start()
    deadline = time.monotonic() + 20
    while job(engine, later).status != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    pool.stop(grace=5)
    assert ran == [later]
    assert job(engine, later).status == "done"
    # Its outcome was never recorded: it waits for its lease to lapse and is claimed again.
    assert (job(engine, broken).status, job(engine, broken).attempts) == ("running", 1)


def test_stop_releases_a_running_job_without_counting_the_attempt(
    engine: Engine,
) -> None:
    job_id = add(engine, kind="slow")
    started = threading.Event()

    def slow(ctx: JobContext) -> None:
        started.set()
        ctx.cancel.wait(30)

    pool = Worker(Queue(engine), {"slow": slow}, heartbeat_seconds=0.05, poll_interval=0.02)
    pool.start()
    assert started.wait(10)
    pool.stop(grace=0.2)
    released = job(engine, job_id)
    assert (released.status, released.attempts, released.lease_owner) == ("queued", 0, None)
    assert [r.outcome for r in runs(engine, job_id)] == ["released"]


def test_jobs_queued_in_the_callers_transaction_commit_or_vanish_with_it(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        enqueue_many(
            conn,
            [NewJob("k", {"n": 1}, serial_key="o/r#1"), NewJob("k", {"n": 2}, max_attempts=2)],
        )

    def fails_after_queueing() -> None:
        with write_transaction(engine) as conn:
            enqueue_many(conn, [NewJob("k", {"n": 3})])
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        fails_after_queueing()
    with Session(engine) as session:
        rows = session.exec(select(Job).order_by(Job.id)).all()
    assert [(r.payload, r.serial_key, r.status, r.max_attempts) for r in rows] == [
        ({"n": 1}, "o/r#1", "queued", 5),
        ({"n": 2}, None, "queued", 2),
    ]


def test_requeue_dead_gives_only_a_dead_job_fresh_attempts(engine: Engine) -> None:
    with Session(engine) as session:
        for name in ("d-dead", "d-live"):
            session.add(Delivery(id=name, event="issues", outcome="queued", payload={}))
        session.commit()
    with write_transaction(engine) as conn:
        dead = enqueue(conn, "k", {}, delivery_id="d-dead", max_attempts=1)
        live = enqueue(conn, "other", {}, delivery_id="d-live")
    q = Queue(engine)
    assert q.claim("w", ["k"]) is not None
    assert q.settle(dead, "w", 1, Dead("hopeless")) == "dead"
    with write_transaction(engine) as conn:
        assert not requeue_dead(conn, "d-live")  # queued, not dead: left alone
        assert not requeue_dead(conn, "no-such-delivery")
        assert requeue_dead(conn, "d-dead")
    again = job(engine, dead)
    assert (again.status, again.attempts, again.finished_at, again.lease_owner) == (
        "queued",
        0,
        None,
        None,
    )
    assert again.last_error == "hopeless"  # why it died stays visible until it runs again
    assert (job(engine, live).status, job(engine, live).attempts) == ("queued", 0)
    claimed = q.claim("w", ["k"])
    assert claimed is not None
    assert (claimed.id, claimed.attempt) == (dead, 1)
