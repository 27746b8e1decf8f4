"""``vibe action`` as a process with Actions-like variables and octokit payloads
(``tests/fixtures/webhooks``), against the fake GitHub and the scripted model server, with
real git and real bubblewrap."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.demo import SAMPLE_FILES, fix_add
from bot.testing.fake_github import FakeGitHub
from bot.testing.model_server import ScriptedModelServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
REPO = "Codertocat/Hello-World"  # the repository of the octokit payloads
OWNER = "Codertocat"
MODEL_KEY = "sk-ant-action-test-000000000000"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@dataclass
class Job:
    """One Actions job: its variables, its files, and what ``vibe action`` left there."""

    fake: FakeGitHub
    model: ScriptedModelServer
    root: Path
    token: str

    def run(
        self, event: str, payload: dict[str, Any], *args: str, **extra: str
    ) -> tuple[int, dict[str, str], str]:
        event_path = self.root / "event.json"
        event_path.write_text(json.dumps(payload))
        output = self.root / "output.txt"
        summary = self.root / "summary.md"
        output.write_text("")
        summary.write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIBE_", "GITHUB_"))}
        env.update(
            {
                "GITHUB_ACTIONS": "true",
                "GITHUB_EVENT_NAME": event,
                "GITHUB_EVENT_PATH": str(event_path),
                "GITHUB_REPOSITORY": REPO,
                "GITHUB_API_URL": self.fake.api_url,
                "GITHUB_SERVER_URL": self.fake.base_url,
                "GITHUB_GRAPHQL_URL": self.fake.graphql_url,
                "GITHUB_RUN_ID": "4242",
                "GITHUB_OUTPUT": str(output),
                "GITHUB_STEP_SUMMARY": str(summary),
                "VIBE_GITHUB_TOKEN": self.token,
                "VIBE_ANTHROPIC_API_KEY": MODEL_KEY,
                "VIBE_ANTHROPIC_BASE_URL": self.model.base_url,
                "VIBE_ANTHROPIC_MAX_RETRIES": "0",
                "VIBE_GITHUB_MIN_WRITE_INTERVAL": "0",
                "VIBE_STATUS_UPDATE_SECONDS": "0",
                "VIBE_DATA_DIR": str(self.root / "data"),
            }
        )
        env.update(extra)
        proc = subprocess.run(
            [sys.executable, "-m", "bot", "action", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        log = proc.stdout + proc.stderr
        return proc.returncode, parse_outputs(output.read_text()), summary.read_text() + log


def parse_outputs(text: str) -> dict[str, str]:
    return {
        name: value
        for name, delim, value in re.findall(r"^([a-z-]+)<<(\S+)\n(.*?)\n\2\n", text, re.M | re.S)
    }


@pytest.fixture
def job(tmp_path: Path, bwrap_available: None) -> Iterator[Job]:
    with ScriptedModelServer([]) as model, FakeGitHub() as fake:
        fake.create_repo(
            REPO, SAMPLE_FILES, default_branch="master", collaborators={"rita": "read"}
        )
        number = fake.open_issue(REPO, OWNER, "add() subtracts", "`add(2, 3)` returns -1.")
        assert number == 1  # the octokit payloads are about issue #1
        yield Job(fake, model, tmp_path, fake.actions_token(REPO))


def comment_payload(body: str, sender: str = OWNER) -> dict[str, Any]:
    payload = copy.deepcopy(fixture("issue_comment.created"))
    payload["comment"]["body"] = body
    payload["sender"]["login"] = sender
    payload["comment"]["user"]["login"] = sender
    return payload


def test_octokit_comment_without_a_command_is_ignored(job: Job) -> None:
    code, outputs, log = job.run("issue_comment", fixture("issue_comment.created"))
    assert code == 0, log
    assert outputs == {"outcome": "ignored", "pr-number": "", "cost": "0.0000"}
    assert "| Outcome | ignored |" in log
    assert job.fake.pulls(REPO) == []


def test_command_starts_a_task_and_opens_a_draft_pr(job: Job) -> None:
    job.model.add(fix_add())
    code, outputs, log = job.run("issue_comment", comment_payload("/vibe fix add() please"))
    assert code == 0, log
    (pr,) = job.fake.pulls(REPO)
    assert pr.pull is not None
    assert pr.pull.draft
    assert pr.pull.head_ref.startswith("vibe/issue-1-")
    assert outputs["outcome"] == "started"
    assert outputs["pr-number"] == str(pr.number)
    assert float(outputs["cost"]) > 0
    fixed = job.fake.read_file(REPO, pr.pull.head_ref, "calc.py")
    assert fixed is not None
    assert "return a + b" in fixed
    # The bot acted as the job's token (github-actions[bot]) and reported on the issue.
    bot_comments = [c for c in job.fake.comments(REPO, 1) if c.user == "github-actions[bot]"]
    assert any("vibe:status" in c.body for c in bot_comments)
    assert f"[#{pr.number}]" in log  # the job summary links the PR
    assert MODEL_KEY not in log
    assert job.token not in log
    assert len(job.model.message_requests) >= 2


def test_a_readers_command_is_refused_without_failing_the_job(job: Job) -> None:
    code, outputs, log = job.run("issue_comment", comment_payload("/vibe do it", sender="rita"))
    assert code == 0, log
    assert outputs["outcome"] == "refused"
    replies = [c.body for c in job.fake.comments(REPO, 1) if c.user == "github-actions[bot]"]
    assert any("only people with write access" in r for r in replies)
    assert job.fake.pulls(REPO) == []
    assert job.model.message_requests == []


def test_the_bot_failing_fails_the_job(job: Job) -> None:
    job.fake.revoke_tokens()
    code, outputs, log = job.run("issue_comment", comment_payload("/vibe fix add()"))
    assert code == 1
    assert outputs["outcome"] == "failed"
    assert "::error::vibe-bot failed:" in log
    assert job.token not in log


@pytest.mark.parametrize(
    ("event_file", "content", "message"),
    [
        (True, "{broken", "is not JSON"),
        (True, "[]", "not an object"),
        (False, "", "GITHUB_EVENT_PATH not set"),
    ],
)
def test_a_broken_job_is_a_configuration_error(
    job: Job, tmp_path: Path, event_file: bool, content: str, message: str
) -> None:
    path = tmp_path / "broken.json"
    path.write_text(content)
    code, outputs, log = job.run(
        "issue_comment", {}, GITHUB_EVENT_PATH=str(path) if event_file else ""
    )
    assert code == 2
    assert message in log
    assert outputs == {}


def test_hostile_task_id_is_refused(job: Job) -> None:
    code, _, log = job.run("issue_comment", fixture("issue_comment.created"), "--task-id=1;id")
    assert code == 2
    assert "task-id must be a positive number" in log


def test_runner_mode_claims_runs_and_reports(job: Job) -> None:
    """The service's ``actions`` executor dispatches; ``vibe action`` on the runner claims
    the task with the dispatched credential, handles its event, reports the result."""
    from fastapi import FastAPI
    from github import Auth, Github

    from bot.executor import ActionsExecutor, GithubActions, make_runner_router
    from bot.store import init_db, make_engine
    from bot.testing.fake_actions import FakeActions
    from tests.actions.conftest import RUNNER_TEMPLATE, serve

    job.fake.commit(
        REPO, "master", {".github/workflows/vibe-runner.yml": RUNNER_TEMPLATE}, "Add the runner"
    )
    actions = FakeActions.attach(job.fake, job.fake.app)
    owner_token = job.fake.user_token(OWNER)

    def api(repo: str) -> GithubActions:
        client = Github(
            auth=Auth.Token(owner_token),
            base_url=job.fake.api_url,
            seconds_between_requests=None,
            seconds_between_writes=None,
            retry=0,
        )
        return GithubActions(client, repo)

    engine = make_engine(f"sqlite:///{job.root / 'service.db'}")
    init_db(engine)
    executor = ActionsExecutor(engine, api)
    app = FastAPI()
    app.include_router(make_runner_router(executor))
    job.model.add(fix_add())
    try:
        with serve(app) as url:
            spec = {
                "event_name": "issue_comment",
                "payload": comment_payload("/vibe fix add() please"),
            }
            task_id = executor.submit(REPO, spec, number=1)
            (run,) = actions.dispatched(REPO)
            # The runner's own event is the dispatch; the task comes from the service.
            dispatch_event = fixture("workflow_dispatch")
            dispatch_event["inputs"] = dict(run.inputs)
            args = (f"--task-id={task_id}", f"--service-url={url}")
            credential = run.inputs["credential"]
            code, outputs, log = job.run(
                "workflow_dispatch", dispatch_event, *args, VIBE_TASK_CREDENTIAL=credential
            )
            assert code == 0, log
            assert credential not in log
            (pr,) = job.fake.pulls(REPO)
            assert outputs["outcome"] == "started"
            assert outputs["pr-number"] == str(pr.number)
            task = executor.get(task_id)
            assert task is not None
            assert (task.status, task.outcome, task.pr_number) == (
                "succeeded",
                "started",
                pr.number,
            )
            assert task.cost > 0
            assert task.progress is not None

            # The same credential a second time: refused, and the job says so.
            code, outputs, log = job.run(
                "workflow_dispatch", dispatch_event, *args, VIBE_TASK_CREDENTIAL=credential
            )
            assert code == 1
            assert outputs["outcome"] == "failed"
            assert "refused the task claim" in log
    finally:
        engine.dispose()
