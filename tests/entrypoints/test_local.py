"""``vibe run``: the whole loop on a local checkout with the scripted model, real git and
real bubblewrap; feedback comes from piped standard input."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core.tasks import State
from bot.entrypoints.local import LocalError, run_local
from bot.settings import Settings, load_settings
from bot.testing.model_server import ScriptedModelServer
from tests.loop.sample import create, docstring, edit, finish, fix_add, git, make_repo

pytestmark = pytest.mark.usefixtures("bwrap_available")


@pytest.fixture
def server() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer([]) as srv:
        yield srv


def _settings(tmp_path: Path, server: ScriptedModelServer) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data",
        anthropic_base_url=server.base_url,
        anthropic_api_key="sk-test-local-key-0000",
        anthropic_max_retries=0,
    )


def _reader(lines: list[str]) -> tuple[list[str], object]:
    feed = list(lines)

    def read() -> str | None:
        return feed.pop(0) if feed else None

    return feed, read


def test_two_iterations_then_accept(tmp_path: Path, server: ScriptedModelServer) -> None:
    repo = make_repo(tmp_path / "calc")
    server.add([*fix_add(), *docstring()])
    out: list[str] = []
    _, read = _reader(["approve", "please add a docstring to add()", ""])
    run = run_local(
        _settings(tmp_path, server),
        repo,
        "add() subtracts instead of adding",
        model=None,
        read=read,  # type: ignore[arg-type]
        echo=out.append,
    )
    task = run.task
    assert task.state is State.ACCEPTED
    assert task.branch == "vibe/issue-1-add-subtracts-instead-of-adding"
    assert [it.outcome for it in task.iterations] == ["succeeded", "succeeded"]
    first, second = task.iterations
    assert first.checks[0].passed
    assert first.checks[0].command == "python3 -m unittest -q"
    assert [f.kind for f in second.feedback][:1] == ["human"]
    assert "docstring" in second.feedback[0].text
    assert "self" in [f.kind for f in second.feedback]
    # the branch exists in the local repository with the bot's two commits
    log = git(repo, "log", "--format=%an|%s|%b", f"main..{task.branch}")
    assert log.count("vibe-bot|") == 2
    assert "Co-authored-by: local-user" in log
    assert '"""Return a + b."""' in git(repo, "show", f"{task.branch}:calc.py")
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    # the second iteration saw the feedback and the first iteration as memory
    second_prompt = str(server.message_requests[len(fix_add())].body)
    assert "please add a docstring" in second_prompt
    assert "Iteration 1" in second_prompt
    assert any("Done" in line for line in out)
    assert any("There is no plan waiting for approval" in line for line in out)


def test_test_model_records_red_then_green(tmp_path: Path, server: ScriptedModelServer) -> None:
    repo = make_repo(tmp_path / "calc")
    new_test = (
        "import unittest\n\nfrom calc import add\n\n\n"
        "class NegTest(unittest.TestCase):\n"
        "    def test_negative(self):\n        self.assertEqual(add(-1, -1), -2)\n"
    )
    server.add([create("test_neg.py", new_test), *finish("Added a test for negatives.")])
    server.add(fix_add())
    _, read = _reader([])
    run = run_local(
        _settings(tmp_path, server),
        repo,
        "add() must handle negative numbers",
        model="test",
        read=read,  # type: ignore[arg-type]
        echo=lambda _: None,
    )
    it = run.task.iterations[0]
    assert it.red is not None
    assert it.green is not None
    assert not it.red.passed
    assert it.green.passed
    assert "FAILED" in it.red.output
    assert run.task.state is State.ACCEPTED


def test_plan_model_writes_nothing_until_approved(
    tmp_path: Path, server: ScriptedModelServer
) -> None:
    repo = make_repo(tmp_path / "calc")
    server.add(
        [
            {
                "tool_use": [
                    {
                        "name": "str_replace_based_edit_tool",
                        "input": {"command": "view", "path": "calc.py"},
                    }
                ]
            },
            {"tool_use": [{"name": "finish", "input": {"summary": "1. Fix add\n2. Document add"}}]},
        ]
    )
    server.add(fix_add())
    server.add(docstring())
    _, read = _reader(["approve", "accept"])
    run = run_local(
        _settings(tmp_path, server),
        repo,
        "fix add",
        model="plan",
        read=read,  # type: ignore[arg-type]
        echo=lambda _: None,
    )
    planning, executing = run.task.iterations
    assert planning.outcome == "planned"
    assert planning.commits == ()
    tools = [t["name"] for t in server.message_requests[0].body["tools"]]
    # Planning: the editor answers only view there, and there is no bash.
    assert tools == ["str_replace_based_edit_tool", "search", "run_command", "finish"]
    assert [s.done for s in run.task.plan] == [True, True]
    assert len(executing.commits) == 1
    assert executing.outcome == "succeeded"


def test_bad_input_is_refused(tmp_path: Path, server: ScriptedModelServer) -> None:
    settings = _settings(tmp_path, server)
    with pytest.raises(LocalError, match="not a git checkout"):
        run_local(settings, tmp_path, "x", model=None, read=lambda: None, echo=print)
    repo = make_repo(tmp_path / "calc")
    with pytest.raises(LocalError, match="empty"):
        run_local(settings, repo, "  ", model=None, read=lambda: None, echo=print)
    with pytest.raises(LocalError, match="the limit is 65,536"):
        run_local(settings, repo, "x" * 70_000, model=None, read=lambda: None, echo=print)
    keyless = settings.model_copy(update={"anthropic_api_key": None})
    with pytest.raises(LocalError, match="VIBE_ANTHROPIC_API_KEY"):
        run_local(keyless, repo, "fix add", model=None, read=lambda: None, echo=print)


def test_vibe_run_reads_feedback_from_piped_stdin(
    tmp_path: Path, server: ScriptedModelServer
) -> None:
    repo = make_repo(tmp_path / "calc")
    server.add([*fix_add(), *docstring()])
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "VIBE_DATA_DIR": str(tmp_path / "data"),
        "VIBE_ANTHROPIC_BASE_URL": server.base_url,
        "VIBE_ANTHROPIC_API_KEY": "sk-test-local-key-0000",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--repo", str(repo), "add() is wrong"],
        input="now add a docstring\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Feedback for the next iteration" in proc.stdout
    assert "task accepted: 2 iterations on branch vibe/issue-1-add-is-wrong" in proc.stdout
    assert "Added a docstring" not in proc.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--repo", str(repo), "--model", "nope", "x"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "unknown model 'nope'" in bad.stderr


def test_test_model_without_a_test_command_says_so(
    tmp_path: Path, server: ScriptedModelServer
) -> None:
    repo = make_repo(tmp_path / "calc", config=None)
    server.add(fix_add())
    out: list[str] = []
    _, read = _reader([])
    run = run_local(
        _settings(tmp_path, server),
        repo,
        "fix add",
        model="test",
        read=read,  # type: ignore[arg-type]
        echo=out.append,
    )
    it = run.task.iterations[0]
    assert it.red is None
    assert it.green is None
    assert it.checks == ()
    assert any("no test command is known" in line for line in out)


def test_a_spend_limit_stops_cleanly_and_keeps_the_work(
    tmp_path: Path, server: ScriptedModelServer
) -> None:
    config = "limits:\n  steps_per_iteration: 1\ncommands:\n  test: [python3 -m unittest -q]\n"
    repo = make_repo(tmp_path / "calc", config=config)
    server.add([edit("calc.py", "return a - b", "return a + b")])
    out: list[str] = []
    _, read = _reader([])
    run = run_local(
        _settings(tmp_path, server),
        repo,
        "fix add",
        model=None,
        read=read,  # type: ignore[arg-type]
        echo=out.append,
    )
    it = run.task.iterations[0]
    assert it.outcome == "limit"
    assert len(it.commits) == 1
    assert "return a + b" in git(repo, "show", f"{run.task.branch}:calc.py")
    assert any("Limit reached" in line and "steps" in line for line in out)
    assert server.remaining == 0


def test_a_failing_lint_is_compiler_feedback_for_a_fix_round(
    tmp_path: Path, server: ScriptedModelServer
) -> None:
    config = (
        "commands:\n  lint: [python3 -m py_compile calc.py]\n  test: [python3 -m unittest -q]\n"
    )
    repo = make_repo(tmp_path / "calc", config=config)
    server.add(
        [
            edit("calc.py", "return a - b", "return a +"),
            *finish("Fixed add()."),
            edit("calc.py", "return a +", "return a + b"),
            *finish("Fixed the syntax error."),
        ]
    )
    _, read = _reader([])
    run = run_local(
        _settings(tmp_path, server),
        repo,
        "fix add",
        model=None,
        read=read,  # type: ignore[arg-type]
        echo=lambda _: None,
    )
    it = run.task.iterations[0]
    compiler = [f for f in it.feedback if f.kind == "compiler"]
    assert len(compiler) == 1
    assert "py_compile" in compiler[0].text
    assert "SyntaxError" in compiler[0].text
    assert [c.passed for c in it.checks] == [True, True]
    assert "[compiler]" in str(server.message_requests[3].body)
