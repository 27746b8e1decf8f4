"""The durable job queue and the worker pool: the only writer of job rows.

Claim protocol (DESIGN.md section 2): a worker takes a job under a lease and renews it with a
heartbeat; a job whose lease lapsed is claimed again, so handlers must be idempotent. Jobs
that share a ``serial_key`` (repository + issue/PR number) never run at once and run in id
order.

- PostgreSQL: candidates are selected ``FOR UPDATE SKIP LOCKED``; the serial-key check runs
  under ``pg_try_advisory_xact_lock`` so two workers cannot both start jobs of one key.
- SQLite: the claim runs in ``BEGIN IMMEDIATE``, which makes claims one writer at a time.

Others queue work inside their own transaction through :func:`enqueue`, :func:`enqueue_many`,
:func:`requeue_dead` and :func:`requeue_dead_job` (ingest stores a delivery and its job
together; the console requeues a dead job); everything else about a job row (claim,
heartbeat, settle, release) happens in :class:`Queue`.

Handlers run synchronously in worker threads: ``handler(ctx: JobContext) -> None``.
Returning ends the job done. An exception is turned into a value at the job boundary by the
worker's ``judge``, given by whoever builds the worker (``bot/bootstrap.py`` knows every
layer's errors): :class:`Retry` (backoff, and not before ``at``; dead once ``max_attempts``
are spent), :class:`Dead` or :class:`Done` (procrastinate's ``RetryDecision``, STYLE.md
item 16). The default judge retries every failure until ``max_attempts``. This module knows
nothing of GitHub, the loop or the settings.
"""

from __future__ import annotations

import contextvars
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select, update

from bot.core.redact import redact
from bot.store.engine import write_transaction
from bot.store.tables import Job, JobRun, utcnow

log = structlog.get_logger(__name__)

MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class Done:
    """The job is finished: nothing is left to do."""


@dataclass(frozen=True)
class Retry:
    """The job may succeed later: run it again after the queue's backoff, and not before
    ``at`` when the cause said when to come back (a rate limit's reset). Attempts still
    count: once ``max_attempts`` are spent the job is dead."""

    reason: str
    at: datetime | None = None


@dataclass(frozen=True)
class Dead:
    """The job cannot succeed: end it now, keeping why."""

    reason: str


Verdict = Done | Retry | Dead
Judge = Callable[[Exception], Verdict]


def describe(exc: BaseException) -> str:
    """How a failure reads in a job's ``last_error``."""
    return f"{type(exc).__name__}: {exc}"


def retry_until_spent(exc: Exception) -> Verdict:
    """The judge of a worker that was given none: any failure may pass."""
    return Retry(describe(exc))


@dataclass(frozen=True)
class JobContext:
    """What a handler gets: the job, the delivery it was queued for (if any) and the means
    to stop early."""

    job_id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    cancel: threading.Event
    delivery_id: str | None = None


Handler = Callable[[JobContext], None]


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    delivery_id: str | None
    serial_key: str | None


def _is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@dataclass(frozen=True)
class NewJob:
    """A job to queue: what to run, its lane, the delivery it answers and its attempts."""

    kind: str
    payload: Mapping[str, Any]
    serial_key: str | None = None
    delivery_id: str | None = None
    max_attempts: int = 5
    run_after: datetime | None = None


def _row(job: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "kind": job.kind,
        "status": "queued",
        "payload": dict(job.payload),
        "serial_key": job.serial_key,
        "delivery_id": job.delivery_id,
        "attempts": 0,
        "max_attempts": job.max_attempts,
        "run_after": job.run_after or now,
        "created_at": now,
        "updated_at": now,
    }


# Built once: statements with bound parameters are compiled once and cached, which keeps
# the ingest path's SQLAlchemy overhead small.
_JOB = Job.__table__  # type: ignore[attr-defined]
_INSERT_JOB = _JOB.insert().returning(_JOB.c.id)
_INSERT_JOBS = _JOB.insert()
_REQUEUE_VALUES = {
    "status": "queued",
    "attempts": 0,
    "run_after": bindparam("now", type_=_JOB.c.run_after.type),
    "updated_at": bindparam("now", type_=_JOB.c.updated_at.type),
    "finished_at": None,
    "lease_owner": None,
    "lease_expires": None,
}
_REQUEUE_DEAD = (
    _JOB.update()
    .where(_JOB.c.delivery_id == bindparam("delivery"), _JOB.c.status == "dead")
    .values(_REQUEUE_VALUES)
)
_REQUEUE_DEAD_JOB = (
    _JOB.update()
    .where(_JOB.c.id == bindparam("job"), _JOB.c.status == "dead")
    .values(_REQUEUE_VALUES)
)


def enqueue(
    conn: Connection,
    kind: str,
    payload: Mapping[str, Any],
    *,
    serial_key: str | None = None,
    delivery_id: str | None = None,
    max_attempts: int = 5,
    run_after: datetime | None = None,
) -> int:
    """Insert a queued job inside the caller's transaction and return its id."""
    job = NewJob(kind, payload, serial_key, delivery_id, max_attempts, run_after)
    return int(conn.execute(_INSERT_JOB, _row(job, utcnow())).scalar_one())


def enqueue_many(conn: Connection, jobs: Sequence[NewJob]) -> None:
    """Insert queued jobs with one multi-row statement inside the caller's transaction."""
    if jobs:
        now = utcnow()
        conn.execute(_INSERT_JOBS, [_row(job, now) for job in jobs])


def schedule_single(engine: Engine, kind: str, lane: str, delay: float) -> bool:
    """Queue a periodic job of ``kind`` in ``lane`` to run in ``delay`` seconds unless one is
    already waiting; True if this call queued it. Processes starting together queue one:
    PostgreSQL serialises the check with an advisory lock on the lane, SQLite's write
    transaction holds the database's write lock."""
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            key = f"schedule:{lane}"
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})
        waiting = conn.execute(
            select(Job.id).where(col(Job.kind) == kind, col(Job.status) == "queued").limit(1)
        ).first()
        if waiting is not None:
            return False
        enqueue(
            conn,
            kind,
            {},
            serial_key=lane,
            max_attempts=1,
            run_after=utcnow() + timedelta(seconds=delay),
        )
    return True


def requeue_dead(conn: Connection, delivery_id: str) -> bool:
    """Queue the dead job of ``delivery_id`` again with fresh attempts, inside the caller's
    transaction (someone asked for the delivery again). False when it has none."""
    now = utcnow()
    return bool(conn.execute(_REQUEUE_DEAD, {"delivery": delivery_id, "now": now}).rowcount)


def requeue_dead_job(conn: Connection, job_id: int) -> bool:
    """Queue dead job ``job_id`` again with fresh attempts, inside the caller's transaction
    (an operator asked for it). False when it is not dead (or not there)."""
    now = utcnow()
    return bool(conn.execute(_REQUEUE_DEAD_JOB, {"job": job_id, "now": now}).rowcount)


@dataclass
class Queue:
    """Claim, heartbeat, complete and fail jobs in the database."""

    engine: Engine
    lease_seconds: float = 60.0
    retry_base_seconds: float = 5.0
    retry_max_seconds: float = 600.0
    clock: Callable[[], datetime] = utcnow
    secrets: Sequence[str] = field(default_factory=tuple)

    def claim(self, worker_id: str, kinds: Sequence[str]) -> ClaimedJob | None:
        """Take the next runnable job of one of ``kinds`` under a lease, or return None."""
        if not kinds:
            return None
        now = self.clock()
        job = Job.__table__  # type: ignore[attr-defined]
        postgres = _is_postgres(self.engine)
        with write_transaction(self.engine) as conn:
            runnable = ((job.c.status == "queued") & (job.c.run_after <= now)) | (
                (job.c.status == "running") & (job.c.lease_expires < now)
            )
            # Only the head of each lane is a candidate: otherwise the jobs queued behind one
            # long task (a busy PR's comments) fill the candidate window and starve every
            # other lane. _lane_free checks again under the lock.
            other = job.alias("other")
            lane_busy = (
                select(other.c.id)
                .where(
                    other.c.serial_key == job.c.serial_key,
                    other.c.id != job.c.id,
                    ((other.c.status == "running") & (other.c.lease_expires >= now))
                    | (other.c.status.in_(["queued", "running"]) & (other.c.id < job.c.id)),
                )
                .exists()
            )
            query = (
                select(
                    job.c.id,
                    job.c.serial_key,
                    job.c.attempts,
                    ((job.c.status == "running") & (job.c.attempts >= job.c.max_attempts)),
                )
                .where(
                    runnable,
                    job.c.kind.in_(list(kinds)),
                    job.c.serial_key.is_(None) | ~lane_busy,
                )
                .order_by(job.c.id)
                .limit(25)
            )
            if postgres:
                query = query.with_for_update(skip_locked=True)
            for job_id, key, attempts, spent in conn.execute(query).all():
                if spent:
                    # Its worker died on every attempt (killed, out of memory): a job that
                    # crashes whoever runs it must end, not be claimed again forever.
                    self._bury(conn, job_id, attempts, now)
                    continue
                if key is not None and not self._lane_free(conn, job_id, key, now, postgres):
                    continue
                row = conn.execute(
                    job.update()
                    .where(job.c.id == job_id)
                    .values(
                        status="running",
                        lease_owner=worker_id,
                        lease_expires=now + timedelta(seconds=self.lease_seconds),
                        attempts=job.c.attempts + 1,
                        updated_at=now,
                    )
                    .returning(job.c.kind, job.c.payload, job.c.attempts, job.c.delivery_id)
                ).one()
                conn.execute(
                    JobRun.__table__.insert().values(  # type: ignore[attr-defined]
                        job_id=job_id, attempt=row.attempts, worker=worker_id, started_at=now
                    )
                )
                return ClaimedJob(
                    id=job_id,
                    kind=row.kind,
                    payload=dict(row.payload),
                    attempt=row.attempts,
                    delivery_id=row.delivery_id,
                    serial_key=key,
                )
        return None

    @staticmethod
    def _bury(conn: Connection, job_id: int, attempts: int, now: datetime) -> None:
        error = f"the worker running it stopped without an outcome on all {attempts} attempts"
        conn.execute(
            update(Job)
            .where(col(Job.id) == job_id)
            .values(
                status="dead",
                lease_owner=None,
                lease_expires=None,
                updated_at=now,
                finished_at=now,
                last_error=error,
            )
        )
        Queue._end_run(conn, job_id, attempts, now, "lost", error)

    @staticmethod
    def _lane_free(conn: Connection, job_id: int, key: str, now: datetime, postgres: bool) -> bool:
        """True when no other job of this serial key is running or queued ahead of ``job_id``."""
        if (
            postgres
            and not conn.execute(
                text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"), {"k": key}
            ).scalar_one()
        ):
            return False
        job = Job.__table__  # type: ignore[attr-defined]
        live_running = (job.c.status == "running") & (job.c.lease_expires >= now)
        earlier_waiting = (job.c.status.in_(["queued", "running"])) & (job.c.id < job_id)
        blocker = conn.execute(
            select(job.c.id)
            .where(job.c.serial_key == key, job.c.id != job_id, live_running | earlier_waiting)
            .limit(1)
        ).first()
        return blocker is None

    def heartbeat(self, job_id: int, worker_id: str) -> bool:
        """Extend the lease; False means the lease was lost (another worker may have it)."""
        now = self.clock()
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(Job)
                .where(
                    col(Job.id) == job_id,
                    col(Job.lease_owner) == worker_id,
                    col(Job.status) == "running",
                )
                .values(lease_expires=now + timedelta(seconds=self.lease_seconds), updated_at=now)
            )
            return bool(result.rowcount)

    def settle(self, job_id: int, worker_id: str, attempt: int, verdict: Verdict) -> str:
        """Record how a run ended, if this worker still holds the job's lease.

        Returns the job's new status: ``done``; ``queued`` for a :class:`Retry` with
        attempts left (after a backoff, and not before ``verdict.at``); ``dead`` for a
        :class:`Dead` or a spent :class:`Retry`; ``lost`` when the lease was lost (another
        worker may run the job now). Reasons are redacted before they are stored."""
        if isinstance(verdict, Done):
            done = self._finish(job_id, worker_id, attempt, status="done", error=None)
            return "done" if done else "lost"
        error = redact(verdict.reason, self.secrets)[:MAX_ERROR_CHARS]
        status = "dead"
        run_after = None
        if isinstance(verdict, Retry):
            with Session(self.engine) as session:
                job = session.get(Job, job_id)
                exhausted = job is None or job.attempts >= job.max_attempts
            if not exhausted:
                status = "queued"
                delay = min(self.retry_base_seconds * 2 ** (attempt - 1), self.retry_max_seconds)
                delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
                run_after = self.clock() + timedelta(seconds=delay)
                if verdict.at is not None:
                    run_after = max(run_after, verdict.at)
        kept = self._finish(
            job_id, worker_id, attempt, status=status, error=error, run_after=run_after
        )
        return status if kept else "lost"

    def release(self, job_id: int, worker_id: str, attempt: int) -> None:
        """Give a job back on shutdown without counting the attempt."""
        now = self.clock()
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(Job)
                .where(col(Job.id) == job_id, col(Job.lease_owner) == worker_id)
                .values(
                    status="queued",
                    lease_owner=None,
                    lease_expires=None,
                    attempts=Job.attempts - 1,
                    run_after=now,
                    updated_at=now,
                )
            )
            self._end_run(conn, job_id, attempt, now, "released", None)

    def _finish(
        self,
        job_id: int,
        worker_id: str,
        attempt: int,
        *,
        status: str,
        error: str | None,
        run_after: datetime | None = None,
    ) -> bool:
        now = self.clock()
        outcome = "retry" if status == "queued" else status
        values: dict[str, Any] = {
            "status": status,
            "lease_owner": None,
            "lease_expires": None,
            "updated_at": now,
            "last_error": error,
        }
        if status in ("done", "dead"):
            values["finished_at"] = now
        if run_after is not None:
            values["run_after"] = run_after
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                update(Job)
                .where(
                    col(Job.id) == job_id,
                    col(Job.lease_owner) == worker_id,
                    col(Job.status) == "running",
                    col(Job.attempts) == attempt,
                )
                .values(**values)
            )
            if not result.rowcount:
                self._end_run(conn, job_id, attempt, now, "lost", error)
                return False
            self._end_run(conn, job_id, attempt, now, outcome, error)
            return True

    @staticmethod
    def _end_run(
        conn: Connection,
        job_id: int,
        attempt: int,
        now: datetime,
        outcome: str,
        error: str | None,
    ) -> None:
        conn.execute(
            update(JobRun)
            .where(
                col(JobRun.job_id) == job_id,
                col(JobRun.attempt) == attempt,
                col(JobRun.finished_at).is_(None),
            )
            .values(finished_at=now, outcome=outcome, error=error)
        )

    def jobs(self, limit: int = 100) -> list[Job]:
        with Session(self.engine) as session:
            return list(session.exec(select(Job).order_by(col(Job.id).desc()).limit(limit)))


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100000}"


class Worker:
    """A pool of threads that claim and run jobs until stopped.

    ``judge`` turns a handler's exception into a :data:`Verdict` (the job boundary). The
    heartbeat renews the lease every ``heartbeat_seconds`` (a quarter of the lease unless
    told). A claim that fails (the database full, read-only or away) is tried again after
    ``claim_backoff`` (first delay, longest delay) doubling with jitter, one log line per
    try, until a claim succeeds; wake-ups do not cut such a wait short. ``stop()`` stops
    claiming at once; running handlers get ``grace`` seconds to finish, then their cancel
    event is set and, if they still run, the job is released for another worker.
    """

    def __init__(
        self,
        queue: Queue,
        handlers: Mapping[str, Handler],
        *,
        judge: Judge = retry_until_spent,
        concurrency: int = 2,
        poll_interval: float = 0.5,
        heartbeat_seconds: float | None = None,
        name: str | None = None,
        on_finished: Callable[[str, str, float], None] | None = None,
        claim_backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.judge = judge
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.heartbeat_seconds = heartbeat_seconds or queue.lease_seconds / 4
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.on_finished = on_finished
        self.claim_backoff = claim_backoff
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        for n in range(self.concurrency):
            thread = threading.Thread(
                target=self._loop, args=(f"{self.name}/{n}",), name=f"vibe-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        log.info("worker.started", worker=self.name, threads=self.concurrency)

    def wake(self) -> None:
        """Tell idle threads that a job may be waiting (same-process ingest)."""
        self._wake.set()

    def stop(self, grace: float = 30.0) -> None:
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for cancel in self._running.values():
                cancel.set()
        for thread in self._threads:
            thread.join(5.0)
        log.info("worker.stopped", worker=self.name)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def alive(self) -> bool:
        """Started, and every worker thread still runs (the worker's ``/healthz``)."""
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    def claim_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` claims in a row failed: the first delay
        doubling up to the longest, times a random 0.5 to 1 so that the threads of every
        worker do not retry in step ("equal jitter",
        https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/)."""
        first, longest = self.claim_backoff
        delay = min(first * 2.0 ** min(failures - 1, 32), longest)
        return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security

    def _loop(self, worker_id: str) -> None:
        kinds = sorted(self.handlers)
        failures = 0
        while not self._stopping.is_set():
            try:
                job = self.queue.claim(worker_id, kinds)
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not kill the thread
                failures += 1
                delay = self.claim_delay(failures)
                log.warning(
                    "worker.claim_failed",
                    error=redact(str(exc), self.queue.secrets)[:MAX_ERROR_CHARS],
                    failures=failures,
                    retry_in=round(delay, 3),
                )
                # Only a stop ends the wait: the wake-ups of arriving deliveries would
                # turn the backoff back into a busy loop.
                self._stopping.wait(delay)
                continue
            if failures:
                log.info("worker.claim_recovered", failures=failures)
                failures = 0
            if job is None:
                self._wake.wait(self.poll_interval)
                self._wake.clear()
                continue
            # Every line logged while the job runs carries it (the handlers add the
            # repository, the issue or PR, the task and the iteration); none after it.
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                job_id=job.id, kind=job.kind, attempt=job.attempt, delivery_id=job.delivery_id
            )
            try:
                self._run(worker_id, job)
            except Exception:
                # The thread must outlive a failed bookkeeping step. Recording the outcome
                # failed (database unreachable, an exception that cannot be printed): the
                # lease lapses and the job is claimed again.
                log.exception("worker.job_outcome_not_recorded", job=job.id)
            finally:
                structlog.contextvars.clear_contextvars()

    def _run(self, worker_id: str, job: ClaimedJob) -> None:
        cancel = threading.Event()
        lost = threading.Event()
        done = threading.Event()
        with self._lock:
            self._running[job.id] = cancel

        def beat() -> None:
            confirmed = time.monotonic()
            while not done.wait(self.heartbeat_seconds):
                try:
                    if not self.queue.heartbeat(job.id, worker_id):
                        lost.set()
                        cancel.set()
                        return
                    confirmed = time.monotonic()
                except Exception as exc:  # noqa: BLE001 - keep beating through a blip
                    log.warning("worker.heartbeat_failed", job=job.id, error=str(exc))
                    if time.monotonic() - confirmed >= self.queue.lease_seconds:
                        # The lease has lapsed unrenewed: another worker may claim the job
                        # now, so this run stops rather than run beside it.
                        lost.set()
                        cancel.set()
                        return

        # The heartbeat's lines carry the job's context too.
        beater = threading.Thread(
            target=contextvars.copy_context().run,
            args=(beat,),
            name=f"vibe-heartbeat-{job.id}",
            daemon=True,
        )
        beater.start()
        started = time.monotonic()
        verdict: Verdict = Done()
        try:
            log.info("job.started")
            try:
                self.handlers[job.kind](
                    JobContext(job.id, job.kind, job.payload, job.attempt, cancel, job.delivery_id)
                )
            except Exception as exc:  # noqa: BLE001 - any handler failure is judged, not raised
                verdict = self.judge(exc)
                if not isinstance(verdict, Done):
                    log.error(
                        "job.failed",
                        error=redact(describe(exc), self.queue.secrets)[:MAX_ERROR_CHARS],
                        verdict="retry" if isinstance(verdict, Retry) else "dead",
                    )
            shut_down = self._stopping.is_set() and cancel.is_set() and not lost.is_set()
            if shut_down and not isinstance(verdict, Dead):
                # Cut short by the shutdown: the job goes back without counting the attempt.
                self.queue.release(job.id, worker_id, job.attempt)
                outcome = "released"
            else:
                outcome = self.queue.settle(job.id, worker_id, job.attempt, verdict)
        finally:
            done.set()
            beater.join()
            with self._lock:
                self._running.pop(job.id, None)
        elapsed = time.monotonic() - started
        log.info("job.finished", outcome=outcome, seconds=round(elapsed, 3))
        if self.on_finished is not None:
            self.on_finished(job.kind, outcome, elapsed)
