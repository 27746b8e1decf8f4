"""``vibe demo``: the whole loop on loopback stand-ins, with no credentials.

The fake GitHub and the scripted model server from :mod:`bot.testing` run on 127.0.0.1;
the bot itself is the real service (webhook ingest, queue, worker, sandbox, git). A
sample repository with a failing test and an issue go through: label -> draft PR -> a
review with an inline comment -> iteration 2 -> approval. The demo then prints the task's
page in the console (the service's public address is the stage's, so the PR links to it
too); ``--keep`` keeps the service and the stand-ins up until Ctrl-C, to look around. The
same stage serves the end-to-end tests (``tests/e2e``), which run the bot as a separate
``vibe serve`` process.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from bot.core.tasks import TaskRecord
from bot.entrypoints.app import create_app
from bot.observability import configure_logging
from bot.settings import Settings, load_settings
from bot.store import tasks as taskdb
from bot.store.engine import make_engine
from bot.testing.fake_github import AppCredentials, FakeGitHub, InlineComment
from bot.testing.model_server import Responder, ScriptedModelServer, load_script

OWNER = "octo"
REPO = f"{OWNER}/calc"
WRITER = "ann"
READER = "rita"
SECRET = "demo-webhook-secret-0123456789"  # noqa: S105 - a stand-in's secret, for loopback only
MODEL_KEY = "sk-ant-demo-0000000000000000"

CALC = "def add(a, b):\n    return a - b\n"
TEST = (
    "import unittest\n\nfrom calc import add\n\n\n"
    "class AddTest(unittest.TestCase):\n"
    "    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n\n"
    'if __name__ == "__main__":\n    unittest.main()\n'
)
CONFIG = "commands:\n  test:\n    - python3 -m unittest -q\n"
SAMPLE_FILES: dict[str, str | bytes | None] = {
    "calc.py": CALC,
    "test_calc.py": TEST,
    "README.md": "# calc\n\nA tiny calculator.\n",
    ".github/vibe.yml": CONFIG,
}


# ---------------------------------------------------------------- scripted agent runs


def finish(summary: str) -> list[dict[str, Any]]:
    """``finish`` twice: the first call gets the self-review, the second ends the run."""
    step = {"tool_use": [{"name": "finish", "input": {"summary": summary}}]}
    return [step, step]


def edit(path: str, old: str, new: str, delay: float = 0.0) -> dict[str, Any]:
    step: dict[str, Any] = {
        "text": f"Editing {path}.",
        "tool_use": [
            {
                "name": "str_replace_based_edit_tool",
                "input": {"command": "str_replace", "path": path, "old_str": old, "new_str": new},
            }
        ],
    }
    if delay:
        step["delay"] = delay
    return step


def create(path: str, content: str) -> dict[str, Any]:
    call = {"command": "create", "path": path, "file_text": content}
    return {"tool_use": [{"name": "str_replace_based_edit_tool", "input": call}]}


def fix_add() -> list[dict[str, Any]]:
    return [edit("calc.py", "return a - b", "return a + b"), *finish("Fixed add() to add.")]


def docstring() -> list[dict[str, Any]]:
    return [
        edit("calc.py", "def add(a, b):\n", 'def add(a, b):\n    """Return a + b."""\n'),
        *finish("Added a docstring to add()."),
    ]


# ---------------------------------------------------------------------------- stage


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stage:
    """The stand-ins and the bot's configuration for one run."""

    fake: FakeGitHub
    model: ScriptedModelServer
    creds: AppCredentials
    data_dir: Path
    port: int

    @property
    def bot_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The bot's settings as ``VIBE_*`` variables (for a ``vibe serve`` process)."""
        return {
            "VIBE_DATA_DIR": str(self.data_dir),
            "VIBE_GITHUB_API_URL": self.fake.api_url,
            "VIBE_GITHUB_SERVER_URL": self.fake.base_url,
            "VIBE_GITHUB_GRAPHQL_URL": self.fake.graphql_url,
            "VIBE_GITHUB_APP_ID": str(self.creds.app_id),
            "VIBE_GITHUB_PRIVATE_KEY": self.creds.private_key_pem,
            "VIBE_GITHUB_MIN_WRITE_INTERVAL": "0",
            "VIBE_BOT_LOGIN": self.creds.bot_login,
            "VIBE_WEBHOOK_SECRET": SECRET,
            "VIBE_ANTHROPIC_BASE_URL": self.model.base_url,
            "VIBE_ANTHROPIC_API_KEY": MODEL_KEY,
            "VIBE_ANTHROPIC_MAX_RETRIES": "1",
            "VIBE_WORKERS": "2",
            "VIBE_LEASE_SECONDS": "6",
            "VIBE_HEARTBEAT_SECONDS": "1",
            "VIBE_MAX_ATTEMPTS": "3",
            "VIBE_STATUS_UPDATE_SECONDS": "0.5",
            "VIBE_PUBLIC_URL": self.bot_url,
        }

    def settings(self) -> Settings:
        env = self.env()
        return load_settings(
            data_dir=Path(env["VIBE_DATA_DIR"]),
            github_api_url=self.fake.api_url,
            github_server_url=self.fake.base_url,
            github_graphql_url=self.fake.graphql_url,
            github_app_id=self.creds.app_id,
            github_private_key=self.creds.private_key_pem,
            github_min_write_interval=0.0,
            bot_login=self.creds.bot_login,
            webhook_secret=SECRET,
            anthropic_base_url=self.model.base_url,
            anthropic_api_key=MODEL_KEY,
            anthropic_max_retries=1,
            workers=2,
            lease_seconds=6.0,
            heartbeat_seconds=1.0,
            max_attempts=3,
            status_update_seconds=0.5,
            public_url=self.bot_url,
        )


@contextmanager
def stage(
    root: Path,
    script: list[dict[str, Any]] | Responder | None = None,
    permissions: dict[str, str] | None = None,
) -> Iterator[Stage]:
    """Start the fake GitHub (with the sample repository) and the scripted model server;
    ``script``: its steps, or a responder that picks the step for each request (parallel
    best-of-N attempts ask in no set order); ``permissions``: the App's and its
    installation's, when not the manifest's."""
    port = free_port()
    with (
        ScriptedModelServer(script if callable(script) else load_script(script or [])) as model,
        FakeGitHub(webhook_url=f"http://127.0.0.1:{port}/webhook", webhook_secret=SECRET) as fake,
    ):
        # The App belongs to the organisation it works for (its owner is the default
        # allow-list).
        creds = fake.create_app("vibe-bot", owner=OWNER, permissions=permissions)
        fake.create_repo(REPO, SAMPLE_FILES, collaborators={WRITER: "write", READER: "read"})
        fake.install_app(OWNER, permissions=permissions)
        yield Stage(fake, model, creds, root / "bot-data", port)


@contextmanager
def service(settings: Settings, port: int) -> Iterator[None]:
    """The real service (ingest + worker pool) under uvicorn in this process."""

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, run_workers=True)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="vibe-demo-service", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the bot service failed to start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------------- the demo


@dataclass
class Timeline:
    started: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)
    echo: Callable[[str], None] | None = None

    def add(self, who: str, what: str, **data: Any) -> None:
        at = round(time.monotonic() - self.started, 2)
        self.events.append({"t": at, "who": who, "what": what, **data})
        if self.echo is not None:
            self.echo(f"{at:7.2f}s  {who:<8} {what}")


def _bot_comments(fake: FakeGitHub, number: int, login: str) -> list[str]:
    return [c.body for c in fake.comments(REPO, number) if c.user == login]


def run_demo(
    echo: Callable[[str], None] | None = print,
    hold: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Drive the scenario and return the machine-readable record; ``hold`` is given the
    record while the service and the stand-ins are still up (``--keep``)."""

    timeline = Timeline(echo=echo)
    say = echo or (lambda _: None)
    say(
        "vibe demo: GitHub and the Claude API are stand-ins (bot.testing's fake GitHub and "
        "scripted model server on 127.0.0.1); the bot's service, queue, sandbox and git are real."
    )
    with (
        tempfile.TemporaryDirectory(prefix="vibe-demo-") as tmp,
        stage(Path(tmp), [*fix_add(), *docstring()]) as st,
    ):
        settings = st.settings()
        bot = st.creds.bot_login
        with service(settings, st.port):
            timeline.started = time.monotonic()
            number = st.fake.open_issue(
                REPO, WRITER, "add() subtracts instead of adding", "`add(2, 3)` returns -1."
            )
            timeline.add(WRITER, f"opened issue #{number} in {REPO} (its test fails)")
            st.fake.label(REPO, number, WRITER, "vibe")
            timeline.add(WRITER, f"labelled #{number} 'vibe'")
            pr = wait_for(lambda: st.fake.pulls(REPO), "the draft pull request")[0]
            timeline.add(
                "vibe-bot",
                f"opened {'draft ' if pr.pull.draft else ''}PR #{pr.number} from "
                f"{pr.pull.head_ref}",
                pr=pr.number,
                body_starts=(pr.body or "").splitlines()[0],
            )
            wait_for(
                lambda: any("Done" in b for b in _bot_comments(st.fake, number, bot)),
                "the final status line",
            )
            timeline.add("vibe-bot", "status comment: iteration 1 done, tests pass")
            st.fake.review(
                REPO,
                pr.number,
                WRITER,
                state="CHANGES_REQUESTED",
                body="Nearly there.",
                comments=[InlineComment("calc.py", 1, "Please add a docstring.")],
            )
            timeline.add(WRITER, "requested changes with an inline comment on calc.py:1")
            wait_for(
                lambda: any(
                    c.user == bot and "Addressed in" in c.body
                    for c in st.fake.review_comments(REPO, pr.number)
                ),
                "the reply in the review thread",
            )
            wait_for(
                lambda: any(
                    "iteration 2" in b and "Done" in b for b in _bot_comments(st.fake, number, bot)
                ),
                "the end of iteration 2",
            )
            timeline.add("vibe-bot", "iteration 2 pushed; replied in the thread naming the commit")
            st.fake.approve(REPO, pr.number, WRITER, "Thanks!")
            timeline.add(WRITER, f"approved PR #{pr.number}")
            engine = make_engine(settings.effective_database_url)
            try:
                task = wait_for(
                    lambda: (
                        (t := taskdb.find(engine, REPO, number)) is not None
                        and t.state.value == "accepted"
                        and t
                    ),
                    "the task to be accepted",
                )
            finally:
                engine.dispose()
            timeline.add("vibe-bot", f"task {task.state.value}")
            record = _record(timeline, task, f"{st.bot_url}/console/tasks/{task.id}")
            if hold is not None:
                hold(record)
    return record


def _record(timeline: Timeline, task: TaskRecord, console: str) -> dict[str, Any]:
    return {
        "stand_ins": ["GitHub (bot.testing.fake_github)", "Claude API (scripted model server)"],
        "events": timeline.events,
        "task": {"state": task.state.value, "branch": task.branch, "model": task.model},
        "pr_number": task.pr_number,
        "iterations": [
            {
                "number": it.number,
                "trigger": it.trigger,
                "feedback_kinds": it.feedback_kinds(),
                "commits": list(it.commits),
                "checks": [c.to_json() for c in it.checks],
                "outcome": it.outcome,
            }
            for it in task.iterations
        ],
        "console": console,
    }


def summary(record: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Task {record['task']['state']} on {record['task']['branch']} "
        f"(PR #{record['pr_number']}, {record['task']['model']} model):",
    ]
    for it in record["iterations"]:
        checks = ", ".join(
            f"{c['command']} {'passed' if c['passed'] else 'failed'}" for c in it["checks"]
        )
        lines.append(
            f"  iteration {it['number']} ({it['trigger']}): feedback "
            f"{', '.join(it['feedback_kinds']) or 'none'}; commits "
            f"{', '.join(c[:7] for c in it['commits']) or 'none'}; checks: {checks or 'none'}"
        )
    return lines


def wait_for_interrupt(stop: threading.Event | None = None) -> None:
    """Block until Ctrl-C or SIGTERM (or ``stop`` is set), then return normally."""
    stop = stop or threading.Event()
    kinds = (signal.SIGINT, signal.SIGTERM)
    before = {kind: signal.getsignal(kind) for kind in kinds}
    for kind in kinds:
        signal.signal(kind, lambda *_: stop.set())
    try:
        while not stop.wait(0.2):
            pass
    finally:
        for kind, handler in before.items():
            signal.signal(kind, handler)


def main(as_json: bool, keep: bool = False) -> int:

    configure_logging("WARNING", json=False, secrets=[SECRET, MODEL_KEY])

    def show(record: dict[str, Any]) -> None:
        if as_json:
            print(json.dumps(record, indent=2), flush=True)
            return
        for line in summary(record):
            print(line)
        print(f"\nThe task's page in the console: {record['console']}", flush=True)

    def hold(record: dict[str, Any]) -> None:
        show(record)
        print(
            "The service and the stand-ins stay up (--keep); press Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        wait_for_interrupt()

    if keep:
        run_demo(echo=None if as_json else print, hold=hold)
    else:
        show(run_demo(echo=None if as_json else print))
    return 0
