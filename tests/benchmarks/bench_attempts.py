"""Cost and wall time of a best-of-N iteration against one attempt (issue 18).

The real service (ingest, queue, worker, git, bubblewrap) runs in this process against the
fake GitHub and the scripted model server on 127.0.0.1 (``bot.demo``'s stage). Each run
opens two issues with the same fix: one started with ``/vibe attempts=N`` (every attempt
passes its tests, three model calls each), and the baseline, measured in the same run, one
started with the ``vibe`` label (one attempt). Every model call is billed the same fixed
usage, so cost counts calls as the scripted model prices them; wall time is from the
command to the iteration's record, with ``VIBE_WORKERS`` attempts at a time.

    python tests/benchmarks/bench_attempts.py [--runs N] [--attempts N] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.core.tasks import Checkpoint, IterationRecord
from bot.entrypoints.demo import REPO, WRITER, fix_add, service, stage, wait_for
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from bot.testing.model_server import RecordedRequest, Step, load_script

USAGE = {
    "input_tokens": 2000,
    "output_tokens": 200,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
}


def respond(request: RecordedRequest) -> Step:
    """Every conversation, an attempt's or not, is the same fix: its i-th turn gets step i."""
    messages = request.body.get("messages") or []
    turn = sum(1 for m in messages if m.get("role") == "assistant")
    script: list[dict[str, Any]] = fix_add()
    return load_script([{**script[min(turn, len(script) - 1)], "usage": USAGE}])[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    costs: dict[str, list[float]] = {"best": [], "one": []}
    walls: dict[str, list[float]] = {"best": [], "one": []}
    with (
        tempfile.TemporaryDirectory(prefix="bench-attempts-") as tmp,
        stage(Path(tmp), respond) as st,
    ):
        settings = st.settings().model_copy(update={"workers": args.workers})
        with service(settings, st.port):
            engine = make_engine(settings.effective_database_url)

            def record(number: int) -> IterationRecord:
                def ended() -> IterationRecord | None:
                    task = taskdb.find(engine, REPO, number)
                    if task is None or not task.iterations:
                        return None
                    it = task.iterations[0]
                    return it if it.checkpoint is Checkpoint.CONCLUDED else None

                found: IterationRecord = wait_for(ended, f"the iteration of #{number}", timeout=180)
                return found

            for n in range(args.runs + 1):  # the first round warms imports and the mirror
                for kind in ("best", "one"):
                    number = st.fake.open_issue(REPO, WRITER, f"Fix add, {kind} {n}", "")
                    started = time.perf_counter()
                    if kind == "best":
                        st.fake.comment(REPO, number, WRITER, f"/vibe attempts={args.attempts}")
                    else:
                        st.fake.label(REPO, number, WRITER, "vibe")
                    it = record(number)
                    wall = time.perf_counter() - started
                    if kind == "best":
                        assert it.attempts is not None
                        assert len(it.attempts.attempts) == args.attempts
                    if n:
                        costs[kind].append(it.usage.cost)
                        walls[kind].append(wall)
            engine.dispose()

    best, one = (statistics.median(costs[k]) for k in ("best", "one"))
    best_wall, one_wall = (statistics.median(walls[k]) for k in ("best", "one"))
    print(
        f"best-of-{args.attempts} against one attempt, {args.runs} runs after a warm-up, "
        f"{args.workers} attempts at a time, bwrap + SQLite"
    )
    print(f"cost   best-of-{args.attempts} ${best:.4f}   one ${one:.4f}   ratio {best / one:.2f}x")
    print(
        f"wall   best-of-{args.attempts} {best_wall:.2f} s   one {one_wall:.2f} s   "
        f"ratio {best_wall / one_wall:.2f}x"
    )


if __name__ == "__main__":
    main()
