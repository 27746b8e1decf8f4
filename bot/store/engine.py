"""The database engine, write transactions and migrations (alembic, ``migrations/``)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, create_engine

from bot.store import tables  # noqa: F401 - registers the tables on SQLModel.metadata

WAL_SWITCH_TRIES = 30


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Switching a new file to WAL needs it alone, and SQLite answers "database is locked"
    # at once, without its busy handler, while another connection is switching it too
    # (processes starting together): try again for up to about 5 s.
    for attempt in range(WAL_SWITCH_TRIES):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_TRIES - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


# A database that is frozen (not down: it accepts and never answers) must not hold a thread
# for ever. Each wait is bounded: a connection from the pool, connecting, a statement, a
# lock, an idle transaction, and TCP itself (keep-alives for an idle connection, unacked data
# for a busy one); a libpq parameter or ``options`` in the URL overrides its default here.
# https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS
# https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-STATEMENT-TIMEOUT
# A request does not wait for all of these: it gives up after VIBE_DATABASE_WAIT_SECONDS
# (bot/ingest/webhook.py, bot/entrypoints/readiness.py) and answers 503.
POOL_TIMEOUT = 5.0
POSTGRES_CONNECT: dict[str, int] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}
POSTGRES_OPTIONS = (
    "-c statement_timeout=60s -c lock_timeout=10s -c idle_in_transaction_session_timeout=300s"
)


def make_engine(url: str, *, pre_ping: bool = True) -> Engine:
    """Create the engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``),
    every database wait bounded (:data:`POSTGRES_CONNECT`, :data:`POSTGRES_OPTIONS`; SQLite
    waits 30 s for a lock).

    On PostgreSQL a connection taken from the pool is first pinged (one round trip), so a
    connection the server closed meanwhile (a restart) is replaced, not failed on.
    ``pre_ping=False`` is for a caller that retries on a lost connection itself
    (bot/ingest/store_process.py)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20,
            max_overflow=40,
            pool_timeout=POOL_TIMEOUT,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that
        # BEGIN IMMEDIATE (bot/jobs/queue.py) really takes the write lock up front.
        event.listen(engine, "connect", _disable_pysqlite_begin)
        event.listen(engine, "begin", _sqlite_begin)
        # Many rows in one INSERT ... VALUES (...), (...) rather than pysqlite's executemany,
        # which steps once per row and gives the GIL up and back at every step: under load
        # the ingest writer (bot/ingest/deliveries.py) waited for the GIL at each of them,
        # while the requests waited for the writer.
        engine.dialect.use_insertmanyvalues_wo_returning = True
        return engine
    given = make_url(url).query
    connect_args: dict[str, Any] = {k: v for k, v in POSTGRES_CONNECT.items() if k not in given}
    options = given.get("options")
    # Ours first: a ``-c`` of the URL's own ``options`` comes later and wins.
    connect_args["options"] = " ".join([POSTGRES_OPTIONS, *_strings(options)])
    return create_engine(
        url,
        pool_size=20,
        max_overflow=40,
        pool_pre_ping=pre_ping,
        pool_timeout=POOL_TIMEOUT,
        connect_args=connect_args,
    )


def _strings(value: str | tuple[str, ...] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else value


def _disable_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    mode = conn.info.pop("sqlite_begin", "BEGIN")
    conn.exec_driver_sql(mode)


# How long a writer waits for another process's write transaction: SQLite's own busy
# timeout (make_engine).
WRITE_LOCK_WAIT = 30.0


class _WriteLock:
    """Who writes to one SQLite database next: the threads of a process queue on a mutex,
    then the processes (``vibe serve --processes``, ``vibe worker``) on an ``flock`` of a
    file beside the database, ``<database>.writer-lock``. SQLite's own busy handler polls
    with sleeps of 1, 2, 5, 10 ms and up to 100 ms, so writers contending for its file
    lock turn a millisecond write into a latency tail; these hand over at once within a
    process and within a fraction of a millisecond between processes."""

    def __init__(self, engine: Engine) -> None:
        # A file: the settings refuse an in-memory database (bot/settings.py).
        self.mutex = threading.Lock()
        self.owner: int | None = None
        self.fd = os.open(
            f"{engine.url.database}.writer-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        weakref.finalize(engine, os.close, self.fd)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.owner == threading.get_ident():
            # It would wait for itself: a write transaction opened inside another.
            raise RuntimeError("a write transaction was opened inside another on one thread")
        if not self.mutex.acquire(timeout=WRITE_LOCK_WAIT):
            raise _away(f"another thread held the write lock for {WRITE_LOCK_WAIT:g} s")
        try:
            self._lock(self.fd)
            self.owner = threading.get_ident()
            try:
                yield
            finally:
                self.owner = None
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.mutex.release()

    @staticmethod
    def _lock(fd: int) -> None:
        """The file lock, waited for at most :data:`WRITE_LOCK_WAIT` seconds (then the
        database counts as away: OperationalError, as SQLite's own "database is locked")."""
        deadline = time.monotonic() + WRITE_LOCK_WAIT
        pause = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _away(
                        f"another process held the write lock for {WRITE_LOCK_WAIT:g} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)


def _away(why: str) -> OperationalError:
    """A write lock not had in time: the database counts as away, as with SQLite's own
    "database is locked"."""
    return OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError(why))


_sqlite_writers: weakref.WeakKeyDictionary[Engine, _WriteLock] = weakref.WeakKeyDictionary()
_sqlite_writers_made = threading.Lock()


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes the write lock at once on SQLite (``BEGIN IMMEDIATE``),
    after the writers before it in this process and in the others (:class:`_WriteLock`)."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    lock = _sqlite_writers.get(engine)
    if lock is None:
        with _sqlite_writers_made:
            lock = _sqlite_writers.get(engine)
            if lock is None:
                lock = _sqlite_writers[engine] = _WriteLock(engine)
    with lock.held(), engine.connect() as conn:
        conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
        with conn.begin():
            yield conn


@contextlib.contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """An ORM session in a :func:`write_transaction`, committed when the block ends (and
    rolled back if it raises). A session that reads and then writes needs it on SQLite:
    a deferred transaction that read is refused at its first write with "database is
    locked", at once and whatever the busy timeout, when another connection committed
    since its read (SQLITE_BUSY_SNAPSHOT, https://www.sqlite.org/rescode.html#busy_snapshot).
    Nothing slow (a network call) belongs inside: every other writer waits for it."""
    with write_transaction(engine) as conn, Session(bind=conn) as session:
        yield session
        session.flush()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant: serialises concurrent migrations of one PostgreSQL database.
MIGRATION_LOCK_ID = 0x76696265


def alembic_config(connection: Connection) -> Config:
    """Alembic configuration bound to ``connection`` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def init_db(engine: Engine) -> None:
    """Bring the schema to the latest migration (``bot/store/migrations/versions``).

    Safe when several processes start at once: PostgreSQL takes an advisory lock, SQLite's
    ``BEGIN IMMEDIATE`` the write lock, for the whole upgrade.
    """
    with write_transaction(engine) as conn:
        if engine.dialect.name == "postgresql":
            # A migration may rewrite a large table, and waits for another process's.
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text("SET LOCAL lock_timeout = 0"))
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        command.upgrade(alembic_config(conn), "head")


@functools.cache
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The migrations this code ships: (every revision, the heads)."""
    script = ScriptDirectory(str(MIGRATIONS))
    every = frozenset(rev.revision for rev in script.walk_revisions())
    return every, frozenset(script.get_heads())


@dataclass(frozen=True)
class SchemaState:
    """The revisions alembic recorded in a database beside those this code ships."""

    current: frozenset[str]
    heads: frozenset[str]
    known: bool  # every recorded revision is one of this code's migrations

    @property
    def problem(self) -> str | None:
        """Why the schema is not the one this code expects (``None``: at head)."""
        if self.current == self.heads:
            return None
        expected = ", ".join(sorted(self.heads))
        if not self.current:
            return f"the database has no schema (expected revision {expected})"
        found = ", ".join(sorted(self.current))
        if not self.known:
            return (
                f"the database is at revision {found}, which this version does not know "
                f"(expected {expected}): a newer vibe-bot migrated it"
            )
        return f"the database is at revision {found}, not at the latest ({expected})"


def schema_state(engine: Engine) -> SchemaState:
    """Read the revision alembic recorded; SQLAlchemyError when the database is
    unreachable."""
    every, heads = _revisions()
    with engine.connect() as conn:
        current = frozenset(MigrationContext.configure(conn).get_current_heads())
    return SchemaState(current, heads, current <= every)
