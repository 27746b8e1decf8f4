"""Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from bot.store.engine import alembic_config, init_db, make_engine


def test_migrations_match_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        init_db(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "render_as_batch": True}
            )
            assert compare_metadata(context, SQLModel.metadata) == []
            assert context.get_current_revision() is not None
    finally:
        engine.dispose()  # a failed comparison must not leave a connection to a later test


def test_downgrade_to_nothing_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    init_db(engine)
    assert {"delivery", "job", "task", "iteration"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_processes_starting_together_migrate_once(database_url: str) -> None:
    errors: list[BaseException] = []
    engines = [make_engine(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))

    def start(engine: Engine) -> None:
        barrier.wait()
        try:
            init_db(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for engine in engines:
        engine.dispose()
