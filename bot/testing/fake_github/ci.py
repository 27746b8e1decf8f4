"""The fake's CI: a repository's declared commands run on every push to a pull request's head.

A test declares jobs with :meth:`FakeCi.set` (``fake.set_ci(repo, [CiJob(...)])``); when a
pull request is opened or a push moves its head, the fake's runner (one thread) runs each
job's command for real in a temporary clone of the pushed commit and reports it the ways CI
reports on GitHub:

- ``via="actions"`` (default): a GitHub Actions job. One workflow run per declared workflow,
  with its own check suite of the ``github-actions`` App (each workflow run has its own
  suite: ``check_suite_id`` of https://docs.github.com/en/rest/actions/workflow-runs), one
  check run per job whose id is the job's id (as on GitHub, where a job's ``check_run_url``
  names the check run of the same id), the job's log behind
  ``GET /repos/{o}/{r}/actions/jobs/{job_id}/logs`` and annotations parsed from the output.
  Like GitHub Actions, the check run's ``output`` has no title, summary or text: what a job
  says is in its annotations and its log.
- ``via="app"``: a check run of a third-party CI App (``fake-ci``) in that App's suite, with
  ``output.title``, ``summary`` and ``text`` (the tail of the command's output).
- ``via="status"``: a commit status (``POST /repos/{o}/{r}/statuses/{sha}``) with the job's
  name as ``context``: ``pending`` first, then ``success`` or ``failure``.

Exit code 0 is ``success``, anything else ``failure``; a command over its ``timeout`` is
killed (``cancelled`` for a job, ``timed_out`` for an App's check run, ``error`` for a
status). Faults: ``always_fails`` (reported failed whatever the command says), ``flaky``
(the first attempt fails, a re-run runs the command), ``logs_gone`` (the logs endpoint
answers 410 Gone, as for logs past their retention).

Annotations come from the command's output, one per line, in two forms:

- GitHub's workflow command ``::error file=PATH,line=N,endLine=M,title=T::MESSAGE`` (also
  ``::warning`` and ``::notice``), https://docs.github.com/en/actions/reference/workflows-and-actions/workflow-commands;
- a compiler-style line ``PATH:LINE: MESSAGE`` or ``PATH:LINE:COL: MESSAGE`` (what a problem
  matcher picks out of ruff, mypy or pytest output), where a message starting with
  ``error:``/``warning:``/``notice:`` gives the level; otherwise it is ``failure`` in a
  failed job and ``warning`` in a passing one. ``PATH`` is relative (no ``/`` first).

At most 10 annotations of each level per job, as Actions keeps per step (the same page).
A failed Actions job also gets GitHub's own annotation ``.github:1`` "Process completed
with exit code N.".

Webhooks of one workflow run, in GitHub's order: ``workflow_run`` requested, ``check_run``
created (queued, one per job), ``workflow_run`` in_progress, ``check_run`` completed per
job, ``workflow_run`` completed, ``check_suite`` completed. ``check_suite`` requested goes
only to the App whose suite it is ("This default flow sends the check_suite event (with
requested action) to all GitHub Apps that have the checks:write permission",
https://docs.github.com/en/rest/guides/using-the-rest-api-to-interact-with-checks): the bot's
App gets it for its own, empty suite of each new head. A job re-run
(``POST .../actions/jobs/{job_id}/rerun``) is a new attempt of the workflow run with the
same sequence (``run_attempt`` 2, a new job and check run id for the re-run job).

``hold=True`` keeps a workflow's runs until :meth:`FakeCi.release` (a suite that arrives
late, deterministically); ``delay`` waits that many real seconds before the run starts.
:meth:`FakeCi.wait` blocks until the runner has nothing left to do.
"""

from __future__ import annotations

import os
import queue
import re
import secrets
import subprocess
import tempfile
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request, Response

from bot.testing.fake_github import gitrepo
from bot.testing.fake_github.api import ApiError, Kit, Recorded, not_found
from bot.testing.fake_github.shapes import JSON, iso, node_id
from bot.testing.fake_github.state import (
    CHECK_APP,
    GITHUB_ACTIONS,
    App,
    CheckRun,
    Issue,
    PullRequest,
    Repo,
    Token,
)

if TYPE_CHECKING:
    from bot.testing.fake_github.server import Event, FakeGitHub

Via = Literal["actions", "app", "status"]
CiFault = Literal["always_fails", "flaky", "logs_gone"]
LOG_URL_SECONDS = 60.0  # "This link expires after 1 minute" (the logs endpoint's description)
MAX_LOG_BYTES = 1024 * 1024  # what the fake keeps of one job's output
MAX_PER_LEVEL = 10
MAX_OUTPUT_TEXT = 65535  # check run output.text limit
MAX_STATUS_DESCRIPTION = 140
STATUS_STATES = ("error", "failure", "pending", "success")
# "The check suite reports the highest priority check run conclusion in the check suite's
# conclusion" (https://docs.github.com/en/rest/guides/using-the-rest-api-to-interact-with-checks);
# highest first.
_PRIORITY = (
    "action_required",
    "cancelled",
    "timed_out",
    "failure",
    "startup_failure",
    "stale",
    "neutral",
    "success",
    "skipped",
)
_COMMAND = re.compile(r"^::(error|warning|notice)(?: ([^:]*))?::(.*)$")
_COMPILER = re.compile(
    r"^(?P<path>[\w.\-][^:\s]*):(?P<line>\d+)(?::(?P<col>\d+))?:\s*"
    r"(?:(?P<level>error|warning|notice|note)\s*:\s*)?(?P<msg>\S.*)$"
)
_LEVELS = {"error": "failure", "warning": "warning", "notice": "notice", "note": "notice"}


@dataclass(frozen=True)
class CiJob:
    """One declared check: a command and how it reports (see the module docstring)."""

    name: str
    command: Sequence[str]
    via: Via = "actions"
    fault: CiFault | None = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if not self.name or not self.command:
            raise ValueError("a CI job needs a name and a command")


@dataclass(frozen=True)
class Workflow:
    name: str
    jobs: tuple[CiJob, ...]
    hold: bool = False
    delay: float = 0.0

    @property
    def path(self) -> str:
        return f".github/workflows/{re.sub(r'[^a-z0-9]+', '-', self.name.lower())}.yml"


@dataclass
class Suite:
    id: int
    repo: str  # full name
    app: App
    head_sha: str
    head_branch: str | None
    before: str | None
    status: str = "queued"
    conclusion: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class Job:
    id: int  # also the id of its check run
    run_id: int
    name: str
    attempt: int
    spec: CiJob
    status: str = "queued"
    conclusion: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    log: str = ""


@dataclass
class Run:
    """A workflow run (one per declared workflow and head commit)."""

    id: int
    repo: str
    workflow: Workflow
    workflow_id: int
    suite_id: int
    head_sha: str
    head_branch: str
    actor: str
    number: int
    attempt: int = 1
    status: str = "queued"
    conclusion: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float = 0.0
    jobs: list[Job] = field(default_factory=list)
    head_repo: str | None = None  # the fork a pull request's head is in

    def latest_jobs(self) -> list[Job]:
        newest: dict[str, Job] = {}
        for job in self.jobs:
            if job.name not in newest or job.attempt >= newest[job.name].attempt:
                newest[job.name] = job
        return list(newest.values())


@dataclass
class Status:
    id: int
    repo: str
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: float


@dataclass(frozen=True)
class _Task:
    kind: Literal["workflow", "rerun"]
    repo: str
    workflow: Workflow | None = None
    sha: str = ""
    branch: str = ""
    before: str | None = None
    sender: str = ""
    run_id: int = 0
    job_names: tuple[str, ...] = ()
    head_repo: str | None = None  # the fork a pull request's head is in


def _suite_branch(pr: PullRequest) -> str | None:
    """A suite's ``head_branch``: null for a fork's head ("When the check suite's
    `head_branch` is in a forked repository it will be `null` and the `pull_requests` array
    will be empty", @octokit/openapi, check-suite)."""
    return None if pr.head_repo is not None else pr.head_ref


@dataclass
class _Outcome:
    conclusion: str
    log: str
    output: str
    annotations: list[JSON]


def conclusion_of(conclusions: Sequence[str | None]) -> str:
    """A suite's conclusion: the highest-priority conclusion of its runs."""
    present = {c for c in conclusions if c is not None}
    return next((c for c in _PRIORITY if c in present), "success")


def parse_annotations(output: str, failed: bool) -> list[tuple[str, int, int, str, str, str]]:
    """``(path, start_line, end_line, level, title, message)`` of the module's conventions,
    at most :data:`MAX_PER_LEVEL` per level."""
    found: list[tuple[str, int, int, str, str, str]] = []
    counts: dict[str, int] = {}
    for line in output.splitlines():
        line = line.strip()
        command = _COMMAND.match(line)
        if command is not None:
            params = dict(p.split("=", 1) for p in (command.group(2) or "").split(",") if "=" in p)
            path = params.get("file", ".github")
            start = int(params["line"]) if params.get("line", "").isdigit() else 1
            end = int(params["endLine"]) if params.get("endLine", "").isdigit() else start
            level = _LEVELS[command.group(1)]
            item = (path, start, end, level, params.get("title", ""), command.group(3))
        else:
            match = _COMPILER.match(line)
            if match is None:
                continue
            level = _LEVELS.get(match["level"] or "", "failure" if failed else "warning")
            start = int(match["line"])
            item = (match["path"], start, start, level, "", match["msg"].strip())
        if counts.get(item[3], 0) < MAX_PER_LEVEL:
            counts[item[3]] = counts.get(item[3], 0) + 1
            found.append(item)
    return found


def _git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LANG": "C",
    }


def run_command(bare: Path, sha: str, job: CiJob) -> tuple[int | None, str]:
    """Run ``job.command`` in a temporary clone of ``sha``: (exit code or None on timeout,
    combined output, at most :data:`MAX_LOG_BYTES`)."""
    with tempfile.TemporaryDirectory(prefix="fake-ci-") as tmp:
        checkout = Path(tmp) / "checkout"
        env = _git_env()
        clone = subprocess.run(
            [gitrepo.GIT, "clone", "-q", "--no-checkout", str(bare), str(checkout)],
            capture_output=True,
            env=env,
            check=False,
            timeout=60,
        )
        if clone.returncode == 0:
            clone = subprocess.run(
                [gitrepo.GIT, "-C", str(checkout), "checkout", "-q", "--detach", sha],
                capture_output=True,
                env=env,
                check=False,
                timeout=60,
            )
        if clone.returncode != 0:
            return 128, clone.stderr.decode(errors="replace")
        try:
            proc = subprocess.run(
                list(job.command),
                cwd=checkout,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
                timeout=job.timeout,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.output or b""
            return None, out[-MAX_LOG_BYTES:].decode(errors="replace")
        except OSError as exc:
            return 127, f"{job.command[0]}: {exc.strerror}\n"
        return proc.returncode, proc.stdout[-MAX_LOG_BYTES:].decode(errors="replace")


class FakeCi:
    """The CI of one :class:`~bot.testing.fake_github.FakeGitHub` (``fake.ci``)."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self.workflows: dict[str, dict[str, Workflow]] = {}  # repo (lowercase) -> name -> wf
        self.suites: dict[int, Suite] = {}
        self.runs: dict[int, Run] = {}
        self.jobs: dict[int, Job] = {}
        self.statuses: list[Status] = []
        self.log_links: dict[str, tuple[int, float]] = {}  # token -> (job id, expiry)
        self._queue: queue.Queue[_Task | None] = queue.Queue()
        self._held: list[_Task] = []
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.errors: list[str] = []
        self._outbox: list[Event] = []
        self._seen_heads: set[tuple[str, str]] = set()
        self._commits: dict[tuple[str, str], JSON] = {}

    # --- the test's side --------------------------------------------------------------

    def set(
        self,
        full_name: str,
        jobs: Sequence[CiJob],
        *,
        workflow: str = "CI",
        hold: bool = False,
        delay: float = 0.0,
    ) -> None:
        """Declare (or replace, or with no jobs remove) one workflow of a repository."""
        names = [j.name for j in jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"job names repeat in {workflow}: {names}")
        repo = self.fake.repo(full_name)
        with self.fake.world.lock:
            declared = self.workflows.setdefault(repo.full_name.lower(), {})
            if jobs:
                declared[workflow] = Workflow(workflow, tuple(jobs), hold, delay)
            else:
                declared.pop(workflow, None)

    def wait(self, timeout: float = 30.0) -> None:
        """Block until every run not held has finished; TimeoutError past ``timeout``, and
        RuntimeError if a run broke (the fake's own failure, not a failing check)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._pending == 0, timeout):
                raise TimeoutError(f"the fake CI still has {self._pending} run(s) going")
            if self.errors:
                raise RuntimeError("the fake CI failed: " + "; ".join(self.errors))

    def release(self) -> int:
        """Let held runs go (``hold=True``); how many were released."""
        with self._idle:
            held, self._held = self._held, []
        for task in held:
            self._enqueue(task)
        return len(held)

    def set_status(
        self,
        full_name: str,
        sha: str,
        state: str,
        context: str,
        *,
        description: str | None = None,
        target_url: str | None = None,
        creator: str = "ci-bot",
    ) -> Status:
        """An external CI posts a commit status; the ``status`` webhook goes out."""
        repo = self.fake.repo(full_name)
        with self.fake.world.lock:
            self.fake.world.user(creator)
            status = self.add_status(repo, sha, state, context, description, target_url, creator)
            event = self.status_event(repo, status, creator)
        self.fake.deliver(*event)
        return status

    def close(self) -> None:
        """Stop the runner: what it has not started is dropped."""
        with self._idle:
            thread, self._thread = self._thread, None
            self._closing = True
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    # --- hooks from the fake ----------------------------------------------------------

    def on_pull_head(self, repo: Repo, issue: Issue, sender: str, before: str | None) -> None:
        """A pull request was opened or its head moved: queue the repository's workflows.
        GitHub runs ``pull_request`` workflows on ``opened`` and ``synchronize``
        (https://docs.github.com/en/actions/reference/workflows-and-actions/events-that-trigger-workflows#pull_request)."""
        pr = issue.pull
        if pr is None:
            return
        with self.fake.world.lock:
            declared = list(self.workflows.get(repo.full_name.lower(), {}).values())
            if not declared:
                return
            first = (repo.full_name.lower(), pr.head_sha) not in self._seen_heads
            self._seen_heads.add((repo.full_name.lower(), pr.head_sha))
            own = (
                self._own_suite_event(repo, pr.head_sha, _suite_branch(pr), before, sender)
                if first
                else None
            )
        if own is not None:
            self.fake.deliver(*own)
        for wf in declared:
            task = _Task(
                "workflow",
                repo.full_name,
                wf,
                pr.head_sha,
                pr.head_ref,
                before,
                sender,
                head_repo=pr.head_repo,
            )
            if wf.hold:
                with self._idle:
                    self._held.append(task)
            else:
                self._enqueue(task)

    def suite_for_app_run(self, repo: Repo, run: CheckRun, app: App | None) -> None:
        """A check run an App created joins that App's suite for the commit ("check suites
        are automatically created when you create a check run")."""
        if app is None:
            return
        suite = self._suite_of(repo, app, run.head_sha)
        if suite is None:
            suite = self._new_suite(repo, app, run.head_sha, None, None)
        run.suite_id = suite.id
        self._refresh_suite(suite)

    def refresh_run_suite(self, run: CheckRun) -> None:
        if run.suite_id is not None and run.suite_id in self.suites:
            self._refresh_suite(self.suites[run.suite_id])

    def take_events(self) -> list[Event]:
        with self.fake.world.lock:
            events, self._outbox = self._outbox, []
        return events

    # --- runner -----------------------------------------------------------------------

    def _enqueue(self, task: _Task) -> None:
        with self._idle:
            if self._closing:
                return
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="fake-ci", daemon=True)
                self._thread.start()
        self._queue.put(task)

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            try:
                if self._closing:
                    continue
                if task.kind == "workflow":
                    self._run_workflow(task)
                else:
                    self._rerun(task)
            except Exception as exc:  # noqa: BLE001 - kept for wait() to raise in the test
                with self._idle:
                    self.errors.append(f"{task.kind} of {task.repo}: {type(exc).__name__}: {exc}")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _run_workflow(self, task: _Task) -> None:
        wf = task.workflow
        assert wf is not None
        if wf.delay > 0:
            threading.Event().wait(wf.delay)
        repo = self.fake.repo(task.repo)
        statuses = [j for j in wf.jobs if j.via == "status"]
        for job in statuses:
            self.set_status(task.repo, task.sha, "pending", job.name, creator="ci-bot")
        actions = [j for j in wf.jobs if j.via == "actions"]
        if actions:
            self._actions_run(repo, task, wf, actions)
        apps = [j for j in wf.jobs if j.via == "app"]
        if apps:
            self._app_checks(repo, task, apps)
        for job in statuses:
            outcome = self._execute(repo, task.sha, job, 1)
            state = {"success": "success", "failure": "failure"}.get(outcome.conclusion, "error")
            self.set_status(
                task.repo,
                task.sha,
                state,
                job.name,
                description=(outcome.output.strip().splitlines() or [state])[-1][
                    :MAX_STATUS_DESCRIPTION
                ],
                creator="ci-bot",
            )

    def _execute(self, repo: Repo, sha: str, job: CiJob, attempt: int) -> _Outcome:
        code, output = run_command(repo.path, sha, job)
        if job.fault == "always_fails" or (job.fault == "flaky" and attempt == 1):
            output += "Error: The operation was canceled: connection reset by peer (fault).\n"
            code = 1 if code in (0, None) else code
        if code is None:
            conclusion = "timed_out" if job.via == "app" else "cancelled"
        else:
            conclusion = "success" if code == 0 else "failure"
        notes = [
            {
                "path": path,
                "start_line": start,
                "end_line": end,
                "start_column": None,
                "end_column": None,
                "annotation_level": level,
                "title": title,
                "message": message,
                "raw_details": "",
                "blob_href": f"{self.fake.base_url}/{repo.full_name}/blob/{sha}/{path}",
            }
            for path, start, end, level, title, message in parse_annotations(
                output, conclusion != "success"
            )
        ]
        if job.via == "actions" and conclusion != "success":
            message = (
                f"The job has exceeded the maximum execution time of {job.timeout:g} seconds."
                if code is None
                else f"Process completed with exit code {code}."
            )
            notes.append(
                {
                    "path": ".github",
                    "start_line": 1,
                    "end_line": 1,
                    "start_column": None,
                    "end_column": None,
                    "annotation_level": "failure",
                    "title": "",
                    "message": message,
                    "raw_details": "",
                    "blob_href": f"{self.fake.base_url}/{repo.full_name}/blob/{sha}/.github",
                }
            )
        return _Outcome(conclusion, self._job_log(job, output, code), output, notes)

    def _job_log(self, job: CiJob, output: str, code: int | None) -> str:
        """The job's log as Actions writes it: a timestamp per line, groups, the exit."""
        stamp = iso(self.fake.world.clock.now()) or ""
        stamp = stamp.replace("Z", ".0000000Z")
        shown = " ".join(job.command)
        lines = [
            "Requested labels: ubuntu-latest",
            f"##[group]Run {shown}",
            shown,
            "##[endgroup]",
            *output.splitlines(),
        ]
        if code is None:
            lines.append(
                f"##[error]The job has exceeded the maximum execution time of {job.timeout:g}s"
            )
        elif code != 0:
            lines.append(f"##[error]Process completed with exit code {code}.")
        lines.append("Cleaning up orphan processes")
        return "".join(f"{stamp} {line}\n" for line in lines)

    # --- Actions ----------------------------------------------------------------------

    def _actions_run(self, repo: Repo, task: _Task, wf: Workflow, specs: list[CiJob]) -> None:
        world = self.fake.world
        with world.lock:
            branch = None if task.head_repo is not None else task.branch
            suite = self._new_suite(repo, GITHUB_ACTIONS, task.sha, branch, task.before)
            now = world.clock.now()
            run = Run(
                id=world.next_id(),
                repo=repo.full_name,
                workflow=wf,
                workflow_id=zlib.crc32(f"{repo.id}/{wf.path}".encode()),
                suite_id=suite.id,
                head_sha=task.sha,
                head_branch=task.branch,
                actor=task.sender,
                number=1 + sum(1 for r in self.runs.values() if r.repo == repo.full_name),
                created_at=now,
                updated_at=now,
                started_at=now,
                head_repo=task.head_repo,
            )
            self.runs[run.id] = run
            jobs = [self._new_job(repo, run, suite, spec, 1) for spec in specs]
        self._drive(repo, run, jobs, task.sender)

    def _new_job(self, repo: Repo, run: Run, suite: Suite, spec: CiJob, attempt: int) -> Job:
        world = self.fake.world
        now = world.clock.now()
        job = Job(world.next_id(), run.id, spec.name, attempt, spec, created_at=now)
        run.jobs.append(job)
        self.jobs[job.id] = job
        html = f"{self.fake.base_url}/{repo.full_name}/actions/runs/{run.id}/job/{job.id}"
        check = CheckRun(
            id=job.id,
            name=spec.name,
            head_sha=run.head_sha,
            status="queued",
            conclusion=None,
            started_at=now,
            completed_at=None,
            external_id=secrets.token_hex(16),
            details_url=html,
            output={"title": None, "summary": None, "text": None},
            app_id=GITHUB_ACTIONS.id,
            suite_id=suite.id,
            other_app=GITHUB_ACTIONS,
        )
        repo.check_runs[check.id] = check
        world.check_runs[check.id] = (repo.full_name, check.id)
        suite.status, suite.conclusion, suite.updated_at = "queued", None, now
        return job

    def _drive(self, repo: Repo, run: Run, jobs: list[Job], sender: str) -> None:
        """Move a run attempt through its life, with GitHub's webhooks on the way."""
        world = self.fake.world
        with world.lock:
            first = [self._run_event(repo, run, "requested", sender)]
            first += [
                self._check_event(repo, repo.check_runs[j.id], "created", sender) for j in jobs
            ]
        self.fake.send(first)
        with world.lock:
            run.status = "in_progress"
            run.updated_at = world.clock.now()
            self.suites[run.suite_id].status = "in_progress"
            event = self._run_event(repo, run, "in_progress", sender)
        self.fake.deliver(*event)
        for job in jobs:
            with world.lock:
                check = repo.check_runs[job.id]
                job.status = check.status = "in_progress"
                job.started_at = check.started_at = world.clock.now()
            outcome = self._execute(repo, run.head_sha, job.spec, job.attempt)
            with world.lock:
                now = world.clock.now()
                job.status = check.status = "completed"
                job.conclusion = check.conclusion = outcome.conclusion
                job.completed_at = check.completed_at = now
                job.log = outcome.log
                check.annotations = outcome.annotations
                event = self._check_event(repo, check, "completed", sender)
            self.fake.deliver(*event)
        with world.lock:
            run.status = "completed"
            run.conclusion = conclusion_of([j.conclusion for j in run.latest_jobs()])
            run.updated_at = world.clock.now()
            suite = self.suites[run.suite_id]
            self._refresh_suite(suite)
            last = [
                self._run_event(repo, run, "completed", sender),
                self._suite_event(repo, suite, "completed", sender),
            ]
        self.fake.send(last)

    def rerun_job(self, repo: Repo, job_id: int, sender: str) -> None:
        """``POST .../actions/jobs/{job_id}/rerun``: "Re-run a job and its dependent jobs in a
        workflow run" (the fake's jobs depend on none), as a new attempt of the run."""
        job = self.jobs.get(job_id)
        run = self.runs.get(job.run_id) if job is not None else None
        if job is None or run is None or run.repo != repo.full_name:
            raise not_found()
        if run.status != "completed":
            raise ApiError(403, "This workflow run is not completed; it cannot be re-run yet.")
        run.attempt += 1
        run.status, run.conclusion = "queued", None
        run.updated_at = self.fake.world.clock.now()
        self._enqueue(
            _Task("rerun", repo.full_name, run_id=run.id, job_names=(job.name,), sender=sender)
        )

    def _rerun(self, task: _Task) -> None:
        repo = self.fake.repo(task.repo)
        world = self.fake.world
        with world.lock:
            run = self.runs[task.run_id]
            suite = self.suites[run.suite_id]
            specs = [j for j in run.workflow.jobs if j.name in task.job_names]
            jobs = [self._new_job(repo, run, suite, spec, run.attempt) for spec in specs]
        self._drive(repo, run, jobs, task.sender)

    # --- third-party check App --------------------------------------------------------

    def _app_checks(self, repo: Repo, task: _Task, specs: list[CiJob]) -> None:
        world = self.fake.world
        with world.lock:
            branch = None if task.head_repo is not None else task.branch
            suite = self._new_suite(repo, CHECK_APP, task.sha, branch, task.before)
            checks = []
            for spec in specs:
                check = CheckRun(
                    id=world.next_id(),
                    name=spec.name,
                    head_sha=task.sha,
                    status="in_progress",
                    conclusion=None,
                    started_at=world.clock.now(),
                    completed_at=None,
                    external_id=spec.name,
                    details_url=f"{self.fake.base_url}/fake-ci/{repo.full_name}/{task.sha}",
                    output={"title": "Running", "summary": f"{spec.name} is running", "text": None},
                    app_id=CHECK_APP.id,
                    suite_id=suite.id,
                    other_app=CHECK_APP,
                )
                repo.check_runs[check.id] = check
                world.check_runs[check.id] = (repo.full_name, check.id)
                checks.append((spec, check))
            suite.status = "in_progress"
            created = [self._check_event(repo, c, "created", task.sender) for _, c in checks]
        self.fake.send(created)
        for spec, check in checks:
            outcome = self._execute(repo, task.sha, spec, 1)
            failures = sum(1 for a in outcome.annotations if a["annotation_level"] == "failure")
            with world.lock:
                check.status, check.conclusion = "completed", outcome.conclusion
                check.completed_at = world.clock.now()
                check.annotations = outcome.annotations
                check.output = {
                    "title": f"{spec.name}: {outcome.conclusion} ({failures} problem(s))",
                    "summary": f"`{' '.join(spec.command)}` ended with {outcome.conclusion}.",
                    "text": outcome.output[-MAX_OUTPUT_TEXT:],
                }
                event = self._check_event(repo, check, "completed", task.sender)
            self.fake.deliver(*event)
        with world.lock:
            self._refresh_suite(suite)
            event = self._suite_event(repo, suite, "completed", task.sender)
        self.fake.deliver(*event)

    # --- suites -----------------------------------------------------------------------

    def _suite_of(self, repo: Repo, app: App, sha: str) -> Suite | None:
        return next(
            (
                s
                for s in self.suites.values()
                if s.repo == repo.full_name and s.app.slug == app.slug and s.head_sha == sha
            ),
            None,
        )

    def _new_suite(
        self, repo: Repo, app: App, sha: str, branch: str | None, before: str | None
    ) -> Suite:
        now = self.fake.world.clock.now()
        suite = Suite(self.fake.world.next_id(), repo.full_name, app, sha, branch, before)
        suite.created_at = suite.updated_at = now
        self.suites[suite.id] = suite
        return suite

    def suite_runs(self, suite: Suite) -> list[CheckRun]:
        repo = self.fake.repo(suite.repo)
        return [r for r in repo.check_runs.values() if r.suite_id == suite.id]

    def latest_runs(self, runs: list[CheckRun]) -> list[CheckRun]:
        """The newest check run of each name in each suite (``filter=latest``)."""
        newest: dict[tuple[int | None, str], CheckRun] = {}
        for run in sorted(runs, key=lambda r: r.id):
            newest[(run.suite_id, run.name)] = run
        return sorted(newest.values(), key=lambda r: r.id)

    def _refresh_suite(self, suite: Suite) -> None:
        runs = self.latest_runs(self.suite_runs(suite))
        suite.updated_at = self.fake.world.clock.now()
        if runs and all(r.status == "completed" for r in runs):
            suite.status = "completed"
            suite.conclusion = conclusion_of([r.conclusion for r in runs])
        elif runs:
            suite.status = "in_progress" if any(r.status != "queued" for r in runs) else "queued"
            suite.conclusion = None

    def _own_suite_event(
        self, repo: Repo, sha: str, branch: str | None, before: str | None, sender: str
    ) -> Event | None:
        app = self.fake.world.app
        inst = self.fake.installation_for(repo)
        if app is None or inst is None or inst.permissions.get("checks") != "write":
            return None
        suite = self._suite_of(repo, app, sha) or self._new_suite(repo, app, sha, branch, before)
        return self._suite_event(repo, suite, "requested", sender)

    # --- statuses ---------------------------------------------------------------------

    def add_status(
        self,
        repo: Repo,
        sha: str,
        state: str,
        context: str,
        description: str | None,
        target_url: str | None,
        creator: str,
    ) -> Status:
        status = Status(
            self.fake.world.next_id(),
            repo.full_name,
            sha,
            state,
            context,
            description,
            target_url,
            creator,
            self.fake.world.clock.now(),
        )
        self.statuses.append(status)
        return status

    def latest_statuses(self, repo: Repo, sha: str) -> list[Status]:
        newest: dict[str, Status] = {}
        for s in self.statuses:
            if s.repo == repo.full_name and s.sha == sha:
                newest[s.context] = s
        return sorted(newest.values(), key=lambda s: s.id, reverse=True)

    # --- shapes -----------------------------------------------------------------------

    def _pulls(self, repo: Repo, sha: str, branch: str | None) -> list[JSON]:
        """The ``pull_requests`` of a suite or run: open PRs with this head."""
        return self.fake.shapes.pull_minimal(repo, sha, branch)

    def head_commit(self, repo: Repo, sha: str) -> JSON:
        """The commit as ``simple-commit`` (kept: a commit does not change)."""
        key = (str(repo.path), sha)
        if key not in self._commits:
            self._commits[key] = self._read_commit(repo, sha)
        return dict(self._commits[key])

    def _read_commit(self, repo: Repo, sha: str) -> JSON:
        raw = gitrepo.git(repo.path, "show", "-s", "--format=%T%n%an%n%ae%n%cn%n%ce%n%cI%n%B", sha)
        tree, an, ae, cn, ce, date, *message = raw.decode(errors="replace").split("\n")
        return {
            "id": sha,
            "tree_id": tree,
            "message": "\n".join(message).strip(),
            "timestamp": date,
            "author": {"name": an, "email": ae},
            "committer": {"name": cn, "email": ce},
        }

    def suite_shape(self, repo: Repo, suite: Suite) -> JSON:
        url = f"{self.fake.shapes.repo_url(repo)}/check-suites/{suite.id}"
        return {
            "id": suite.id,
            "node_id": node_id("CS", suite.id),
            "head_branch": suite.head_branch,
            "head_sha": suite.head_sha,
            "status": suite.status,
            "conclusion": suite.conclusion,
            "url": url,
            "before": suite.before,
            "after": suite.head_sha,
            "pull_requests": self._pulls(repo, suite.head_sha, suite.head_branch),
            "app": self.fake.shapes.app(suite.app),
            "repository": self.fake.shapes.repository(repo, full=False),
            "created_at": iso(suite.created_at),
            "updated_at": iso(suite.updated_at),
            "head_commit": self.head_commit(repo, suite.head_sha),
            "latest_check_runs_count": len(self.latest_runs(self.suite_runs(suite))),
            "check_runs_url": f"{url}/check-runs",
            "rerequestable": True,
            "runs_rerequestable": True,
        }

    def run_shape(self, repo: Repo, run: Run) -> JSON:
        base = self.fake.base_url
        api = f"{self.fake.shapes.repo_url(repo)}"
        url = f"{api}/actions/runs/{run.id}"
        suite_url = f"{api}/check-suites/{run.suite_id}"
        return {
            "id": run.id,
            "name": run.workflow.name,
            "node_id": node_id("WFR", run.id),
            "check_suite_id": run.suite_id,
            "check_suite_node_id": node_id("CS", run.suite_id),
            "check_suite_url": suite_url,
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": run.workflow.path,
            "display_title": run.workflow.name,
            "run_number": run.number,
            "run_attempt": run.attempt,
            "event": "pull_request",
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": run.workflow_id,
            "url": url,
            "html_url": f"{base}/{repo.full_name}/actions/runs/{run.id}",
            "pull_requests": self._pulls(repo, run.head_sha, run.head_branch),
            "created_at": iso(run.created_at),
            "updated_at": iso(run.updated_at),
            "run_started_at": iso(run.started_at),
            "actor": self.fake.shapes.user(run.actor),
            "triggering_actor": self.fake.shapes.user(run.actor),
            "jobs_url": f"{url}/jobs",
            "logs_url": f"{url}/logs",
            "artifacts_url": f"{url}/artifacts",
            "cancel_url": f"{url}/cancel",
            "rerun_url": f"{url}/rerun",
            "previous_attempt_url": f"{url}/attempts/{run.attempt - 1}"
            if run.attempt > 1
            else None,
            "workflow_url": f"{api}/actions/workflows/{run.workflow_id}",
            "head_commit": self.head_commit(repo, run.head_sha),
            "repository": self.fake.shapes.repository(repo, full=False),
            "head_repository": self.fake.shapes.repository(self._head_repo(repo, run), full=False),
            "referenced_workflows": [],
        }

    def _head_repo(self, repo: Repo, run: Run) -> Repo:
        """The repository of the run's head: a pull request's fork, else ``repo``."""
        if run.head_repo is None:
            return repo
        owner, _, name = run.head_repo.partition("/")
        return self.fake.world.repo(owner, name) or repo

    def workflow_shape(self, repo: Repo, run: Run) -> JSON:
        base = self.fake.base_url
        file = run.workflow.path.rsplit("/", 1)[-1]
        return {
            "id": run.workflow_id,
            "node_id": node_id("W", run.workflow_id),
            "name": run.workflow.name,
            "path": run.workflow.path,
            "state": "active",
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.created_at),
            "url": f"{self.fake.shapes.repo_url(repo)}/actions/workflows/{run.workflow_id}",
            "html_url": f"{base}/{repo.full_name}/actions/workflows/{file}",
            "badge_url": f"{base}/{repo.full_name}/workflows/{file}/badge.svg",
        }

    def job_shape(self, repo: Repo, job: Job) -> JSON:
        run = self.runs[job.run_id]
        api = self.fake.shapes.repo_url(repo)
        started = job.started_at if job.started_at is not None else job.created_at
        step_status = (
            job.status if job.status in ("queued", "in_progress", "completed") else "queued"
        )
        return {
            "id": job.id,
            "run_id": run.id,
            "run_url": f"{api}/actions/runs/{run.id}",
            "run_attempt": job.attempt,
            "node_id": node_id("CR", job.id),
            "head_sha": run.head_sha,
            "url": f"{api}/actions/jobs/{job.id}",
            "html_url": f"{self.fake.base_url}/{repo.full_name}/actions/runs/{run.id}/job/{job.id}",
            "status": job.status,
            "conclusion": job.conclusion,
            "created_at": iso(job.created_at),
            "started_at": iso(started),
            "completed_at": iso(job.completed_at),
            "name": job.name,
            "steps": [
                {
                    "name": f"Run {' '.join(job.spec.command)}"[:200],
                    "status": step_status,
                    "conclusion": job.conclusion,
                    "number": 1,
                    "started_at": iso(started),
                    "completed_at": iso(job.completed_at),
                }
            ],
            "check_run_url": f"{api}/check-runs/{job.id}",
            "labels": ["ubuntu-latest"],
            "runner_id": 1 if job.started_at is not None else None,
            "runner_name": "fake-runner" if job.started_at is not None else None,
            "runner_group_id": 1 if job.started_at is not None else None,
            "runner_group_name": "Default" if job.started_at is not None else None,
            "workflow_name": run.workflow.name,
            "head_branch": run.head_branch,
        }

    def status_shape(self, repo: Repo, status: Status) -> JSON:
        creator = self.fake.shapes.user(status.creator)
        return {
            "url": f"{self.fake.shapes.repo_url(repo)}/statuses/{status.sha}",
            "avatar_url": creator["avatar_url"],
            "id": status.id,
            "node_id": node_id("SC", status.id),
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "creator": creator,
        }

    # --- webhooks ---------------------------------------------------------------------

    def _common(self, repo: Repo, sender: str) -> JSON:
        return self.fake.common_payload(repo, sender)

    def _suite_event(self, repo: Repo, suite: Suite, action: str, sender: str) -> Event:
        payload = {"action": action, "check_suite": self.suite_shape(repo, suite)}
        return ("check_suite", {**payload, **self._common(repo, sender)})

    def _check_event(self, repo: Repo, check: CheckRun, action: str, sender: str) -> Event:
        shape = self.fake.shapes.check_run(repo, check)
        if check.suite_id is not None and check.suite_id in self.suites:
            suite = self.suite_shape(repo, self.suites[check.suite_id])
            shape["check_suite"] = {
                k: suite[k]
                for k in (
                    "id",
                    "node_id",
                    "head_branch",
                    "head_sha",
                    "status",
                    "conclusion",
                    "url",
                    "before",
                    "after",
                    "pull_requests",
                    "app",
                    "created_at",
                    "updated_at",
                )
            }
        return ("check_run", {"action": action, "check_run": shape, **self._common(repo, sender)})

    def _run_event(self, repo: Repo, run: Run, action: str, sender: str) -> Event:
        payload = {
            "action": action,
            "workflow_run": self.run_shape(repo, run),
            "workflow": self.workflow_shape(repo, run),
        }
        return ("workflow_run", {**payload, **self._common(repo, sender)})

    def status_event(self, repo: Repo, status: Status, sender: str) -> Event:
        """``status``: no ``action``; the commit and the branches whose head it is."""
        api = self.fake.shapes.repo_url(repo)
        html = f"{self.fake.base_url}/{repo.full_name}"
        info = self.head_commit(repo, status.sha)
        parents = gitrepo.git(repo.path, "rev-list", "--parents", "-n", "1", status.sha)
        parent_shas = parents.decode().split()[1:]
        author = {
            "name": info["author"]["name"],
            "email": info["author"]["email"],
            "date": info["timestamp"],
        }
        committer = {
            "name": info["committer"]["name"],
            "email": info["committer"]["email"],
            "date": info["timestamp"],
        }
        commit = {
            "sha": status.sha,
            "node_id": node_id("C", status.sha),
            "commit": {
                "author": author,
                "committer": committer,
                "message": info["message"],
                "tree": {"sha": info["tree_id"], "url": f"{api}/git/trees/{info['tree_id']}"},
                "url": f"{api}/git/commits/{status.sha}",
                "comment_count": 0,
                "verification": {
                    "verified": False,
                    "reason": "unsigned",
                    "signature": None,
                    "payload": None,
                    "verified_at": None,
                },
            },
            "url": f"{api}/commits/{status.sha}",
            "html_url": f"{html}/commit/{status.sha}",
            "comments_url": f"{api}/commits/{status.sha}/comments",
            "author": None,
            "committer": None,
            "parents": [
                {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/commit/{p}"}
                for p in parent_shas
            ],
        }
        branches = [
            {
                "name": name,
                "commit": {"sha": sha, "url": f"{api}/commits/{sha}"},
                "protected": name in repo.protected_branches,
            }
            for name, sha in sorted(gitrepo.heads(repo.path).items())
            if sha == status.sha
        ]
        shape = self.status_shape(repo, status)
        payload: JSON = {
            "id": status.id,
            "sha": status.sha,
            "name": repo.full_name,
            "avatar_url": shape["avatar_url"],
            "target_url": status.target_url,
            "context": status.context,
            "description": status.description,
            "state": status.state,
            "commit": commit,
            "branches": branches,
            "created_at": shape["created_at"],
            "updated_at": shape["updated_at"],
        }
        return ("status", {**payload, **self._common(repo, sender)})

    # --- GraphQL ----------------------------------------------------------------------

    def mark_ready(self, token: Token, variables: dict[str, Any]) -> JSON:
        """``markPullRequestReadyForReview(input: {pullRequestId})``: the draft becomes ready
        and ``pull_request`` ``ready_for_review`` goes out (with ``echo_api_events``).
        https://docs.github.com/en/graphql/reference/mutations#markpullrequestreadyforreview"""
        name = "markPullRequestReadyForReview"
        raw = variables.get("input")
        pr_id = (
            raw.get("pullRequestId") if isinstance(raw, dict) else variables.get("pullRequestId")
        )
        found = self._pull_by_node(str(pr_id))
        world = self.fake.world
        if found is None or not world.token_can(token, found[0], None):
            return _graphql_error(
                name, "NOT_FOUND", f"Could not resolve to a node with the global id of '{pr_id}'"
            )
        repo, issue = found
        if not world.token_can(token, repo, "pull_requests"):
            return _graphql_error(name, "FORBIDDEN", "Resource not accessible by integration")
        assert issue.pull is not None
        if issue.pull.draft:
            issue.pull.draft = False
            issue.updated_at = world.clock.now()
            self._outbox.append(self.fake.issue_event(repo, issue, "ready_for_review", token.login))
        pr_node = node_id("PR", issue.id)
        return {"data": {name: {"pullRequest": {"id": pr_node, "isDraft": issue.pull.draft}}}}

    def _pull_by_node(self, ident: str) -> tuple[Repo, Issue] | None:
        for repo in self.fake.world.repos.values():
            for issue in repo.issues.values():
                if issue.pull is not None and node_id("PR", issue.id) == ident:
                    return repo, issue
        return None


def _graphql_error(name: str, kind: str, message: str) -> JSON:
    return {"data": {name: None}, "errors": [{"type": kind, "path": [name], "message": message}]}


def add_ci_routes(app: FastAPI, fake: FakeGitHub) -> None:
    """The REST routes of checks, Actions jobs and commit statuses (``app.state.kit`` holds
    the API's helpers: authentication, recording, pagination)."""
    kit: Kit = app.state.kit
    world = fake.world
    ci = fake.ci

    def commit_of(repo: Repo, ref: str, status: int = 422) -> str:
        sha = gitrepo.resolve(repo.path, ref)
        if sha is None:
            raise ApiError(status, f"No commit found for SHA: {ref}")
        return sha

    def choice(
        request: Request, name: str, allowed: tuple[str, ...], default: str | None
    ) -> str | None:
        value = request.query_params.get(name, default)
        if value is not None and value not in allowed:
            raise ApiError(
                422,
                f"Invalid request.\n\nFor '{name}', \"{value}\" is not one of "
                f"{', '.join(allowed)}.",
            )
        return value

    @app.get("/repos/{owner}/{repo}/commits/{ref}/check-runs")
    def list_check_runs_for_ref(request: Request, owner: str, repo: str, ref: str) -> Response:
        """https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference:
        ``check_name``, ``status``, ``filter`` (``latest``: "the most recent check runs",
        default; ``all``), ``app_id``, pagination."""
        status = choice(request, "status", ("queued", "in_progress", "completed"), None)
        filt = choice(request, "filter", ("latest", "all"), "latest")
        with world.lock:
            found, _ = kit.repo_for(request, owner, repo, read="checks")
            sha = commit_of(found, ref)
            runs = [r for r in found.check_runs.values() if r.head_sha == sha]
            if filt == "latest":
                runs = ci.latest_runs(runs)
            name = request.query_params.get("check_name")
            app_id = request.query_params.get("app_id")
            runs = [
                r
                for r in sorted(runs, key=lambda r: r.id, reverse=True)
                if (name is None or r.name == name)
                and (status is None or r.status == status)
                and (app_id is None or str(r.app_id) == app_id)
            ]
            chunk, headers = kit.paginate(request, runs)
            body = {
                "total_count": len(runs),
                "check_runs": [fake.shapes.check_run(found, r) for r in chunk],
            }
            return kit.reply(request, body, headers=headers)

    @app.get("/repos/{owner}/{repo}/commits/{ref}/check-suites")
    def list_check_suites_for_ref(request: Request, owner: str, repo: str, ref: str) -> Response:
        """https://docs.github.com/en/rest/checks/suites#list-check-suites-for-a-git-reference"""
        with world.lock:
            found, _ = kit.repo_for(request, owner, repo, read="checks")
            sha = commit_of(found, ref)
            app_id = request.query_params.get("app_id")
            name = request.query_params.get("check_name")
            suites = [
                s
                for s in sorted(ci.suites.values(), key=lambda s: s.id)
                if s.repo == found.full_name
                and s.head_sha == sha
                and (app_id is None or str(s.app.id) == app_id)
                and (name is None or any(r.name == name for r in ci.suite_runs(s)))
            ]
            chunk, headers = kit.paginate(request, suites)
            body = {
                "total_count": len(suites),
                "check_suites": [ci.suite_shape(found, s) for s in chunk],
            }
            return kit.reply(request, body, headers=headers)

    @app.get("/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations")
    def list_annotations(request: Request, owner: str, repo: str, check_run_id: int) -> Response:
        """https://docs.github.com/en/rest/checks/runs#list-check-run-annotations"""
        with world.lock:
            found, _ = kit.repo_for(request, owner, repo, read="checks")
            run = found.check_runs.get(check_run_id)
            if run is None:
                raise not_found()
            chunk, headers = kit.paginate(request, list(run.annotations))
            return kit.reply(request, chunk, headers=headers)

    def job_of(found: Repo, job_id: int) -> Job:
        job = ci.jobs.get(job_id)
        if job is None or ci.runs[job.run_id].repo != found.full_name:
            raise not_found()
        return job

    @app.get("/repos/{owner}/{repo}/actions/runs/{run_id}/jobs")
    def list_jobs(request: Request, owner: str, repo: str, run_id: int) -> Response:
        """https://docs.github.com/en/rest/actions/workflow-jobs#list-jobs-for-a-workflow-run:
        ``filter`` ``latest`` (default: "the most recent job execution") or ``all``."""
        filt = choice(request, "filter", ("latest", "all"), "latest")
        with world.lock:
            found, _ = kit.repo_for(request, owner, repo, read="actions")
            run = ci.runs.get(run_id)
            if run is None or run.repo != found.full_name:
                raise not_found()
            jobs = run.latest_jobs() if filt == "latest" else list(run.jobs)
            jobs.sort(key=lambda j: j.id)
            chunk, headers = kit.paginate(request, jobs)
            body = {"total_count": len(jobs), "jobs": [ci.job_shape(found, j) for j in chunk]}
            return kit.reply(request, body, headers=headers)

    @app.get("/repos/{owner}/{repo}/actions/jobs/{job_id}/logs")
    def download_job_logs(request: Request, owner: str, repo: str, job_id: int) -> Response:
        """ "Gets a redirect URL to download a plain text file of logs for a workflow job.
        This link expires after 1 minute. Look for ``Location:`` in the response header"
        (the operation's description in @octokit/openapi: 302 and no body). Logs past their
        retention answer 410 Gone (``fault="logs_gone"``); a job still running has none."""
        with world.lock:
            found, _ = kit.repo_for(request, owner, repo, read="actions")
            job = job_of(found, job_id)
            if job.spec.fault == "logs_gone":
                raise ApiError(410, "Gone")
            if job.status != "completed":
                raise not_found()
            link = secrets.token_urlsafe(24)
            ci.log_links[link] = (job.id, world.clock.now() + LOG_URL_SECONDS)
            template = "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs"
            fake.record(Recorded("GET", template, 302, None))
        location = f"{fake.base_url}/_fake/actions-results/{link}/job-logs.txt"
        return Response(status_code=302, headers={"Location": location})

    @app.get("/_fake/actions-results/{link}/job-logs.txt")
    def job_log_blob(request: Request, link: str) -> Response:
        """The signed download URL (blob storage on GitHub): no authentication, expires, and
        answers a ``Range`` request (``bytes=-N`` for the last N bytes) with 206."""
        with world.lock:
            job_id, expires = ci.log_links.get(link, (0, 0.0))
            if job_id == 0 or expires <= world.clock.now():
                return Response("AuthenticationFailed: signature expired\n", status_code=403)
            data = ci.jobs[job_id].log.encode()
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", request.headers.get("range", ""))
        if wanted is None or not (wanted[1] or wanted[2]) or not data:
            return Response(data, media_type="text/plain; charset=utf-8")
        if wanted[1]:
            start = int(wanted[1])
            end = min(int(wanted[2]), len(data) - 1) if wanted[2] else len(data) - 1
        else:
            start, end = max(len(data) - int(wanted[2]), 0), len(data) - 1
        if start > end or start >= len(data):
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
        return Response(
            data[start : end + 1],
            status_code=206,
            media_type="text/plain; charset=utf-8",
            headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"},
        )

    @app.post("/repos/{owner}/{repo}/actions/jobs/{job_id}/rerun")
    async def rerun_job(request: Request, owner: str, repo: str, job_id: int) -> Response:
        """https://docs.github.com/en/rest/actions/workflow-runs#re-run-a-job-from-a-workflow-run
        (201; needs Actions: write, https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps)."""
        data = await kit.body_json(request)
        debug = data.get("enable_debug_logging", False)
        if not isinstance(debug, bool):
            raise ApiError(
                422, "Invalid request.\n\nFor 'enable_debug_logging', must be a boolean."
            )
        with world.lock:
            found, who = kit.repo_for(request, owner, repo, write="actions")
            ci.rerun_job(found, job_id, who.login)
            return kit.reply(request, {}, status=201)

    @app.post("/repos/{owner}/{repo}/statuses/{sha}")
    async def create_status(request: Request, owner: str, repo: str, sha: str) -> Response:
        """https://docs.github.com/en/rest/commits/statuses#create-a-commit-status (needs
        Commit statuses: write)."""
        data = await kit.body_json(request)
        state = data.get("state")
        if state not in STATUS_STATES:
            raise ApiError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "Status",
                        "field": "state",
                        "code": "custom",
                        "message": "state is not included in the list",
                    }
                ],
            )
        description = kit.text_field(data, "description", limit=1024)
        if description is not None and len(description) > MAX_STATUS_DESCRIPTION:
            raise ApiError(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "Status",
                        "field": "description",
                        "code": "custom",
                        "message": "description is too long (maximum is 140 characters)",
                    }
                ],
            )
        target_url = kit.text_field(data, "target_url", limit=2048)
        context = kit.text_field(data, "context", limit=255) or "default"
        with world.lock:
            found, who = kit.repo_for(request, owner, repo, write="statuses")
            full = (
                gitrepo.resolve(found.path, sha)
                if re.fullmatch(r"[0-9a-fA-F]{4,40}", sha)
                else None
            )
            if full is None:
                raise ApiError(422, f"No commit found for SHA: {sha}")
            status = ci.add_status(found, full, state, context, description, target_url, who.login)
            response = kit.reply(request, ci.status_shape(found, status), status=201)
            events = [ci.status_event(found, status, who.login)]
        fake.echo(events)
        return response

    @app.get("/repos/{owner}/{repo}/commits/{ref}/status")
    def combined_status(request: Request, owner: str, repo: str, ref: str) -> Response:
        """https://docs.github.com/en/rest/commits/statuses#get-the-combined-status-for-a-specific-reference:
        "failure if any of the contexts report as error or failure; pending if there are no
        statuses or a context is pending; success if the latest status for all contexts is
        success"."""
        with world.lock:
            found, _ = kit.repo_for(request, owner, repo, read="statuses")
            sha = commit_of(found, ref, status=404)
            latest = ci.latest_statuses(found, sha)
            states = {s.state for s in latest}
            if states & {"error", "failure"}:
                state = "failure"
            elif not latest or "pending" in states:
                state = "pending"
            else:
                state = "success"
            chunk, headers = kit.paginate(request, latest)
            api = fake.shapes.repo_url(found)
            # The combined view lists ``simple-commit-status``: no ``creator``, a ``required``.
            listed = []
            for s in chunk:
                item = {**ci.status_shape(found, s), "required": False}
                del item["creator"]
                listed.append(item)
            body = {
                "state": state,
                "statuses": listed,
                "sha": sha,
                "total_count": len(latest),
                "repository": fake.shapes.repository(found, full=False),
                "commit_url": f"{api}/commits/{sha}",
                "url": f"{api}/commits/{sha}/status",
            }
            return kit.reply(request, body, headers=headers)
