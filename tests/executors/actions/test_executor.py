"""The ``actions`` executor against the fake GitHub (workflow dispatch and runs) and the
runner API served on loopback, with ``vibe action``'s own runner client on the other end."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.entrypoints.action import ActionResult, RunnerClient, ServiceError
from bot.executors.actions.executor import (
    ActionsExecutor,
    RunnerResult,
    make_runner_router,
    run_from_payload,
)
from bot.github.actions import RepoActions
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import RunnerTask
from tests.support.actions import REPO, Clock, World, comment_reporter, serve

SPEC: dict[str, Any] = {
    "event_name": "issue_comment",
    "payload": {"action": "created", "comment": {"body": "/vibe add a widget"}},
}


def make_executor(world: World, engine: Engine, clock: Clock, **kw: Any) -> ActionsExecutor:
    return ActionsExecutor(
        engine,
        world.actions_api,
        reporter=comment_reporter(world),
        clock=clock,
        **kw,
    )


@pytest.fixture
def service(world: World, engine: Engine, clock: Clock) -> Iterator[tuple[ActionsExecutor, str]]:
    executor = make_executor(world, engine, clock)
    app = FastAPI()
    app.include_router(make_runner_router(executor))
    with serve(app) as url:
        yield executor, url


def issue_number(world: World) -> int:
    return world.fake.open_issue(REPO, "alice", "Add a widget", "please")


def status_comments(world: World, number: int) -> list[str]:
    return [c.body for c in world.fake.comments(REPO, number) if "vibe:status runner=" in c.body]


def test_dispatch_claim_progress_result(world: World, service: tuple[ActionsExecutor, str]) -> None:
    executor, url = service
    number = issue_number(world)
    task_id = executor.submit(REPO, SPEC, number=number)

    (run,) = world.actions.dispatched(REPO)
    assert run.workflow == "vibe-runner.yml"
    assert run.ref == "main"
    assert run.title == f"vibe task {task_id}"
    assert run.inputs["task_id"] == str(task_id)
    credential = run.inputs["credential"]
    assert credential.startswith("vibetask_")
    assert len(credential) > 40

    task = executor.get(task_id)
    assert task is not None
    assert task.status == "dispatched"
    assert task.attempt == 1
    assert task.run_id == run.id  # GitHub answered the dispatch with the run's id
    assert task.credential_hash == hashlib.sha256(credential.encode()).hexdigest()
    assert credential not in json.dumps(task.model_dump(mode="json"))
    (first,) = status_comments(world, number)
    assert "Running on GitHub Actions, attempt 1 of 3" in first

    runner = RunnerClient(url, task_id)
    claimed = runner.claim(credential, run.id)
    assert claimed.repository == REPO
    assert (claimed.event_name, claimed.payload) == (SPEC["event_name"], SPEC["payload"])
    runner.progress("agent step 3 of 60")
    task = executor.get(task_id)
    assert task is not None
    assert task.status == "claimed"
    assert task.progress == "agent step 3 of 60"
    assert task.credential_hash is None
    assert task.token_hash == hashlib.sha256(claimed.token.encode()).hexdigest()

    runner.result(ActionResult("started", pr_number=7, cost=0.125, detail="opened a draft PR"))
    task = executor.get(task_id)
    assert task is not None
    assert (task.status, task.outcome, task.pr_number, task.cost) == (
        "succeeded",
        "started",
        7,
        0.125,
    )
    assert task.summary == "opened a draft PR"
    assert task.token_hash is None
    (last,) = status_comments(world, number)  # the same comment, edited
    assert "Finished on GitHub Actions: started, pull request #7, $0.12." in last
    assert executor.follow(task_id) is False


def test_wrong_or_reused_credential_is_refused(
    world: World, service: tuple[ActionsExecutor, str]
) -> None:
    executor, url = service
    task_id = executor.submit(REPO, SPEC, number=issue_number(world))
    (run,) = world.actions.dispatched(REPO)
    credential = run.inputs["credential"]

    with pytest.raises(ServiceError, match="refused"):
        RunnerClient(url, task_id).claim(
            credential[:-1] + ("A" if credential[-1] != "A" else "B"), None
        )
    with pytest.raises(ServiceError, match="refused"):
        RunnerClient(url, task_id + 1).claim(credential, None)  # another task's id
    runner = RunnerClient(url, task_id)
    claimed = runner.claim(credential, run.id)
    with pytest.raises(ServiceError, match="refused"):
        RunnerClient(url, task_id).claim(credential, run.id)  # spent
    # The credential is not the runner token: it cannot report either.
    impostor = RunnerClient(url, task_id)
    impostor.token = credential
    with pytest.raises(ServiceError, match="refused"):
        impostor.progress("hello")
    runner.result(ActionResult("ignored"))
    stale = RunnerClient(url, task_id)
    stale.token = claimed.token
    with pytest.raises(ServiceError, match="refused"):
        stale.progress("after the end")  # the token died with the task
    task = executor.get(task_id)
    assert task is not None
    assert task.status == "succeeded"
    assert task.outcome == "ignored"


def test_runner_api_rejects_malformed_and_oversized_requests(
    world: World, service: tuple[ActionsExecutor, str]
) -> None:
    executor, url = service
    task_id = executor.submit(REPO, SPEC, number=issue_number(world))
    (run,) = world.actions.dispatched(REPO)
    claim = f"{url}/api/runner/tasks/{task_id}/claim"
    auth = {"Authorization": f"Bearer {run.inputs['credential']}"}

    assert httpx.post(claim, json={}).status_code == 401
    assert httpx.post(claim, json={}, headers={"Authorization": "Basic x"}).status_code == 401
    big = httpx.post(claim, content=b"{" + b" " * 70_000 + b"}", headers=auth)
    assert big.status_code == 413
    assert httpx.post(claim, content=b"{not json", headers=auth).status_code == 422
    extra = httpx.post(claim, json={"run_id": 1, "evil": True}, headers=auth)
    assert extra.status_code == 422
    assert "evil" in extra.text
    assert httpx.post(claim, json={"run_id": "x"}, headers=auth).status_code == 422
    for bad in ("0", "-1", "abc", str(2**70)):
        assert (
            httpx.post(f"{url}/api/runner/tasks/{bad}/claim", json={}, headers=auth).status_code
            == 422
        )
    # None of that spent the credential.
    granted = httpx.post(claim, json={"run_id": run.id}, headers=auth)
    assert granted.status_code == 200
    token = granted.json()["token"]
    result = f"{url}/api/runner/tasks/{task_id}/result"
    bearer = {"Authorization": f"Bearer {token}"}
    bad_outcome = httpx.post(result, json={"outcome": "rm -rf /"}, headers=bearer)
    assert bad_outcome.status_code == 422
    negative = httpx.post(result, json={"outcome": "started", "cost": -1}, headers=bearer)
    assert negative.status_code == 422
    long_message = httpx.post(
        f"{url}/api/runner/tasks/{task_id}/progress", json={"message": "x" * 5000}, headers=bearer
    )
    assert long_message.status_code == 422
    assert httpx.post(result, json={"outcome": "started"}, headers=bearer).status_code == 200


def test_expired_credential_is_refused_and_the_task_dispatched_again(
    world: World, service: tuple[ActionsExecutor, str], clock: Clock
) -> None:
    executor, url = service
    number = issue_number(world)
    task_id = executor.submit(REPO, SPEC, number=number)
    (first,) = world.actions.dispatched(REPO)
    clock.advance(minutes=31)
    with pytest.raises(ServiceError, match="refused"):
        RunnerClient(url, task_id).claim(first.inputs["credential"], first.id)
    assert executor.follow(task_id) is True
    runs = world.actions.dispatched(REPO)
    assert len(runs) == 2
    second = max(runs, key=lambda r: r.id)
    assert second.inputs["credential"] != first.inputs["credential"]
    task = executor.get(task_id)
    assert task is not None
    assert task.attempt == 2
    assert task.run_id == second.id
    with pytest.raises(ServiceError, match="refused"):
        RunnerClient(url, task_id).claim(first.inputs["credential"], first.id)
    RunnerClient(url, task_id).claim(second.inputs["credential"], second.id)
    (comment,) = status_comments(world, number)
    assert "attempt 2 of 3 (no runner claimed it in time)" in comment


def test_vanished_run_is_detected_and_retried(
    world: World, service: tuple[ActionsExecutor, str]
) -> None:
    executor, url = service
    task_id = executor.submit(REPO, SPEC, number=issue_number(world))
    (first,) = world.actions.dispatched(REPO)
    world.actions.start(first.id)
    runner = RunnerClient(url, task_id)
    runner.claim(first.inputs["credential"], first.id)
    assert executor.follow(task_id) is True  # running: nothing to do
    assert len(world.actions.dispatched(REPO)) == 1

    world.actions.delete(first.id)
    assert executor.follow(task_id) is True
    task = executor.get(task_id)
    assert task is not None
    assert task.attempt == 2
    assert task.status == "dispatched"
    assert task.progress == "its workflow run vanished"
    assert len(world.actions.dispatched(REPO)) == 2
    with pytest.raises(ServiceError, match="refused"):
        runner.progress("the old runner is no longer heard")


def test_failed_runs_are_retried_then_reported(world: World, engine: Engine, clock: Clock) -> None:
    """Followed through the ``workflow_run`` webhooks the fake sends."""
    executor = make_executor(world, engine, clock, max_attempts=2)
    number = issue_number(world)
    task_id = executor.submit(REPO, SPEC, number=number)
    for attempt in (1, 2):
        run = max(world.actions.dispatched(REPO), key=lambda r: r.id)
        world.actions.start(run.id)
        world.actions.complete(run.id, "failure")
        hooks = [d for d in world.fake.deliveries if d.event == "workflow_run"]
        assert [h.payload["action"] for h in hooks[-3:]] == [
            "requested",
            "in_progress",
            "completed",
        ]
        observed = run_from_payload(hooks[-1].payload)
        assert observed is not None
        assert observed.id == run.id
        assert observed.conclusion == "failure"
        assert executor.observe_run(observed) == task_id
        task = executor.get(task_id)
        assert task is not None
        if attempt == 1:
            assert task.status == "dispatched"
            assert task.attempt == 2
    assert task.status == "failed"
    assert task.summary is not None
    assert "gave up after 2 runs" in task.summary
    (comment,) = status_comments(world, number)
    assert "The task failed on GitHub Actions: gave up after 2 runs" in comment
    assert "ended failure before reporting a result" in comment
    assert executor.follow(task_id) is False
    assert len(world.actions.dispatched(REPO)) == 2


def test_run_found_by_title_when_dispatch_returns_no_id(
    world: World, engine: Engine, clock: Clock
) -> None:
    class NoDetails(RepoActions):
        """A server without ``return_run_details``: it dispatches and answers 204."""

        def dispatch(self, workflow: str, ref: str, inputs: Any) -> None:  # type: ignore[override]
            super().dispatch(workflow, ref, inputs)

    executor = ActionsExecutor(engine, lambda repo: NoDetails(world.hub().repo(repo)), clock=clock)
    task_id = executor.submit(REPO, SPEC, number=None)
    task = executor.get(task_id)
    assert task is not None
    assert task.run_id is None
    (run,) = world.actions.dispatched(REPO)
    assert executor.follow(task_id) is True
    task = executor.get(task_id)
    assert task is not None
    assert task.run_id == run.id


def test_dispatch_fails_clearly_without_the_runner_workflow(
    world: World, engine: Engine, clock: Clock
) -> None:
    world.fake.create_repo("acme/bare", collaborators={"alice": "write"})
    number = world.fake.open_issue("acme/bare", "alice", "Do it", "")
    executor = ActionsExecutor(
        engine,
        world.actions_api,
        reporter=comment_reporter(world),
        clock=clock,
    )
    task_id = executor.submit("acme/bare", SPEC, number=number)
    task = executor.get(task_id)
    assert task is not None
    assert task.status == "failed"
    assert task.summary == (
        "cannot dispatch: GitHub answered 404: Not Found "
        "(is .github/workflows/vibe-runner.yml installed?)"
    )
    (comment,) = [c.body for c in world.fake.comments("acme/bare", number)]
    assert "is .github/workflows/vibe-runner.yml installed?" in comment
    assert world.actions.dispatched("acme/bare") == []


def test_a_reader_cannot_dispatch(world: World, engine: Engine, clock: Clock) -> None:
    reader = world.fake.user_token("rita")
    executor = ActionsExecutor(
        engine, lambda repo: RepoActions(world.hub(reader).repo(repo)), clock=clock
    )
    task_id = executor.submit(REPO, SPEC)
    task = executor.get(task_id)
    assert task is not None
    assert task.status == "failed"
    assert "403" in (task.summary or "")
    assert world.actions.dispatched(REPO) == []


def test_the_event_job_waits_for_the_runner_and_a_retry_resumes_it(
    world: World, service: tuple[ActionsExecutor, str]
) -> None:
    executor, url = service
    executor.poll_interval = timedelta(seconds=0.05)
    number = issue_number(world)
    task_id = executor.submit(REPO, SPEC, number=number, key="delivery:abc")
    # The same delivery again (a job taken over after a crash): no second dispatch.
    assert executor.submit(REPO, SPEC, number=number, key="delivery:abc") == task_id
    (run,) = world.actions.dispatched(REPO)

    def runner() -> None:
        client = RunnerClient(url, task_id)
        client.claim(run.inputs["credential"], run.id)
        client.result(ActionResult("iterated", pr_number=3, cost=0.5))

    thread = threading.Thread(target=runner)
    thread.start()
    final = executor.wait(task_id, threading.Event())
    thread.join()
    assert final is not None
    assert (final.status, final.outcome, final.pr_number) == ("succeeded", "iterated", 3)

    cancel = threading.Event()
    cancel.set()
    other = executor.submit(REPO, SPEC, number=number, key="delivery:def")
    waited = executor.wait(other, cancel)  # shutting down: stop waiting at once
    assert waited is not None
    assert waited.status == "dispatched"


def test_concurrent_claims_spend_the_credential_once(
    world: World, clock: Clock, database_url: str
) -> None:
    engine = make_engine(database_url)
    init_db(engine)
    try:
        executor = make_executor(world, engine, clock)
        task_id = executor.submit(REPO, SPEC)
        credential = max(world.actions.dispatched(REPO), key=lambda r: r.id).inputs["credential"]
        app = FastAPI()
        app.include_router(make_runner_router(executor))
        outcomes: list[int] = []
        lock = threading.Lock()
        with serve(app) as base:
            start = threading.Barrier(8)

            def claim() -> None:
                start.wait()
                response = httpx.post(
                    f"{base}/api/runner/tasks/{task_id}/claim",
                    json={},
                    headers={"Authorization": f"Bearer {credential}"},
                    timeout=30,
                )
                with lock:
                    outcomes.append(response.status_code)

            threads = [threading.Thread(target=claim) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sorted(outcomes) == [200] + [403] * 7
        with Session(engine) as session:
            task = session.get(RunnerTask, task_id)
            assert task is not None
            assert task.status == "claimed"
    finally:
        engine.dispose()


def _task_rows(engine: Engine, repo: str = REPO, number: int = 5) -> None:
    from bot.store.tables import Iteration, Task

    with Session(engine) as session:
        task = Task(
            repository=repo,
            number=number,
            pr_number=number + 1,
            model="conversational",
            state="awaiting_feedback",
            branch=f"vibe/issue-{number}-x",
            base="main",
            requester="alice",
            title="Do it",
            instruction="",
            cost=0.25,
        )
        session.add(task)
        session.flush()
        assert task.id is not None
        session.add(Iteration(task_id=task.id, number=1, key="delivery:1", trigger="start"))
        session.commit()


def test_task_records_travel_and_are_checked(tmp_path: Any) -> None:
    from bot.store import tasks as taskdb
    from bot.store.tasks import RecordsError, export_records, import_records

    service = make_engine(f"sqlite:///{tmp_path / 'service.db'}")
    runner = make_engine(f"sqlite:///{tmp_path / 'runner.db'}")
    for engine in (service, runner):
        init_db(engine)
    try:
        _task_rows(service)
        # Found by the PR number too, as the loop finds it.
        records = export_records(service, REPO, 6)
        assert records is not None
        assert records == export_records(service, REPO, 5)
        assert export_records(service, REPO, 7) is None
        import_records(runner, REPO, json.loads(json.dumps(records)))
        moved = taskdb.find(runner, REPO, 6)
        assert moved is not None
        assert (moved.number, moved.pr_number, moved.state.value) == (5, 6, "awaiting_feedback")
        assert len(moved.iterations) == 1

        # The runner adds an iteration; importing back updates in place, adds the new one.
        from bot.store.tables import Iteration

        with Session(runner) as session:
            session.add(Iteration(task_id=1, number=2, key="delivery:2", trigger="review"))
            session.commit()
        back = export_records(runner, REPO, 5)
        assert back is not None
        back["task"]["state"] = "working"
        import_records(service, REPO, back, number=5)
        merged = taskdb.find(service, REPO, 5)
        assert merged is not None
        assert merged.state.value == "working"
        assert [i.number for i in merged.iterations] == [1, 2]

        for bad, message in [
            ({"task": [], "iterations": []}, "need a task object"),
            ({**back, "iterations": [{"id": 9, **back["iterations"][0]}]}, "without ids"),
            ({**back, "iterations": [1, 2]}, "without ids"),
            ({**back, "iterations": [{}] * 501}, "more than 500"),
            ({**back, "task": {**back["task"], "repository": "evil/repo"}}, "not acme/widgets"),
            ({**back, "task": {**back["task"], "number": 99}}, "not #5"),
            ({**back, "task": {**back["task"], "cost": "lots"}}, "do not validate"),
        ]:
            with pytest.raises(RecordsError, match=message):
                import_records(service, REPO, bad, number=5)
        still = taskdb.find(service, REPO, 5)
        assert still is not None
        assert still.state.value == "working"
    finally:
        service.dispose()
        runner.dispose()


def test_a_failed_dispatch_is_dispatched_again(world: World, engine: Engine, clock: Clock) -> None:
    world.fake.inject(
        "POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", "502"
    )
    executor = make_executor(world, engine, clock)
    task_id = executor.submit(REPO, SPEC, number=issue_number(world))
    task = executor.get(task_id)
    assert task is not None
    assert task.status == "dispatched"
    assert task.credential_hash is None  # nothing was sent; nothing can be claimed
    assert task.progress is not None
    assert "dispatch failed: GitHub answered 502" in task.progress
    assert world.actions.dispatched(REPO) == []
    assert executor.follow(task_id) is True
    (run,) = world.actions.dispatched(REPO)
    task = executor.get(task_id)
    assert task is not None
    assert (task.attempt, task.run_id) == (2, run.id)


def test_a_runner_workflow_without_the_inputs_is_reported(
    world: World, engine: Engine, clock: Clock
) -> None:
    """An old or hand-written vibe-runner.yml that does not declare the inputs: GitHub
    answers 422, which no retry can fix."""
    world.fake.commit(
        REPO,
        "main",
        {".github/workflows/vibe-runner.yml": "on:\n  workflow_dispatch:\njobs: {}\n"},
        "Break the runner workflow",
    )
    number = issue_number(world)
    executor = make_executor(world, engine, clock)
    task_id = executor.submit(REPO, SPEC, number=number)
    task = executor.get(task_id)
    assert task is not None
    assert task.status == "failed"
    assert task.summary == (
        "cannot dispatch: GitHub answered 422: "
        "Unexpected inputs provided: ['credential', 'task_id']"
    )
    assert world.actions.dispatched(REPO) == []
    (comment,) = status_comments(world, number)
    assert "The task failed on GitHub Actions: cannot dispatch: GitHub answered 422" in comment


def test_the_fake_lists_issues_newest_first_across_pages(world: World) -> None:
    numbers = [world.fake.open_issue(REPO, "alice", f"Issue {i}", "") for i in range(35)]
    repo = world.client().get_repo(REPO)
    listed = [i.number for i in repo.get_issues(state="all", sort="created", direction="desc")]
    assert listed == sorted(numbers, reverse=True)  # 30 on the first page, 5 on the next
    response = httpx.get(
        f"{world.fake.api_url}/repos/{REPO}/issues",
        params={"state": "everything"},
        headers={"Authorization": f"token {world.token}"},
    )
    assert response.status_code == 422


def test_a_reported_result_ends_the_wait_before_the_next_poll(
    world: World, service: tuple[ActionsExecutor, str]
) -> None:
    executor, url = service
    executor.poll_interval = timedelta(seconds=600)
    task_id = executor.submit(REPO, SPEC, number=issue_number(world), key="delivery:quick")
    (run,) = world.actions.dispatched(REPO)

    def runner() -> None:
        while run.reads < 1:  # the waiter's first poll; the next is ten minutes away
            time.sleep(0.02)
        client = RunnerClient(url, task_id)
        client.claim(run.inputs["credential"], run.id)
        client.result(ActionResult("iterated", pr_number=3, cost=0.5))

    thread = threading.Thread(target=runner)
    thread.start()
    started = time.monotonic()
    final = executor.wait(task_id, threading.Event())
    thread.join()
    assert time.monotonic() - started < 30
    assert final is not None
    assert (final.status, final.outcome) == ("succeeded", "iterated")
    assert run.reads == 1


def test_every_write_holds_while_other_connections_write_between_its_read_and_its_write(
    world: World, engine: Engine, clock: Clock
) -> None:
    """The CI failure of stop 25: a session that read a task and then wrote it was refused
    with "database is locked" (SQLite's SQLITE_BUSY_SNAPSHOT, at once, whatever the busy
    timeout) when the ingest writer committed a delivery between the two. Here another
    connection writes after every read of a task; every step of the task still lands."""
    with write_transaction(engine) as conn:
        conn.execute(text("CREATE TABLE meanwhile (n INTEGER)"))
    others: list[threading.Thread] = []
    here = threading.get_ident()

    def write_meanwhile(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if threading.get_ident() != here or "FROM runnertask" not in statement:
            return

        def write() -> None:
            with write_transaction(engine) as other:
                other.execute(text("INSERT INTO meanwhile VALUES (1)"))

        other = threading.Thread(target=write)
        others.append(other)
        other.start()
        # Long enough for a write that need not wait to commit; one that waits for this
        # session's write lock goes on after it.
        other.join(timeout=0.3)

    executor = make_executor(world, engine, clock)
    number = issue_number(world)
    event.listen(engine, "after_cursor_execute", write_meanwhile)
    try:
        task_id = executor.submit(REPO, SPEC, number=number, key="delivery-1")
        assert executor.submit(REPO, SPEC, number=number, key="delivery-1") == task_id
        (run,) = world.actions.dispatched(REPO)
        claimed = executor.claim(task_id, run.inputs["credential"], run.id)
        executor.progress(task_id, claimed.token, "agent step 3 of 60")
        executor.finish(task_id, claimed.token, RunnerResult("started", pr_number=7))
    finally:
        event.remove(engine, "after_cursor_execute", write_meanwhile)
    for other in others:
        other.join(timeout=30)
    task = executor.get(task_id)
    assert task is not None
    assert (task.status, task.run_id, task.progress, task.pr_number) == (
        "succeeded",
        run.id,
        "agent step 3 of 60",
        7,
    )
    with engine.connect() as conn:
        written = conn.execute(text("SELECT count(*) FROM meanwhile")).scalar_one()
    assert written == len(others) >= 6
