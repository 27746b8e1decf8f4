"""Page load time of the task console with 10,000 tasks against an empty store.

The real service (``create_app``) runs under uvicorn on 127.0.0.1 with its embedded SQLite
database (and PostgreSQL too when VIBE_TEST_DATABASE_URL names one); pages are fetched over
HTTP with the bearer token, each one ``--repeat`` times, and the median is printed. The
baseline is the same page on the same server before any task exists; the figure to read is
the ratio. Pages measured on the full store:

  first       /console (50 newest tasks)
  deep        the 100th page, reached with its keyset cursor
  filtered    one repository, one state
  by cost     sort=cost (no index on cost: the store sorts the matches)
  task        /console/tasks/{id} of a task with 3 iterations and 30 agent steps
  api         /api/console/tasks

The 10,000 tasks are spread over 20 repositories, every state and model and 60 days; each
has one or two iterations, every tenth a running one with recorded steps. Run:

    python tests/benchmarks/bench_console.py [--tasks 10000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine, make_url

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.core.tasks import MODELS, State  # noqa: E402
from bot.entrypoints.app import create_app  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.store.tables import AgentStep, Iteration, Task  # noqa: E402
from tests.support.actions import serve  # noqa: E402

TOKEN = "bench-dashboard-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _step(
    run_key: str,
    iteration: int,
    index: int,
    start: datetime,
    text_: str,
    tool: str,
    result: str,
    is_error: bool,
) -> dict[str, object]:
    """One agent step's row: a model turn with one tool call."""
    return {
        "run_key": run_key,
        "iteration_id": iteration,
        "index": index,
        "model": "claude",
        "request": {},
        "text": text_,
        "tool_calls": [
            {"id": "t", "name": tool, "input": "{}", "is_error": is_error, "result": result}
        ],
        "input_tokens": 900,
        "output_tokens": 80,
        "cache_write_tokens": 0,
        "cache_read_tokens": 4000,
        "cost": 0.01,
        "duration": 2.0,
        "model_duration": 1.8,
        "started_at": start,
    }


def fill(engine: Engine, count: int) -> int:
    """``count`` tasks with iterations and steps; returns a task id with 30 steps."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    states = [s.value for s in State]
    tasks = [
        {
            "repository": f"octo/repo{n % 20}",
            "number": n + 1,
            "model": MODELS[n % len(MODELS)],
            "state": states[n % len(states)],
            "branch": f"vibe/issue-{n + 1}",
            "base": "main",
            "requester": "alice",
            "title": f"Task {n + 1}: make the widget <b>faster</b>",
            "instruction": "Make it faster. " * 20,
            "requirements": [{"text": "faster", "source": "issue", "done": False}],
            "plan": [],
            "input_tokens": 1000 + n,
            "output_tokens": 200,
            "cost": (n % 97) / 10,
            "owns_pr": True,
            "stop_requested": False,
            "created_at": start + timedelta(minutes=9 * n),
            "updated_at": start + timedelta(minutes=9 * n + 5),
        }
        for n in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Task), tasks)
        ids = [row[0] for row in conn.execute(text("SELECT id FROM task ORDER BY id"))]
        iterations = []
        for n, task_id in enumerate(ids):
            for number in range(1, 2 + n % 2):
                running = n % 10 == 0 and number == 1 + n % 2
                iterations.append(
                    {
                        "task_id": task_id,
                        "number": number,
                        "key": f"k{number}",
                        "trigger": "label",
                        "feedback": [{"kind": "human", "text": "more"}],
                        "commits": ["abc fix"],
                        "checks": [],
                        "outcome": "running" if running else "succeeded",
                        "checkpoint": "begun",
                        "summary": "",
                        "cost": 0.1,
                        "duration": 30.0,
                        "started_at": start,
                        "input_tokens": 0,
                        "output_tokens": 0,
                    }
                )
        conn.execute(insert(Iteration), iterations)
        running_ids = [
            row[0]
            for row in conn.execute(text("SELECT id FROM iteration WHERE outcome = 'running'"))
        ]
        steps = [
            _step(f"r{it}", it, i, start, "thinking " * 30, "read_file", "x = 1\n" * 50, i == 3)
            for it in running_ids
            for i in range(1, 6)
        ]
        conn.execute(insert(AgentStep), steps)
        heavy = ids[-1]
        heavy_its = []
        for number in range(3, 6):
            heavy_its.append(
                {
                    "task_id": heavy,
                    "number": number,
                    "key": f"h{number}",
                    "trigger": "review",
                    "feedback": [],
                    "commits": [],
                    "checks": [],
                    "outcome": "succeeded",
                    "checkpoint": "concluded",
                    "summary": "done",
                    "cost": 0.2,
                    "duration": 60.0,
                    "started_at": start,
                    "input_tokens": 0,
                    "output_tokens": 0,
                }
            )
        conn.execute(insert(Iteration), heavy_its)
        heavy_ids = [
            row[0]
            for row in conn.execute(
                text("SELECT id FROM iteration WHERE task_id = :t AND number >= 3"), {"t": heavy}
            )
        ]
        conn.execute(
            insert(AgentStep),
            [
                _step(f"h{it}", it, i, start, "step " * 100, "run_command", "ok\n" * 200, False)
                for it in heavy_ids
                for i in range(1, 11)
            ],
        )
    return heavy


def timed(client: httpx.Client, url: str, repeat: int) -> float:
    """The median time of ``repeat`` loads of ``url``, in milliseconds."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        answer = client.get(url, headers=AUTH)
        times.append((time.perf_counter() - began) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"{url}: HTTP {answer.status_code}: {answer.text[:200]}")
    return statistics.median(times)


def deep_url(client: httpx.Client, pages: int) -> str:
    url = "/api/console/tasks"
    cursor = None
    for _ in range(pages - 1):
        data = client.get(url + (f"?after={cursor}" if cursor else ""), headers=AUTH).json()
        cursor = data["next"]
    return f"/console?after={cursor}"


def run(database_url: str, label: str, count: int, repeat: int, folder: Path) -> None:
    settings = Settings(
        data_dir=folder / "data",
        database_url=database_url,
        webhook_secret="bench-secret-0123456789abcdef",
        dashboard_token=TOKEN,
    )
    app = create_app(settings, handlers={})
    with serve(app) as base, httpx.Client(base_url=base, timeout=60) as client:
        empty = timed(client, "/console", repeat)
        began = time.perf_counter()
        heavy = fill(app.state.engine, count)
        filled = time.perf_counter() - began
        figures = {
            "first": timed(client, "/console", repeat),
            "deep (page 100)": timed(client, deep_url(client, 100), repeat),
            "filtered": timed(client, "/console?repository=octo/repo3&state=working", repeat),
            "by cost": timed(client, "/console?sort=cost", repeat),
            "task": timed(client, f"/console/tasks/{heavy}", repeat),
            "api": timed(client, "/api/console/tasks", repeat),
        }
    app.state.engine.dispose()
    print(f"\n{label}: {count} tasks written in {filled:.1f} s; median of {repeat} loads")
    print(f"  {'empty store /console':24} {empty:8.1f} ms   (baseline)")
    for name, ms in figures.items():
        print(f"  {name:24} {ms:8.1f} ms   ratio to empty {ms / empty:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run(f"sqlite:///{folder / 'bench.db'}", "sqlite", args.tasks, args.repeat, folder)
        pg = os.environ.get("VIBE_TEST_DATABASE_URL", "")
        if pg.startswith("postgresql"):
            name = f"vibe_bench_{uuid.uuid4().hex[:10]}"
            admin = create_engine(pg, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = make_url(pg).set(database=name).render_as_string(hide_password=False)
                run(url, "postgresql", args.tasks, args.repeat, folder)
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
        else:
            print("\npostgresql: skipped (VIBE_TEST_DATABASE_URL does not name a PostgreSQL DB)")


if __name__ == "__main__":
    main()
