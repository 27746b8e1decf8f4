"""GitHub requests of one task (label -> draft PR -> a review -> iteration 2), counted by
route in the fake GitHub's request log, at 40 and at 400 agent steps, and the time the run
spends waiting on GitHub with 150 ms of injected latency per API call beside the same run
with none.

The real service (ingest, queue, worker, git, sandbox) runs in this process against the
fake GitHub and the scripted model server on 127.0.0.1 (``bot.entrypoints.demo``'s stage).
Time is scaled: a model step takes ``--step-delay`` seconds instead of about one second,
and every status interval is scaled by the same factor (the repository's
``status.min_interval`` of 15 s, the operator's ``VIBE_STATUS_UPDATE_SECONDS`` of the
issue's measurement, 0.5 s), so the counts are those of a run at one second per step.

Figures, each from one run (after one warm-up run that fills the process's caches):

- requests per iteration and per task, by route (``METHOD /route/{template}``), at 40 and at
  400 steps: the aim is at most 20 per iteration and no more at 400 steps than at 40;
- waiting on GitHub: the wall time of the 40-step task with 150 ms per API call minus the
  same task with none; the ratio compares it with the serial cost (requests x latency).

Run it before and after a change in the same tree to compare (the baseline printed is the
serial cost of the run's own requests):

    python tests/benchmarks/bench_github_calls.py [--steps 40 400] [--step-delay 0.05]
        [--latency-steps 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from bot.core.config import RepoConfig
from bot.entrypoints.demo import (
    CONFIG,
    REPO,
    WRITER,
    Stage,
    edit,
    finish,
    service,
    stage,
    wait_for,
)
from bot.settings import Settings
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from bot.testing.fake_github import InlineComment, LoggedRequest

REAL_STEP_SECONDS = 1.0  # a model step of a real run, which --step-delay stands for
REPO_MIN_INTERVAL = 15.0  # the default of the repository's status.min_interval
OPERATOR_INTERVAL = 0.5  # VIBE_STATUS_UPDATE_SECONDS of the issue's measurement (the demo's)
LATENCY = 0.150
SETTLE_SECONDS = 1.0  # the task is over when no request came for this long after its end


def agent_run(steps: int, delay: float, old: str, new: str, summary: str) -> list[dict[str, Any]]:
    """``steps`` model calls: searches, one edit, then ``finish`` (twice: the self-review)."""
    search: dict[str, Any] = {
        "text": "Looking around.",
        "tool_use": [{"name": "search", "input": {"pattern": "def add"}}],
        "delay": delay,
    }
    fillers = [dict(search) for _ in range(max(0, steps - 3))]
    closing = [{**s, "delay": delay} for s in finish(summary)]
    return [*fillers, edit("calc.py", old, new, delay), *closing]


def settle(st: Stage, quiet: float = SETTLE_SECONDS) -> None:
    """Wait until the fake has seen no request for ``quiet`` seconds."""
    seen = -1
    while True:
        count = len(st.fake.requests)
        if count == seen:
            return
        seen = count
        time.sleep(quiet)


def concluded(engine: Engine, number: int, iterations: int) -> bool:
    task = taskdb.find(engine, REPO, number)
    return (
        task is not None
        and len(task.iterations) >= iterations
        and task.iterations[iterations - 1].outcome != "running"
    )


def one_task(st: Stage, engine: Engine, steps: int, delay: float, run: int) -> dict[str, Any]:
    """Label an issue, wait for the draft PR and iteration 1, request changes with an inline
    comment, wait for iteration 2; the requests and wall time of each part."""
    st.model.add(agent_run(steps, delay, "return a - b", "return a + b", "Fixed add()."))
    st.model.add(
        agent_run(
            steps, delay, "def add(a, b):\n", 'def add(a, b):\n    """Return a + b."""\n', "Doc."
        )
    )
    number = st.fake.open_issue(REPO, WRITER, f"Fix add, run {run}", "add(2, 3) is -1")
    settle(st, 0.3)
    first = len(st.fake.requests)
    started = time.perf_counter()
    st.fake.label(REPO, number, WRITER, "vibe")
    pr = wait_for(
        lambda: next(
            (p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or "")), None
        ),
        "the PR",
        timeout=600,
    )
    wait_for(lambda: concluded(engine, number, 1), "iteration 1", timeout=600)
    settle(st)
    wall_1 = time.perf_counter() - started - SETTLE_SECONDS
    second = len(st.fake.requests)
    started = time.perf_counter()
    st.fake.review(
        REPO,
        pr.number,
        WRITER,
        state="CHANGES_REQUESTED",
        body="Nearly there.",
        comments=[InlineComment("calc.py", 1, "Please add a docstring.")],
    )
    wait_for(lambda: concluded(engine, number, 2), "iteration 2", timeout=600)
    settle(st)
    wall_2 = time.perf_counter() - started - SETTLE_SECONDS
    task = taskdb.find(engine, REPO, number)
    assert task is not None
    outcomes = [it.outcome for it in task.iterations]
    if outcomes[:2] != ["succeeded", "succeeded"]:
        raise RuntimeError(f"the task's iterations ended {outcomes}")
    return {
        "iteration 2": _between(st, second, len(st.fake.requests)),
        "iteration 1 only": _between(st, first, second),
        "304 1": _not_modified(st, first, second),
        "304 2": _not_modified(st, second, len(st.fake.requests)),
        "wall 1": wall_1,
        "wall 2": wall_2,
    }


def _between(st: Stage, start: int, end: int) -> Counter[str]:
    return Counter(r.key for r in st.fake.requests[start:end] if _tasks(r))


def _tasks(r: LoggedRequest) -> bool:
    """An API request of the task's jobs: not git, and not the process's own look at the
    App (``GET /app`` for ``/readyz``, reused a minute; the webhook catch-up's listing)."""
    return not r.git and not r.route.startswith("/app")


def _not_modified(st: Stage, start: int, end: int) -> int:
    """Conditional requests answered 304 (free against the primary rate limit)."""
    return sum(1 for r in st.fake.requests[start:end] if r.status == 304)


def scaled_settings(st: Stage, scale: float, max_steps: int) -> Settings:
    base = st.settings()
    unbounded = 10**9  # only the step count limits these runs
    limits = base.limits.model_copy(
        update={
            "steps_per_iteration": max_steps,
            "input_tokens_per_iteration": unbounded,
            "output_tokens_per_iteration": unbounded,
            "dollars_per_iteration": float(unbounded),
            "dollars_per_task": float(unbounded),
        }
    )
    return base.model_copy(
        update={"status_update_seconds": OPERATOR_INTERVAL * scale, "limits": limits}
    )


def repo_config(scale: float, max_steps: int) -> str:
    """The sample's ``.github/vibe.yml``, with the step limit raised and (where the bot has
    the key) the status interval scaled like the steps."""
    text = CONFIG + f"limits:\n  steps_per_iteration: {max_steps}\n"
    if "status" in RepoConfig.model_fields:
        text += f"status:\n  min_interval: {REPO_MIN_INTERVAL * scale}\n"
    return text


def table(title: str, counts: Counter[str]) -> list[str]:
    lines = [f"  {title}: {sum(counts.values())} requests"]
    lines += [f"    {n:4d}  {route}" for route, n in counts.most_common()]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[40, 400])
    parser.add_argument("--step-delay", type=float, default=0.05)
    parser.add_argument("--latency-steps", type=int, default=40)
    args = parser.parse_args()
    scale = args.step_delay / REAL_STEP_SECONDS
    max_steps = max(args.steps) + 10
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-github-") as tmp, stage(Path(tmp)) as st:
        st.fake.commit(REPO, "main", {".github/vibe.yml": repo_config(scale, max_steps)})
        settings = scaled_settings(st, scale, max_steps)
        with service(settings, st.port):
            engine = make_engine(settings.effective_database_url)
            try:
                one_task(st, engine, 5, 0.0, 0)  # warm-up: tokens, mirror, imports
                run = 1
                for steps in args.steps:
                    results[f"{steps} steps"] = one_task(st, engine, steps, args.step_delay, run)
                    run += 1
                steps = args.latency_steps
                results["latency 0"] = one_task(st, engine, steps, args.step_delay, run)
                st.fake.latency_seconds = LATENCY
                results["latency 150"] = one_task(st, engine, steps, args.step_delay, run + 1)
                st.fake.latency_seconds = 0.0
            finally:
                engine.dispose()
    print(
        f"GitHub requests per task (label -> draft PR -> review -> iteration 2), "
        f"step delay {args.step_delay:.3f} s standing for {REAL_STEP_SECONDS:.0f} s"
    )
    for steps in args.steps:
        found = results[f"{steps} steps"]
        one, two = found["iteration 1 only"], found["iteration 2"]
        print(f"{steps} steps:")
        print(
            f"  per iteration: {sum(one.values())} (iteration 1), {sum(two.values())} "
            f"(iteration 2); per task: {sum(one.values()) + sum(two.values())}; "
            f"answered 304: {found['304 1']} and {found['304 2']}"
        )
        for line in table("iteration 1", one) + table("iteration 2", two):
            print(line)
    calm, slow = results["latency 0"], results["latency 150"]
    requests = sum(slow["iteration 1 only"].values()) + sum(slow["iteration 2"].values())
    waited = (slow["wall 1"] + slow["wall 2"]) - (calm["wall 1"] + calm["wall 2"])
    serial = requests * LATENCY
    print(f"waiting on GitHub, {args.latency_steps}-step task, {requests} API requests:")
    print(f"  wall at 0 ms    {calm['wall 1'] + calm['wall 2']:7.2f} s")
    print(f"  wall at 150 ms  {slow['wall 1'] + slow['wall 2']:7.2f} s")
    print(f"  waited (difference)        {waited:7.2f} s")
    print(f"  serial cost (requests x 150 ms) {serial:7.2f} s")
    print(f"  waited / serial cost       {waited / serial:7.2f}")


if __name__ == "__main__":
    main()
