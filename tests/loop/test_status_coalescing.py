"""The status comment's writes: phase changes at once, progress coalesced to one write per
``status.min_interval`` and a bounded number per phase, the last state always written, the
comment edited by the id kept with the task and found again when it was deleted."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.core.config import parse_repo_config
from bot.core.markers import Marker
from bot.core.render import Final
from bot.core.tasks import State, TaskRecord, Usage
from bot.github import GitHub
from bot.github.repository import GitHubRepository
from bot.loop.status import MAX_PROGRESS_WRITES, PHASE_SPACING, StatusBoard
from bot.testing.fake_github import AppCredentials, FakeClock, FakeGitHub
from tests.github.conftest import app_key
from tests.github.test_adapter import app_hub
from tests.loop.test_status import RecordingForge

REPO = "octo/demo"
TASK = TaskRecord(
    id=3,
    repo=REPO,
    number=9,
    model="conversational",
    state=State.WORKING,
    branch="vibe/issue-9-x",
    base="main",
    requester="ann",
    title="x",
    instruction="y",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class EditingForge(RecordingForge):
    """A forge that edits by id; ``gone`` ids answer as deleted comments do (the rest as
    :class:`tests.loop.test_status.RecordingForge`)."""

    repo = REPO

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int | None, str]] = []
        self.gone: set[int] = set()
        self.next_id = 500

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int:
        self.next_id += 1
        self.calls.append(("upsert", None, body))
        return self.next_id

    def edit_comment(self, number: int, comment_id: int, mark: Marker, body: str) -> bool:
        self.calls.append(("edit", comment_id, body))
        return comment_id not in self.gone


def board(
    forge: EditingForge, clock: Clock, comment_id: int | None = None, interval: float = 15.0
) -> tuple[StatusBoard, list[int]]:
    kept: list[int] = []
    made = StatusBoard(
        forge,
        TASK,
        1,
        9,
        interval=interval,
        comment_id=comment_id,
        on_comment=kept.append,
        clock=clock,
    )
    return made, kept


def test_the_repository_sets_the_interval_and_fifteen_seconds_is_the_default() -> None:
    assert parse_repo_config(None)[0].status.min_interval == 15.0
    config, problems = parse_repo_config("status:\n  min_interval: 60\n")
    assert problems == []
    assert config.status.min_interval == 60.0
    _, refused = parse_repo_config("status:\n  min_interval: -1\n")
    assert [str(p) for p in refused] == [
        "line 2: status.min_interval: Input should be greater than or equal to 0"
    ]


def test_progress_is_written_once_per_interval_and_phase_changes_at_once() -> None:
    forge, clock = EditingForge(), Clock()
    status, _ = board(forge, clock, comment_id=77)
    status.phase("Agent working", "running")
    assert len(forge.calls) == 1  # the first change goes out at once
    for step in range(1, 15):
        clock.now += 1.0
        status.phase("Agent working", "running", f"step {step}")
        status.flush()  # what the watcher does every quarter second
    assert len(forge.calls) == 1  # 14 s of progress: within the interval, nothing written
    clock.now += 1.0
    status.phase("Agent working", "running", "step 15")
    assert len(forge.calls) == 2
    assert "step 15" in forge.calls[-1][2]
    clock.now += 2.0
    status.phase("Agent working", "done", "15 steps")  # a phase change: written at once
    assert len(forge.calls) == 3
    status.phase("Checks", "running")  # another change within the second GitHub asks for
    assert len(forge.calls) == 3
    clock.now += PHASE_SPACING
    status.flush()
    assert len(forge.calls) == 4
    assert "Checks" in forge.calls[-1][2]
    assert all(kind == "edit" and cid == 77 for kind, cid, _ in forge.calls)


def test_progress_writes_per_phase_are_bounded_and_the_last_state_is_written() -> None:
    def writes(steps: int) -> tuple[int, str]:
        forge, clock = EditingForge(), Clock()
        status, _ = board(forge, clock, comment_id=5)
        status.phase("Workspace", "running")
        clock.now += 3.0
        status.phase("Workspace", "done")
        status.phase("Agent working", "running")
        for step in range(1, steps + 1):
            clock.now += 1.0  # a model step a second
            status.phase("Agent working", "running", f"step {step}")
            status.flush()
        status.finish(Final("succeeded", 10.0, Usage(1, 1, 0.01)))
        status.phase("Late", "running")
        status.flush(force=True)  # nothing after the final state
        return len(forge.calls), forge.calls[-1][2]

    at_40, last_40 = writes(40)
    at_400, last_400 = writes(400)
    # Workspace running, done; the agent phase with its first step; the progress; the end.
    assert at_40 == at_400 == 4 + MAX_PROGRESS_WRITES
    assert "step 40" in last_40
    assert "step 400" in last_400
    assert "_Working" not in last_400


def test_a_pending_change_is_written_by_the_final_state_not_lost() -> None:
    forge, clock = EditingForge(), Clock()
    status, _ = board(forge, clock, comment_id=5)
    status.phase("Agent working", "running")
    status.phase("Agent working", "running", "step 1")  # pending: within the interval
    assert len(forge.calls) == 1
    status.finish(Final("failed", 1.0, Usage(), reason="boom"))
    assert len(forge.calls) == 2
    assert "step 1" in forge.calls[-1][2]
    assert "Failed" in forge.calls[-1][2]


def test_the_first_write_finds_or_creates_and_keeps_the_id() -> None:
    forge, clock = EditingForge(), Clock()
    status, kept = board(forge, clock)
    status.phase("Workspace", "running")
    clock.now += 2.0
    status.phase("Workspace", "done")
    assert [kind for kind, _, _ in forge.calls] == ["upsert", "edit"]
    assert kept == [501]
    assert forge.calls[1][1] == 501


def test_a_deleted_comment_is_found_again_or_created_once_and_its_new_id_kept() -> None:
    forge, clock = EditingForge(), Clock()
    forge.gone.add(77)
    status, kept = board(forge, clock, comment_id=77)
    status.phase("Workspace", "running")
    clock.now += 2.0
    status.phase("Workspace", "done")
    assert [(kind, cid) for kind, cid, _ in forge.calls] == [
        ("edit", 77),
        ("upsert", None),
        ("edit", 501),
    ]
    assert kept == [501]


# --- against the fake GitHub, over HTTP ---------------------------------------------------


@pytest.fixture
def github() -> Iterator[tuple[FakeGitHub, GitHub]]:
    clock = FakeClock()
    with FakeGitHub(clock=clock) as fake:
        fake.create_repo(REPO, {"README.md": "# demo\n"}, collaborators={"ann": "write"})
        creds: AppCredentials = fake.create_app("vibe-bot", private_key_pem=app_key())
        hub = app_hub(fake, clock, creds)
        fake.install_app("octo")
        try:
            yield fake, hub
        finally:
            hub.close()


def test_an_iterations_status_requests_do_not_grow_with_its_steps(
    github: tuple[FakeGitHub, GitHub],
) -> None:
    fake, hub = github

    def requests(steps: int) -> tuple[int, set[str]]:
        number = fake.open_issue(REPO, "ann", f"{steps} steps")
        start = len(fake.requests)
        clock = Clock()
        status = StatusBoard(
            GitHubRepository(hub.repo(REPO)), TASK, 1, number, interval=15.0, clock=clock
        )
        for name in ("Workspace", "Context"):
            status.phase(name, "running")
            clock.now += 2.0
            status.phase(name, "done")
        status.phase("Agent working", "running")
        for step in range(1, steps + 1):
            clock.now += 1.0
            status.phase("Agent working", "running", f"step {step}")
            status.flush()
        status.phase("Agent working", "done", f"{steps} steps")
        status.finish(Final("succeeded", float(steps), Usage(1, 1, 0.01)))
        body = fake.comments(REPO, number)[0].body
        assert f"{steps} steps" in body
        logged = fake.requests[start:]
        return len(logged), {r.key for r in logged}

    hub.repo(REPO).default_branch()  # the installation token, asked for once per hour
    at_40, routes = requests(40)
    at_400, _ = requests(400)
    # One listing to find the comment by its marker, one create, then one PATCH per write:
    # four phase changes, two progress writes, the end.
    assert at_40 == at_400 == 2 + 4 + MAX_PROGRESS_WRITES + 1
    assert routes == {
        "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
        "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
        "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}",
    }
