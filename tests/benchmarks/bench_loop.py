"""Wall time of the end-to-end scenario from label to pull request, split into bot time,
scripted-model time and sandbox time.

The real service (ingest, queue, worker, git, bubblewrap) runs in this process against the
fake GitHub and the scripted model server on 127.0.0.1 (``bot.demo``'s stage). Each run
opens an issue, labels it, and waits for the draft PR. Model time is what the agent spent
waiting for model calls (``AgentStep.model_duration``), sandbox time what the iteration's
checks took in bwrap; bot time is the rest (webhook, queue, GitHub calls, git, context,
status comments). Baseline, measured in the same run: what a person does at minimum for
the same change, a ``git clone`` of the repository plus the test command run directly.

    python tests/benchmarks/bench_loop.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sqlmodel import Session, col, func, select

from bot.entrypoints.demo import REPO, WRITER, fix_add, service, stage, wait_for
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from bot.store.tables import AgentStep


def baseline(clone_url: str, root: Path) -> float:
    target = root / "baseline-clone"
    started = time.perf_counter()
    subprocess.run(["git", "clone", "-q", clone_url, str(target)], check=True)
    subprocess.run(["python3", "-m", "unittest", "-q"], cwd=target, capture_output=True)
    took = time.perf_counter() - started
    subprocess.run(["rm", "-rf", str(target)], check=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    walls, models, sandboxes, bots, bases = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp, stage(Path(tmp)) as st:
        settings = st.settings()
        with service(settings, st.port):
            engine = make_engine(settings.effective_database_url)
            for n in range(args.runs + 1):  # the first run warms imports and the mirror
                st.model.add(fix_add())
                number = st.fake.open_issue(REPO, WRITER, f"Fix add, run {n}", "add(2, 3) is -1")
                with Session(engine) as session:
                    since = session.exec(select(func.max(col(AgentStep.id)))).one() or 0
                started = time.perf_counter()
                st.fake.label(REPO, number, WRITER, "vibe")
                wait_for(
                    lambda number=number: any(
                        f"Fixes #{number}" in (p.body or "") for p in st.fake.pulls(REPO)
                    ),
                    "the PR",
                    timeout=120,
                )
                wall = time.perf_counter() - started
                task = wait_for(
                    lambda number=number: (
                        (t := taskdb.find(engine, REPO, number))
                        and t.iterations
                        and t.iterations[0].outcome != "running"
                        and t
                    ),
                    "the iteration record",
                )
                with Session(engine) as session:
                    model = sum(
                        s.model_duration
                        for s in session.exec(select(AgentStep).where(col(AgentStep.id) > since))
                    )
                sandbox = sum(c.duration for c in task.iterations[0].checks)
                if n == 0:
                    continue
                walls.append(wall)
                models.append(model)
                sandboxes.append(sandbox)
                bots.append(wall - model - sandbox)
                bases.append(baseline(st.fake.clone_url(REPO), Path(tmp)))
            engine.dispose()

    def line(name: str, values: list[float]) -> str:
        return f"{name:<26} median {statistics.median(values) * 1000:8.1f} ms"

    print(f"label -> draft PR, {args.runs} runs (after one warm-up), bwrap + SQLite")
    print(line("wall time", walls))
    print(line("  scripted-model time", models))
    print(line("  sandbox time (checks)", sandboxes))
    print(line("  bot time (the rest)", bots))
    print(line("baseline: clone + tests", bases))
    share = statistics.median(bots) / statistics.median(walls)
    ratio = statistics.median(walls) / statistics.median(bases)
    print(f"bot share of wall time      {share:.0%}")
    print(f"wall time / baseline        {ratio:.1f}x")


if __name__ == "__main__":
    main()
