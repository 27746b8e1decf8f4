"""Extra wall time per iteration for starting the repository's MCP servers.

``vibe run`` (the whole loop: worktree, context, sandboxed agent, commit) on a local
repository whose agent finishes at once, so the iteration is nearly all fixed cost and the
servers' share shows. Variants, interleaved in the same run so that load on the machine
hits each alike:

- baseline: no ``mcp`` section;
- 1 stdio: one server (``bot/testing/mcp_server.py`` with the system ``python3``) started
  in the sandbox, initialised, its tools listed, stopped at the end;
- 3 stdio: three such servers (they start one after another);
- 1 http: one streamable-HTTP server on loopback (the ``mcp`` SDK's server).

Also timed on its own: :func:`bot.agent.mcp.start_servers` plus ``close`` for one stdio
server, i.e. sandbox start, ``initialize``, ``tools/list`` and stop.

    python tests/benchmarks/bench_mcp.py [--runs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.agent.mcp import McpStart, start_servers
from bot.core.mcp import McpConfig
from bot.entrypoints.local import run_local
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits
from bot.settings import Settings, load_settings
from bot.testing import mcp_server
from bot.testing.mcp_server import McpHttpServer
from bot.testing.model_server import ScriptedModelServer
from tests.loop.sample import finish, git, make_repo


def stdio(name: str) -> str:
    return f"    - name: {name}\n      command: python3\n      args: [server.py, stdio, normal]\n"


def repo(root: Path, servers: str) -> Path:
    config = f"mcp:\n  servers:\n{servers}" if servers else None
    path = make_repo(root, config=config)
    shutil.copy(mcp_server.__file__, path / "server.py")
    git(path, "add", "server.py")
    git(path, "-c", "user.name=B", "-c", "user.email=b@example.com", "commit", "-qm", "server")
    return path


def iteration(settings: Settings, model: ScriptedModelServer, path: Path) -> float:
    model.add(finish("Done."))
    started = time.perf_counter()
    run_local(settings, path, "finish", model=None, read=lambda: None, echo=lambda _: None)
    return time.perf_counter() - started


def start_alone(root: Path, settings: Settings) -> float:
    work = root / "alone"
    work.mkdir(exist_ok=True)
    shutil.copy(mcp_server.__file__, work / "server.py")
    sandbox = BwrapSandbox()
    if sandbox.uid is not None:
        for path in (work, work / "server.py"):
            shutil.chown(path, sandbox.uid, sandbox.uid)
    config = McpConfig.model_validate(
        {"servers": [{"name": "s", "command": "python3", "args": ["server.py", "stdio"]}]}
    )
    started = time.perf_counter()
    tools = start_servers(
        config,
        settings,
        repo="bench/mcp",
        start=McpStart(sandbox, work, False, (), SandboxLimits(wall_seconds=60)),
        read_only=False,
    )
    assert not tools.problems, tools.problems
    tools.close()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    alone: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp,
        ScriptedModelServer([]) as model,
        McpHttpServer() as http,
    ):
        root = Path(tmp)
        variants = {
            "baseline": "",
            "1 stdio": stdio("one"),
            "3 stdio": stdio("one") + stdio("two") + stdio("three"),
            "1 http": f"    - name: web\n      url: {http.url}\n",
        }
        settings = load_settings(
            data_dir=root / "data",
            anthropic_base_url=model.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=0,
            mcp_http_hosts=["127.0.0.1"],
        )
        for n in range(args.runs + 1):  # the first round warms imports and caches
            for name, servers in variants.items():
                took = iteration(settings, model, repo(root / f"{n}-{name}", servers))
                if n:
                    times.setdefault(name, []).append(took)
            took = start_alone(root, settings)
            if n:
                alone.append(took)
    base = statistics.median(times["baseline"])
    print(f"iteration wall time, median of {args.runs} runs (agent finishes at once):")
    for name, values in times.items():
        median = statistics.median(values)
        extra = median - base
        print(
            f"  {name:9} {median * 1000:7.0f} ms  extra {extra * 1000:+6.0f} ms  "
            f"ratio {median / base:.2f}x baseline"
        )
    print(
        f"start_servers + close, one stdio server alone: median "
        f"{statistics.median(alone) * 1000:.0f} ms (min {min(alone) * 1000:.0f} ms)"
    )


if __name__ == "__main__":
    main()
