"""Rows for the console tests: a task with hostile text, iterations, agent steps, jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.store.tables import AgentStep, Delivery, Iteration, Job, Task

TOKEN = "ghp_" + "q" * 36
HOSTILE = "<script>alert('x')</script><img src=x onerror=alert(2)>"


def add_task(session: Session, number: int, **extra: object) -> Task:
    values: dict[str, object] = {
        "repository": "octo/widgets",
        "number": number,
        "model": "conversational",
        "state": "awaiting_feedback",
        "branch": f"vibe/issue-{number}",
        "base": "main",
        "requester": "alice",
        "title": f"task {number}",
        "instruction": "do it",
    }
    values.update(extra)
    task = Task(**values)  # type: ignore[arg-type]
    session.add(task)
    session.flush()
    return task


def step(iteration_id: int, index: int, **extra: object) -> AgentStep:
    values: dict[str, object] = {
        "run_key": f"run-{iteration_id}",
        "iteration_id": iteration_id,
        "index": index,
        "model": "claude-test",
        "text": f"step {index} text",
        "stop_reason": "tool_use",
        "tool_calls": [
            {
                "id": f"t{index}",
                "name": "read_file",
                "input": '{"path": "a.py"}',
                "is_error": False,
                "result": "print(1)",
            }
        ],
        "input_tokens": 100,
        "cache_write_tokens": 20,
        "cache_read_tokens": 300,
        "output_tokens": 40,
        "cost": 0.01,
    }
    values.update(extra)
    return AgentStep(**values)  # type: ignore[arg-type]


def seed_story(engine: Engine) -> dict[str, int]:
    """One finished task whose run hit a limit and a failed tool call, one running task,
    jobs in each state and a refused delivery. Returns ids by name."""
    now = datetime.now(UTC)
    with Session(engine) as session:
        done = add_task(
            session,
            7,
            pr_number=8,
            title=HOSTILE + " fix the widget",
            instruction=f"use {TOKEN} and {HOSTILE}",
            requirements=[
                {"text": "widgets render " + HOSTILE, "source": "issue", "done": True},
                {"text": "add a test", "source": "require", "done": False},
            ],
            plan=[{"text": "write the test " + HOSTILE, "done": True}],
            input_tokens=1200,
            output_tokens=300,
            cost=0.42,
            created_at=now - timedelta(hours=3),
            updated_at=now - timedelta(minutes=5),
        )
        assert done.id is not None
        first = Iteration(
            task_id=done.id,
            number=1,
            key="k1",
            trigger="label",
            feedback=[
                {
                    "kind": "human",
                    "text": "please " + HOSTILE,
                    "author": "bob",
                    "path": "w.py",
                    "line": 3,
                }
            ],
            # One commit with its diff stats as the bot records them (subject hostile, with a
            # token), one bare sha as rows written before the stats hold.
            commits=[
                {
                    "sha": "abc1234" + "0" * 33,
                    "files": 2,
                    "insertions": 10,
                    "deletions": 3,
                    "subject": f"fix widget {HOSTILE} {TOKEN}",
                },
                "def5678" + "0" * 33,
            ],
            checks=[
                {
                    "command": "pytest",
                    "kind": "execution",
                    "passed": False,
                    "exit_code": 1,
                    "output": "1 failed " + TOKEN,
                }
            ],
            red={
                "command": "pytest tests/test_w.py",
                "kind": "execution",
                "exit_code": 1,
                "passed": False,
                "output": "AssertionError",
            },
            green={
                "command": "pytest tests/test_w.py",
                "kind": "execution",
                "exit_code": 0,
                "passed": True,
                "output": "1 passed",
            },
            outcome="limit",
            error="steps limit: 30 of 30 steps used",
            cost=0.42,
            duration=61.5,
            summary="pushed what exists",
            started_at=now - timedelta(hours=2),
            finished_at=now - timedelta(hours=1),
        )
        session.add(first)
        session.flush()
        assert first.id is not None
        session.add(step(first.id, 1, text="thinking about " + HOSTILE))
        session.add(
            step(
                first.id,
                2,
                tool_calls=[
                    {
                        "id": "t2",
                        "name": "run_command",
                        "input": '{"command": "make"}',
                        "is_error": True,
                        "result": f"make: *** failed {TOKEN}",
                    }
                ],
            )
        )
        running = add_task(
            session,
            9,
            state="working",
            model="plan",
            repository="octo/gadgets",
            created_at=now - timedelta(minutes=2),
            updated_at=now,
        )
        assert running.id is not None
        live = Iteration(
            task_id=running.id,
            number=1,
            key="k2",
            trigger="comment",
            outcome="running",
            started_at=now - timedelta(minutes=1),
        )
        session.add(live)
        session.flush()
        assert live.id is not None
        session.add(step(live.id, 1))
        session.add(
            Delivery(
                id="d-1",
                event="issues",
                action="labeled",
                repository="octo/widgets",
                outcome="queued",
            )
        )
        session.add(
            Delivery(
                id="d-2",
                event="issue_comment",
                action="created",
                repository="octo/widgets",
                outcome="refused",
                detail="sender mallory cannot write " + HOSTILE,
            )
        )
        session.flush()
        session.add(
            Job(
                kind="event",
                status="dead",
                delivery_id="d-1",
                attempts=5,
                last_error=f"boom {TOKEN}",
                payload={"number": 7},
            )
        )
        session.add(
            Job(
                kind="event",
                status="running",
                lease_owner="worker-a",
                lease_expires=now + timedelta(minutes=5),
                attempts=1,
            )
        )
        session.add(Job(kind="prune", status="queued"))
        session.commit()
        return {"done": done.id, "running": running.id, "live_iteration": live.id}
