"""Benchmark: workspace preparation cold vs warm, and the sandbox's cost per command.

Run: ``python tests/benchmarks/bench_workspace.py [--runs N]``.

1. A generated repository (20,000 files, 5,000 commits, made with ``git fast-import`` and
   cached under ``tests/benchmarks/.cache/``) is served as a local remote (``file://``,
   so git runs its pack protocol as it would over HTTPS, without a network).
   *cold*: an empty cache; :meth:`WorkspaceCache.prepare` clones the mirror and checks out
   a worktree. *baseline*: a plain ``git clone`` of the same remote. *warm*: the next
   iteration of a task after someone pushed a commit: fetch into the existing mirror and
   bring the task's idle worktree to the new commit. Aim: warm at least 10x faster than
   a clone.
2. Median wall time of ``true`` through :class:`BwrapSandbox` versus a plain
   ``subprocess.run(["true"])``, with and (where the host offers one) without the
   per-command memory cgroup, whose cost is the kernel moving the process into it.
   Aim: overhead under 30 ms per command.

Other work on the machine inflates every figure; the load average is printed first.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.sandbox.bwrap import BwrapSandbox  # noqa: E402
from bot.workspace.git import Identity, WorkspaceCache  # noqa: E402

CACHE = Path(__file__).resolve().parent / ".cache"
FILES = 20_000
COMMITS = 5_000
ORIGIN = CACHE / f"workspace-origin-{FILES}-{COMMITS}.git"
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
PERSON = Identity("Bench Person", "bench@example.com")


def git(
    *args: str,
    cwd: Path | None = None,
    data: bytes | None = None,
    env: dict[str, str] | None = None,
) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env or GIT_ENV, input=data, capture_output=True, check=True
    )
    return out.stdout.decode()


def _stream() -> bytes:
    """A fast-import stream: one commit adding every file, then small edits."""
    parts: list[bytes] = []
    when = 1_700_000_000

    def commit(number: int, message: str, changes: list[tuple[str, bytes]]) -> None:
        msg = message.encode()
        parts.append(b"commit refs/heads/main\n")
        parts.append(f"mark :{number}\n".encode())
        parts.append(f"committer Bench <bench@example.com> {when + number} +0000\n".encode())
        parts.append(f"data {len(msg)}\n".encode() + msg + b"\n")
        if number > 1:
            parts.append(f"from :{number - 1}\n".encode())
        for path, body in changes:
            parts.append(f"M 100644 inline {path}\n".encode())
            parts.append(f"data {len(body)}\n".encode() + body + b"\n")

    def path_of(i: int) -> str:
        return f"pkg{i // 1000:02d}/mod{(i // 100) % 10}/file{i:05d}.py"

    commit(
        1,
        "initial import",
        [(path_of(i), f"# file {i}\nVALUE = {i}\n".encode()) for i in range(FILES)],
    )
    for n in range(2, COMMITS + 1):
        changes = [
            (path_of((n * 7919 + k * 104729) % FILES), f"# edit {n}.{k}\nVALUE = {n}\n".encode())
            for k in range(1 + n % 3)
        ]
        commit(n, f"change {n}", changes)
    return b"".join(parts)


def origin() -> Path:
    """The generated bare repository, built once and reused."""
    if (ORIGIN / "refs" / "heads" / "main").is_file() or (ORIGIN / "packed-refs").is_file():
        return ORIGIN
    CACHE.mkdir(parents=True, exist_ok=True)
    building = ORIGIN.with_suffix(".building")
    shutil.rmtree(building, ignore_errors=True)
    start = time.perf_counter()
    git("init", "--quiet", "--bare", "--initial-branch=main", str(building))
    git("fast-import", "--quiet", cwd=building, data=_stream())
    git("repack", "-a", "-d", "--quiet", cwd=building)
    building.rename(ORIGIN)
    print(f"generated {ORIGIN.name} in {time.perf_counter() - start:.1f} s")
    return ORIGIN


def push_a_change(remote: Path, scratch: Path, n: int) -> None:
    """Someone pushes one small commit, as between two iterations of a task."""
    env = {
        **GIT_ENV,
        "GIT_INDEX_FILE": str(scratch / "index"),
        "GIT_DIR": str(remote),
        "GIT_AUTHOR_NAME": "p",
        "GIT_AUTHOR_EMAIL": "p@example.com",
        "GIT_COMMITTER_NAME": "p",
        "GIT_COMMITTER_EMAIL": "p@example.com",
    }
    blob = git("hash-object", "-w", "--stdin", data=f"# pushed {n}\n".encode(), env=env).strip()
    git("read-tree", "main", env=env)
    git("update-index", "--add", "--cacheinfo", f"100644,{blob},pushed.txt", env=env)
    tree = git("write-tree", env=env).strip()
    sha = git("commit-tree", tree, "-p", "main", "-m", f"pushed {n}", env=env).strip()
    git("update-ref", "refs/heads/main", sha, env=env)


def bench_workspace(runs: int, sandbox_uid: int | None) -> None:
    source = origin()
    count = int(git("rev-list", "--count", "main", cwd=source))
    files = len(git("ls-tree", "-r", "--name-only", "main", cwd=source).splitlines())
    print(f"repository: {files:,} files, {count:,} commits")
    with tempfile.TemporaryDirectory(prefix="vibe-bench-") as tmp:
        base = Path(tmp)
        remote = base / "remote.git"
        git("clone", "--quiet", "--bare", "--no-hardlinks", str(source), str(remote))
        url = remote.as_uri()
        clone_times, cold_times, warm_times = [], [], []
        for run in range(runs):
            target = base / f"clone-{run}"
            start = time.perf_counter()
            git("clone", "--quiet", "--no-hardlinks", url, str(target))
            clone_times.append(time.perf_counter() - start)
            shutil.rmtree(target)

            cache = WorkspaceCache(base / f"cache-{run}", sandbox_uid=sandbox_uid)
            branch = f"vibe/issue-{run + 1}-bench"
            start = time.perf_counter()
            ws = cache.prepare("bench/repo", url, branch=branch, default_branch="main")
            cold_times.append(time.perf_counter() - start)
            ws.close()

            push_a_change(remote, base, run)
            start = time.perf_counter()
            ws = cache.prepare("bench/repo", url, branch=branch, default_branch="main")
            warm_times.append(time.perf_counter() - start)
            assert (ws.path / "pushed.txt").is_file()
            ws.close()
            shutil.rmtree(cache.root)
    clone = statistics.median(clone_times)
    cold = statistics.median(cold_times)
    warm = statistics.median(warm_times)
    print(f"git clone (baseline)         : {clone * 1000:8.0f} ms  (median of {runs})")
    print(f"prepare cold (clone mirror)  : {cold * 1000:8.0f} ms")
    print(f"prepare warm (fetch+worktree): {warm * 1000:8.0f} ms")
    print(f"warm vs git clone            : {clone / warm:8.1f}x faster (aim >= 10x)")
    print(f"warm vs cold prepare         : {cold / warm:8.1f}x faster")


def bench_sandbox(runs: int) -> None:
    sandbox = BwrapSandbox()
    variants = {"sandboxed true": sandbox}
    if sandbox.memory_cgroup:
        variants["sandboxed true, no cgroup"] = BwrapSandbox(memory_cgroup=False)
    with tempfile.TemporaryDirectory(prefix="vibe-bench-") as tmp:
        work = Path(tmp)
        if sandbox.uid is not None:
            os.chown(work, sandbox.uid, sandbox.uid)
        plain: list[float] = []
        boxed: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(["true"], check=True)
            plain.append(time.perf_counter() - start)
            for name, box in variants.items():
                start = time.perf_counter()
                result = box.run(["true"], workdir=work)
                boxed[name].append(time.perf_counter() - start)
                assert result.ok, result
    p = statistics.median(plain)
    print(f"plain subprocess true        : {p * 1000:8.2f} ms  (median of {runs})")
    for name, times in boxed.items():
        b = statistics.median(times)
        print(f"{name:<29}: {b * 1000:8.2f} ms, overhead {(b - p) * 1000:.2f} ms ({b / p:.1f}x)")
    print("aim: overhead < 30 ms per command")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="workspace runs (median)")
    parser.add_argument("--sandbox-runs", type=int, default=200, help="sandbox runs (median)")
    parser.add_argument(
        "--only", choices=["workspace", "sandbox"], help="run one of the two benchmarks"
    )
    args = parser.parse_args()
    sandbox_uid = BwrapSandbox().uid if shutil.which("bwrap") else None
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.only != "sandbox":
        bench_workspace(args.runs, sandbox_uid)
    if args.only == "workspace":
        return
    if shutil.which("bwrap"):
        bench_sandbox(args.sandbox_runs)
    else:
        print("bubblewrap is not installed: sandbox figures skipped")


if __name__ == "__main__":
    main()
