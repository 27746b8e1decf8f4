"""Ingest throughput and latency: signed deliveries at concurrency 50.

Targets, each a separate server on 127.0.0.1, measured in the same run:
  bare          a FastAPI endpoint that does nothing (the baseline)
  sqlite        ``vibe serve`` on its embedded SQLite database (deliveries read and stored by
                its delivery store process: bot/ingest/store_process.py)
  sqlite-2      ``vibe serve --processes 2`` on SQLite: two ingest processes, whose writers
                take turns on the database's lock file
  postgresql    ``vibe serve`` on PostgreSQL (needs VIBE_TEST_DATABASE_URL)
  postgresql-2  ``vibe serve --processes 2`` on PostgreSQL: two ingest processes

Every delivery is a real signed ``issues.labeled`` payload (14 KB) with its own delivery id,
so each one is verified, read, stored and queued as a job. The load comes from ``wrk``
(Debian package ``wrk``) when it is installed, a C load generator that keeps the client from
being the bottleneck on a small machine; otherwise from http_load.py beside this file, a
lean asyncio client in a process of its own (``--httpx``: the asyncio httpx client used
before, which cannot load even the bare endpoint on two cores: its ratios say little).
Beside throughput and latency, each target's server CPU time per delivery (its processes',
from /proc) is printed: on a shared machine it moves less than the throughput does. Run:

    python tests/benchmarks/bench_ingest.py [--requests 4000] [--seconds 10] [--concurrency 50]
        [--rounds 1] [--log-level info]

Every server logs at ``--log-level``, by default INFO, ``vibe serve``'s own: there each
delivery writes its ``delivery.stored`` line (uvicorn's access line for it is left out), and
the bare endpoint its access line, as where people run them (until stop 25 the figures were
taken at WARNING, without either).
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


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` and every process below it (the ingest processes
    of ``--processes``, the delivery store process of each), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    processes: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        processes[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    tree = {pid}
    while grown := {p for p, (parent, _) in processes.items() if parent in tree} - tree:
        tree |= grown
    return sum(cpu for p, (_, cpu) in processes.items() if p in tree)


def start(args: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
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
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "failures": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",  # type: ignore[dict-item]
    }


def load_python(url: str, seconds: float, concurrency: int) -> dict[str, float]:
    """The same load as :func:`load_wrk` from http_load.py, a lean client in a process of
    its own."""
    body = PAYLOAD.read_bytes()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    out = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("http_load.py")), url, str(PAYLOAD),
         str(seconds), str(concurrency), "X-GitHub-Event: issues",
         f"X-Hub-Signature-256: {signature}", "Content-Type: application/json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out)
    return result


def measure(
    name: str,
    pid: int,
    url: str,
    requests: int,
    seconds: float,
    concurrency: int,
    httpx_client: bool,
) -> dict[str, float]:
    if shutil.which("wrk"):
        load_wrk(url, 2, concurrency)  # warm-up
        cpu = cpu_seconds(pid)
        result = load_wrk(url, seconds, concurrency)
    elif not httpx_client:
        load_python(url, 2, concurrency)  # warm-up
        cpu = cpu_seconds(pid)
        result = load_python(url, seconds, concurrency)
    else:
        asyncio.run(load(url, min(300, requests), concurrency))  # warm-up
        cpu = cpu_seconds(pid)
        elapsed, latencies, failures = asyncio.run(load(url, requests, concurrency))
        latencies.sort()
        result = {
            "requests": requests,
            "rps": requests / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
            "failures": failures,
        }
    result["cpu_ms"] = (cpu_seconds(pid) - cpu) * 1000 / result["requests"]
    print(
        f"{name:<13} {result['rps']:8.0f} deliveries/s   p50 {result['p50_ms']:6.1f} ms   "
        f"p99 {result['p99_ms']:6.1f} ms   server CPU {result['cpu_ms']:.3f} ms/delivery   "
        f"failed: {result['failures']}"
    )
    return result


def fresh_pg_database(url: str) -> str:
    name = f"vibe_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str, made: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(made).database}" WITH (FORCE)'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--httpx", action="store_true", help="without wrk, load with httpx (the old client)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every target this many times in turn; each ratio is taken against the "
        "bare endpoint of its own round and the median is reported",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning"],
        help="every server's log level (default: info, vibe serve's own, where each delivery "
        "writes its delivery.stored line and the bare endpoint its access line)",
    )
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
                    args.log_level,
                ],
                {**base_env, "PORT": str(port)},
            )
        )
        serve_env = {
            **base_env,
            "VIBE_WEBHOOK_SECRET": SECRET,
            "VIBE_LOG_LEVEL": args.log_level.upper(),
        }
        for name, processes in (("sqlite", "1"), ("sqlite-2", "2")):
            port = free_port()
            targets.append(
                (
                    name,
                    [
                        *(sys.executable, "-m", "bot", "serve", "--port", str(port)),
                        *("--processes", processes),
                    ],
                    {**serve_env, "VIBE_DATA_DIR": str(Path(tmp) / name), "PORT": str(port)},
                )
            )
        pg = os.environ.get("VIBE_TEST_DATABASE_URL", "")
        if pg.startswith("postgresql"):
            for name, processes in (("postgresql", "1"), ("postgresql-2", "2")):
                port = free_port()
                targets.append(
                    (
                        name,
                        [
                            *(sys.executable, "-m", "bot", "serve", "--port", str(port)),
                            *("--processes", processes),
                        ],
                        {**serve_env, "VIBE_DATABASE_URL": pg, "PORT": str(port)},
                    )
                )
        else:
            print("(PostgreSQL skipped: set VIBE_TEST_DATABASE_URL)")
        client = (
            f"wrk for {args.seconds:g} s"
            if shutil.which("wrk")
            else f"httpx, {args.requests}"
            if args.httpx
            else f"http_load.py for {args.seconds:g} s"
        )
        print(
            f"signed deliveries per target ({client}), concurrency {args.concurrency}, "
            f"log level {args.log_level}"
        )
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        rounds: list[dict[str, dict[str, float]]] = []
        for number in range(args.rounds):
            if args.rounds > 1:
                print(f"round {number + 1} (load average {os.getloadavg()[0]:.2f})")
            results: dict[str, dict[str, float]] = {}
            for name, command, env in targets:
                port = int(env["PORT"])
                # Each round starts from an empty database of its own.
                fresh = {**env, "VIBE_DATA_DIR": str(Path(tmp) / f"{name}-{number}")}
                if env.get("VIBE_DATABASE_URL"):
                    fresh["VIBE_DATABASE_URL"] = fresh_pg_database(pg)
                proc = start(command, fresh, port)
                try:
                    results[name] = measure(
                        name,
                        proc.pid,
                        f"http://127.0.0.1:{port}/webhook",
                        args.requests,
                        args.seconds,
                        args.concurrency,
                        args.httpx,
                    )
                finally:
                    proc.terminate()
                    proc.wait(30)
                    if fresh.get("VIBE_DATABASE_URL"):
                        drop_pg_database(pg, fresh["VIBE_DATABASE_URL"])
            rounds.append(results)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    for name in rounds[0]:
        if name == "bare":
            continue
        ratios = [r[name]["rps"] / r["bare"]["rps"] for r in rounds]
        cpu = [r[name]["cpu_ms"] / r["bare"]["cpu_ms"] for r in rounds]
        p99 = statistics.median(r[name]["p99_ms"] for r in rounds)
        spread = f" (rounds: {', '.join(f'{x:.2f}' for x in ratios)})" if len(rounds) > 1 else ""
        print(
            f"{name:<13} throughput ratio to bare endpoint: {statistics.median(ratios):.2f}"
            f"{spread}   p99 {p99:.1f} ms   server CPU per delivery "
            f"{statistics.median(cpu):.2f}x bare's"
        )
    print(json.dumps(rounds if len(rounds) > 1 else rounds[0]))


if __name__ == "__main__":
    main()
