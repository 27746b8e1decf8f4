"""``vibe action``: the bot inside a GitHub Actions job.

Two ways in, one core:

- **Workflow mode** (``workflows/vibe.yml``): the event that started the job is read from
  ``GITHUB_EVENT_NAME``/``GITHUB_EVENT_PATH`` and handled like a webhook delivery.
- **Runner mode** (``workflows/vibe-runner.yml``, dispatched by the service's ``actions``
  executor): the runner claims its task from the service with the one-time credential,
  gets the event to handle from the service, handles it the same way and reports progress
  and the result back.

This module is the one place besides :mod:`bot.settings` that reads ``GITHUB_*``
variables (the Actions runner's contract, not operator settings):
https://docs.github.com/en/actions/writing-workflows/choosing-what-your-workflow-does/store-information-in-variables#default-environment-variables

Exit status: 0 when the bot did its job, which includes refusing a reader's command or
ignoring an event (a reply is not a failure); 1 when the bot itself failed; 2 when the job
is misconfigured (missing variables, unreadable event).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import structlog
from sqlalchemy.engine import Engine

from bot.bootstrap import GitHubSetup, ServiceWiring
from bot.core import events as ev
from bot.core import policy as pol
from bot.core.config import RepoConfig
from bot.core.events import WorkflowDispatch, WorkflowRun
from bot.core.markers import Marker, marker
from bot.core.redact import hide_paths, redact
from bot.github.client import host_paths
from bot.loop import handlers as dispatch
from bot.loop.env import Env
from bot.loop.handlers import IN_PROCESS, EventJob, Repository
from bot.loop.iteration import reader_reason
from bot.loop.ports import Executor
from bot.settings import Settings, SettingsError, load_settings
from bot.store import tasks as taskdb
from bot.store.engine import init_db, make_engine
from bot.store.tasks import export_records, import_records

_T = TypeVar("_T")

log = structlog.get_logger(__name__)

MAX_EVENT_BYTES = 25 * 1024 * 1024  # the same cap as webhook ingest
OUTPUT_NAMES = ("outcome", "pr-number", "cost")


class ActionError(Exception):
    """The job is misconfigured; the message says what to fix."""


@dataclass(frozen=True)
class ActionEnv:
    """What the Actions runner tells a step about its job."""

    event_name: str
    event_path: Path
    repository: str
    api_url: str
    server_url: str
    graphql_url: str
    run_id: int | None
    run_attempt: int  # 1, then 2, 3, ... when the run is re-run
    workspace: Path | None
    step_summary: Path | None
    output: Path | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ActionEnv:
        env = os.environ if environ is None else environ
        missing = [
            name
            for name in ("GITHUB_EVENT_NAME", "GITHUB_EVENT_PATH", "GITHUB_REPOSITORY")
            if not env.get(name)
        ]
        if missing:
            raise ActionError(
                f"{', '.join(missing)} not set: `vibe action` runs inside a GitHub Actions job"
            )
        repository = env["GITHUB_REPOSITORY"]
        owner, _, name = repository.partition("/")
        if not owner or not name or "/" in name:
            raise ActionError(f"GITHUB_REPOSITORY must be owner/name, got {repository!r}")
        api_url = env.get("GITHUB_API_URL") or "https://api.github.com"
        server_url = env.get("GITHUB_SERVER_URL") or "https://github.com"
        graphql = env.get("GITHUB_GRAPHQL_URL") or f"{api_url.rstrip('/')}/graphql"
        checked = (
            ("GITHUB_API_URL", api_url),
            ("GITHUB_SERVER_URL", server_url),
            ("GITHUB_GRAPHQL_URL", graphql),
        )
        for var, url in checked:
            if not url.startswith(("http://", "https://")):
                raise ActionError(f"{var} must be an http(s) URL, got {url!r}")
        run_id_text = env.get("GITHUB_RUN_ID", "")
        run_id = int(run_id_text) if run_id_text.isdigit() and len(run_id_text) < 19 else None
        attempt_text = env.get("GITHUB_RUN_ATTEMPT", "")
        attempt_ok = attempt_text.isdigit() and len(attempt_text) < 7
        run_attempt = max(int(attempt_text), 1) if attempt_ok else 1

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        return cls(
            event_name=env["GITHUB_EVENT_NAME"],
            event_path=Path(env["GITHUB_EVENT_PATH"]),
            repository=repository,
            api_url=api_url.rstrip("/"),
            server_url=server_url.rstrip("/"),
            graphql_url=graphql,
            run_id=run_id,
            run_attempt=run_attempt,
            workspace=path("GITHUB_WORKSPACE"),
            step_summary=path("GITHUB_STEP_SUMMARY"),
            output=path("GITHUB_OUTPUT"),
        )


def load_event(path: Path) -> dict[str, Any]:
    """The event payload the runner wrote, as a JSON object (size-capped)."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_EVENT_BYTES + 1)
    except OSError as exc:
        raise ActionError(f"cannot read the event file {path}: {exc.strerror}") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise ActionError(f"the event file {path} is larger than {MAX_EVENT_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ActionError(f"the event file {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ActionError(f"the event file {path} holds a {type(data).__name__}, not an object")
    return data


@dataclass(frozen=True)
class ActionResult:
    """What one ``vibe action`` run did; written to the job outputs and summary."""

    outcome: str  # started, iterated, replied, refused, ignored, stopped, failed, ...
    detail: str = ""
    pr_number: int | None = None
    cost: float = 0.0
    task_number: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def failed(self) -> bool:
        return self.outcome == "failed"


def _output_line(name: str, value: str) -> str:
    """One ``GITHUB_OUTPUT`` entry in the delimiter form, safe for any value:
    https://docs.github.com/en/actions/writing-workflows/choosing-what-your-workflow-does/workflow-commands-for-github-actions#multiline-strings
    """
    delimiter = f"vibe_{uuid.uuid4().hex}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def write_outputs(env: ActionEnv, result: ActionResult) -> None:
    values = {
        "outcome": result.outcome,
        "pr-number": str(result.pr_number) if result.pr_number is not None else "",
        "cost": f"{result.cost:.4f}",
    }
    if env.output is not None:
        with env.output.open("a", encoding="utf-8") as fh:
            for name in OUTPUT_NAMES:
                fh.write(_output_line(name, values[name]))
    if env.step_summary is not None:
        with env.step_summary.open("a", encoding="utf-8") as fh:
            fh.write(render_summary(env, result))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def render_summary(env: ActionEnv, result: ActionResult) -> str:
    """The job summary: a small Markdown table of what happened."""
    rows = [("Outcome", result.outcome), ("Event", env.event_name)]
    if result.task_number is not None:
        rows.append(("Issue", f"#{result.task_number}"))
    if result.pr_number is not None:
        url = f"{env.server_url}/{env.repository}/pull/{result.pr_number}"
        rows.append(("Pull request", f"[#{result.pr_number}]({url})"))
    rows.append(("Model cost", f"${result.cost:.2f}"))
    if result.detail:
        rows.append(("Detail", result.detail))
    lines = ["## vibe-bot", "", "| | |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in rows]
    lines += [f"- {_cell(n)}" for n in result.notes]
    return "\n".join(lines) + "\n\n"


# ---------------------------------------------------------------------- runner mode


class ServiceError(Exception):
    """The service refused or could not be reached; the message says which."""


@dataclass(frozen=True)
class ClaimedTask:
    task_id: int
    repository: str
    token: str
    event_name: str
    payload: dict[str, Any]
    records: dict[str, Any] | None  # the task's history as the service knows it


class RunnerClient:
    """The runner's side of the service's ``/api/runner`` routes
    (:mod:`bot.executors.actions.executor`)."""

    def __init__(self, service_url: str, task_id: int, *, timeout: float = 30.0) -> None:
        if not service_url.startswith(("http://", "https://")):
            raise ActionError(f"service-url must be an http(s) URL, got {service_url!r}")
        self.base = service_url.rstrip("/") + f"/api/runner/tasks/{task_id}"
        self.task_id = task_id
        self.timeout = timeout
        self.token: str | None = None

    def _post(self, what: str, secret: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = httpx.post(
                f"{self.base}/{what}",
                json=body,
                headers={"Authorization": f"Bearer {secret}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise ServiceError(f"cannot reach the vibe-bot service: {exc}") from None
        if response.status_code == 403:
            raise ServiceError(
                f"the service refused the task {what} (credential wrong, spent or expired)"
            )
        if response.status_code >= 400:
            raise ServiceError(f"the service answered {response.status_code} to {what}")
        try:
            data = response.json()
        except ValueError:
            raise ServiceError(f"the service's answer to {what} is not JSON") from None
        if not isinstance(data, dict):
            raise ServiceError(f"the service's answer to {what} is not an object")
        return data

    def claim(self, credential: str, run_id: int | None) -> ClaimedTask:
        data = self._post("claim", credential, {"run_id": run_id})
        token, spec, repo = data.get("token"), data.get("spec"), data.get("repository")
        if not isinstance(token, str) or not isinstance(spec, dict) or not isinstance(repo, str):
            raise ServiceError("the service's claim answer lacks token, spec or repository")
        event_name, payload = spec.get("event_name"), spec.get("payload")
        if not isinstance(event_name, str) or not isinstance(payload, dict):
            raise ServiceError("the claimed task names no event to handle")
        records = data.get("records")
        if records is not None and not isinstance(records, dict):
            raise ServiceError("the claimed task's records are not an object")
        self.token = token
        return ClaimedTask(self.task_id, repo, token, event_name, payload, records)

    def progress(self, message: str) -> None:
        if self.token is None:
            raise ServiceError("progress before claim")
        self._post("progress", self.token, {"message": message[:2000]})

    def result(self, result: ActionResult, records: dict[str, Any] | None = None) -> None:
        if self.token is None:
            raise ServiceError("result before claim")
        body = {
            "outcome": result.outcome,
            "pr_number": result.pr_number,
            "cost": max(result.cost, 0.0),
            "summary": result.detail[:20_000],
            "records": records,
        }
        self._post("result", self.token, body)
        self.token = None


# ------------------------------------------------------------------------ handling

ACTIONS_BOT = "github-actions[bot]"  # who the job's GITHUB_TOKEN acts as
PROGRESS_INTERVAL = 10.0  # seconds between progress reports to the service
MAX_TITLE = 80  # characters of a prompt's first line that title its issue


def action_settings(settings: Settings, env: ActionEnv) -> Settings:
    """The operator's settings with what the runner says about GitHub.

    The bot acts as ``github-actions[bot]`` (the job's token) unless ``VIBE_BOT_LOGIN``
    names another account (a personal token passed as ``github-token``).
    """
    update: dict[str, Any] = {
        "github_api_url": env.api_url,
        "github_server_url": env.server_url,
        "github_graphql_url": env.graphql_url,
        "executor": "local",
    }
    if "bot_login" not in settings.model_fields_set:
        update["bot_login"] = ACTIONS_BOT
    return settings.model_copy(update=update)


def actions_wiring(settings: Settings, on_progress: Callable[[str], None] | None) -> ServiceWiring:
    """The service's wiring with the job's token (an Actions token may create check runs)
    and, in runner mode, the loop's progress notes sent on to the service."""

    class ActionsWiring(ServiceWiring):
        def env(self, job: EventJob, repository: Repository) -> Env:
            env = super().env(job, repository)
            return env if on_progress is None else replace(env, timeline=on_progress)

        def executor(self, job: EventJob, config: RepoConfig) -> Executor:
            return IN_PROCESS  # this job already runs on an Actions runner

        def follow_run(self, job: EventJob, run: WorkflowRun) -> str:
            return "ignored: runs are followed by the service that dispatched them"

    return ActionsWiring(settings, GitHubSetup(settings, actions=True))


def _outcome(answer: str) -> str:
    """``dispatch.handle``'s answer ("start: iteration 1 succeeded", "refused: ...",
    "help") as one word for the job output."""
    head = answer.split(":", 1)[0].strip()
    return {"start": "started", "iterate": "iterated", "require": "required"}.get(head, head)


def handle_event(
    settings: Settings,
    event_name: str,
    payload: dict[str, Any],
    *,
    delivery: str,
    cancel: threading.Event,
    on_progress: Callable[[str], None] | None = None,
    run: tuple[int, int] | None = None,
) -> ActionResult:
    """Handle one event exactly as the service's ``event`` job does
    (:func:`bot.loop.handlers.handle`), on a database of the job's own. Raises when the bot
    itself fails. ``run`` is the workflow run's (id, attempt), for ``workflow_dispatch``."""

    event = ev.parse_event(event_name, payload)
    number: int | None = getattr(event, "number", None)
    repo: str | None = getattr(getattr(event, "repo", None), "full_name", None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    try:
        init_db(engine)

        def task_cost() -> tuple[int | None, float]:
            if repo is None or number is None:
                return None, 0.0
            task = taskdb.find(engine, repo, number)
            return (task.pr_number, task.usage.cost) if task is not None else (None, 0.0)

        _, cost_before = task_cost()
        wiring = actions_wiring(settings, on_progress)
        job = dispatch.EventJob(
            event_name=event_name,
            event_payload=payload,
            delivery_id=delivery,
            job_id=0,
            attempt=1,
            cancel=cancel,
            settings=settings,
            engine=engine,
        )
        if isinstance(event, ev.WorkflowDispatch):
            answer, number = _start_from_prompt(job, wiring, event, run)
        else:
            answer = dispatch.handle(job, wiring)
        pr_number, cost_after = task_cost()
        return ActionResult(
            outcome=_outcome(answer),
            detail=answer,
            pr_number=pr_number,
            cost=max(cost_after - cost_before, 0.0),
            task_number=number,
        )
    finally:
        engine.dispose()


def dispatch_marker(run_id: int) -> Marker:
    """The hidden marker in the body of the issue a ``workflow_dispatch`` run opened."""
    return marker("dispatch", run=run_id)


def _start_from_prompt(
    job: EventJob,
    wiring: ServiceWiring,
    event: WorkflowDispatch,
    run: tuple[int, int] | None,
) -> tuple[str, int | None]:
    """``workflow_dispatch`` with a ``prompt``: the same policy decides (a writer, the loop
    breaker), then the task gets an issue of its own, so it has a place for its status,
    its discussion and the link to its PR, like any other task, and the decision is carried
    out by the same table as every other.

    The issue carries the run's :func:`dispatch_marker`, so re-running the run (same id,
    higher attempt) continues on the issue the earlier attempt opened instead of opening
    another. Both go through the GitHub adapter (redaction, pacing, backoff)."""

    repo = wiring.repository(event.repo, event.installation_id)
    config = dispatch.quiet_config(repo, event)
    decision = dispatch.decide(job.settings.bot_identity(), event, repo, None, config)
    if isinstance(decision, pol.Ignore):
        return f"ignored: {decision.reason}", None
    if isinstance(decision, pol.Refusal):
        return f"refused: {decision.message}", None
    if not isinstance(decision, pol.StartTask):
        return f"ignored: {type(decision).__name__} needs no task", None
    prompt = decision.instruction.strip()
    first = prompt.splitlines()[0].strip() if prompt else "vibe task"
    title = first if len(first) <= MAX_TITLE else first[: MAX_TITLE - 1].rstrip() + "…"
    started = job.delivery_id or "workflow_dispatch"
    body = f"{prompt}\n\n_Started by @{decision.requester} with workflow_dispatch ({started})._"
    mark = dispatch_marker(run[0]) if run is not None else None
    number: int | None = None
    if mark is not None and run is not None and run[1] > 1:
        number = repo.client.find_issue(mark)
    if number is None:
        number = repo.client.create_issue(title, body, mark)
    context = dispatch.Context(wiring.env(job, repo), number, f"{started}:start")
    answer = dispatch.carry_out(replace(decision, number=number, instruction=prompt), context)
    return f"{answer} on issue #{number}", number


def _failure(settings: Settings, exc: BaseException) -> ActionResult:
    """The failure as its readers see it (the job summary, the service, the step's
    outputs): a sentence written for them; the exception, redacted, goes to the job's log
    only (issue 14: no host paths or tracebacks in what is shown)."""
    log.error(
        "action.failed",
        error=hide_paths(
            redact(f"{type(exc).__name__}: {exc}", settings.secret_values), host_paths(settings)
        )[:2000],
    )
    return ActionResult("failed", detail=reader_reason(exc, "this job's log (action.failed)"))


class _Progress:
    """Sends loop notes to the service at most every few seconds; never raises."""

    def __init__(self, client: RunnerClient) -> None:
        self.client = client
        self.last = 0.0

    def __call__(self, note: str) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL:
            return
        self.last = now
        try:
            self.client.progress(note)
        except ServiceError as exc:
            log.warning("action.progress_failed", error=str(exc))


def run_as_runner(
    settings: Settings,
    env: ActionEnv,
    *,
    task_id: int,
    service_url: str,
    cancel: threading.Event,
) -> ActionResult:
    """Claim the task from the service, handle its event, report the result back.

    The task's records (its history) come with the claim and go back with the result, so
    an iteration on a runner continues what earlier runs did."""

    if settings.task_credential is None:
        raise ActionError("task-id is set but task-credential is empty")
    client = RunnerClient(service_url, task_id)
    claimed = client.claim(settings.task_credential.get_secret_value(), env.run_id)
    if claimed.repository.casefold() != env.repository.casefold():
        raise ActionError(
            f"task {task_id} belongs to {claimed.repository}, not to {env.repository}"
        )
    client.progress(f"claimed by workflow run {env.run_id}")
    records: dict[str, Any] | None = None
    try:
        given = claimed.records
        if given is not None:
            _with_engine(settings, lambda e: import_records(e, claimed.repository, given))
        result = handle_event(
            settings,
            claimed.event_name,
            claimed.payload,
            delivery=f"runner-task-{task_id}",
            cancel=cancel,
            on_progress=_Progress(client),
        )
        if result.task_number is not None:
            number = result.task_number
            records = _with_engine(
                settings, lambda e: export_records(e, claimed.repository, number)
            )
    except Exception as exc:  # noqa: BLE001 - reported to the service, then the job fails
        result = _failure(settings, exc)
    client.result(result, records)
    return result


def _with_engine(settings: Settings, fn: Callable[[Engine], _T]) -> _T:

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    try:
        init_db(engine)
        return fn(engine)
    finally:
        engine.dispose()


def main(
    *,
    prompt: str = "",
    task_id: str = "",
    service_url: str = "",
    environ: Mapping[str, str] | None = None,
) -> int:
    """``vibe action``: the exit status (0 done, 1 the bot failed, 2 misconfigured)."""
    try:
        env = ActionEnv.from_environ(environ)
        settings = action_settings(load_settings(), env)
        payload = load_event(env.event_path)
        runner_task = _task_id(task_id)
    except (ActionError, SettingsError) as exc:
        print(f"::error::vibe action: {exc}", flush=True)
        return 2
    if prompt.strip() and env.event_name == "workflow_dispatch":
        inputs = payload.get("inputs")
        payload["inputs"] = {**(inputs if isinstance(inputs, dict) else {}), "prompt": prompt}
    cancel = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: cancel.set())
    try:
        if runner_task is not None:
            result = run_as_runner(
                settings, env, task_id=runner_task, service_url=service_url, cancel=cancel
            )
        else:
            delivery = f"actions-run-{env.run_id or 0}"
            run = (env.run_id, env.run_attempt) if env.run_id is not None else None
            result = handle_event(
                settings, env.event_name, payload, delivery=delivery, cancel=cancel, run=run
            )
    except Exception as exc:  # noqa: BLE001 - any failure of the bot ends the job as failed
        result = _failure(settings, exc)
    if result.failed:
        print(f"::error::vibe-bot failed: {result.detail}", flush=True)
    try:
        write_outputs(env, result)
    except OSError as exc:
        print(f"::warning::cannot write the job outputs: {exc}", flush=True)
    return 1 if result.failed else 0


def _task_id(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 18 or int(text) < 1:
        raise ActionError(f"task-id must be a positive number, got {text[:40]!r}")
    return int(text)
