"""Shared fixtures. Tests needing PostgreSQL or bubblewrap skip without them, except
under ``VIBE_TEST_STRICT=1`` (set by ``.ci/run``), where a missing service fails."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
STRICT = os.environ.get("VIBE_TEST_STRICT") == "1"


def require(condition: bool, reason: str) -> None:
    """Skip (or, in strict mode, fail) a test whose environment lacks something."""
    if condition:
        return
    if STRICT:
        pytest.fail(f"VIBE_TEST_STRICT=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def bwrap_available() -> None:
    require(shutil.which("bwrap") is not None, "bubblewrap is not installed")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("VIBE_TEST_DATABASE_URL", "")
    require(url.startswith("postgresql"), "VIBE_TEST_DATABASE_URL does not name a PostgreSQL DB")
    return url


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"vibe_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite (a file) and on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'vibe.db'}"
    return str(request.getfixturevalue("pg_database_url"))
