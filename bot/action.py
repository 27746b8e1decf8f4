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
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

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
    run_id: int | None
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
        for var, url in (("GITHUB_API_URL", api_url), ("GITHUB_SERVER_URL", server_url)):
            if not url.startswith(("http://", "https://")):
                raise ActionError(f"{var} must be an http(s) URL, got {url!r}")
        run_id_text = env.get("GITHUB_RUN_ID", "")
        run_id = int(run_id_text) if run_id_text.isdigit() and len(run_id_text) < 19 else None

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value) if value else None

        return cls(
            event_name=env["GITHUB_EVENT_NAME"],
            event_path=Path(env["GITHUB_EVENT_PATH"]),
            repository=repository,
            api_url=api_url.rstrip("/"),
            server_url=server_url.rstrip("/"),
            run_id=run_id,
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


class RunnerClient:
    """The runner's side of the service's ``/api/runner`` routes (``bot/executor.py``)."""

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
        self.token = token
        return ClaimedTask(self.task_id, repo, token, event_name, payload)

    def progress(self, message: str) -> None:
        if self.token is None:
            raise ServiceError("progress before claim")
        self._post("progress", self.token, {"message": message[:2000]})

    def result(self, result: ActionResult) -> None:
        if self.token is None:
            raise ServiceError("result before claim")
        body = {
            "outcome": result.outcome,
            "pr_number": result.pr_number,
            "cost": max(result.cost, 0.0),
            "summary": result.detail[:20_000],
        }
        self._post("result", self.token, body)
        self.token = None
