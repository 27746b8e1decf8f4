"""Disk full under the data directory, and a database that refuses writes, make ``/readyz``
answer 503 with the reason (DESIGN.md section 5: ready means able).

The full disks are real: a size-limited tmpfs mounted on the data directory (skipped where
mounting is not allowed), SQLite's own "database or disk is full" (``PRAGMA
max_page_count``, https://www.sqlite.org/pragma.html#pragma_max_page_count) and a
PostgreSQL session that may not write (``default_transaction_read_only``,
https://www.postgresql.org/docs/current/runtime-config-client.html).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bot.entrypoints.app import create_app
from bot.settings import Settings
from bot.store.engine import init_db, make_engine
from tests.support.database import refuse_writes

MIB = 1024 * 1024


def settings_for(data: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=data, webhook_secret="test-webhook-secret-0123456789", sandbox="none", **extra
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB file system of 300 inodes (tmpfs) as the data directory."""
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,nr_inodes=300,mode=0700", "tmpfs", str(data)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def fill(path: Path, leave: int) -> None:
    """Write ``path`` until its file system has about ``leave`` bytes free (0: full)."""
    chunk = b"\0" * MIB
    with path.open("wb") as out:
        try:
            while True:
                st = os.statvfs(path.parent)
                room = st.f_bavail * st.f_frsize - leave
                if room <= 0:
                    break
                out.write(chunk[: min(room, MIB)])
                out.flush()
        except OSError:
            pass


def test_low_free_space_is_not_ready_naming_both_numbers(small_disk: Path) -> None:
    client = TestClient(
        create_app(settings_for(small_disk, min_free_bytes=4 * MIB, min_free_inodes=10))
    )
    assert client.get("/readyz").status_code == 200
    fill(small_disk / "ballast", leave=1 * MIB)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    [reason] = ready.json()["reasons"]
    assert str(small_disk) in reason
    # What is left (about 1 MiB) and the threshold.
    assert re.search(r" has [0-9.]+ (KiB|MiB) free, below VIBE_MIN_FREE_BYTES \(4\.0 MiB\)", reason)
    (small_disk / "ballast").unlink()
    assert client.get("/readyz").status_code == 200


def test_a_full_disk_is_not_ready(small_disk: Path) -> None:
    client = TestClient(create_app(settings_for(small_disk, min_free_bytes=0, min_free_inodes=0)))
    assert client.get("/readyz").status_code == 200
    fill(small_disk / "ballast", leave=0)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    reasons = " ".join(ready.json()["reasons"])
    assert "No space left on device" in reasons or "disk is full" in reasons
    (small_disk / "ballast").unlink()
    assert client.get("/readyz").status_code == 200


def test_few_free_inodes_are_not_ready(small_disk: Path) -> None:
    client = TestClient(
        create_app(settings_for(small_disk, min_free_bytes=MIB, min_free_inodes=100))
    )
    assert client.get("/readyz").status_code == 200
    many = small_disk / "many"
    many.mkdir()
    created = 0
    while os.statvfs(small_disk).f_favail > 50:
        (many / str(created)).touch()
        created += 1
    ready = client.get("/readyz")
    assert ready.status_code == 503
    [reason] = ready.json()["reasons"]
    assert "inodes" in reason
    assert "VIBE_MIN_FREE_INODES (100)" in reason


def test_the_threshold_is_a_setting_and_checked_on_the_real_file_system(tmp_path: Path) -> None:
    """Where no tmpfs can be mounted: the same check against the real free space."""
    data = tmp_path / "data"
    data.mkdir()
    client = TestClient(create_app(settings_for(data, min_free_bytes=2**62)))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    [reason] = ready.json()["reasons"]
    assert "below VIBE_MIN_FREE_BYTES (4.0 EiB)" in reason
    assert str(data) in reason
    healthy = TestClient(create_app(settings_for(data, min_free_bytes=0, min_free_inodes=0)))
    assert healthy.get("/readyz").status_code == 200


def test_a_database_that_refuses_writes_is_not_ready(tmp_path: Path, database_url: str) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    client = TestClient(create_app(settings_for(tmp_path / "data"), engine=engine))
    assert client.get("/readyz").status_code == 200
    refuse_writes(engine)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    [reason] = ready.json()["reasons"]
    assert "refuses writes" in reason
    assert "database or disk is full" in reason or "read-only transaction" in reason
    engine.dispose()
