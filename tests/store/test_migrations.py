"""Alembic migrations build exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from bot.ingest.deliveries import store_deliveries
from bot.store.engine import alembic_config, init_db, make_engine
from tests.support.web import fixture_payload, incoming


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


_BODY_COMPRESSION = text(
    "SELECT attcompression FROM pg_attribute "
    "WHERE attrelid = 'delivery'::regclass AND attname = 'body'"
)


@pytest.mark.postgres
def test_delivery_bodies_are_compressed_with_lz4_on_postgresql(pg_database_url: str) -> None:
    """pglz, PostgreSQL's default, cost the ingest transaction nearly three times lz4's
    time per 14 KB body (migration 0011)."""
    engine = make_engine(pg_database_url)
    init_db(engine)
    body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
    item = incoming(fixture_payload("issue_comment.created")[1])
    assert store_deliveries(engine, [replace(item, body=body)], max_attempts=3) == ["new"]
    with engine.connect() as conn:
        assert conn.execute(_BODY_COMPRESSION).scalar_one() == "l"
        stored = text("SELECT pg_column_compression(body) FROM delivery WHERE id = :id")
        assert conn.execute(stored, {"id": item.delivery_id}).scalar_one() == "lz4"
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0010")
    with engine.connect() as conn:
        assert conn.execute(_BODY_COMPRESSION).scalar_one() == ""  # the default again
    init_db(engine)
    with engine.connect() as conn:
        assert conn.execute(_BODY_COMPRESSION).scalar_one() == "l"
    engine.dispose()
