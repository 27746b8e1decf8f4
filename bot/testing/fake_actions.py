"""GitHub Actions for the fake GitHub: workflow dispatch, workflow runs, ``workflow_run`` hooks.

An extension of :class:`~bot.testing.fake_github.FakeGitHub`: :meth:`FakeActions.attach`
adds the routes the ``actions`` executor uses to a running fake and keeps the runs' state.
No job ever runs: a test plays the runner (it reads the dispatched inputs from
:attr:`FakeActions.runs`) and moves runs along with :meth:`start`, :meth:`complete` and
:meth:`delete`, each sending the ``workflow_run`` webhook GitHub would send.

It also adds issue creation (``POST /repos/{owner}/{repo}/issues``): a task started by
``workflow_dispatch`` with a prompt opens its own issue; and the issue list
(``GET /repos/{owner}/{repo}/issues``, paginated with ``Link`` headers), where a re-run of
that workflow run finds the issue its earlier attempt opened.

Like GitHub, a dispatch is refused unless the repository holds the workflow file at the
ref, the workflow has a ``workflow_dispatch`` trigger, every required input is given and
no undeclared input is; it needs a token with ``actions: write`` (an installation token)
or a writer's personal token.

REST reference: https://docs.github.com/en/rest/actions/workflows and
https://docs.github.com/en/rest/actions/workflow-runs
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bot.testing.fake_github import gitrepo
from bot.testing.fake_github.server import FakeGitHub
from bot.testing.fake_github.shapes import iso
from bot.testing.fake_github.state import Repo, Token

JSON = dict[str, Any]
DOCS = "https://docs.github.com/rest/actions"
_WORKFLOW_FILE = re.compile(r"[A-Za-z0-9_.-]{1,100}\.ya?ml")
MAX_INPUTS = 25  # GitHub's limit on workflow_dispatch inputs


@dataclass
class WorkflowRun:
    id: int
    repo: str  # full name
    workflow: str  # file name
    ref: str
    head_sha: str
    inputs: dict[str, str]
    title: str
    actor: str
    created_at: float
    updated_at: float
    status: str = "queued"
    conclusion: str | None = None
    deleted: bool = False
    history: list[str] = field(default_factory=list)
    reads: int = 0  # GET .../actions/runs/{id} answered: how often a follower polled it


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FakeActions:
    """Workflow runs of one :class:`FakeGitHub`; ``attach`` it once the fake is started."""

    def __init__(self, fake: FakeGitHub) -> None:
        self.fake = fake
        self.runs: dict[int, WorkflowRun] = {}
        self.lock = threading.RLock()
        self._files: dict[int, str] = {}  # workflow id -> file name, as GitHub resolves both

    @classmethod
    def attach(cls, fake: FakeGitHub, app: FastAPI) -> FakeActions:
        actions = cls(fake)
        actions._install(app)
        return actions

    # --- the test's side --------------------------------------------------------------

    def dispatched(self, repo: str) -> list[WorkflowRun]:
        with self.lock:
            return [r for r in self.runs.values() if r.repo.lower() == repo.lower()]

    def start(self, run_id: int) -> None:
        self._move(run_id, "in_progress", None, "in_progress")

    def complete(self, run_id: int, conclusion: str = "success") -> None:
        self._move(run_id, "completed", conclusion, "completed")

    def delete(self, run_id: int) -> None:
        """The run disappears (deleted by someone, or lost): the API answers 404."""
        with self.lock:
            self.runs[run_id].deleted = True

    def _move(self, run_id: int, status: str, conclusion: str | None, action: str) -> None:
        with self.lock:
            run = self.runs[run_id]
            run.status = status
            run.conclusion = conclusion
            run.updated_at = self.fake.world.clock.now()
            run.history.append(status)
        self._hook(run, action)

    def _hook(self, run: WorkflowRun, action: str) -> None:
        with self.fake.world.lock:
            repo = self.fake.repo(run.repo)
            payload: JSON = {
                "action": action,
                "workflow_run": self._shape(repo, run),
                "workflow": self._workflow_shape(repo, run.workflow),
                "repository": self.fake.shapes.repository(repo, full=False),
                "sender": self.fake.shapes.user(run.actor),
            }
            inst = self.fake.installation_for(repo)
            if inst is not None:
                payload["installation"] = {"id": inst.id}
        self.fake.deliver("workflow_run", payload)

    # --- shapes -----------------------------------------------------------------------

    def _workflow_id(self, repo: Repo, file: str) -> int:
        wid = (repo.id * 1000 + sum(file.encode())) % 2**31
        with self.lock:
            self._files[wid] = file
        return wid

    def _file_of(self, workflow_id: str) -> str:
        """A workflow is named by its file name or by its numeric id."""
        if workflow_id.isdigit():
            with self.lock:
                return self._files.get(int(workflow_id), "")
        return workflow_id

    def _workflow_shape(self, repo: Repo, file: str) -> JSON:
        base = self.fake.base_url
        wid = self._workflow_id(repo, file)
        return {
            "id": wid,
            "node_id": f"W_{wid}",
            "name": file.rsplit(".", 1)[0],
            "path": f".github/workflows/{file}",
            "state": "active",
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.created_at),
            "url": f"{base}/repos/{repo.full_name}/actions/workflows/{wid}",
            "html_url": f"{base}/{repo.full_name}/actions/workflows/{file}",
            "badge_url": f"{base}/{repo.full_name}/workflows/{file}/badge.svg",
        }

    def _shape(self, repo: Repo, run: WorkflowRun) -> JSON:
        base = self.fake.base_url
        api = f"{base}/repos/{repo.full_name}"
        return {
            "id": run.id,
            "name": run.workflow.rsplit(".", 1)[0],
            "node_id": f"WFR_{run.id}",
            "display_title": run.title,
            "head_branch": run.ref,
            "head_sha": run.head_sha,
            "path": f".github/workflows/{run.workflow}",
            "run_number": run.id % 10000,
            "run_attempt": 1,
            "event": "workflow_dispatch",
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": self._workflow_id(repo, run.workflow),
            "url": f"{api}/actions/runs/{run.id}",
            "html_url": f"{base}/{repo.full_name}/actions/runs/{run.id}",
            "created_at": iso(run.created_at),
            "updated_at": iso(run.updated_at),
            "run_started_at": iso(run.created_at),
            "actor": self.fake.shapes.user(run.actor),
            "triggering_actor": self.fake.shapes.user(run.actor),
            "jobs_url": f"{api}/actions/runs/{run.id}/jobs",
            "logs_url": f"{api}/actions/runs/{run.id}/logs",
            "cancel_url": f"{api}/actions/runs/{run.id}/cancel",
            "rerun_url": f"{api}/actions/runs/{run.id}/rerun",
            "workflow_url": f"{api}/actions/workflows/{self._workflow_id(repo, run.workflow)}",
            "pull_requests": [],
            "repository": self.fake.shapes.repository(repo, full=False),
            "head_repository": self.fake.shapes.repository(repo, full=False),
        }

    # --- HTTP -------------------------------------------------------------------------

    def _new_issue(self, repo: Repo, token: Token, title: str, body: str | None) -> JSON:
        with self.fake.world.lock:
            issue = self.fake.new_issue(repo, token.login, title, body)
            shape = self.fake.shapes.issue(repo, issue)
            payload: JSON = {
                "action": "opened",
                "issue": shape,
                "repository": self.fake.shapes.repository(repo, full=False),
                "sender": self.fake.shapes.user(token.login),
            }
        self.fake.deliver("issues", payload)
        return shape

    def _auth(
        self, request: Request, owner: str, name: str, write: bool, scope: str = "actions"
    ) -> tuple[Repo, Token]:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not value.strip():
            raise _Refused(401, "Requires authentication")
        world = self.fake.world
        with world.lock:
            token = world.token_valid(value.strip())
            if token is None:
                raise _Refused(401, "Bad credentials")
            repo = world.repo(owner, name)
            if repo is None or not world.token_can(token, repo, None):
                raise _Refused(404, "Not Found")
            if (write or scope != "actions") and not world.token_can(token, repo, scope):
                raise _Refused(403, "Resource not accessible by integration")
            return repo, token

    def _workflow_text(self, repo: Repo, file: str, ref: str) -> str | None:
        file = self._file_of(file)
        if not _WORKFLOW_FILE.fullmatch(file):
            return None
        sha = gitrepo.resolve(repo.path, ref)
        if sha is None:
            return None
        return self.fake.read_file(repo.full_name, sha, f".github/workflows/{file}")

    def _install(self, app: FastAPI) -> None:
        def error(exc: _Refused) -> Response:
            return JSONResponse(
                {"message": exc.message, "documentation_url": DOCS}, status_code=exc.status
            )

        def run_of(repo: Repo, run_id: int) -> WorkflowRun:
            with self.lock:
                run = self.runs.get(run_id)
            if run is None or run.deleted or run.repo.lower() != repo.full_name.lower():
                raise _Refused(404, "Not Found")
            return run

        @app.get("/repos/{owner}/{repo}/actions/workflows/{workflow_id}")
        def get_workflow(request: Request, owner: str, repo: str, workflow_id: str) -> Response:
            try:
                found, _ = self._auth(request, owner, repo, write=False)
                if self._workflow_text(found, workflow_id, found.default_branch) is None:
                    raise _Refused(404, "Not Found")
            except _Refused as exc:
                return error(exc)
            return JSONResponse(self._workflow_shape(found, self._file_of(workflow_id)))

        @app.post("/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches")
        async def dispatch(request: Request, owner: str, repo: str, workflow_id: str) -> Response:
            try:
                found, token = self._auth(request, owner, repo, write=True)
                try:
                    data = await request.json()
                except ValueError:
                    raise _Refused(400, "Problems parsing JSON") from None
                if not isinstance(data, dict) or not isinstance(data.get("ref"), str):
                    raise _Refused(422, "Invalid request: ref is required")
                inputs = data.get("inputs") or {}
                if not isinstance(inputs, dict) or len(inputs) > MAX_INPUTS:
                    raise _Refused(422, "Invalid request: inputs must be an object")
                ref = data["ref"]
                # Off the event loop: the dispatch sends a webhook synchronously.
                file = self._file_of(workflow_id)
                run = await run_in_threadpool(self._dispatch, found, token, file, ref, inputs)
            except _Refused as exc:
                return error(exc)
            if data.get("return_run_details") is True:
                shape = self._shape(found, run)
                return JSONResponse(
                    {
                        "workflow_run_id": run.id,
                        "run_url": shape["url"],
                        "html_url": shape["html_url"],
                    }
                )
            return Response(status_code=204)

        @app.post("/repos/{owner}/{repo}/issues")
        async def create_issue(request: Request, owner: str, repo: str) -> Response:
            try:
                found, token = self._auth(request, owner, repo, write=False, scope="issues")
                try:
                    data = await request.json()
                except ValueError:
                    raise _Refused(400, "Problems parsing JSON") from None
                title = data.get("title") if isinstance(data, dict) else None
                body = data.get("body") if isinstance(data, dict) else None
                if not isinstance(title, str) or not title.strip() or len(title) > 256:
                    raise _Refused(422, "Validation Failed: title is required (1-256 characters)")
                if body is not None and (not isinstance(body, str) or len(body) > 65536):
                    raise _Refused(422, "Validation Failed: body is too long (maximum is 65536)")
                issue_json = await run_in_threadpool(self._new_issue, found, token, title, body)
            except _Refused as exc:
                return error(exc)
            return JSONResponse(issue_json, status_code=201)

        @app.get("/repos/{owner}/{repo}/issues")
        def list_issues(request: Request, owner: str, repo: str) -> Response:
            """https://docs.github.com/en/rest/issues/issues#list-repository-issues
            (``state``, ``sort`` created/updated, ``direction``, ``per_page``, ``page``;
            pull requests are issues here too, as on GitHub)."""
            query = request.query_params
            try:
                found, _ = self._auth(request, owner, repo, write=False)
                state = query.get("state", "open")
                sort = query.get("sort", "created")
                direction = query.get("direction", "desc")
                per_page, page = query.get("per_page", "30"), query.get("page", "1")
                if (
                    state not in ("open", "closed", "all")
                    or sort not in ("created", "updated")
                    or direction not in ("asc", "desc")
                    or not per_page.isdigit()
                    or not page.isdigit()
                    or len(per_page) > 4
                    or len(page) > 6
                ):
                    raise _Refused(422, "Validation Failed")
            except _Refused as exc:
                return error(exc)
            size, number = min(max(int(per_page), 1), 100), max(int(page), 1)
            with self.fake.world.lock:
                issues = [i for i in found.issues.values() if state in ("all", i.state)]
                issues.sort(
                    key=lambda i: (i.created_at if sort == "created" else i.updated_at, i.number),
                    reverse=direction == "desc",
                )
                chunk = issues[(number - 1) * size : number * size]
                shapes = [self.fake.shapes.issue(found, i) for i in chunk]
            headers = {}
            if number * size < len(issues):
                base = f"{self.fake.api_url}/repos/{found.full_name}/issues"
                params = f"state={state}&sort={sort}&direction={direction}&per_page={size}"
                headers["Link"] = f'<{base}?{params}&page={number + 1}>; rel="next"'
            return JSONResponse(shapes, headers=headers)

        @app.get("/repos/{owner}/{repo}/actions/runs/{run_id}")
        def get_run(request: Request, owner: str, repo: str, run_id: int) -> Response:
            try:
                found, _ = self._auth(request, owner, repo, write=False)
                run = run_of(found, run_id)
            except _Refused as exc:
                return error(exc)
            with self.lock:
                run.reads += 1
            return JSONResponse(self._shape(found, run))

        @app.get("/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs")
        def list_runs(request: Request, owner: str, repo: str, workflow_id: str) -> Response:
            try:
                found, _ = self._auth(request, owner, repo, write=False)
            except _Refused as exc:
                return error(exc)
            since = _created_filter(request.query_params.get("created"))
            event = request.query_params.get("event")
            with self.lock:
                runs = [
                    r
                    for r in self.runs.values()
                    if r.repo.lower() == found.full_name.lower()
                    and r.workflow == self._file_of(workflow_id)
                    and not r.deleted
                    and (event is None or event == "workflow_dispatch")
                    and (since is None or (iso(r.created_at) or "") >= since)
                ]
            runs.sort(key=lambda r: r.id, reverse=True)
            return JSONResponse(
                {"total_count": len(runs), "workflow_runs": [self._shape(found, r) for r in runs]}
            )

    def _dispatch(
        self, repo: Repo, token: Token, file: str, ref: str, inputs: dict[str, Any]
    ) -> WorkflowRun:
        text = self._workflow_text(repo, file, ref)
        if text is None:
            raise _Refused(404, "Not Found")
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError:
            raise _Refused(422, "Workflow does not have 'workflow_dispatch' trigger") from None
        triggers = document.get(True, document.get("on")) if isinstance(document, dict) else None
        spec = triggers.get("workflow_dispatch", False) if isinstance(triggers, dict) else False
        if spec is False:
            raise _Refused(422, "Workflow does not have 'workflow_dispatch' trigger")
        declared_raw = spec.get("inputs") if isinstance(spec, dict) else None
        declared: dict[str, Any] = declared_raw if isinstance(declared_raw, dict) else {}
        unexpected = sorted(set(inputs) - set(declared))
        if unexpected:
            raise _Refused(422, f"Unexpected inputs provided: {unexpected}")
        for name, decl in declared.items():
            if (decl or {}).get("required") and name not in inputs:
                raise _Refused(422, f"Required input '{name}' not provided")
        values = {str(k): str(v) for k, v in inputs.items()}
        title_template = document.get("run-name") if isinstance(document, dict) else None
        title = _render_title(title_template, values) or file.rsplit(".", 1)[0]
        now = self.fake.world.clock.now()
        with self.fake.world.lock:
            run_id = self.fake.world.next_id() * 1000 + 7  # ids beyond 32 bits, like GitHub's
            run_id += 2**32
        sha = gitrepo.resolve(repo.path, ref) or ""
        run = WorkflowRun(
            id=run_id,
            repo=repo.full_name,
            workflow=file,
            ref=ref,
            head_sha=sha,
            inputs=values,
            title=title,
            actor=token.login,
            created_at=now,
            updated_at=now,
            history=["queued"],
        )
        with self.lock:
            self.runs[run.id] = run
        self._hook(run, "requested")
        return run


_INPUT_EXPR = re.compile(r"\$\{\{\s*(?:inputs|github\.event\.inputs)\.([A-Za-z0-9_-]+)\s*\}\}")


def _render_title(template: object, inputs: dict[str, str]) -> str:
    """``run-name`` with ``${{ inputs.x }}`` filled in (the only expressions it needs)."""
    if not isinstance(template, str):
        return ""
    return _INPUT_EXPR.sub(lambda m: inputs.get(m.group(1), ""), template)


def _created_filter(value: str | None) -> str | None:
    """The ``created=>=<iso>`` query of the runs list (the only form the executor uses)."""
    if value is None or not value.startswith(">="):
        return None
    return value[2:]
