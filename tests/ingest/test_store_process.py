"""The delivery store in a process of its own (bot/ingest/store_process.py): a real child
process on a real SQLite file. It reads and stores what the request hands over and answers
as the in-process writer does; a child that ends fails the deliveries waiting on it (503)
and is replaced; the child ends with its parent; close stores what is in hand first."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from bot.entrypoints.readiness import Readiness
from bot.ingest import store_process
from bot.ingest.deliveries import Incoming, Received, Taken, read_delivery
from bot.ingest.store_process import StoreConfig, StoreProcess
from bot.settings import Settings
from bot.store.engine import init_db, make_engine
from bot.store.tables import Delivery, Job
from tests.support.web import WEBHOOKS

BODY = (WEBHOOKS / "issues.labeled.json").read_bytes()


def _config(url: str) -> StoreConfig:
    return StoreConfig(
        database_url=url,
        max_attempts=3,
        bot_login="",
        log_level="WARNING",
        log_json=True,
        secrets=(),
    )


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'vibe.db'}"
    init_db(make_engine(url))
    return url


@pytest.fixture
def store(database: str) -> StoreProcess:
    process = StoreProcess(_config(database))
    process.start()
    yield process  # type: ignore[misc]
    process.close()


def _received(delivery_id: str | None = None, body: bytes = BODY) -> Received:
    return Received(delivery_id or str(uuid.uuid4()), "issues", body, "application/json")


def test_a_delivery_is_read_and_stored_by_the_child(store: StoreProcess, database: str) -> None:
    first = _received()

    async def deliver() -> list[Taken]:
        return [
            await store.take(first),
            await store.take(first),
            await store.take(_received(body=b'{"action": ')),
        ]

    new, again, malformed = asyncio.run(deliver())
    assert new.result == "new"
    assert new.ingested.outcome == "queued"
    assert new.ingested.action == "labeled"
    assert new.malformed is None
    assert again.result == "duplicate"
    assert malformed.result == "new"
    assert malformed.malformed is not None
    with Session(make_engine(database)) as session:
        delivery = session.get(Delivery, first.delivery_id)
        jobs = session.exec(select(Job).where(Job.delivery_id == first.delivery_id)).all()
    assert delivery is not None
    assert delivery.body == BODY
    assert delivery.action == "labeled"
    assert len(jobs) == 1
    # The lane by the repository's id (bot/ingest/deliveries.py: task_lanes).
    repository = json.loads(BODY)["repository"]["id"]
    assert jobs[0].serial_key == f"repository:{repository}#1"


def test_a_child_that_ends_fails_what_waits_on_it_and_is_replaced(store: StoreProcess) -> None:
    old = store.pid
    assert old is not None

    async def waiting_on_a_killed_child() -> BaseException | Taken:
        os.kill(old, signal.SIGSTOP)  # it takes the delivery, and never answers
        pending = asyncio.ensure_future(store.take(_received()))
        await asyncio.sleep(0.5)
        assert not pending.done()
        os.kill(old, signal.SIGKILL)
        try:
            return await asyncio.wait_for(pending, 30)
        except OperationalError as exc:
            return exc

    failed = asyncio.run(waiting_on_a_killed_child())
    assert isinstance(failed, OperationalError)
    assert "the delivery store's process ended" in str(failed.orig)
    deadline = time.monotonic() + 60
    while not (store.alive and store.pid != old):
        assert time.monotonic() < deadline, "no new child within 60 s"
        time.sleep(0.1)
    taken = asyncio.run(store.take(_received()))
    assert taken.result == "new"


def _store_children() -> set[int]:
    """This test process's store children still running (zombies are not)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] != "Z" and b"store_process" in cmdline:
            found.add(int(entry.name))
    return found


def test_close_while_a_new_child_starts_ends_that_child_too(database: str) -> None:
    """The child ends, and close() comes while its successor starts: the word to end went
    to the old child's socket, so the new one must be ended by the end of its own, not
    left running (close waited 30 s for it, then killed it)."""
    store = StoreProcess(_config(database))
    store.start()
    old = store.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while store._conn is not None:  # the reader has seen the end and is starting another
        assert time.monotonic() < deadline, "the end of the child was not seen"
        time.sleep(0.005)
    started = time.monotonic()
    store.close()
    took = time.monotonic() - started
    assert took < 10, f"close took {took:.1f} s"
    deadline = time.monotonic() + 10
    while _store_children():
        assert time.monotonic() < deadline, f"left running: {_store_children()}"
        time.sleep(0.05)


def test_close_stores_what_is_in_hand_and_ends_the_child(
    store: StoreProcess, database: str
) -> None:
    child = store.pid
    ids = [str(uuid.uuid4()) for _ in range(40)]

    async def deliver() -> list[Taken]:
        return list(await asyncio.gather(*(store.take(_received(i)) for i in ids)))

    assert {taken.result for taken in asyncio.run(deliver())} == {"new"}
    store.close()
    assert not store.alive
    with pytest.raises(OperationalError, match="not running"):
        asyncio.run(store.take(_received()))
    with Session(make_engine(database)) as session:
        stored = session.exec(select(Delivery.id).where(Delivery.id.in_(ids))).all()  # type: ignore[attr-defined]
    assert sorted(stored) == sorted(ids)
    assert child is not None
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_the_child_ends_with_its_parent(database: str, tmp_path: Path) -> None:
    """A parent killed outright (no close): the child reads the end of its socket and
    exits."""
    pid_file = tmp_path / "child.pid"
    script = textwrap.dedent(
        f"""
        import os, pathlib
        from bot.ingest.store_process import StoreProcess
        from tests.ingest.test_store_process import _config
        store = StoreProcess(_config({database!r}))
        store.start()
        pathlib.Path({str(pid_file)!r}).write_text(str(store.pid))
        os.kill(os.getpid(), 9)
        """
    )
    parent = subprocess.run(
        [sys.executable, "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert parent.returncode == -signal.SIGKILL
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child}").exists():
        stat = Path(f"/proc/{child}/stat").read_text().split()
        if stat[2] == "Z":  # ended, waiting for init to reap it
            break
        assert time.monotonic() < deadline, "the child outlived its parent by 30 s"
        time.sleep(0.1)


def test_readiness_says_whether_the_store_runs(store: StoreProcess, database: str) -> None:
    settings = Settings(database_url=database, webhook_secret="s" * 32)
    readiness = Readiness(settings, make_engine(database), store=store, runs_jobs=False)
    check = readiness.run()[-1]
    assert check.name == "delivery store"
    assert check.status == "ok"
    assert f"pid {store.pid}" in check.lines[0]
    store.close()
    check = readiness.run()[-1]
    assert check.status == "failed"
    assert "503" in check.lines[0]


def test_a_delivery_whose_reading_fails_fails_alone(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's batch: one delivery that cannot be read (a bug in reading a payload
    GitHub would send again) is answered as an error; the others are stored."""
    bad = _received()

    def read(received: Received, bot_login: str) -> tuple[Incoming, str | None]:
        if received.delivery_id == bad.delivery_id:
            raise KeyError("a payload no reading expected")
        return read_delivery(received, bot_login)

    monkeypatch.setattr(store_process, "read_delivery", read)
    good = [_received(), _received()]
    batch = [(0, good[0]), (1, bad), (2, good[1])]
    answers = store_process._store(make_engine(database), _config(database), batch)
    assert [(seq, kind) for seq, kind, _ in answers] == [(0, "taken"), (1, "error"), (2, "taken")]
    assert "a payload no reading expected" in answers[1][2]
    with Session(make_engine(database)) as session:
        assert session.get(Delivery, good[1].delivery_id) is not None
        assert session.get(Delivery, bad.delivery_id) is None


def test_a_database_away_answers_every_delivery_of_the_batch_away(tmp_path: Path) -> None:
    (tmp_path / "vibe.db").mkdir()  # SQLite cannot open it: "unable to open database file"
    away = f"sqlite:///{tmp_path / 'vibe.db'}"
    batch = [(0, _received()), (1, _received())]
    answers = store_process._store(make_engine(away), _config(away), batch)
    assert [(seq, kind) for seq, kind, _ in answers] == [(0, "away"), (1, "away")]
    assert "unable to open database file" in answers[0][2]


def _terminate_others(url: str, database: str | None = None) -> int:
    """Close every other connection to ``database`` (``url``'s own by default), as a
    server restart does."""
    engine = make_engine(url)
    with engine.connect() as conn:
        ended = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = coalesce(:name, current_database()) "
                "AND pid <> pg_backend_pid()"
            ),
            {"name": database},
        ).scalar_one()
    engine.dispose()
    return int(ended)


@pytest.mark.postgres
def test_a_connection_the_server_closed_is_replaced_and_the_batch_stored(
    pg_database_url: str,
) -> None:
    """The child pings no connection before a batch: the batch that meets a closed one is
    stored on a new connection, not answered 503 (which GitHub does not retry)."""
    engine = make_engine(pg_database_url)
    init_db(engine)
    store = StoreProcess(_config(pg_database_url))
    store.start()
    try:
        assert asyncio.run(store.take(_received())).result == "new"
        assert _terminate_others(pg_database_url) >= 1
        later = _received()
        assert asyncio.run(store.take(later)).result == "new"
    finally:
        store.close()
    with Session(engine) as session:
        assert session.get(Delivery, later.delivery_id) is not None
        assert len(session.exec(select(Job)).all()) == 2
    engine.dispose()


@pytest.mark.postgres
def test_a_database_that_stays_away_is_still_answered_away(
    pg_database_url: str, postgres_url: str
) -> None:
    """One new connection is tried, not more: when the server also refuses that one, the
    batch is away (503)."""
    engine = make_engine(pg_database_url, pre_ping=False)
    init_db(engine)
    assert store_process._store(engine, _config(pg_database_url), [(0, _received())])[0][1] == (
        "taken"
    )
    name = make_url(pg_database_url).database
    admin = make_engine(postgres_url)
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
        conn.commit()
    try:
        assert _terminate_others(postgres_url, name) >= 1
        answers = store_process._store(engine, _config(pg_database_url), [(1, _received())])
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            conn.commit()
        admin.dispose()
        engine.dispose()
    assert [(seq, kind) for seq, kind, _ in answers] == [(1, "away")]
    assert "not currently accepting connections" in answers[0][2]
