"""A worker whose claims keep failing (a full disk, a read-only database) backs off
exponentially with jitter, logs once per step, ignores wake-ups meanwhile and comes back
at full speed once a claim succeeds.

The failures are real: SQLite at its page limit answers "database or disk is full" (``PRAGMA
max_page_count``, https://www.sqlite.org/pragma.html#pragma_max_page_count), exactly as a
full file system makes it answer; PostgreSQL in a read-only session refuses the claim's
``SELECT ... FOR UPDATE`` (https://www.postgresql.org/docs/current/runtime-config-client.html).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from structlog.testing import capture_logs

from bot.jobs.queue import ClaimedJob, Queue, Worker, enqueue
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import JobRun, utcnow
from tests.support.database import refuse_writes


class CountingQueue(Queue):
    """The real queue, counting the claims tried."""

    claims = 0

    def claim(self, worker_id: str, kinds: Sequence[str]) -> ClaimedJob | None:
        self.claims += 1
        return super().claim(worker_id, kinds)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    init_db(eng)
    yield eng
    eng.dispose()


def fill_until_full(engine: Engine, add: Callable[[Connection, int, int], object]) -> None:
    """Add rows of shrinking size until SQLite has no room for even the smallest, so that
    any row the claim adds finds none either."""
    n = 0
    for size in (1000, 100, 10, 1):
        full: OperationalError | None = None
        while full is None:
            n += 1
            try:
                with write_transaction(engine) as conn:
                    add(conn, n, size)
            except OperationalError as exc:
                full = exc
        assert "database or disk is full" in str(full)


def fill_pages(engine: Engine) -> None:
    """Fill the pages of the two tables a claim writes (SQLite may not add pages). The
    padding jobs are of a kind the worker does not run."""
    with write_transaction(engine) as conn:
        pad = enqueue(conn, "pad", {})
    fill_until_full(engine, lambda conn, _n, size: enqueue(conn, "pad", {"p": "x" * size}))
    fill_until_full(
        engine,
        lambda conn, n, size: conn.execute(
            JobRun.__table__.insert().values(  # type: ignore[attr-defined]
                job_id=pad, attempt=n, worker="w" * size, started_at=utcnow()
            )
        ),
    )


def make_full(engine: Engine) -> Callable[[], None]:
    """Make every new connection of ``engine`` refuse writes, and return the undo."""
    undo = refuse_writes(engine)
    if engine.dialect.name == "sqlite":
        fill_pages(engine)
    return undo


def test_failing_claims_back_off_log_once_per_step_and_recover(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        job_id = enqueue(conn, "k", {})
    undo = make_full(engine)
    queue = CountingQueue(engine)
    with pytest.raises(SQLAlchemyError, match=r"disk is full|read-only transaction"):
        queue.claim("probe", ["k"])
    queue.claims = 0
    ran: list[int] = []
    pool = Worker(
        queue,
        {"k": lambda ctx: ran.append(ctx.job_id)},
        concurrency=1,
        poll_interval=0.005,
        claim_backoff=(0.05, 0.8),
    )
    window = 2.0
    with capture_logs() as logs:
        pool.start()
        end = time.monotonic() + window
        while time.monotonic() < end:
            pool.wake()  # deliveries arriving meanwhile must not cut a backoff short
            time.sleep(0.01)
        tried = queue.claims
        failed = [e for e in logs if e["event"] == "worker.claim_failed"]
        undo()
        deadline = time.monotonic() + 10
        while not ran and time.monotonic() < deadline:
            time.sleep(0.01)
        pool.stop(grace=5)
    # Without backoff this is ~200 claims in the window (one per poll); with it, delays of
    # at least 0.025, 0.05, 0.1, 0.2, 0.4, 0.4 ... s leave room for at most 9.
    assert 3 <= tried <= 9, tried
    assert len(failed) in (tried - 1, tried)  # one line per step (the last may be mid-way)
    delays = [e["retry_in"] for e in failed]
    # Doubling (each step at least as long as the last) up to the cap, then held there.
    assert delays[:5] == sorted(delays[:5])
    assert all(0.4 <= d <= 0.8 for d in delays[4:])
    assert all(
        "disk is full" in e["error"] or "read-only transaction" in e["error"] for e in failed
    )
    assert ran == [job_id]
    assert sum(e["event"] == "worker.claim_recovered" for e in logs) == 1


def test_the_default_backoff_doubles_from_half_a_second_to_thirty(tmp_path: Path) -> None:
    pool = Worker(CountingQueue(make_engine(f"sqlite:///{tmp_path / 'q.db'}")), {})
    delays = [pool.claim_delay(n) for n in range(1, 12)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(15.0 <= d <= 30.0 for d in delays[7:])
    assert pool.claim_delay(10_000) <= 30.0  # no overflow after a long outage


def test_a_stop_interrupts_the_backoff(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        enqueue(conn, "k", {})
    make_full(engine)
    pool = Worker(CountingQueue(engine), {"k": lambda _ctx: None}, claim_backoff=(30.0, 30.0))
    pool.start()
    time.sleep(0.2)  # the first claim fails; the thread now waits 15 to 30 s
    started = time.monotonic()
    stopper = threading.Thread(target=pool.stop, kwargs={"grace": 5})
    stopper.start()
    stopper.join(10)
    assert time.monotonic() - started < 2
    assert not pool.alive


def test_no_claim_failure_no_backoff(tmp_path: Path) -> None:
    """A healthy queue polls as before: idle claims are not failures."""
    engine = make_engine(f"sqlite:///{tmp_path / 'q.db'}")
    init_db(engine)
    queue = CountingQueue(engine)
    pool = Worker(queue, {"k": lambda _ctx: None}, poll_interval=0.02, concurrency=1)
    with capture_logs() as logs:
        pool.start()
        time.sleep(0.3)
        pool.stop(grace=5)
    engine.dispose()
    assert queue.claims >= 5
    assert not [e for e in logs if e["event"] == "worker.claim_failed"]
