"""GitHub Actions calls of the adapter: dispatch a workflow, read a run, list a workflow's runs.

:class:`RepoActions` goes through the same :class:`~bot.github.retry.RequestPolicy` as
:class:`~bot.github.client.RepoClient` (it borrows the client's plumbing, in this package):
reads are retried on 5xx with backoff, every call honours GitHub's rate limits, and a
dispatch is a paced write that is never repeated blindly, because a dispatch that failed
with 5xx may have started a run.

REST reference: https://docs.github.com/en/rest/actions/workflows and
https://docs.github.com/en/rest/actions/workflow-runs
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.github.client import RepoClient
from bot.github.retry import GitHubRequestError, GitHubUnavailable

MAX_RUNS_LISTED = 100  # one page: a task's run is among the newest of its workflow
# What GitHub answers when the token or the workflow cannot dispatch; retrying cannot help.
PERMANENT_STATUSES = frozenset({401, 403, 404, 422})


@dataclass(frozen=True)
class RunInfo:
    """A workflow run as the executor needs it."""

    id: int
    status: str  # requested, queued, pending, waiting, in_progress, completed
    conclusion: str | None  # success, failure, cancelled, timed_out, ... once completed
    title: str
    html_url: str | None = None
    repository: str | None = None  # owner/name, as a workflow_run webhook names it

    @property
    def completed(self) -> bool:
        return self.status == "completed"


class DispatchError(Exception):
    """The workflow could not be dispatched; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def _run_info(data: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        id=int(data["id"]),
        status=str(data.get("status") or ""),
        conclusion=data.get("conclusion"),
        title=str(data.get("display_title") or ""),
        html_url=data.get("html_url"),
    )


class RepoActions:
    """The Actions calls for one repository, through ``client``'s request policy (an
    installation token needs ``actions: write`` to dispatch)."""

    def __init__(self, client: RepoClient) -> None:
        self.client = client
        self.repo = client.repo

    def _workflow_path(self, workflow: str) -> str:
        return f"/repos/{self.repo}/actions/workflows/{urllib.parse.quote(workflow, safe='')}"

    def default_branch(self) -> str:
        return self.client.default_branch()

    def dispatch(self, workflow: str, ref: str, inputs: Mapping[str, str]) -> RunInfo | None:
        """Dispatch ``workflow`` at ``ref``; the run if GitHub reports it. Raises
        :class:`DispatchError`.

        ``return_run_details`` makes GitHub answer 200 with the run's id; servers without it
        answer 204 and the run is found by its title instead:
        https://docs.github.com/en/rest/actions/workflows#create-a-workflow-dispatch-event
        """
        what = f"dispatch {workflow}"
        body = {"ref": ref, "inputs": dict(inputs), "return_run_details": True}
        path = f"{self._workflow_path(workflow)}/dispatches"
        try:
            data = self.client._run(
                what,
                lambda: self.client._request("POST", path, body),
                write=True,
                idempotent=False,
            )
        except GitHubRequestError as exc:
            said = exc.message.removeprefix(f"{what}: ")[:200]
            hint = f" (is .github/workflows/{workflow} installed?)" if exc.status == 404 else ""
            message = f"GitHub answered {exc.status}{': ' + said if said else ''}{hint}"
            raise DispatchError(message, permanent=exc.status in PERMANENT_STATUSES) from None
        except GitHubUnavailable as exc:
            raise DispatchError(str(exc).removeprefix(f"{what}: "), permanent=False) from None
        if not isinstance(data, dict) or "workflow_run_id" not in data:
            return None
        return RunInfo(
            id=int(data["workflow_run_id"]),
            status="requested",
            conclusion=None,
            title="",
            html_url=data.get("html_url"),
        )

    def run(self, run_id: int) -> RunInfo | None:
        """The run, or None if it does not exist (any more)."""
        try:
            data = self.client._run(
                f"read workflow run {run_id}",
                lambda: self.client._request("GET", f"/repos/{self.repo}/actions/runs/{run_id}"),
            )
        except GitHubRequestError as exc:
            if exc.status in (404, 410):
                return None
            raise
        return _run_info(data)

    def runs(self, workflow: str, since: datetime) -> list[RunInfo]:
        """Dispatched runs of ``workflow`` created since ``since`` (UTC, naive), newest first."""
        params = {
            "event": "workflow_dispatch",
            "created": f">={since.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            "per_page": MAX_RUNS_LISTED,
        }
        data = self.client._run(
            f"list the runs of {workflow}",
            lambda: self.client._request(
                "GET", f"{self._workflow_path(workflow)}/runs", params=params
            ),
        )
        found = data.get("workflow_runs") if isinstance(data, dict) else None
        return [_run_info(r) for r in found or [] if isinstance(r, dict)]
