"""GitHub's answers about a commit's CI, as :mod:`bot.core.ci` values.

Pure functions over the JSON of the REST API; :class:`bot.github.client.RepoClient` makes
the calls (``head_checks``, ``job_log_tail``, ``rerun_job``, ``mark_ready_for_review``).

- Check runs: https://docs.github.com/en/rest/checks/runs ("List check runs for a Git
  reference", ``filter=latest`` by default: the newest run of each name, so a re-run job
  replaces its failed first attempt) and their annotations.
- Commit statuses: https://docs.github.com/en/rest/commits/statuses (the combined status
  lists the latest status of each context).
- An Actions job's check run has the job's id: its ``details_url`` is
  ``.../actions/runs/{run_id}/job/{job_id}``, the address the logs and re-run endpoints
  take (https://docs.github.com/en/rest/actions/workflow-jobs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bot.core.ci import Annotation, CheckResult

ACTIONS_SLUG = "github-actions"
MAX_TEXT = 65_535  # GitHub's limit for a check run's output summary and text
MAX_ANNOTATIONS = 50  # one page of annotations per failing check run
STATUSES = frozenset({"queued", "in_progress", "completed"})
# Conclusions whose check run is worth its annotations (a failure the bot may fix).
NEEDS_DETAIL = frozenset({"failure", "timed_out", "startup_failure", "cancelled"})
_JOB_URL = re.compile(r"/actions/runs/(\d+)/job/(\d+)(?:[/?#]|$)")
# Actions writes a timestamp before every log line ("2024-01-01T00:00:00.0000000Z ").
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ", re.MULTILINE)


def _text(value: object, limit: int = MAX_TEXT) -> str:
    return value[:limit] if isinstance(value, str) else ""


def job_ids(run: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(workflow run id, job id)`` of a GitHub Actions check run, from its details URL."""
    app = run.get("app") or {}
    if app.get("slug") != ACTIONS_SLUG:
        return None
    match = _JOB_URL.search(str(run.get("details_url") or run.get("html_url") or ""))
    if match is None:
        return None
    return int(match[1]), int(match[2])


def annotation(data: Mapping[str, Any]) -> Annotation:
    start = data.get("start_line")
    end = data.get("end_line")
    start_line = start if isinstance(start, int) else 0
    return Annotation(
        path=_text(data.get("path"), 1000),
        start_line=start_line,
        end_line=end if isinstance(end, int) else start_line,
        level=_text(data.get("annotation_level"), 20) or "notice",
        message=_text(data.get("message"), 4000),
    )


def check_result(
    run: Mapping[str, Any],
    annotations: tuple[Annotation, ...] = (),
    run_attempt: int | None = None,
) -> CheckResult:
    """One check run. GitHub's other statuses (``waiting``, ``requested``, ``pending``) are
    not started yet: ``queued``."""
    output = run.get("output") or {}
    status = str(run.get("status") or "")
    ids = job_ids(run)
    app = run.get("app") or {}
    return CheckResult(
        name=_text(run.get("name"), 255),
        source="check_run",
        status=status if status in STATUSES else "queued",
        conclusion=run.get("conclusion") if status == "completed" else None,
        app_slug=app.get("slug") if isinstance(app.get("slug"), str) else None,
        title=_text(output.get("title"), 255),
        summary=_text(output.get("summary")),
        text=_text(output.get("text")),
        annotations=annotations,
        job_id=ids[1] if ids is not None else None,
        details_url=run.get("details_url") or run.get("html_url") or None,
        run_attempt=run_attempt,
    )


def status_result(status: Mapping[str, Any]) -> CheckResult:
    """One context of the combined status: ``error`` and ``failure`` are a failure,
    ``pending`` is not concluded yet."""
    state = str(status.get("state") or "pending")
    conclusion = {"success": "success", "failure": "failure", "error": "failure"}.get(state)
    return CheckResult(
        name=_text(status.get("context"), 255) or "default",
        source="status",
        status="in_progress" if conclusion is None else "completed",
        conclusion=conclusion,
        app_slug=None,
        title=_text(status.get("description"), 1024),
        summary="",
        text="",
        annotations=(),
        job_id=None,
        details_url=status.get("target_url") or None,
        run_attempt=None,
    )


def log_tail(data: bytes, max_bytes: int, whole: bool) -> str:
    """The end of a job log as text: at most ``max_bytes`` of it, without Actions'
    timestamps; when the start was cut (``whole`` false), from the first full line (unless
    the cut is all one line)."""
    text = data[-max_bytes:].decode("utf-8", errors="replace")
    if not whole or len(data) > max_bytes:
        newline = text.find("\n")
        if 0 <= newline < len(text) - 1:
            text = text[newline + 1 :]
    return _STAMP.sub("", text)
