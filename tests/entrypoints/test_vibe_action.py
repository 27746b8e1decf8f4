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
from sqlmodel import Session, select

from bot.entrypoints.demo import SAMPLE_FILES, fix_add
from bot.testing.fake_actions import FakeActions
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
    actions: FakeActions

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
        actions = FakeActions.attach(fake, fake.app)
        yield Job(fake, model, tmp_path, fake.actions_token(REPO), actions)


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
    # What readers see is a sentence for them; the exception, redacted, is in the log only.
    [shown] = [line for line in log.splitlines() if "::error::vibe-bot failed:" in line]
    assert "this job's log (action.failed)" in shown
    assert "Error" not in shown.split("failed:", 1)[1]
    assert "/" not in shown.split("failed:", 1)[1]
    assert "action.failed" in log


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


def test_service_runs_tasks_on_actions_and_iterations_continue_there(job: Job) -> None:
    """``executor: actions`` end to end: the service's event job decides, dispatches
    vibe-runner.yml and waits; ``vibe action`` on the "runner" claims, works and reports,
    with the task's records going out with the claim and coming back with the result, so a
    ``/vibe`` on the PR is a second iteration of the same task, again on a runner."""
    import threading
    import time

    from fastapi import FastAPI

    from bot.bootstrap import ServiceWiring
    from bot.entrypoints.demo import CONFIG, docstring
    from bot.executors.actions.executor import make_runner_router, service_executor
    from bot.loop.handlers import EventJob, event_handler
    from bot.settings import Settings
    from bot.store import tasks as taskdb
    from bot.store.engine import init_db, make_engine
    from bot.store.tables import RunnerTask
    from tests.support.actions import RUNNER_TEMPLATE, serve

    job.fake.commit(
        REPO,
        "master",
        {
            ".github/workflows/vibe-runner.yml": RUNNER_TEMPLATE,
            ".github/vibe.yml": CONFIG + "executor: actions\n",
        },
        "Run vibe tasks on Actions",
    )
    actions = job.actions
    job.fake.set_role(REPO, "vibe-service", "write")
    settings = Settings(
        data_dir=job.root / "service",
        github_api_url=job.fake.api_url,
        github_graphql_url=job.fake.graphql_url,
        github_token=job.fake.user_token("vibe-service"),
        github_min_write_interval=0,
        bot_login="vibe-service",
        anthropic_api_key="sk-ant-unused-on-the-service-00000",
        actions_poll_seconds=0.1,
    )
    engine = make_engine(f"sqlite:///{job.root / 'service.db'}")
    init_db(engine)
    handler = event_handler(ServiceWiring(settings))
    app = FastAPI()
    app.include_router(make_runner_router(service_executor(settings, engine)))

    def event_job(event: str, payload: dict[str, Any], delivery: str) -> threading.Thread:
        job = EventJob(event, payload, delivery, 1, 1, threading.Event(), settings, engine)
        thread = threading.Thread(target=handler, args=(job,))
        thread.start()
        return thread

    def runner_for(url: str, count: int) -> tuple[int, dict[str, str], str]:
        deadline = time.monotonic() + 120
        while len(actions.dispatched(REPO)) < count:
            assert time.monotonic() < deadline, "no dispatch"
            time.sleep(0.05)
        run = max(actions.dispatched(REPO), key=lambda r: r.id)
        runs.append(run)
        dispatch_event = fixture("workflow_dispatch")
        dispatch_event["inputs"] = dict(run.inputs)
        return job.run(
            "workflow_dispatch",
            dispatch_event,
            f"--task-id={run.inputs['task_id']}",
            f"--service-url={url}",
            VIBE_TASK_CREDENTIAL=run.inputs["credential"],
            GITHUB_RUN_ID=str(run.id),
        )

    runs: list[Any] = []
    try:
        with serve(app) as url:
            job.model.add(fix_add())
            opening = comment_payload("/vibe fix add()")
            # The octokit fixture names the repository the fake serves; its id must be the
            # fake's too, as every later delivery's is (tasks are keyed by repository id).
            opening["repository"]["id"] = job.fake.repo(REPO).id
            first = event_job("issue_comment", opening, "d-1")
            code, outputs, log = runner_for(url, 1)
            first.join(120)
            assert not first.is_alive()
            assert code == 0, log
            assert outputs["outcome"] == "started"
            assert runs[0].inputs["credential"] not in log
            task = taskdb.find(engine, REPO, 1)  # the service knows the task the runner made
            assert task is not None
            assert task.pr_number is not None
            assert len(task.iterations) == 1
            pr = task.pr_number

            job.model.add(docstring())
            job.fake.comment(REPO, pr, OWNER, "/vibe add a docstring to add()")
            payload = job.fake.deliveries[-1].payload
            second = event_job("issue_comment", payload, "d-2")
            code, outputs, log = runner_for(url, 2)
            second.join(120)
            assert not second.is_alive()
            assert code == 0, log
            assert outputs["outcome"] == "iterated"
            task = taskdb.find(engine, REPO, 1)
            assert task is not None
            assert [i.number for i in task.iterations] == [1, 2]
            head = job.fake.read_file(REPO, task.branch, "calc.py")
            assert head is not None
            assert '"""Return a + b."""' in head
            with Session(engine) as session:
                rows = session.exec(select(RunnerTask)).all()
            assert [(r.status, r.outcome) for r in rows] == [
                ("succeeded", "started"),
                ("succeeded", "iterated"),
            ]
            status = [c.body for c in job.fake.comments(REPO, 1) if "vibe:status runner=" in c.body]
            assert any("Finished on GitHub Actions: started" in s for s in status)

            # A spent credential a second time: refused, and the job says so.
            replay = fixture("workflow_dispatch")
            replay["inputs"] = dict(runs[0].inputs)
            code, outputs, log = job.run(
                "workflow_dispatch",
                replay,
                f"--task-id={runs[0].inputs['task_id']}",
                f"--service-url={url}",
                VIBE_TASK_CREDENTIAL=runs[0].inputs["credential"],
            )
            assert code == 1
            assert outputs["outcome"] == "failed"
            assert "refused the task claim" in log
    finally:
        engine.dispose()


def dispatch_payload(prompt: str | None) -> dict[str, Any]:
    payload = fixture("workflow_dispatch")
    payload["repository"]["full_name"] = REPO
    payload["repository"]["name"] = "Hello-World"
    payload["repository"]["owner"]["login"] = OWNER
    payload["repository"]["default_branch"] = "master"
    payload["inputs"] = {} if prompt is None else {"prompt": prompt}
    return payload


def test_workflow_dispatch_prompt_starts_a_task_with_its_own_issue(job: Job) -> None:
    job.model.add(fix_add())
    leaked = "ghp_" + "Q1w2E3r4" * 5  # pasted by mistake: the issue must not show it
    prompt = f"Make add() add\n\nIt subtracts today; `add(2, 3)` must be 5.\nToken: {leaked}"
    # The action's `prompt` input (--prompt) fills the event's inputs.
    code, outputs, log = job.run("workflow_dispatch", dispatch_payload(None), f"--prompt={prompt}")
    assert code == 0, log
    assert outputs["outcome"] == "started"
    issue = job.fake.issue(REPO, 2)  # issue #1 exists; the task opened #2
    assert issue.title == "Make add() add"
    assert (issue.body or "").startswith(prompt.replace(leaked, "[redacted]"))
    assert leaked not in (issue.body or "")
    assert issue.user == "github-actions[bot]"
    (pr,) = job.fake.pulls(REPO)
    assert outputs["pr-number"] == str(pr.number)
    assert pr.pull is not None
    assert pr.pull.head_ref.startswith("vibe/issue-2-")
    assert "| Issue | #2 |" in log


def test_workflow_dispatch_without_prompt_does_nothing(job: Job) -> None:
    code, outputs, log = job.run("workflow_dispatch", dispatch_payload("   "))
    assert code == 0, log
    assert outputs["outcome"] == "ignored"
    assert len(job.fake.world.repos[REPO.lower()].issues) == 1


def test_rerunning_a_dispatch_run_continues_on_the_issue_it_opened(job: Job) -> None:
    """Re-running a workflow run (same GITHUB_RUN_ID, next GITHUB_RUN_ATTEMPT) finds the
    issue the earlier attempt opened by its hidden marker and works there; an issue someone
    else opened with the same marker is not taken for it."""
    prompt = "Make add() add"
    # Attempt 1 opens its issue, then the model is unreachable: the bot fails, the job too.
    code, outputs, log = job.run(
        "workflow_dispatch",
        dispatch_payload(prompt),
        VIBE_ANTHROPIC_BASE_URL="http://127.0.0.1:9",
        GITHUB_RUN_ATTEMPT="1",
    )
    assert code == 1, log
    assert outputs["outcome"] == "failed"
    issue = job.fake.issue(REPO, 2)
    assert issue.user == "github-actions[bot]"
    assert "<!-- vibe:dispatch run=4242 -->" in (issue.body or "").splitlines()
    # A reader pastes the marker into an issue of their own, opened later (so newer).
    forged = job.fake.open_issue(REPO, "rita", "Me", "<!-- vibe:dispatch run=4242 -->")
    assert forged == 3

    job.model.add(fix_add())
    code, outputs, log = job.run(
        "workflow_dispatch", dispatch_payload(prompt), GITHUB_RUN_ATTEMPT="2"
    )
    assert code == 0, log
    assert outputs["outcome"] == "started"
    (pr,) = job.fake.pulls(REPO)
    issues = job.fake.world.repos[REPO.lower()].issues.values()
    assert sorted(i.number for i in issues if i.pull is None) == [1, 2, 3]
    assert pr.pull is not None
    assert pr.pull.head_ref.startswith("vibe/issue-2-")
    assert "| Issue | #2 |" in log
    assert not [c for c in job.fake.comments(REPO, 3) if c.user == "github-actions[bot]"]

    # Another run (a new GITHUB_RUN_ID) is another task with its own issue.
    job.model.add(fix_add())
    code, outputs, log = job.run(
        "workflow_dispatch", dispatch_payload("Make add() add again"), GITHUB_RUN_ID="4243"
    )
    assert code == 0, log
    assert "| Issue | #5 |" in log  # #4 is the first task's pull request
