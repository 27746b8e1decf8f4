"""A database that refuses writes, as a full or read-only one does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine


def refuse_writes(engine: Engine) -> Callable[[], None]:
    """Every new connection of ``engine`` refuses to write (SQLite may not grow past its
    current pages, PostgreSQL is read-only); returns the undo."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            pages = int(conn.execute(text("PRAGMA page_count")).scalar_one())
        statement = f"PRAGMA max_page_count = {pages}"
    else:
        statement = "SET default_transaction_read_only = on"

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(statement)
        cursor.close()
        if engine.dialect.name != "sqlite":
            dbapi_conn.commit()

    event.listen(engine, "connect", on_connect)
    engine.dispose()

    def undo() -> None:
        event.remove(engine, "connect", on_connect)
        engine.dispose()

    return undo
