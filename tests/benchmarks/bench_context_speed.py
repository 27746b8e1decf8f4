"""Speed of ``vibe context rank`` on a cold and a warm index, beside plain BM25 in the same run.

    python tests/benchmarks/bench_context_speed.py [--files 1500] [--repeat 3] [--tree DIR]

Builds a synthetic Python repository of ``--files`` files (seeded, so every run sees the same
tree: packages of modules with classes, methods, docstrings, imports between them and tests),
then times, as an operator sees it, ``vibe context rank --json`` in a fresh process:

- cold: an empty ``--cache-dir`` (list, read, parse and index every file, then rank);
- warm: the same cache directory again (the index is loaded, nothing is parsed);
- incremental: after editing 1 % of the files (only those are parsed again).

The baseline in the same run is plain BM25 (the localisation benchmark's README baseline:
bm25s over every ``.py`` file's identifiers) building its index and answering the same query
in a fresh process, which sets the figures against the machine's speed and load. ``--tree``
adds an existing directory (for instance the largest localisation snapshot under
``tests/benchmarks/.cache/trees``). The library's own build is also timed with one parse
process and with two, to show what parallel parsing brings on this machine now. CPU time
(the process and its children) is printed beside wall time: on a shared, loaded machine it
is the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.context.files import DirectorySnapshot
from bot.context.index import build_index, idle_cpus

CLI = "from bot.entrypoints.cli import main; main()"
BASELINE = """
import sys, time
sys.path.insert(0, {bench!r})
from localize import Baseline
from pathlib import Path
b = Baseline(Path({tree!r}))
b.rank(Path({issue!r}).read_text())
"""
WORDS = [
    "cache",
    "index",
    "query",
    "parse",
    "token",
    "budget",
    "merge",
    "split",
    "frame",
    "series",
    "array",
    "record",
    "schema",
    "plot",
    "axis",
    "scale",
    "grid",
    "label",
    "color",
    "legend",
    "figure",
    "render",
    "session",
    "request",
    "response",
    "client",
    "adapter",
    "header",
    "cookie",
    "stream",
    "chunk",
    "buffer",
    "encode",
    "decode",
    "config",
    "option",
    "plugin",
    "hook",
    "fixture",
    "marker",
    "report",
    "collect",
    "assert",
    "rewrite",
    "warning",
    "error",
    "module",
    "package",
    "loader",
    "finder",
    "path",
    "node",
]
ISSUE = """Plot legend ignores the color of a grid series when the scale is encoded

```python
from pkg07.mod_legend import LegendRenderer
LegendRenderer().render_series(grid)
```

Traceback (most recent call last):
  File "/home/u/src/pkg07/mod_legend.py", line 41, in render_series
    raise ValueError("legend color could not be decoded for the series")
ValueError: legend color could not be decoded for the series
"""


def _ident(rng: random.Random, parts: int) -> str:
    return "_".join(rng.choice(WORDS) for _ in range(parts))


def _module(rng: random.Random, package: int, name: str, siblings: list[str]) -> str:
    lines = [f'"""The {name.replace("_", " ")} of package {package}."""', ""]
    for other in rng.sample(siblings, min(3, len(siblings))):
        lines.append(f"from pkg{package:02d}.{other} import {other.title().replace('_', '')}")
    lines += ["import os", "", f"LIMIT_{rng.randint(1, 99)} = {rng.randint(1, 999)}", ""]
    for _ in range(rng.randint(1, 4)):
        cls = _ident(rng, 2).title().replace("_", "")
        lines += [f"class {cls}:", f'    """A {rng.choice(WORDS)} {rng.choice(WORDS)}."""', ""]
        lines += [f"    kind = {rng.choice(WORDS)!r}", ""]
        for _ in range(rng.randint(2, 8)):
            method = _ident(rng, rng.randint(1, 3))
            lines += [
                f"    def {method}(self, {rng.choice(WORDS)}, {rng.choice(WORDS)}_value=None):",
                f'        """{" ".join(rng.choice(WORDS) for _ in range(12))}."""',
                f"        result = self.{_ident(rng, 2)}({rng.choice(WORDS)})",
                "        if result is None:",
                f"            raise ValueError({' '.join(rng.choice(WORDS) for _ in range(6))!r})",
                "        for item in os.listdir(result):",
                f"            result = self.{_ident(rng, 1)}(item, {rng.randint(0, 9)})",
                "        return result",
                "",
            ]
    for _ in range(rng.randint(1, 5)):
        func = _ident(rng, 2)
        lines += [
            f"def {func}({rng.choice(WORDS)}, *args):",
            f"    # {' '.join(rng.choice(WORDS) for _ in range(8))}",
            f"    return [{rng.choice(WORDS)} for {rng.choice(WORDS)} in args if args]",
            "",
        ]
    return "\n".join(lines) + "\n"


def synthetic_tree(root: Path, files: int, seed: int = 15) -> int:
    """A repository of ``files`` Python files under ``root``; returns its size in bytes."""
    rng = random.Random(seed)
    packages = max(1, files // 30)
    written = total = 0
    for package in range(packages):
        names = [f"mod_{w}" for w in rng.sample(WORDS, 24)]
        base = root / f"pkg{package:02d}"
        (base / "tests").mkdir(parents=True, exist_ok=True)
        (base / "__init__.py").write_text(f'"""Package {package}."""\n')
        written += 1
        for name in names:
            if written >= files:
                break
            text = _module(rng, package, name, [n for n in names if n != name])
            (base / f"{name}.py").write_text(text)
            total += len(text)
            written += 1
            if written < files and rng.random() < 0.2:
                test = f"from pkg{package:02d}.{name} import *\n\n\ndef test_{name}():\n    pass\n"
                (base / "tests" / f"test_{name}.py").write_text(test)
                written += 1
        if written >= files:
            break
    return total


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(tree: Path, issue: Path, cache: Path) -> tuple[float, float]:
    """Wall and CPU seconds (the process and its parse workers) of one ``vibe context rank``."""
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "context", "rank", "--repo", str(tree),
         "--issue-file", str(issue), "--cache-dir", str(cache), "--json", "--top", "10"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    json.loads(proc.stdout)
    return elapsed, _children_cpu() - cpu


def run_baseline(tree: Path, issue: Path) -> tuple[float, float]:
    code = BASELINE.format(bench=str(Path(__file__).parent), tree=str(tree), issue=str(issue))
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    return time.perf_counter() - started, _children_cpu() - cpu


def touch_some(tree: Path, share: float) -> int:
    paths = sorted(tree.rglob("*.py"))
    chosen = paths[:: max(1, int(1 / share))]
    for path in chosen:
        path.write_text(path.read_text() + "\n\ndef added_later():\n    return 1\n")
    return len(chosen)


def measure(name: str, tree: Path, issue: Path, repeat: int, scratch: Path) -> None:
    files = sum(1 for p in tree.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    cold: list[tuple[float, float]] = []
    warm: list[tuple[float, float]] = []
    base: list[tuple[float, float]] = []
    for number in range(repeat):
        cache = scratch / f"cache-{name}-{number}"
        base.append(run_baseline(tree, issue))
        cold.append(run_cli(tree, issue, cache))
        warm.append(run_cli(tree, issue, cache))
        shutil.rmtree(cache)
    lib: dict[int, float] = {}
    for workers in (1, 2):
        started = time.perf_counter()
        build_index(DirectorySnapshot(tree), scratch / f"lib-{name}-{workers}", workers=workers)
        lib[workers] = time.perf_counter() - started
    print(f"## {name}: {files} files, {size / 1e6:.1f} MB, median of {repeat} (wall / CPU)")
    rows = (
        ("vibe context rank, cold (index build + query)", cold),
        ("vibe context rank, warm (cached index)", warm),
        ("plain BM25 (bm25s) build + query, same run", base),
    )
    medians = {}
    for label, runs in rows:
        wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        medians[label] = (wall, cpu)
        print(f"{label:48} {wall:6.2f} s / {cpu:6.2f} s")
    (cw, cc), (ww, wc), (bw, bc) = medians.values()
    print(
        f"ratio to BM25 (wall, CPU): cold {cw / bw:.2f}, {cc / bc:.2f}; "
        f"warm {ww / bw:.2f}, {wc / bc:.2f}; cold / warm {cw / ww:.2f}"
    )
    print(
        f"library build_index: one parse process {lib[1]:.2f} s, "
        f"two {lib[2]:.2f} s (ratio {lib[1] / lib[2]:.2f}; by default the bot uses as many as "
        f"CPUs are idle, now {idle_cpus()})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tree", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="vibe-speed-"))
    try:
        issue = scratch / "issue.md"
        issue.write_text(ISSUE)
        tree = scratch / "synthetic"
        synthetic_tree(tree, args.files)
        measure(f"synthetic-{args.files}", tree, issue, args.repeat, scratch)
        for extra in args.tree:
            measure(extra.name, extra, issue, args.repeat, scratch)
        cache = scratch / "cache-incremental"
        run_cli(tree, issue, cache)
        changed = touch_some(tree, 0.01)
        wall, cpu = run_cli(tree, issue, cache)
        print(f"\nafter editing {changed} of {args.files} files: {wall:.2f} s / {cpu:.2f} s CPU")
    finally:
        shutil.rmtree(scratch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
