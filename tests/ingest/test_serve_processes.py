"""``vibe serve --processes N``: one line and exit 2 for a bad value; on PostgreSQL and on
SQLite, N real ingest processes share the port and the job workers run once, in the
supervising process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.entrypoints import ingest_process
from bot.entrypoints.app import create_app
from bot.entrypoints.cli import app as cli
from bot.ingest.store_process import StoreProcess
from bot.settings import load_settings
from bot.store.engine import make_engine
from bot.store.tables import Delivery, Job
from tests.support.web import SECRET, fixture_payload, free_port, headers_for

VIBE = [sys.executable, "-m", "bot"]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
    env.update(HOME=str(tmp_path / "home"), VIBE_DATA_DIR=str(tmp_path / "data"))
    env.update(extra)
    return env


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VIBE_* settings but a fresh data directory (SQLite, the default)."""
    for name in list(os.environ):
        if name.startswith("VIBE_") and not name.startswith("VIBE_TEST"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("VIBE_DATA_DIR", str(data))
    return data


@pytest.mark.parametrize("value", ["0", "65", "two", "-1", "1.5", ""])
def test_a_bad_number_of_processes_is_one_line_and_exit_2(no_settings: Path, value: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--port", str(free_port()), "--processes", value])
    assert result.exit_code == 2
    assert (
        result.output == f"vibe: --processes: expected a whole number from 1 to 64, not {value!r}\n"
    )


@pytest.mark.postgres
def test_an_ingest_process_among_several_runs_one_writer(
    tmp_path: Path, pg_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other processes store beside it: it stores through a process of its own, one
    transaction at a time (bot/ingest/store_process.py). Alone and in process, a service on
    PostgreSQL runs two writer threads (bot/ingest/deliveries.py: writers_for)."""
    for name, value in env_for(
        tmp_path, VIBE_DATABASE_URL=pg_database_url, VIBE_WEBHOOK_SECRET=SECRET
    ).items():
        monkeypatch.setenv(name, value)
    # Not this test process's collector: what create() would freeze is pytest's.
    monkeypatch.setattr(ingest_process, "settle_collector", lambda: None)
    one_of_several = ingest_process.create()
    alone = create_app(load_settings())
    try:
        store = one_of_several.webhook.store  # type: ignore[attr-defined]
        assert isinstance(store, StoreProcess)
        assert store.alive
        assert alone.webhook.store.writers == 2  # type: ignore[attr-defined]
    finally:
        one_of_several.webhook.store.close()  # type: ignore[attr-defined]
        for application in (one_of_several, alone):
            application.state.engine.dispose()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.postgres
@pytest.mark.slow
def test_two_ingest_processes_on_postgresql_accept_deliveries(
    tmp_path: Path, pg_database_url: str
) -> None:
    _two_ingest_processes_accept_deliveries(tmp_path, pg_database_url)


@pytest.mark.slow
def test_two_ingest_processes_on_sqlite_accept_deliveries(tmp_path: Path) -> None:
    """The processes' writers take turns on the database's lock file (bot/store/engine.py)."""
    _two_ingest_processes_accept_deliveries(tmp_path, None)


def _two_ingest_processes_accept_deliveries(tmp_path: Path, database_url: str | None) -> None:
    port = free_port()
    database = {"VIBE_DATABASE_URL": database_url} if database_url else {}
    env = env_for(tmp_path, VIBE_WEBHOOK_SECRET=SECRET, VIBE_LOG_LEVEL="WARNING", **database)
    engine = make_engine(database_url or f"sqlite:///{tmp_path / 'data' / 'vibe.db'}")
    proc = subprocess.Popen(
        [*VIBE, "serve", "--port", str(port), "--processes", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_serving(f"{url}/healthz", proc)
        # Two ingest processes under the supervisor, each a separate server of the port.
        servers = [p for p in _children(proc.pid) if "spawn" in _cmdline(p)]
        assert len(servers) == 2, [_cmdline(p) for p in _children(proc.pid)]
        body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
        sent = [str(uuid.uuid4()) for _ in range(80)]

        def deliver(share: list[str]) -> list[int]:
            # A connection of its own: the kernel hands each to one of the two processes.
            with httpx.Client(timeout=30) as own:
                return [
                    own.post(
                        f"{url}/webhook", content=body, headers=headers_for("issues", body, d)
                    ).status_code
                    for d in share
                ]

        with ThreadPoolExecutor(8) as pool:
            codes = [c for part in pool.map(deliver, [sent[n::8] for n in range(8)]) for c in part]
        with httpx.Client(timeout=30) as client:
            again = client.post(
                f"{url}/webhook", content=body, headers=headers_for("issues", body, sent[0])
            )
        assert codes == [202] * len(sent)
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
        with Session(engine) as session:
            stored = {d.id: d for d in session.exec(select(Delivery))}
            jobs = [j for j in session.exec(select(Job)) if j.kind == "event"]
        assert set(stored) == set(sent)
        assert all(stored[d].body == body for d in sent)
        assert sorted(j.delivery_id or "" for j in jobs) == sorted(sent)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        engine.dispose()
    assert proc.returncode == 0, out
    assert "Ingest processes: 2" in out


def _wait_serving(url: str, proc: subprocess.Popen[str]) -> None:
    """Until ``url`` answers 200 (60 s at most); the service's output if it exits first."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.2)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_stop_signalled_to_the_whole_process_group_ends_serve_in_seconds(
    tmp_path: Path,
) -> None:
    """systemd stops a unit by signalling every process of it (KillMode=control-group, the
    default), a shell's job control the whole group. The store process must leave its
    ending to the service, which stores what is in hand and ends it: ended by the signal
    itself, it failed the deliveries in flight and the service started another, which it
    then waited 30 s for. Deliveries keep arriving until the signal; each one answered
    202 is stored."""
    port = free_port()
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [*VIBE, "serve", "--port", str(port)],
        env=env_for(tmp_path, VIBE_WEBHOOK_SECRET=SECRET),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
    answered: list[tuple[str, int]] = []
    try:
        _wait_serving(f"{url}/readyz", proc)

        def deliver() -> None:
            with httpx.Client(timeout=30) as client:
                while proc.poll() is None:
                    delivery = str(uuid.uuid4())
                    try:
                        answer = client.post(
                            f"{url}/webhook",
                            content=body,
                            headers=headers_for("issues", body, delivery),
                        )
                    except httpx.TransportError:
                        return
                    answered.append((delivery, answer.status_code))

        with ThreadPoolExecutor(4) as pool:
            for _ in range(4):
                pool.submit(deliver)
            time.sleep(1.0)
            signalled = time.monotonic()
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert took < 10, f"vibe serve took {took:.1f} s to stop\n{out}"
    assert "delivery_store.ended" not in out
    assert out.count("delivery_store.started") == 1, out
    left = [p for p in _pids() if _session(p) == proc.pid]
    assert left == [], [_cmdline(p) for p in left]
    accepted = {d for d, code in answered if code == 202}
    assert len(accepted) > 10, answered[-5:]
    assert {code for _, code in answered} <= {202, 503}, answered
    engine = make_engine(f"sqlite:///{data / 'vibe.db'}")
    with Session(engine) as session:
        stored = {d.id for d in session.exec(select(Delivery))}
    engine.dispose()
    assert accepted <= stored


def _pids() -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None
