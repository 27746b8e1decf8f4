"""The real ``vibe`` processes: serve with nothing configured, invalid configuration, a worker
killed with SIGKILL mid-job, and an API restarted after a 202."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from bot.jobs.queue import enqueue
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import Job, JobRun
from tests.support.web import SECRET, fixture_payload, free_port, headers_for

VIBE = [sys.executable, "-m", "bot"]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
    env.update(HOME=str(tmp_path / "home"), VIBE_DATA_DIR=str(tmp_path / "data"))
    env.update(extra)
    return env


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def spawn(
    procs: list[subprocess.Popen[str]], args: list[str], env: dict[str, str]
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*VIBE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    procs.append(proc)
    return proc


def wait_http(url: str, proc: subprocess.Popen[str]) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"process exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up)


def test_serve_with_nothing_configured_starts_and_says_what_is_missing(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    proc = spawn(procs, ["serve", "--port", str(port)], env_for(tmp_path))
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    index = httpx.get(f"http://127.0.0.1:{port}/").json()
    assert index["ready_for_tasks"] is False
    assert any("GitHub credentials" in m for m in index["missing"])
    assert any("VIBE_ANTHROPIC_API_KEY" in m for m in index["missing"])
    data = tmp_path / "data"
    assert (data / "vibe.db").exists()
    secret = (data / "webhook-secret").read_text().strip()
    assert len(secret) == 64
    assert oct((data / "webhook-secret").stat().st_mode & 0o777) == "0o600"
    # The generated secret works for signing deliveries.
    body = json.dumps(fixture_payload("issues.opened")[1]).encode()
    headers = headers_for("issues", body)
    import hashlib
    import hmac

    headers["X-Hub-Signature-256"] = (
        "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    )
    response = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body, headers=headers)
    assert response.status_code == 202
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "worker.stopped" in err  # logs go to stderr, the console message to stdout
    assert secret in out
    assert "tasks cannot run until you configure" in out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VIBE_WORKERS", "many"),
        ("VIBE_GITHUB_API_URL", "ftp://example"),
        ("VIBE_LIMITS__DOLLARS_PER_TASK", "-3"),
        ("VIBE_SANDBOX", "docker"),
    ],
)
def test_invalid_configuration_is_refused_with_a_clear_message(
    tmp_path: Path, variable: str, value: str
) -> None:
    proc = subprocess.run(
        [*VIBE, "serve", "--port", "0"],
        env=env_for(tmp_path, **{variable: value}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert variable in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_never_prints_the_database_password(tmp_path: Path) -> None:
    password = "pw-7c1e9a-do-not-print"
    url = f"postgresql+psycopg://vibe:{password}@127.0.0.1:1/vibe"
    proc = subprocess.run(
        [*VIBE, "serve", "--port", "0"],
        env=env_for(tmp_path, VIBE_DATABASE_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1  # nothing listens on port 1
    assert "Database: postgresql+psycopg://vibe:***@127.0.0.1:1/vibe" in proc.stdout
    assert "cannot start" in proc.stderr
    assert password not in proc.stdout + proc.stderr


def test_jobs_lists_as_table_and_json(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    probe = subprocess.run(
        [*VIBE, "jobs", "probe"], env=env, capture_output=True, text=True, check=True
    )
    assert "queued probe job 1" in probe.stdout
    listed = subprocess.run(
        [*VIBE, "jobs", "--json"], env=env, capture_output=True, text=True, check=True
    )
    [record] = json.loads(listed.stdout)
    assert (record["id"], record["kind"], record["status"], record["attempts"]) == (
        1,
        "probe",
        "queued",
        0,
    )
    table = subprocess.run([*VIBE, "jobs"], env=env, capture_output=True, text=True, check=True)
    assert "probe" in table.stdout
    assert "queued" in table.stdout


def test_worker_killed_mid_job_is_reclaimed_and_completes_once(
    tmp_path: Path, database_url: str, procs: list[subprocess.Popen[str]]
) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    with write_transaction(engine) as conn:
        job_id = enqueue(conn, "probe", {"seconds": 1.5}, max_attempts=5)
    env = env_for(
        tmp_path,
        VIBE_DATABASE_URL=database_url,
        VIBE_LEASE_SECONDS="1.5",
        VIBE_HEARTBEAT_SECONDS="0.3",
    )

    def job_runs() -> list[JobRun]:
        with Session(engine) as session:
            return list(session.exec(select(JobRun).where(JobRun.job_id == job_id)))

    first = spawn(procs, ["worker", "--concurrency", "1"], env)
    wait_for(lambda: len(job_runs()) == 1)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    spawn(procs, ["worker", "--concurrency", "1"], env)

    def done() -> bool:
        with Session(engine) as session:
            found = session.get(Job, job_id)
            return found is not None and found.status == "done"

    wait_for(done, 60)
    attempts = sorted(job_runs(), key=lambda r: r.attempt)
    assert [(r.attempt, r.outcome) for r in attempts] == [(1, None), (2, "done")]
    assert attempts[0].worker != attempts[1].worker
    engine.dispose()


def test_api_restarted_after_202_still_runs_the_job(
    tmp_path: Path, database_url: str, procs: list[subprocess.Popen[str]]
) -> None:
    env = env_for(tmp_path, VIBE_DATABASE_URL=database_url, VIBE_WEBHOOK_SECRET=SECRET)
    port = free_port()
    unconfigured = spawn(procs, ["serve", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/healthz", unconfigured)
    body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
    response = httpx.post(
        f"http://127.0.0.1:{port}/webhook", content=body, headers=headers_for("issues", body)
    )
    assert response.status_code == 202
    time.sleep(1.5)
    engine = make_engine(database_url)
    with Session(engine) as session:
        [waiting] = session.exec(select(Job)).all()
    # Without GitHub credentials no worker claims event jobs: the job waits intact.
    assert (waiting.status, waiting.attempts) == ("queued", 0)
    unconfigured.send_signal(signal.SIGTERM)
    unconfigured.wait(30)
    # Credentials pointing at a closed port: the job runs (and fails, to be retried).
    env["VIBE_GITHUB_TOKEN"] = "ghp_" + "t" * 36
    env["VIBE_GITHUB_API_URL"] = f"http://127.0.0.1:{free_port()}"
    api = spawn(procs, ["serve", "--port", str(port), "--workers", "0"], env)
    wait_http(f"http://127.0.0.1:{port}/healthz", api)
    other_issue = fixture_payload("issues.labeled")[1]
    other_issue["issue"]["number"] += 1000  # its own lane, not behind the first job
    body = json.dumps(other_issue).encode()
    response = httpx.post(
        f"http://127.0.0.1:{port}/webhook", content=body, headers=headers_for("issues", body)
    )
    assert response.status_code == 202
    api.send_signal(signal.SIGKILL)
    api.wait(10)
    with Session(engine) as session:
        jobs = session.exec(select(Job).order_by(Job.id)).all()
    assert [j.status for j in jobs] == ["queued", "queued"]
    job = jobs[1]
    restarted = spawn(procs, ["serve", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/healthz", restarted)

    def ran() -> bool:
        with Session(engine) as session:
            return session.exec(select(JobRun).where(JobRun.job_id == job.id)).first() is not None

    wait_for(ran, 60)
    engine.dispose()
