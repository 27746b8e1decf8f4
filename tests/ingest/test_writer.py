"""The group commit's writer threads (bot/ingest/deliveries.py): on PostgreSQL a batch that
waits on the database does not hold up the next one; on SQLite a batch's rows go in one
statement per table; every writer stops on close."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, select

from bot.ingest.deliveries import DeliveryWriter, Incoming, store_deliveries, writers_for
from bot.store.engine import init_db, make_engine
from bot.store.tables import Delivery, Job, utcnow
from tests.support.web import fixture_payload, incoming


def _incoming(delivery_id: str) -> Incoming:
    return incoming(fixture_payload("issue_comment.created")[1], delivery_id=delivery_id)


def _holding(engine: Engine, delivery_id: str) -> Connection:
    """A connection whose open transaction has inserted ``delivery_id``, not committed:
    another writer of that id waits on the unique index until it commits or rolls back."""
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(
        Delivery.__table__.insert().values(  # type: ignore[attr-defined]
            id=delivery_id,
            event="issue_comment",
            outcome="queued",
            redeliveries=0,
            received_at=utcnow(),
        )
    )
    return blocker


def _lock_waiters(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


@pytest.mark.postgres
def test_a_batch_waiting_on_a_lock_does_not_hold_up_the_next(pg_database_url: str) -> None:
    """Another transaction holds delivery A's id uncommitted, so the batch with A waits on
    the unique index; B, sent after, is stored by the second writer meanwhile. With one
    writer B would wait for A."""
    engine = make_engine(pg_database_url)
    init_db(engine)
    assert writers_for(engine) == 2
    writer = DeliveryWriter(engine, max_attempts=3, writers=writers_for(engine))
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    blocker = _holding(engine, first)
    try:

        async def scenario() -> tuple[str, str, float]:
            waiting = asyncio.ensure_future(writer.store(_incoming(first)))
            deadline = time.monotonic() + 10
            while _lock_waiters(engine) == 0:
                assert time.monotonic() < deadline, "the first batch never waited on the lock"
                await asyncio.sleep(0.05)
            started = time.monotonic()
            stored = await asyncio.wait_for(writer.store(_incoming(second)), 10)
            took = time.monotonic() - started
            assert not waiting.done()
            threading.Thread(target=blocker.rollback).start()
            return await asyncio.wait_for(waiting, 10), stored, took

        late, stored, took = asyncio.run(scenario())
        assert (late, stored) == ("new", "new")
        assert took < 5
    finally:
        blocker.close()
        writer.close()
    with Session(engine) as session:
        assert {d.id for d in session.exec(select(Delivery))} == {first, second}
        assert sorted(j.delivery_id or "" for j in session.exec(select(Job))) == sorted(
            [first, second]
        )
    engine.dispose()


def test_a_batch_goes_into_sqlite_with_one_insert_per_table(tmp_path: Path) -> None:
    """pysqlite's executemany steps once per row, giving the GIL up and back each time; the
    writer thread then waited for the GIL at every row while requests held it. A batch of
    50 deliveries is one INSERT for the deliveries and one for their jobs."""
    engine = make_engine(f"sqlite:///{tmp_path}/vibe.db")
    init_db(engine)
    inserts: list[tuple[str, int]] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        head, _, values = statement.partition(" VALUES ")
        if head.startswith("INSERT INTO "):
            # The rows the statement itself carries: one for an executemany's.
            inserts.append((head.split()[2], values.count("(")))

    event.listen(engine, "before_cursor_execute", seen)
    items = [_incoming(str(uuid.uuid4())) for _ in range(50)]
    assert store_deliveries(engine, items, max_attempts=3) == ["new"] * 50
    assert inserts == [("delivery", 50), ("job", 50)]
    with Session(engine) as session:
        assert len(session.exec(select(Delivery)).all()) == 50
        assert len(session.exec(select(Job)).all()) == 50
    engine.dispose()


def test_sqlite_has_one_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/vibe.db")
    assert writers_for(engine) == 1
    engine.dispose()


@pytest.mark.parametrize("writers", [0, -1])
def test_a_writer_needs_a_thread(tmp_path: Path, writers: int) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/vibe.db")
    with pytest.raises(ValueError, match="writers must be at least 1"):
        DeliveryWriter(engine, max_attempts=3, writers=writers)
    engine.dispose()


def test_close_stops_every_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/vibe.db")
    init_db(engine)
    writer = DeliveryWriter(engine, max_attempts=3, writers=3)
    before = set(threading.enumerate())
    assert asyncio.run(writer.store(_incoming(str(uuid.uuid4())))) == "new"
    mine = [t for t in set(threading.enumerate()) - before if t.name.startswith("vibe-ingest")]
    assert len(mine) == 3
    writer.close()
    assert [t.name for t in mine if t.is_alive()] == []
    engine.dispose()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", record)
    return seen


@pytest.mark.postgres
def test_a_postgresql_batch_skips_known_ids_in_its_insert(pg_database_url: str) -> None:
    """No look-up before the insert: on a table that grew faster than autovacuum analysed it,
    the look-up scanned the whole table at every batch. The unique index decides instead,
    and the ids it let in come back from the same statement."""
    engine = make_engine(pg_database_url)
    init_db(engine)
    known = str(uuid.uuid4())
    assert store_deliveries(engine, [_incoming(known)], max_attempts=3) == ["new"]
    statements = _statements(engine)
    fresh = [str(uuid.uuid4()) for _ in range(30)]
    assert store_deliveries(engine, [_incoming(known), *map(_incoming, fresh)], 3) == [
        "duplicate",
        *["new"] * 30,
    ]
    on_delivery = [s for s in statements if " delivery " in f"{s} " or "delivery(" in s]
    assert [s.split(" (")[0] for s in on_delivery if s.startswith("INSERT")] == [
        "INSERT INTO delivery"
    ]
    assert "ON CONFLICT (id) DO NOTHING RETURNING delivery.id" in on_delivery[0]
    assert not [s for s in statements if s.startswith("SELECT") and "FROM delivery" in s]
    with Session(engine) as session:
        assert len(session.exec(select(Delivery)).all()) == 31
        assert sorted(j.delivery_id or "" for j in session.exec(select(Job))) == sorted(
            [known, *fresh]
        )
    engine.dispose()


def test_an_id_twice_in_one_batch_is_stored_once_and_counted_as_redelivered(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    twice, other = str(uuid.uuid4()), str(uuid.uuid4())
    batch = [_incoming(twice), _incoming(other), _incoming(twice)]
    assert store_deliveries(engine, batch, max_attempts=3) == ["new", "new", "duplicate"]
    with Session(engine) as session:
        stored = {d.id: d.redeliveries for d in session.exec(select(Delivery))}
        assert stored == {twice: 1, other: 0}
        assert sorted(j.delivery_id or "" for j in session.exec(select(Job))) == sorted(
            [twice, other]
        )
    engine.dispose()


@pytest.mark.postgres
def test_an_id_another_transaction_commits_meanwhile_is_a_duplicate(
    pg_database_url: str,
) -> None:
    """Another process stores delivery A while this batch (A and B) waits on A's key: once it
    commits, A is a duplicate and B is stored, in the batch's one transaction (a unique
    violation used to fail the batch and send each delivery again on its own)."""
    engine = make_engine(pg_database_url)
    init_db(engine)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    blocker = _holding(engine, first)
    try:
        statements = _statements(engine)
        outcome: list[object] = []
        storing = threading.Thread(
            target=lambda: outcome.append(
                store_deliveries(engine, [_incoming(first), _incoming(second)], 3)
            )
        )
        storing.start()
        deadline = time.monotonic() + 10
        while _lock_waiters(engine) == 0:
            assert time.monotonic() < deadline, "the batch never waited on the key"
            time.sleep(0.05)
        blocker.commit()
        storing.join(10)
        assert outcome == [["duplicate", "new"]]
    finally:
        blocker.close()
    assert len([s for s in statements if s.startswith("INSERT INTO delivery")]) == 1
    with Session(engine) as session:
        stored = {d.id: d.redeliveries for d in session.exec(select(Delivery))}
        assert stored == {first: 1, second: 0}
        assert [j.delivery_id for j in session.exec(select(Job))] == [second]
    engine.dispose()


@pytest.mark.postgres
def test_batches_of_the_same_ids_in_opposite_orders_do_not_deadlock(pg_database_url: str) -> None:
    """Redeliveries landing on two processes at once: each batch waits on the keys the other
    holds unless both take them in one order. Inserted in arrival order, PostgreSQL broke
    such a deadlock by failing one of the batches in 12 of 30 rounds."""
    engine = make_engine(pg_database_url)
    init_db(engine)
    failures: list[str] = []
    outcomes: list[list[object]] = []
    for _ in range(10):
        ids = [str(uuid.uuid4()) for _ in range(200)]
        ready = threading.Barrier(2)

        def store(order: list[str], ready: threading.Barrier) -> None:
            items = [_incoming(delivery_id) for delivery_id in order]
            ready.wait()
            try:
                outcomes.append(sorted(set(store_deliveries(engine, items, max_attempts=3))))
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

        threads = [threading.Thread(target=store, args=(o, ready)) for o in (ids, ids[::-1])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []
    # Each id was stored once: one batch took them all, the other found them all stored.
    assert sorted(map(str, outcomes)) == sorted(map(str, [["duplicate"], ["new"]] * 10))
    with Session(engine) as session:
        assert len(session.exec(select(Job)).all()) == 2000
    engine.dispose()
