"""The real ``vibe`` processes: serve with nothing configured, invalid configuration (one line,
exit 2: values, a port in use, an unwritable data directory), Ctrl-C, ``vibe check``, a
worker that could never run a job, a worker killed with SIGKILL mid-job, and an API
restarted after a 202."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.jobs.queue import enqueue
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import Job, JobRun
from bot.testing.fake_github import FakeGitHub
from bot.testing.model_server import ScriptedModelServer
from tests.support.web import SECRET, fixture_payload, free_port, headers_for

VIBE = [sys.executable, "-m", "bot"]


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
    env.update(HOME=str(tmp_path / "home"), VIBE_DATA_DIR=str(tmp_path / "data"))
    env.update(extra)
    return env


MODEL_KEY = "sk-ant-test-0000000000"


@pytest.fixture
def able() -> Iterator[dict[str, str]]:
    """The settings of a bot able to run tasks: a token GitHub (the fake) accepts, a key the
    scripted model accepts, and no sandbox (a worker refuses to start without them)."""
    with FakeGitHub() as github, ScriptedModelServer(api_key=MODEL_KEY) as model:
        yield {
            "VIBE_GITHUB_TOKEN": github.user_token("rita"),
            "VIBE_GITHUB_API_URL": github.api_url,
            "VIBE_ANTHROPIC_API_KEY": MODEL_KEY,
            "VIBE_ANTHROPIC_BASE_URL": model.base_url,
            "VIBE_SANDBOX": "none",
        }


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
    assert "Running upgrade  -> 0001" in err  # the migrations say what they do
    assert "setup plugin" not in err  # alembic's plugins' set-up does not
    assert secret in out
    assert "tasks cannot run until the failed ones are fixed" in out
    assert "failed       settings:        GitHub credentials: set VIBE_GITHUB_APP_ID" in out


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("VIBE_WORKERS", "many"),
        ("VIBE_GITHUB_API_URL", "ftp://example"),
        ("VIBE_LIMITS__DOLLARS_PER_TASK", "-3"),
        ("VIBE_SANDBOX", "docker"),
        ("VIBE_DATABASE_URL", "postgres://vibe:pw-secret@db/vibe"),
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
    [line] = proc.stderr.splitlines()  # one line, naming the variable
    assert line.startswith(f"vibe: {variable}: ")
    assert "pw-secret" not in line
    if variable == "VIBE_DATABASE_URL":
        assert "postgresql+psycopg://" in line


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


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The test's view of the service's database, disposed even when the test fails (a
    connection left to the garbage collector warns in whichever test runs next)."""
    made = make_engine(database_url)
    yield made
    made.dispose()


def test_worker_killed_mid_job_is_reclaimed_and_completes_once(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    procs: list[subprocess.Popen[str]],
    able: dict[str, str],
) -> None:
    init_db(engine)
    with write_transaction(engine) as conn:
        job_id = enqueue(conn, "probe", {"seconds": 1.5}, max_attempts=5)
    port = free_port()
    env = env_for(
        tmp_path,
        VIBE_DATABASE_URL=database_url,
        VIBE_LEASE_SECONDS="1.5",
        VIBE_HEARTBEAT_SECONDS="0.3",
        **able,
    )

    def job_runs() -> list[JobRun]:
        with Session(engine) as session:
            return list(session.exec(select(JobRun).where(JobRun.job_id == job_id)))

    first = spawn(procs, ["worker", "--concurrency", "1", "--port", str(port)], env)
    wait_for(lambda: len(job_runs()) == 1)
    # The worker's own port, for Kubernetes probes.
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    assert "vibe_" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
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


def test_api_restarted_after_202_still_runs_the_job(
    tmp_path: Path, database_url: str, engine: Engine, procs: list[subprocess.Popen[str]]
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
    with Session(engine) as session:
        [waiting] = session.exec(select(Job).where(col(Job.kind) == "event")).all()
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
        jobs = session.exec(select(Job).where(col(Job.kind) == "event").order_by(Job.id)).all()
    assert [j.status for j in jobs] == ["queued", "queued"]
    job = jobs[1]
    restarted = spawn(procs, ["serve", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/healthz", restarted)

    def ran() -> bool:
        with Session(engine) as session:
            return session.exec(select(JobRun).where(JobRun.job_id == job.id)).first() is not None

    wait_for(ran, 60)


def run_vibe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VIBE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_a_port_in_use_is_one_line_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = run_vibe(["serve", "--port", str(port)], env_for(tmp_path))
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("vibe:")]
    assert line == (
        f"vibe: cannot listen on 127.0.0.1:{port}: Address already in use; stop what uses "
        "the port or pick another with --port"
    )
    assert "Traceback" not in proc.stderr
    assert "worker.started" not in proc.stderr


def test_an_unwritable_data_directory_is_one_line_naming_it(tmp_path: Path) -> None:
    # We run as root, whom permissions do not stop: nobody can create a directory under
    # a regular file.
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data"
    proc = run_vibe(["serve", "--port", "0"], env_for(tmp_path, VIBE_DATA_DIR=str(data)))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"vibe: the data directory {data} is not writable (Not a directory): set "
        "VIBE_DATA_DIR to a writable directory or make this one writable"
    ]


def test_a_misspelt_variable_is_a_warning_with_the_nearest_setting(tmp_path: Path) -> None:
    env = env_for(tmp_path, VIBE_WEBHOOK_SECERT="s3cret", VIBE_TEST_ANYTHING="1")
    proc = run_vibe(["jobs"], env)
    assert proc.returncode == 0  # a warning, not an error
    assert proc.stderr.splitlines() == [
        "vibe: warning: VIBE_WEBHOOK_SECERT is not a setting and is ignored (did you mean "
        "VIBE_WEBHOOK_SECRET?)"
    ]


def test_ctrl_c_on_serve_exits_quietly_while_starting_and_when_running(
    tmp_path: Path, procs: list[subprocess.Popen[str]]
) -> None:
    early = spawn(procs, ["serve", "--port", "0"], env_for(tmp_path / "early"))
    time.sleep(0.5)  # while the command line loads
    early.send_signal(signal.SIGINT)
    _, err = early.communicate(timeout=30)
    assert early.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err

    port = free_port()
    env = env_for(tmp_path, VIBE_LOG_JSON="true", VIBE_SANDBOX="none")
    running = spawn(procs, ["serve", "--port", str(port)], env)
    wait_http(f"http://127.0.0.1:{port}/healthz", running)
    running.send_signal(signal.SIGINT)
    out, err = running.communicate(timeout=30)
    assert running.returncode in (0, 130), err
    assert "Traceback" not in err
    # In JSON mode the generated secret is never printed: where it is stored is.
    secret_file = tmp_path / "data" / "webhook-secret"
    assert secret_file.read_text().strip() not in out + err
    assert f"Generated a webhook secret, stored in {secret_file} (mode 0600)" in out + err


# A Ctrl-C that lands while a class body runs during an import: Python 3.11 turns what
# ``__set_name__`` raises into a RuntimeError whose cause is the KeyboardInterrupt (seen
# when pydantic builds the repository config's models as ``vibe serve`` starts).
WRAPPED_CTRL_C = """
import bot.entrypoints.cli as cli

class Interrupting:
    def __set_name__(self, owner, name):
        raise KeyboardInterrupt

def starting():
    class Config:
        field = Interrupting()

cli.app = starting
cli.main()
"""


def test_a_ctrl_c_wrapped_by_an_import_hook_exits_quietly(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPED_CTRL_C],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_for(tmp_path),
        check=False,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == ""


def test_vibe_check_prints_each_check_and_exits_1_until_able(
    tmp_path: Path, able: dict[str, str]
) -> None:
    unable = run_vibe(["check"], env_for(tmp_path, VIBE_SANDBOX="none"))
    assert unable.returncode == 1
    lines = unable.stdout.splitlines()
    assert lines[0] == "vibe-bot cannot run tasks: 2 problem(s) to fix.", unable.stdout
    assert lines[1].split()[:3] == ["failed", "settings:", "GitHub"]
    assert lines[2].strip() == "model access: set VIBE_ANTHROPIC_API_KEY"
    statuses = [line[:15].strip() for line in lines[3:]]
    assert statuses == ["not checked", "ok", "ok", "ok", "not checked"]
    assert "no credentials (see settings)" in lines[3]
    assert "VIBE_SANDBOX=none: commands run WITHOUT ISOLATION" in lines[4]
    # A fresh database is what `vibe serve` migrates at start; the check changes nothing.
    assert "the database has no schema" in lines[6]

    ok = run_vibe(["check"], env_for(tmp_path, **able))
    assert ok.returncode == 0, ok.stdout
    lines = ok.stdout.splitlines()
    assert lines[0] == "vibe-bot can run tasks."
    assert [line.split()[0] for line in lines[1:]] == ["ok"] * 6
    assert f"accepted by {able['VIBE_ANTHROPIC_BASE_URL']}" in lines[-1]


def test_a_worker_that_could_never_run_a_job_exits_1_with_one_line_per_problem(
    tmp_path: Path, able: dict[str, str]
) -> None:
    nothing = run_vibe(["worker"], env_for(tmp_path, VIBE_SANDBOX="none"))
    assert nothing.returncode == 1
    problems = [line for line in nothing.stderr.splitlines() if line.startswith("vibe:")]
    assert [p.split(":")[1].strip() for p in problems] == ["GitHub credentials", "model access"]
    assert "Traceback" not in nothing.stderr

    # A database that a newer vibe-bot migrated: this version cannot use it.
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'vibe.db'}")
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    newer = run_vibe(["worker"], env_for(tmp_path, **able))
    assert newer.returncode == 1
    assert [line for line in newer.stderr.splitlines() if line.startswith("vibe:")] == [
        "vibe: database: the database is at revision f00d, which this version does not know "
        "(expected " + newer.stderr.split("(expected ", 1)[1].split(")", 1)[0] + "): a newer "
        "vibe-bot migrated it"
    ]
