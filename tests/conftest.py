"""Shared fixtures. Tests needing PostgreSQL or bubblewrap skip without them, except
under ``VIBE_TEST_STRICT=1`` (set by ``.ci/run``), where a missing service fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
