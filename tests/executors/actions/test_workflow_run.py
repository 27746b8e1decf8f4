"""``workflow_run`` webhooks: ingested as typed events in a lane of their own, ignored by
the policy, and applied by the ``actions`` executor, so a run's end is seen at once
instead of at the next poll."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.core.config import RepoConfig
from bot.core.events import WorkflowRun, parse_event
from bot.core.policy import BotIdentity, Ignore, decide, serial_key
from bot.entrypoints.demo import CONFIG
from bot.executors.actions.executor import ActionsExecutor, run_from_payload
from bot.ingest.deliveries import classify
from bot.settings import Settings
from bot.store.tables import Delivery, Job, RunnerTask
from bot.testing.fake_actions import FakeActions
from bot.testing.fake_github import FakeGitHub
from tests.support.actions import REPO, RUNNER_TEMPLATE, Clock, World, serve

SECRET = "workflow-run-webhook-secret"
SERVICE = "vibe-service"
SPEC: dict[str, Any] = {"event_name": "issue_comment", "payload": {}}


def wait_for(condition: Callable[[], bool], seconds: float = 30.0) -> float:
    """Seconds until ``condition`` held; fails the test after ``seconds``."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "condition not met in time"
        time.sleep(0.05)
    return time.monotonic() - start


def completed_hook(fake: FakeGitHub, actions: FakeActions, run_id: int) -> dict[str, Any]:
    """Complete the run (failure, no result reported) and return the webhook the fake sent."""
    actions.complete(run_id, "failure")
    (hook,) = [
        d
        for d in fake.deliveries
        if d.event == "workflow_run"
        and d.payload["action"] == "completed"
        and d.payload["workflow_run"]["id"] == run_id
    ]
    payload: dict[str, Any] = copy.deepcopy(hook.payload)
    return payload


def executor_for(world: World, engine: Engine, clock: Clock) -> ActionsExecutor:
    return ActionsExecutor(engine, world.actions_api, clock=clock, max_attempts=3)


def test_a_workflow_run_is_no_signal_and_has_no_issue_lane(
    world: World, engine: Engine, clock: Clock
) -> None:
    executor = executor_for(world, engine, clock)
    executor.submit(REPO, SPEC, number=world.fake.open_issue(REPO, "alice", "Widget", "please"))
    (run,) = world.actions.dispatched(REPO)
    payload = completed_hook(world.fake, world.actions, run.id)
    event = parse_event("workflow_run", payload)
    assert isinstance(event, WorkflowRun)
    assert event.title == run.title
    # The job waiting for the run holds the issue's lane: this one must not queue behind it.
    assert serial_key(event, SERVICE) is None
    ingested = classify("workflow_run", payload, SERVICE)
    assert (ingested.outcome, ingested.serial_key) == ("queued", None)
    decision = decide(
        event,
        permission="admin",
        repo_config=RepoConfig(),
        bot=BotIdentity(login=SERVICE),
        recent_runs=0,
    )
    assert isinstance(decision, Ignore)


def test_a_run_of_another_repository_cannot_touch_the_task(
    world: World, engine: Engine, clock: Clock
) -> None:
    executor = executor_for(world, engine, clock)
    task_id = executor.submit(REPO, SPEC, number=3)
    (run,) = world.actions.dispatched(REPO)
    payload = completed_hook(world.fake, world.actions, run.id)

    # Any repository the App is installed in can name its run "vibe task <id>".
    forged = copy.deepcopy(payload)
    forged["repository"]["full_name"] = "mallory/widgets"
    forged["repository"]["name"] = "widgets"
    forged["repository"]["owner"]["login"] = "mallory"
    forged["workflow_run"]["id"] = run.id + 1000
    foreign = run_from_payload(forged)
    assert foreign is not None
    assert executor.observe_run(foreign) is None
    task = executor.get(task_id)
    assert task is not None
    assert (task.status, task.attempt, task.run_id) == ("dispatched", 1, run.id)

    # Malformed deliveries are refused, not half-applied.
    broken = copy.deepcopy(payload)
    del broken["workflow_run"]["id"]
    assert run_from_payload(broken) is None
    assert run_from_payload({"workflow_run": "x"}) is None

    own = run_from_payload(payload)
    assert own is not None
    assert own.repository == REPO
    assert executor.observe_run(own) == task_id
    task = executor.get(task_id)
    assert task is not None
    assert (task.status, task.attempt) == ("dispatched", 2)  # the failed run was retried


@pytest.fixture
def service_world(
    tmp_path: Path, database_url: str
) -> Iterator[tuple[FakeGitHub, FakeActions, Settings]]:
    with FakeGitHub(webhook_secret=SECRET) as fake:
        fake.create_repo(
            REPO,
            {
                "README.md": "# widgets\n",
                ".github/workflows/vibe-runner.yml": RUNNER_TEMPLATE,
                ".github/vibe.yml": CONFIG + "executor: actions\n",
            },
            collaborators={"alice": "write", SERVICE: "write"},
        )
        actions = FakeActions.attach(fake, fake.app)
        (tmp_path / "service").mkdir()
        settings = Settings(
            data_dir=tmp_path / "service",
            database_url=database_url,  # SQLite and PostgreSQL
            github_api_url=fake.api_url,
            github_graphql_url=fake.graphql_url,
            github_token=fake.user_token(SERVICE),
            github_min_write_interval=0,
            bot_login=SERVICE,
            allowed_repositories=[REPO],  # the token's user owns none of it
            webhook_secret=SECRET,
            anthropic_api_key="sk-ant-unused-on-the-service-00000",
            # Far longer than the test: only the webhook can end the wait in time.
            actions_poll_seconds=600,
            max_attempts=1,
            workers=2,
        )
        yield fake, actions, settings


def test_a_completed_run_webhook_ends_the_waiting_job_at_once(
    service_world: tuple[FakeGitHub, FakeActions, Settings],
) -> None:
    """End to end over HTTP: the fake sends signed webhooks to the service under uvicorn;
    the comment's job dispatches and waits; the run fails without a result and its
    ``workflow_run`` webhook (not the 10-minute poll) ends the wait and reports it."""
    from bot.entrypoints.app import create_app

    fake, actions, settings = service_world
    app = create_app(settings, run_workers=True)
    engine: Engine = app.state.engine
    try:
        with serve(app, lifespan="on") as url:
            fake.webhook_url = f"{url}/webhook"
            number = fake.open_issue(REPO, "alice", "Add a widget", "please")
            fake.comment(REPO, number, "alice", "/vibe add a widget")
            wait_for(lambda: len(actions.dispatched(REPO)) == 1)
            (run,) = actions.dispatched(REPO)

            def event_job() -> Job:
                with Session(engine) as session:
                    (comment,) = session.exec(
                        select(Delivery).where(col(Delivery.event) == "issue_comment")
                    ).all()
                    return session.exec(select(Job).where(Job.delivery_id == comment.id)).one()

            assert event_job().serial_key == f"repository:{fake.repo(REPO).id}#{number}"
            # The waiting job polled the run once when it started; the next poll is 600 s
            # away, so from here on only the webhooks can tell it anything.
            wait_for(lambda: run.reads == 1)
            actions.start(run.id)
            started = time.monotonic()
            completed_hook(fake, actions, run.id)
            wait_for(lambda: event_job().status == "done", seconds=20)
            assert time.monotonic() - started < 20
            assert run.reads == 1

            def run_jobs_of(hooks: list[Delivery]) -> list[Job]:
                with Session(engine) as session:
                    return list(
                        session.exec(
                            select(Job).where(col(Job.delivery_id).in_([h.id for h in hooks]))
                        ).all()
                    )

            with Session(engine) as session:
                (task,) = session.exec(select(RunnerTask)).all()
                hooks = list(
                    session.exec(
                        select(Delivery).where(col(Delivery.event) == "workflow_run")
                    ).all()
                )
            # The webhooks' own jobs run beside the waiting job: the last may still be
            # finishing when the waiting job is done.
            wait_for(lambda: all(j.status != "running" for j in run_jobs_of(hooks)), seconds=10)
            run_jobs = run_jobs_of(hooks)
            assert (task.status, task.attempt) == ("failed", 1)
            assert "ended failure before reporting a result" in (task.summary or "")
            assert {h.action for h in hooks} >= {"in_progress", "completed"}
            assert all(h.outcome == "queued" for h in hooks)
            assert run_jobs
            assert all(j.serial_key is None and j.status == "done" for j in run_jobs), [
                (j.kind, j.serial_key, j.status, j.last_error) for j in run_jobs
            ]
            status = [
                c.body for c in fake.comments(REPO, number) if "vibe:status runner=" in c.body
            ]
            assert any("The task failed on GitHub Actions" in s for s in status)
    finally:
        engine.dispose()
