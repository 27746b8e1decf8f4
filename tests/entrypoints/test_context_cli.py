from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.entrypoints.cli import app

runner = CliRunner()
CLI = "from bot.entrypoints.cli import main; main()"


@pytest.fixture
def issue(tmp_path: Path) -> Path:
    path = tmp_path / "issue.md"
    path.write_text("apply_discount raises ValueError for an unknown discount code")
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["context", *args])
    return result.exit_code, result.stdout, result.stderr


def test_rank_prints_paths_relative_to_the_repository_best_first(
    project: Path, issue: Path, tmp_path: Path
) -> None:
    code, out, _ = run(
        "rank", "--repo", str(project), "--issue-file", str(issue), "--top", "3",
        "--cache-dir", str(tmp_path / "cache"), "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["files"][0]["path"] == "shop/pricing.py"
    assert len(data["files"]) == 3
    scores = [f["score"] for f in data["files"]]
    assert scores == sorted(scores, reverse=True)
    assert data["elapsed_ms"] >= 0
    assert (tmp_path / "cache").is_dir()


def test_pack_prints_parts_and_the_total_within_the_budget(
    project: Path, issue: Path, tmp_path: Path
) -> None:
    code, out, _ = run(
        "pack", "--repo", str(project), "--issue-file", str(issue), "--budget", "1500",
        "--cache-dir", str(tmp_path / "cache"), "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["budget"] == 1500
    assert data["total_tokens"] == sum(p["tokens"] for p in data["parts"]) <= 1500
    assert {"kind", "source", "tokens", "truncated"} <= set(data["parts"][0])
    assert data["parts"][0]["kind"] == "instr"


def test_the_installed_command_ranks_a_commit(project: Path, issue: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "context", "rank", "--repo", str(project), "--commit", "HEAD",
         "--issue-file", str(issue), "--cache-dir", str(tmp_path), "--json"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["files"][0]["path"] == "shop/pricing.py"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", ["rank", "--repo", "{tmp}/missing"], "does not exist"),
        ("none", ["rank", "--issue-file", "{tmp}/nothing.md"], "does not exist"),
        ("binary", ["rank"], "is binary"),
        ("latin1", ["rank"], "not UTF-8"),
        ("huge", ["rank"], "the limit is"),
        ("empty", ["rank"], "is empty"),
        ("none", ["rank", "--top", "0"], "--top must be"),
        ("none", ["pack", "--budget", "0"], "--budget must be"),
        ("none", ["pack", "--budget", "-5"], "--budget must be"),
        ("none", ["rank", "--commit", "no-such-commit"], "failed"),
    ],
)
def test_bad_input_gets_a_clear_error_and_a_non_zero_exit(
    project: Path, tmp_path: Path, setup: str, args: list[str], message: str
) -> None:
    issue = tmp_path / "issue.md"
    contents = {
        "none": b"a fine issue",
        "binary": b"PK\x03\x04\0\0binary",
        "latin1": "caf\xe9".encode("latin-1"),
        "huge": b"x" * (1024 * 1024 + 1),
        "empty": b"  \n",
    }
    issue.write_bytes(contents[setup])
    defaults = {"--repo": str(project), "--issue-file": str(issue), "--budget": "100"}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for flag, value in defaults.items():
        if flag not in argv and (flag != "--budget" or argv[0] == "pack"):
            argv += [flag, value]
    code, out, err = run(*argv, "--cache-dir", str(tmp_path / "cache"), "--json")
    assert code == 2
    assert out == ""
    assert message in err
    assert err.startswith("error: ")
