"""Faults: /vibe stop mid-run, the worker killed mid-iteration, a 529 storm."""

from __future__ import annotations

import subprocess
import time

from bot.entrypoints.demo import REPO, WRITER, Stage, edit, finish, wait_for
from tests.e2e.conftest import Bot, task_state
from tests.e2e.test_flow import bot_comments, final_status

World = tuple[Stage, Bot]


def branches(st: Stage, number: int) -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(st.fake.repo(REPO).path), "branch", "--list", f"vibe/issue-{number}-*"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.strip(" *") for line in out.splitlines() if line.strip()]


def request_arrives(st: Stage, count: int) -> None:
    wait_for(lambda: len(st.model.message_requests) > count, "the model request")


def test_stop_mid_run_pushes_nothing(world: World) -> None:
    st, _ = world
    st.model.add([edit("calc.py", "return a - b", "return a + b", delay=3.0)])
    requests = len(st.model.message_requests)
    number = st.fake.open_issue(REPO, WRITER, "Slow fix to stop", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    request_arrives(st, requests)
    asked = time.monotonic()
    st.fake.comment(REPO, number, WRITER, "/vibe stop")
    status = wait_for(
        lambda: [c for c in bot_comments(st, number, "vibe:status") if "Stopped" in c.body],
        "the stopped status",
    )
    assert time.monotonic() - asked < 10
    assert "nothing from this iteration was pushed" in status[0].body
    assert bot_comments(st, number, "Stopping, as @ann asked")
    assert branches(st, number) == []
    assert task_state(st, number) == "abandoned"
    assert not [p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or "")]


def test_worker_killed_mid_iteration_finishes_once(world: World) -> None:
    st, bot = world
    st.model.add(
        [
            edit("calc.py", "return a - b", "return a + b", delay=3.0),
            edit("calc.py", "return a - b", "return a + b"),
            *finish("Fixed add()."),
        ]
    )
    requests = len(st.model.message_requests)
    number = st.fake.open_issue(REPO, WRITER, "Fix add through a crash", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    request_arrives(st, requests)
    bot.kill()
    bot.start()
    status = final_status(st, number)
    assert "Done" in status.body
    assert len(bot_comments(st, number, "vibe:status")) == 1
    assert branches(st, number) == [f"vibe/issue-{number}-fix-add-through-a-crash"]
    prs = [p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or "")]
    assert len(prs) == 1
    calc = st.fake.read_file(REPO, prs[0].pull.head_ref, "calc.py")
    assert calc is not None
    assert "return a + b" in calc
    assert task_state(st, number) == "awaiting_feedback"


def test_stop_between_iterations_abandons_the_task(world: World) -> None:
    st, _ = world
    st.model.add([edit("calc.py", "return a - b", "return a + b"), *finish("Fixed add().")])
    number = st.fake.open_issue(REPO, WRITER, "Fix add, then stop", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    final_status(st, number)
    st.fake.comment(REPO, number, WRITER, "/vibe stop")
    wait_for(lambda: bot_comments(st, number, "the task is abandoned"), "the stop reply")
    assert task_state(st, number) == "abandoned"
    assert len(branches(st, number)) == 1  # what was pushed before stays for people to see


def test_overloaded_model_is_retried_then_fails_visibly(world: World) -> None:
    st, _ = world
    attempts, requests_per_attempt = 3, 2  # VIBE_MAX_ATTEMPTS, 1 + VIBE_ANTHROPIC_MAX_RETRIES
    storm = {
        "error": {"status": 529, "type": "overloaded_error", "retry_after": 0.01},
        "repeat": attempts * requests_per_attempt,
    }
    st.model.add([storm])
    requests = len(st.model.message_requests)
    number = st.fake.open_issue(REPO, WRITER, "Fix add while overloaded", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    status = wait_for(
        lambda: [c for c in bot_comments(st, number, "vibe:status") if "Failed" in c.body],
        "the failure comment",
        timeout=90,
    )
    assert "the model API kept failing" in status[0].body
    assert "_Working" not in status[0].body
    assert len(st.model.message_requests) - requests == attempts * requests_per_attempt
    assert st.model.remaining == 0
    assert task_state(st, number) == "failed"
