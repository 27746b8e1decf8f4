"""The SQLite write lock shared by processes (bot/store/engine.py: ``_WriteLock``): a writer
waits while another process holds ``<database>.writer-lock``, follows at once when it is
let go, and gives up, as the database away, after WRITE_LOCK_WAIT seconds."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from bot.ingest.deliveries import AWAY
from bot.store import engine as engine_module
from bot.store.engine import init_db, make_engine, write_session, write_transaction


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path}/vibe.db")
    init_db(made)
    yield made
    made.dispose()


@contextmanager
def held_elsewhere(tmp_path: Path) -> Iterator[None]:
    """The lock file held as another process holds it: an open file of its own (an flock
    belongs to the open file, so this one excludes the engine's as a process would)."""
    fd = os.open(tmp_path / "vibe.db.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        conn.execute(text("UPDATE job SET attempts = attempts WHERE 0"))


def test_a_writer_waits_for_the_other_process_and_follows_at_once(
    engine: Engine, tmp_path: Path
) -> None:
    got_in: list[float] = []
    with held_elsewhere(tmp_path):

        def write() -> None:
            _write(engine)
            got_in.append(time.monotonic())

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)
        assert got_in == [], "wrote while another process held the write lock"
        released = time.monotonic()
    writer.join(10)
    assert len(got_in) == 1
    # SQLite's own busy handler would retry up to 100 ms later; the lock file is polled
    # every millisecond at most.
    assert got_in[0] - released < 0.05


def test_a_lock_held_past_the_wait_is_the_database_away(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "WRITE_LOCK_WAIT", 0.2)
    with held_elsewhere(tmp_path):
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            _write(engine)
        waited = time.monotonic() - started
    assert 0.2 <= waited < 2
    assert isinstance(raised.value, AWAY)  # the webhook answers 503, the sender retries
    assert "another process held the write lock for 0.2 s" in str(raised.value)
    _write(engine)  # let go: the next writer goes in


def test_threads_of_one_process_take_turns_on_the_one_file(engine: Engine) -> None:
    """The threads of a process share one open lock file, which does not exclude them from
    each other: the process's mutex does. Every write lands, none is refused as locked."""
    with write_transaction(engine) as conn:
        conn.execute(text("CREATE TABLE scratch (n INTEGER)"))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for n in range(20):
                with write_transaction(engine) as conn:
                    conn.execute(text("INSERT INTO scratch VALUES (:n)"), {"n": n})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scratch")).scalar_one() == 160


def test_a_write_transaction_inside_another_on_one_thread_is_refused_at_once(
    engine: Engine,
) -> None:
    """It would wait for itself: a bug in the caller, said at once rather than a hang."""
    with write_session(engine) as session:
        session.exec(text("CREATE TABLE scratch (n INTEGER)"))
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="opened inside another"):
            _write(engine)
        assert time.monotonic() - started < 1  # not after WRITE_LOCK_WAIT (30 s)
    _write(engine)  # the outer one let go of the lock


def test_a_thread_that_waits_past_the_wait_is_the_database_away(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "WRITE_LOCK_WAIT", 0.2)
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with write_transaction(engine):
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        with pytest.raises(OperationalError) as raised:
            _write(engine)
        assert 0.2 <= time.monotonic() - started < 2
    finally:
        done.set()
        holder.join(10)
    assert isinstance(raised.value, AWAY)
    assert "another thread held the write lock for 0.2 s" in str(raised.value)
    _write(engine)


def test_a_write_session_commits_at_its_end_and_rolls_back_on_an_error(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        conn.execute(text("CREATE TABLE scratch (n INTEGER)"))
    with write_session(engine) as session:
        session.exec(text("INSERT INTO scratch VALUES (1)"))

    def fail_midway() -> None:
        with write_session(engine) as session:
            session.exec(text("INSERT INTO scratch VALUES (2)"))
            raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        fail_midway()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM scratch")).scalars().all() == [1]
