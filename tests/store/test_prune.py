"""Retention on real SQLite and PostgreSQL: the ``prune`` job deletes exactly the old
finished records, in batches, and keeps one run of itself waiting."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.bootstrap import PRUNE_KIND, build_queue, build_worker, schedule_prune
from bot.core.tasks import Checkpoint
from bot.jobs.queue import JobContext
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.prune import Pruned, prune
from bot.store.tables import AgentStep, Delivery, Iteration, Job, JobRun, Task, utcnow
from tests.support.web import make_settings

NOW = utcnow()
OLD = NOW - timedelta(days=40)
NEW = NOW - timedelta(days=1)
CUTOFF = NOW - timedelta(days=30)

DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
JOB: Table = Job.__table__  # type: ignore[attr-defined]
JOB_RUN: Table = JobRun.__table__  # type: ignore[attr-defined]
STEP: Table = AgentStep.__table__  # type: ignore[attr-defined]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    init_db(eng)
    yield eng
    eng.dispose()


def add_delivery(engine: Engine, name: str, received_at: datetime) -> str:
    with write_transaction(engine) as conn:
        conn.execute(
            DELIVERY.insert().values(
                id=name, event="issues", outcome="queued", payload={}, received_at=received_at
            )
        )
    return name


def add_job(
    engine: Engine,
    status: str,
    at: datetime,
    *,
    kind: str = "event",
    delivery: str | None = None,
) -> int:
    """A job last touched at ``at`` (finished then, when done or dead), with one run."""
    finished = at if status in ("done", "dead") else None
    with write_transaction(engine) as conn:
        job_id = int(
            conn.execute(
                JOB.insert()
                .values(
                    kind=kind,
                    status=status,
                    delivery_id=delivery,
                    payload={},
                    run_after=at,
                    created_at=at,
                    updated_at=at,
                    finished_at=finished,
                    lease_expires=at + timedelta(minutes=1) if status == "running" else None,
                )
                .returning(JOB.c.id)
            ).scalar_one()
        )
        conn.execute(
            JOB_RUN.insert().values(
                job_id=job_id, attempt=1, worker="w", started_at=at, finished_at=finished
            )
        )
    return job_id


def add_iteration(engine: Engine, task_id: int, number: int, checkpoint: Checkpoint) -> int:
    with Session(engine) as session:
        row = Iteration(
            task_id=task_id,
            number=number,
            key=f"k{number}",
            trigger="label",
            checkpoint=checkpoint.value,
            started_at=OLD,
            finished_at=OLD if checkpoint is Checkpoint.CONCLUDED else None,
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def add_step(engine: Engine, iteration_id: int | None, started_at: datetime) -> int:
    with write_transaction(engine) as conn:
        return int(
            conn.execute(
                STEP.insert()
                .values(
                    run_key=f"job-1-1/{uuid.uuid4().hex[:6]}",
                    iteration_id=iteration_id,
                    index=0,
                    started_at=started_at,
                    model="claude",
                    request={},
                    text="",
                    tool_calls=[],
                )
                .returning(STEP.c.id)
            ).scalar_one()
        )


def add_task(engine: Engine) -> int:
    with Session(engine) as session:
        task = Task(
            repository="octo/widgets",
            number=7,
            model="conversational",
            state="working",
            branch="vibe/issue-7",
            base="main",
            requester="alice",
            title="t",
            instruction="i",
            created_at=OLD,
            updated_at=OLD,
        )
        session.add(task)
        session.commit()
        assert task.id is not None
        return task.id


def ids(engine: Engine, table: Table) -> set[Any]:
    with engine.connect() as conn:
        return set(conn.execute(select(table.c.id)).scalars())


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_prune_deletes_exactly_the_old_finished_records(engine: Engine) -> None:
    # Deliveries: old ones go once no job names them; a live job's stays however old.
    free = add_delivery(engine, "old-free", OLD)
    of_old_done = add_delivery(engine, "old-of-old-done", OLD)
    of_queued = add_delivery(engine, "old-of-queued", OLD)
    of_running = add_delivery(engine, "old-of-running", OLD)
    of_new_done = add_delivery(engine, "old-of-new-done", OLD)
    recent = add_delivery(engine, "recent", NEW)

    gone_jobs = {
        add_job(engine, "done", OLD, delivery=of_old_done),
        add_job(engine, "dead", OLD),
        add_job(engine, "done", OLD, kind="catch_up"),
        add_job(engine, "done", OLD, kind=PRUNE_KIND),
    }
    kept_jobs = {
        add_job(engine, "queued", OLD, delivery=of_queued),
        add_job(engine, "running", OLD, delivery=of_running),
        add_job(engine, "done", NEW, delivery=of_new_done),
        add_job(engine, "dead", NEW),
        add_job(engine, "queued", NEW),
        add_job(engine, "running", NEW),
    }

    # Agent steps: old ones of a concluded iteration or of none go; an unfinished
    # iteration's (begun, pushed) stay, as do recent ones.
    task_id = add_task(engine)
    concluded = add_iteration(engine, task_id, 1, Checkpoint.CONCLUDED)
    pushed = add_iteration(engine, task_id, 2, Checkpoint.PUSHED)
    begun = add_iteration(engine, task_id, 3, Checkpoint.BEGUN)
    gone_steps = {add_step(engine, concluded, OLD), add_step(engine, None, OLD)}
    kept_steps = {
        add_step(engine, pushed, OLD),
        add_step(engine, begun, OLD),
        add_step(engine, concluded, NEW),
        add_step(engine, None, NEW),
    }

    pruned = prune(engine, CUTOFF, batch=2)  # several batches of each kind

    assert pruned == Pruned(deliveries=2, jobs=4, job_runs=4, agent_steps=2)
    assert ids(engine, DELIVERY) == {of_queued, of_running, of_new_done, recent}
    assert free not in ids(engine, DELIVERY)
    assert ids(engine, JOB) == kept_jobs
    with engine.connect() as conn:
        run_jobs = set(conn.execute(select(JOB_RUN.c.job_id)).scalars())
    assert run_jobs == kept_jobs
    assert ids(engine, STEP) == kept_steps
    assert not gone_jobs & ids(engine, JOB)
    assert not gone_steps & ids(engine, STEP)
    tasks: Table = Task.__table__  # type: ignore[attr-defined]
    iterations: Table = Iteration.__table__  # type: ignore[attr-defined]
    assert (count(engine, tasks), count(engine, iterations)) == (1, 3)

    assert prune(engine, CUTOFF, batch=2) == Pruned()  # nothing left to delete


def test_a_cancelled_prune_stops_before_the_next_batch(engine: Engine) -> None:
    for n in range(3):
        add_delivery(engine, f"old-{n}", OLD)
    cancel = threading.Event()
    cancel.set()
    assert prune(engine, CUTOFF, batch=1, cancel=cancel) == Pruned()
    assert count(engine, DELIVERY) == 3
    assert prune(engine, CUTOFF, batch=1) == Pruned(deliveries=3)


def pending_prunes(engine: Engine) -> list[Job]:
    with Session(engine) as session:
        query = select(Job).where(col(Job.kind) == PRUNE_KIND, col(Job.status) == "queued")
        return list(session.exec(query))


def test_the_prune_job_runs_from_the_worker_and_keeps_one_run_waiting(
    engine: Engine, tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(
        tmp_path, database_url, retention_days=30.0, prune_interval_seconds=1800.0
    )
    queue = build_queue(settings, engine)
    before = utcnow()
    worker = build_worker(settings, queue)
    build_worker(settings, queue)  # a second process starting: still one waiting
    [first] = pending_prunes(engine)
    assert first.run_after >= before + timedelta(seconds=1799)

    old_delivery = add_delivery(engine, "old", OLD)
    old_done = add_job(engine, "done", OLD, delivery=old_delivery)
    old_prune = add_job(engine, "done", OLD, kind=PRUNE_KIND)
    # Inside GitHub's 3-day delivery log: kept even with a shorter retention.
    add_delivery(engine, "two-days", NOW - timedelta(days=2))

    queue.clock = lambda: utcnow() + timedelta(hours=1)  # the first run is due
    job = queue.claim("test-worker", [PRUNE_KIND])
    assert job is not None
    assert job.id == first.id
    worker.handlers[PRUNE_KIND](
        JobContext(job.id, job.kind, job.payload, job.attempt, threading.Event())
    )
    assert not {old_done, old_prune} & ids(engine, JOB)
    assert ids(engine, DELIVERY) == {"two-days"}
    [following] = pending_prunes(engine)
    assert following.id != first.id
    assert following.run_after >= before + timedelta(seconds=1799)

    short = settings.model_copy(update={"retention_days": 0.5})
    handler = build_worker(short, queue).handlers[PRUNE_KIND]
    handler(JobContext(job.id, job.kind, job.payload, job.attempt, threading.Event()))
    assert ids(engine, DELIVERY) == {"two-days"}
    assert len(pending_prunes(engine)) == 1


def test_processes_scheduling_together_queue_one_prune(engine: Engine) -> None:
    barrier = threading.Barrier(6)
    queued: list[bool] = []

    def schedule() -> None:
        barrier.wait()
        queued.append(schedule_prune(engine, 60.0))

    threads = [threading.Thread(target=schedule) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(queued) == [False] * 5 + [True]
    assert len(pending_prunes(engine)) == 1


def test_pruning_a_backlog_of_20000_rows(engine: Engine) -> None:
    """5,000 each of deliveries, finished jobs naming them, their runs and agent steps."""
    n = 5000
    with write_transaction(engine) as conn:
        conn.execute(
            DELIVERY.insert(),
            [
                {
                    "id": f"d{i}",
                    "event": "issues",
                    "outcome": "queued",
                    "payload": {},
                    "received_at": OLD,
                }
                for i in range(n)
            ],
        )
        conn.execute(
            JOB.insert(),
            [
                {
                    "kind": "event",
                    "status": "done",
                    "delivery_id": f"d{i}",
                    "payload": {},
                    "run_after": OLD,
                    "created_at": OLD,
                    "updated_at": OLD,
                    "finished_at": OLD,
                }
                for i in range(n)
            ],
        )
        job_ids = list(conn.execute(select(JOB.c.id)).scalars())
        conn.execute(
            JOB_RUN.insert(),
            [{"job_id": j, "attempt": 1, "worker": "w", "started_at": OLD} for j in job_ids],
        )
        conn.execute(
            STEP.insert(),
            [
                {
                    "run_key": f"r{i}",
                    "index": 0,
                    "started_at": OLD,
                    "model": "m",
                    "request": {},
                    "text": "",
                    "tool_calls": [],
                }
                for i in range(n)
            ],
        )
    started = time.perf_counter()
    pruned = prune(engine, CUTOFF)
    seconds = time.perf_counter() - started
    print(f"\npruned {pruned.total} rows on {engine.dialect.name} in {seconds:.2f} s")
    assert pruned == Pruned(deliveries=n, jobs=n, job_runs=n, agent_steps=n)
    assert sum(count(engine, t) for t in (DELIVERY, JOB, JOB_RUN, STEP)) == 0
