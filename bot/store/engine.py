"""The database engine, write transactions and migrations (alembic, ``migrations/``)."""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import create_engine

from bot.store import tables  # noqa: F401 - registers the tables on SQLModel.metadata


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create the engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=20,
            max_overflow=40,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that
        # BEGIN IMMEDIATE (bot/jobs/queue.py) really takes the write lock up front.
        event.listen(engine, "connect", _disable_pysqlite_begin)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)


def _disable_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    mode = conn.info.pop("sqlite_begin", "BEGIN")
    conn.exec_driver_sql(mode)


# One writer mutex per SQLite engine (see write_transaction).
_sqlite_writers: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes the write lock at once on SQLite (``BEGIN IMMEDIATE``).

    On SQLite the threads of one process also queue on a lock of their own first: SQLite's
    busy handler polls with sleeps of up to 100 ms, so dozens of threads contending for the
    file lock turn a millisecond write into a latency tail; a mutex hands over at once.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with _sqlite_writers.setdefault(engine, threading.Lock()), engine.connect() as conn:
        conn.info["sqlite_begin"] = "BEGIN IMMEDIATE"
        with conn.begin():
            yield conn


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
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        command.upgrade(alembic_config(conn), "head")
