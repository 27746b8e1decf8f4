"""Ingest throughput and latency: signed deliveries at concurrency 50.

Targets, each a separate server process on 127.0.0.1, measured in the same run:
  bare       a FastAPI endpoint that does nothing (the baseline)
  sqlite     ``vibe serve`` on its embedded SQLite database
  postgresql ``vibe serve`` on PostgreSQL (needs VIBE_TEST_DATABASE_URL)

Every delivery is a real signed ``issues.labeled`` payload with its own delivery id, so each
one is verified, parsed, stored and queued as a job. The load comes from ``wrk`` (Debian
package ``wrk``) when it is installed, a C load generator that keeps the client from being
the bottleneck on a small machine; otherwise from an asyncio httpx client. Run:

    python tests/benchmarks/bench_ingest.py [--requests 4000] [--seconds 10] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = ROOT / "tests" / "fixtures" / "webhooks" / "issues.labeled.json"
SECRET = "bench-secret-0123456789abcdef"

BARE_APP = textwrap.dedent(
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    app = FastAPI()

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "ok"}, status_code=202)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server {args} did not start")


async def load(url: str, requests: int, concurrency: int) -> tuple[float, list[float], int]:
    body = PAYLOAD.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(requests):
        queue.put_nowait(n)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            queue.get_nowait()
            headers = {
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
                "Content-Type": "application/json",
            }
            started = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.TransportError:
                failures += 1
                continue
            latencies.append(time.perf_counter() - started)
            if response.status_code != 202:
                failures += 1

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        began = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return elapsed, latencies, failures


# Each wrk thread numbers its requests; the thread id and a counter make the delivery id
# unique. The signature covers only the body, which stays the same.
WRK_SCRIPT = """
local thread_id = 0
function setup(thread)
  thread:set("tid", thread_id)
  thread_id = thread_id + 1
end
function init(args)
  counter = 0
  prefix = string.format("%d-%d", tid, os.time())
end
function request()
  counter = counter + 1
  wrk.headers["X-GitHub-Delivery"] = prefix .. "-" .. counter
  return wrk.format("POST", "/webhook")
end
"""


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    body = PAYLOAD.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "deliver.lua"
        script.write_text(
            WRK_SCRIPT + f'local f = io.open("{PAYLOAD}", "rb")\nwrk.body = f:read("*all")\n'
        )
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{concurrency}",
                f"-d{round(seconds)}s",
                "--latency",
                "-s",
                str(script),
                "-H",
                "X-GitHub-Event: issues",
                "-H",
                f"X-Hub-Signature-256: {signature}",
                "-H",
                "Content-Type: application/json",
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.MULTILINE))
    if "99" not in percentiles:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.MULTILINE)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "failures": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",  # type: ignore[dict-item]
    }


def measure(
    name: str, url: str, requests: int, seconds: float, concurrency: int
) -> dict[str, float]:
    if shutil.which("wrk"):
        load_wrk(url, 2, concurrency)  # warm-up
        result = load_wrk(url, seconds, concurrency)
    else:
        asyncio.run(load(url, min(300, requests), concurrency))  # warm-up
        elapsed, latencies, failures = asyncio.run(load(url, requests, concurrency))
        latencies.sort()
        result = {
            "rps": requests / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "failures": failures,
        }
    print(
        f"{name:<11} {result['rps']:8.0f} deliveries/s   p50 {result['p50_ms']:6.1f} ms   "
        f"p99 {result['p99_ms']:6.1f} ms   failed: {result['failures']}"
    )
    return result


def fresh_pg_database(url: str) -> str:
    name = f"vibe_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
    targets: list[tuple[str, list[str], dict[str, str]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_app.py"
        bare.write_text(BARE_APP)
        port = free_port()
        targets.append(
            (
                "bare",
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "--app-dir",
                    tmp,
                    "bare_app:app",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                {**base_env, "PORT": str(port)},
            )
        )
        serve_env = {**base_env, "VIBE_WEBHOOK_SECRET": SECRET, "VIBE_LOG_LEVEL": "WARNING"}
        port = free_port()
        targets.append(
            (
                "sqlite",
                [sys.executable, "-m", "bot", "serve", "--port", str(port)],
                {**serve_env, "VIBE_DATA_DIR": str(Path(tmp) / "sqlite"), "PORT": str(port)},
            )
        )
        pg = os.environ.get("VIBE_TEST_DATABASE_URL", "")
        if pg.startswith("postgresql"):
            port = free_port()
            targets.append(
                (
                    "postgresql",
                    [sys.executable, "-m", "bot", "serve", "--port", str(port)],
                    {
                        **serve_env,
                        "VIBE_DATA_DIR": str(Path(tmp) / "pg"),
                        "VIBE_DATABASE_URL": fresh_pg_database(pg),
                        "PORT": str(port),
                    },
                )
            )
        else:
            print("(PostgreSQL skipped: set VIBE_TEST_DATABASE_URL)")
        client = f"wrk for {args.seconds:g} s" if shutil.which("wrk") else f"httpx, {args.requests}"
        print(f"signed deliveries per target ({client}), concurrency {args.concurrency}")
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        results: dict[str, dict[str, float]] = {}
        for name, command, env in targets:
            port = int(env["PORT"])
            proc = start(command, env, port)
            try:
                results[name] = measure(
                    name,
                    f"http://127.0.0.1:{port}/webhook",
                    args.requests,
                    args.seconds,
                    args.concurrency,
                )
            finally:
                proc.terminate()
                proc.wait(30)
    baseline = results["bare"]["rps"]
    for name, result in results.items():
        if name != "bare":
            print(f"{name:<11} throughput ratio to bare endpoint: {result['rps'] / baseline:.2f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
