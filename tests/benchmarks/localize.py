"""File-localisation benchmark on real SWE-bench issues (../shared/bench/localize/README.md).

    python tests/benchmarks/localize.py [--via-cli] [--repo NAME] [--json OUT] [--loro]
                                        [--shared-only]

Materialises the source-distribution snapshots into ``tests/benchmarks/.cache/`` (kept out
of git): the shared set's 55 for its 95 instances, and those of the SWE-bench Lite instances
of django, matplotlib and scikit-learn that localize_extra.py added (``--shared-only`` leaves
them out). It ranks every instance's repository for its issue with the context engine, and
reports Acc@1/3/5/10 (all gold files within the top k) and budget recall at 13k/27k/50k
tokens, per repository and overall, beside the plain BM25 baseline the README defines,
computed in the same run over the same instances. The fused ranker's first weights were set
on the "tuning" repositories and its last three are fitted on all nine (localize_fit.py):
``--loro`` adds leave-one-repository-out cross-validation of that fit, whose rows for the
added repositories are their figures as repositories never tuned on. Also reported: index
build time (cold, then warm from the cache) and query latency with a warm index.

``--via-cli`` runs ``vibe context rank --json`` as a subprocess for every instance instead of
calling the library, which measures what an operator sees.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import bm25s

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from localize_data import CACHE, DATA, Instance, load_instances, materialise
from localize_fit import Case, make_case, report

from bot.context.files import DirectorySnapshot
from bot.context.index import RepoIndex, build_index
from bot.context.pack import assemble_context
from bot.context.rank import rank_files, retriever_for
from bot.context.terms import IDENT_RE, split_identifier

CLI = "from bot.entrypoints.cli import main; main()"
KS = (1, 3, 5, 10)
BUDGETS = (13_000, 27_000, 50_000)
TUNING = ("pytest-dev/pytest", "psf/requests", "pallets/flask")
ADDED = ("django/django", "matplotlib/matplotlib", "scikit-learn/scikit-learn")


# -- metrics, exactly as the README defines them ------------------------------------------------


def acc_at(ranking: list[str], gold: tuple[str, ...], k: int) -> float:
    return 1.0 if set(gold) <= set(ranking[:k]) else 0.0


def budget_recall(
    ranking: list[str], gold: tuple[str, ...], sizes: dict[str, int], b: int
) -> float:
    used = 0.0
    inside: set[str] = set()
    for path in ranking:
        cost = sizes.get(path, 0) / 4
        if used + cost > b:
            break
        used += cost
        inside.add(path)
    return len(inside & set(gold)) / len(gold)


# -- the README's BM25 baseline ----------------------------------------------------------------


def baseline_terms(text: str) -> list[str]:
    """Identifiers lower-cased plus their snake_case and CamelCase parts."""
    out: list[str] = []
    for ident in IDENT_RE.findall(text):
        out.append(ident.lower())
        parts = split_identifier(ident)
        if len(parts) > 1:
            out.extend(parts)
    return out


class Baseline:
    def __init__(self, tree: Path) -> None:
        self.paths = sorted(
            p.relative_to(tree).as_posix() for p in tree.rglob("*.py") if p.is_file()
        )
        corpus = []
        for rel in self.paths:
            text = (tree / rel).read_text("utf-8", "replace")
            corpus.append(baseline_terms(rel.replace("/", " ") + " " + text))
        self.retriever = bm25s.BM25(k1=1.2, b=0.75)
        self.retriever.index(corpus, show_progress=False)

    def rank(self, issue: str, unique: bool = False) -> list[str]:
        """Ranking for the issue; ``unique`` counts each query term once (bm25s otherwise
        adds a term's score once per occurrence in the query)."""
        terms = baseline_terms(issue)
        scores = self.retriever.get_scores(list(dict.fromkeys(terms)) if unique else terms)
        order = sorted(range(len(self.paths)), key=lambda i: (-scores[i], self.paths[i]))
        return [self.paths[i] for i in order]


# -- running -----------------------------------------------------------------------------------


def file_sizes(tree: Path) -> dict[str, int]:
    sizes = {}
    for p in tree.rglob("*"):
        if p.is_file():
            sizes[p.relative_to(tree).as_posix()] = len(p.read_text("utf-8", "replace"))
    return sizes


def rank_via_cli(inst: Instance, cache_dir: Path) -> tuple[list[str], float]:
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as fh:
        fh.write(inst.problem_statement)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "context", "rank", "--repo", str(inst.tree),
         "--issue-file", fh.name, "--top", "200", "--cache-dir", str(cache_dir), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    Path(fh.name).unlink()
    return [f["path"] for f in json.loads(proc.stdout)["files"]], elapsed


def pack_recall(index: RepoIndex, inst: Instance, budget: int) -> tuple[float, float]:
    """Shares of the gold files the context pack holds whole, and whole or as an outline
    (a file or outline cut short counts as neither)."""
    pack = assemble_context(index, inst.problem_statement, budget)
    code = [p for p in pack.parts if p.kind in {"code", "data"}]
    whole = {p.source for p in code if not p.truncated}
    outlined = whole | {
        p.source
        for p in code
        if p.text.startswith(f"## file: {p.source} (outline;")
        and "[... truncated by the context budget" not in p.text
    }
    gold = inst.gold_files
    return sum(g in whole for g in gold) / len(gold), sum(g in outlined for g in gold) / len(gold)


def table(title: str, rows: dict[str, list[dict[str, float]]]) -> str:
    head = ["repo", "n", *[f"Acc@{k}" for k in KS], *[f"B{b // 1000}k" for b in BUDGETS]]
    lines = [title, "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, results in rows.items():
        if not results:
            continue
        cells = [name, str(len(results))]
        for key in [f"acc{k}" for k in KS] + [f"b{b}" for b in BUDGETS]:
            cells.append(f"{100 * statistics.mean(r[key] for r in results):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score(ranking: list[str], inst: Instance, sizes: dict[str, int]) -> dict[str, float]:
    out = {f"acc{k}": acc_at(ranking, inst.gold_files, k) for k in KS}
    out.update({f"b{b}": budget_recall(ranking, inst.gold_files, sizes, b) for b in BUDGETS})
    return out


def grouped(
    instances: list[Instance], results: dict[str, dict[str, float]]
) -> dict[str, list[dict[str, float]]]:
    rows: dict[str, list[dict[str, float]]] = defaultdict(list)
    for inst in instances:
        res = results[inst.instance_id]
        rows["all"].append(res)
        if inst.repo in TUNING:
            rows["tuning: " + "+".join(r.split("/")[1] for r in TUNING)].append(res)
        elif inst.repo in ADDED:
            rows["added: " + "+".join(r.split("/")[1] for r in ADDED)].append(res)
        else:
            rows["others of the shared set"].append(res)
    for inst in sorted(instances, key=lambda i: i.repo):
        rows[inst.repo].append(results[inst.instance_id])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--via-cli", action="store_true")
    parser.add_argument("--repo", help="only instances of this owner/name")
    parser.add_argument("--json", type=Path, help="write per-instance results here")
    parser.add_argument("--show-misses", action="store_true")
    parser.add_argument(
        "--pack", action="store_true", help="also measure what assemble_context packs"
    )
    parser.add_argument(
        "--loro", action="store_true", help="also fit across repositories (localize_fit.py)"
    )
    parser.add_argument(
        "--shared-only",
        action="store_true",
        help="only the shared set's 95 instances, without those localize_extra.py added",
    )
    args = parser.parse_args(argv)

    instances = load_instances((DATA,)) if args.shared_only else load_instances()
    if args.repo:
        instances = [i for i in instances if i.repo == args.repo]
    missing = set(materialise(instances))
    if missing:
        print(f"dropped {len(missing)} instances without a snapshot: {sorted(missing)}")
    instances = [i for i in instances if i.instance_id not in missing]

    cache_dir = CACHE / "index"
    fresh = Path(tempfile.mkdtemp(prefix="vibe-index-"))
    ours: dict[str, dict[str, float]] = {}
    base: dict[str, dict[str, float]] = {}
    base_unique: dict[str, dict[str, float]] = {}
    cold_build: list[tuple[float, int]] = []
    warm_build: list[float] = []
    latency: list[float] = []
    baseline_latency: list[float] = []
    per_tree: dict[str, tuple[RepoIndex, Baseline, dict[str, int]]] = {}
    detail = {}
    cases: list[Case] = []
    packed: dict[int, list[tuple[float, float]]] = defaultdict(list)
    warmed: set[str] = set()
    for inst in instances:
        if inst.sdist_root not in per_tree:
            index = build_index(DirectorySnapshot(inst.tree), fresh)
            cold_build.append((index.build_seconds, len(index.files)))
            warm = build_index(DirectorySnapshot(inst.tree), fresh)
            warm_build.append(warm.build_seconds)
            per_tree[inst.sdist_root] = (warm, Baseline(inst.tree), file_sizes(inst.tree))
        index, baseline, sizes = per_tree[inst.sdist_root]
        if args.via_cli:
            if inst.sdist_root not in warmed:
                rank_via_cli(inst, cache_dir)  # the first call builds the cached index
                warmed.add(inst.sdist_root)
            ranking, elapsed = rank_via_cli(inst, cache_dir)
        else:
            rank_files(index, "warm-up")
            started = time.perf_counter()
            ranking = [r.path for r in rank_files(index, inst.problem_statement)]
            elapsed = time.perf_counter() - started
        latency.append(elapsed)
        if args.pack:
            for b in BUDGETS:
                packed[b].append(pack_recall(index, inst, b))
        if args.loro:
            cases.append(
                make_case(
                    retriever_for(index), inst.instance_id, inst.repo, inst.problem_statement,
                    inst.gold_files, sizes,
                )
            )  # fmt: skip
        started = time.perf_counter()
        base_ranking = baseline.rank(inst.problem_statement)
        baseline_latency.append(time.perf_counter() - started)
        ours[inst.instance_id] = score(ranking, inst, sizes)
        base[inst.instance_id] = score(base_ranking, inst, sizes)
        base_unique[inst.instance_id] = score(
            baseline.rank(inst.problem_statement, unique=True), inst, sizes
        )
        detail[inst.instance_id] = {
            "gold": inst.gold_files,
            "ours": ranking[:10],
            "gold_rank": [ranking.index(g) + 1 if g in ranking else None for g in inst.gold_files],
            "bm25_rank": [
                base_ranking.index(g) + 1 if g in base_ranking else None for g in inst.gold_files
            ],
        }
        if args.show_misses and not ours[inst.instance_id]["acc5"]:
            print(
                inst.instance_id,
                detail[inst.instance_id]["gold_rank"],
                inst.gold_files,
                ranking[:5],
            )

    print(table("## Context engine (fused ranker)", grouped(instances, ours)))
    print()
    title = "## Plain BM25 as the README computes it (each query term once; reproduces its table)"
    print(table(title, grouped(instances, base_unique)))
    print()
    title = "## The same BM25 counting repeated query terms (a stronger baseline, same run)"
    print(table(title, grouped(instances, base)))
    print()
    a5 = statistics.mean(r["acc5"] for r in ours.values())
    u5 = statistics.mean(r["acc5"] for r in base_unique.values())
    b5 = statistics.mean(r["acc5"] for r in base.values())
    print(
        f"Acc@5 overall: {100 * a5:.1f} vs README BM25 {100 * u5:.1f} (ratio {a5 / u5:.2f}), "
        f"vs stronger BM25 {100 * b5:.1f} (ratio {a5 / b5:.2f})"
    )
    biggest = max(cold_build, key=lambda x: x[1])
    print(
        f"index build, cold: median {statistics.median(t for t, _ in cold_build):.2f} s, "
        f"largest snapshot {biggest[1]} files in {biggest[0]:.2f} s; "
        f"warm (from cache): median {statistics.median(warm_build):.2f} s"
    )
    mode = "CLI process end to end, cached index" if args.via_cli else "library, warm index"
    print(
        f"query latency ({mode}): median {1000 * statistics.median(latency):.0f} ms, "
        f"max {1000 * max(latency):.0f} ms; BM25 baseline median "
        f"{1000 * statistics.median(baseline_latency):.0f} ms"
    )
    if args.pack:
        print("\n## What the pack holds (assemble_context, the whole pack within the budget)")
        for b in BUDGETS:
            whole = statistics.mean(w for w, _ in packed[b])
            shown = statistics.mean(a for _, a in packed[b])
            print(
                f"{b // 1000}k: gold files whole {100 * whole:.1f}, "
                f"whole or as their outline {100 * shown:.1f}"
            )
    if args.loro:
        print()
        print(report(cases))
    if args.json:
        args.json.write_text(json.dumps({"ours": ours, "bm25": base, "detail": detail}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
