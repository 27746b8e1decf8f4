"""Structured logs carry the delivery id and never a secret; a job's lines carry where it
works; with VIBE_LOG_JSON=true every line of ``vibe serve`` is JSON."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from bot.entrypoints import demo
from bot.entrypoints.app import create_app
from bot.ingest.webhook import StoredAccessFilter
from bot.jobs.queue import Dead, JobContext, Queue, Worker, describe, enqueue
from bot.observability import configure_logging
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import Delivery
from tests.support.web import headers_for, make_settings, sign


def test_logs_are_json_with_context_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "configured-secret-value-123"
    token = "ghs_" + "b" * 36
    configure_logging("INFO", json=True, secrets=[secret])
    log = structlog.get_logger("test").bind(delivery="abc-123")
    log.info("delivery.stored", detail=f"token {token} and {secret}", count=3)
    log.debug("hidden")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    [record] = lines
    assert record["delivery"] == "abc-123"
    assert record["event"] == "delivery.stored"
    assert record["count"] == 3
    assert token not in record["detail"]
    assert secret not in record["detail"]
    assert record["detail"].count("[redacted]") == 2


def test_secrets_inside_structured_values_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "configured-secret-value-123"
    token = "ghp_" + "c" * 36
    configure_logging("INFO", json=True, secrets=[secret])
    log = structlog.get_logger("test")
    log.info("call.failed", request={"headers": [f"token {token}"]}, error=RuntimeError(secret))
    configure_logging("INFO", json=False, secrets=[secret])
    log.info("call.failed", request={"auth": secret}, error=RuntimeError(token))
    out = capsys.readouterr().err
    json_line, console_line = out.splitlines()
    record = json.loads(json_line)
    assert record["request"] == {"headers": ["token [redacted]"]}
    assert record["error"] == "RuntimeError('[redacted]')"
    assert "call.failed" in console_line
    assert console_line.count("[redacted]") == 2
    assert secret not in out
    assert token not in out


def test_a_jobs_lines_carry_its_context_and_none_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker binds the job and its delivery, the handlers add where they work; a
    failure is one error line with the redacted reason; the next job starts clean."""
    secret = "configured-secret-value-123"
    configure_logging("INFO", json=True, secrets=[secret])
    engine = make_engine(f"sqlite:///{tmp_path / 'vibe.db'}")
    init_db(engine)
    log = structlog.get_logger("test")
    second_ran = threading.Event()

    def first(_ctx: JobContext) -> None:
        structlog.contextvars.bind_contextvars(
            repository="acme/widgets", number=7, task_id=3, iteration_id=9
        )
        log.info("work.step")
        logging.getLogger("some.library").warning("a library's line")
        raise RuntimeError(f"GitHub refused the token {secret}")

    def second(_ctx: JobContext) -> None:
        log.info("second.step")
        second_ran.set()

    with Session(engine) as session:
        session.add(Delivery(id="d-1", event="issues", outcome="queued"))
        session.commit()
    with write_transaction(engine) as conn:
        first_id = enqueue(conn, "first", {}, delivery_id="d-1", serial_key="lane")
        second_id = enqueue(conn, "second", {}, serial_key="lane")
    worker = Worker(
        Queue(engine, secrets=[secret]),
        {"first": first, "second": second},
        judge=lambda exc: Dead(describe(exc)),
        concurrency=1,
        poll_interval=0.05,
    )
    worker.start()
    try:
        assert second_ran.wait(10)
    finally:
        worker.stop(grace=5)
        engine.dispose()
    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines()]
    where = {"repository": "acme/widgets", "number": 7, "task_id": 3, "iteration_id": 9}
    job = {"job_id": first_id, "kind": "first", "attempt": 1, "delivery_id": "d-1"}
    [step] = [r for r in records if r["event"] == "work.step"]
    assert step.items() >= {**where, **job}.items()
    [library] = [r for r in records if r["event"] == "a library's line"]
    assert library.items() >= {**where, **job, "level": "warning"}.items()
    assert library["logger"] == "some.library"
    [failed] = [r for r in records if r["event"] == "job.failed"]
    assert failed.items() >= {**where, **job, "level": "error", "verdict": "dead"}.items()
    assert failed["error"] == "RuntimeError: GitHub refused the token [redacted]"
    [after] = [r for r in records if r["event"] == "second.step"]
    assert after["job_id"] == second_id
    assert after["delivery_id"] is None
    assert not set(where) & set(after)
    assert secret not in err


def _stderr_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a stderr line is not JSON: {line!r}") from None
    return records


def _total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels.items() >= labels.items()
    )


@pytest.mark.usefixtures("bwrap_available")  # the iteration's workspace is sandboxed
def test_vibe_serve_logs_json_lines_with_job_context_and_serves_metrics(tmp_path: Path) -> None:
    """A real ``vibe serve`` with VIBE_LOG_JSON=true, the fake GitHub and the scripted model:
    a forged delivery, a job GitHub rate-limits, an iteration the model fails. Every stderr
    line is JSON (uvicorn's too), a job's lines say where it works, its failure is one error
    line, nothing secret is printed; /metrics counts all of it."""
    leak = "ghp_" + "z" * 36
    refusal = {"error": {"status": 400, "type": "invalid_request_error", "message": f"no {leak}"}}
    with demo.stage(tmp_path, [refusal]) as st:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
        env.update(st.env(), VIBE_LOG_JSON="true")
        err_path, out_path = tmp_path / "stderr", tmp_path / "stdout"
        with err_path.open("w") as err, out_path.open("w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--port", str(st.port)],
                env=env,
                stdout=out,
                stderr=err,
            )
        try:
            demo.wait_for(lambda: _healthy(st.bot_url, proc), "vibe serve", timeout=60)
            body = b'{"action": "opened"}'
            forged = headers_for("issues", body)
            forged["X-Hub-Signature-256"] = sign(body, "not-the-secret")
            assert (
                httpx.post(f"{st.bot_url}/webhook", content=body, headers=forged).status_code == 401
            )

            # The first issue's job is rate-limited until an hour from now: it fails, and
            # waits in the queue.
            st.fake.inject(
                "GET",
                f"/repos/{demo.REPO}/contents/.github/vibe.yml",
                "primary_rate_limit",
                reset_at=int(time.time() + 3600),
            )
            limited = st.fake.open_issue(demo.REPO, demo.WRITER, "Rate-limited", "")
            demo.wait_for(
                lambda: '"job.failed"' in err_path.read_text(), "the rate-limited job's failure"
            )
            number = st.fake.open_issue(demo.REPO, demo.WRITER, "Fix add", "")
            st.fake.label(demo.REPO, number, demo.WRITER, "vibe")

            def failed_iteration() -> str | None:
                text = httpx.get(f"{st.bot_url}/metrics").text
                # The iteration's counter moves when it concludes, the task's state in the
                # database a moment later: wait for both.
                ended = _total(text, "vibe_iterations_total", outcome="failed")
                return text if ended and _total(text, "vibe_tasks", state="failed") else None

            metrics = demo.wait_for(failed_iteration, "the failed iteration")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        secrets = [demo.SECRET, demo.MODEL_KEY, st.creds.private_key_pem.splitlines()[1], leak]

    # /metrics: the process's events and the database's numbers.
    assert _total(metrics, "vibe_webhook_verification_failures_total", reason="bad_signature") == 1
    assert _total(metrics, "vibe_deliveries_total", event="issues", outcome="queued") == 3
    assert _total(metrics, "vibe_tasks", state="failed") == 1
    assert _total(metrics, "vibe_iterations_total", outcome="failed") == 1
    assert _total(metrics, "vibe_iterations_total") == 1  # not counted under another outcome
    assert _total(metrics, "vibe_model_requests_total", status="400") == 1
    assert _total(metrics, "vibe_model_errors_total", kind="fatal") == 1
    assert _total(metrics, "vibe_github_requests_total", status="403") == 1
    assert _total(metrics, "vibe_github_requests_total", status="2xx") > 0
    assert _total(metrics, "vibe_job_duration_seconds_count", kind="event", outcome="queued") == 1
    assert _total(metrics, "vibe_jobs", status="queued") >= 1
    assert "process_resident_memory_bytes" in metrics

    text = err_path.read_text()
    records = _stderr_records(err_path)
    uvicorn = [r for r in records if r.get("logger", "").startswith("uvicorn")]
    assert any("Uvicorn running on" in r["event"] for r in uvicorn)
    assert any('"POST /webhook HTTP/1.1" 401' in r["event"] for r in uvicorn)
    # A delivery taken writes one line, not its access line beside it.
    assert not any('"POST /webhook HTTP/1.1" 202' in r["event"] for r in uvicorn)
    stored = [r for r in records if r["event"] == "delivery.stored"]
    assert len(stored) == 3
    for line in stored:
        assert (line["status"], line["outcome"], line["gh_event"]) == (202, "queued", "issues")
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line["client"])
    [failure] = [r for r in records if r["event"] == "job.failed"]
    assert failure["level"] == "error"
    assert failure.items() >= {"repository": demo.REPO, "number": limited}.items()
    assert "rate limited by GitHub" in failure["error"]
    assert failure["delivery_id"]
    context = {"job_id", "delivery_id", "repository", "number", "task_id", "iteration_id"}
    working = [r for r in records if context <= r.keys() and r["number"] == number]
    assert working, "no line of the iteration's job carries its whole context"
    assert {r["repository"] for r in working} == {demo.REPO}
    [concluded] = [r for r in working if r["event"] == "iteration.concluded"]
    assert (concluded["level"], concluded["outcome"]) == ("error", "failed")
    assert "[redacted]" in concluded["reason"]  # the model's message named a token
    for secret in secrets:
        assert secret not in text
    assert re.search(r"gh[ps]_[A-Za-z0-9]{20}", text) is None


def _access_record(method: str, path: str, status: int) -> logging.LogRecord:
    """A record as uvicorn's h11 protocol makes it for a response."""
    return logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:50000", method, path, "1.1", status),
        None,
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "kept"),
    [
        ("POST", "/webhook", 202, False),
        ("POST", "/webhook", 200, False),  # a ping or a duplicate: delivery.stored says so
        ("POST", "/webhook", 401, True),  # refused before it was stored: no other line
        ("POST", "/webhook", 400, True),
        ("POST", "/webhook", 413, True),
        ("POST", "/webhook", 503, True),
        ("GET", "/webhook", 405, True),
        ("POST", "/webhook?x=1", 202, True),  # not the path the endpoint serves alone
        ("POST", "/api/runner/claim", 200, True),
        ("GET", "/healthz", 200, True),
    ],
)
def test_the_access_line_of_a_stored_delivery_is_left_out(
    method: str, path: str, status: int, kept: bool
) -> None:
    assert StoredAccessFilter().filter(_access_record(method, path, status)) is kept


def test_other_lines_of_the_access_logger_pass_the_filter() -> None:
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "no arguments", None, None
    )
    assert StoredAccessFilter().filter(record)
    odd = _access_record("POST", "/webhook", 202)
    odd.args = {"path": "/webhook"}
    assert StoredAccessFilter().filter(odd)


def test_the_filter_goes_on_uvicorns_access_logger_once(tmp_path: Path) -> None:
    access = logging.getLogger("uvicorn.access")
    for _ in range(2):
        app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'vibe.db'}"), handlers={})
        app.state.engine.dispose()
    assert sum(isinstance(f, StoredAccessFilter) for f in access.filters) == 1


def _healthy(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"vibe serve exited with {proc.returncode}")
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
