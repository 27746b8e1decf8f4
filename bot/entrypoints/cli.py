"""The ``vibe`` command line: serve, worker, jobs, run, action, setup, demo, context.

The subcommands that run the bot (serve, worker, run, action, demo) and setup import the
service, the composition root and uvicorn inside their functions, on purpose: those take
seconds to load (the agent, the model SDK, the context engine), and ``vibe --help``,
``vibe version`` and ``vibe jobs`` should answer without them.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from bot import __version__
from bot.core.tasks import MODELS
from bot.entrypoints.context_cli import app as context_app
from bot.jobs.queue import Queue, enqueue
from bot.observability import configure_logging
from bot.settings import Settings, SettingsError, ensure_webhook_secret, load_settings
from bot.store.engine import init_db, make_engine, write_transaction
from bot.store.tables import Job

app = typer.Typer(
    name="vibe",
    help="vibe-bot: issues in, draft pull requests out, every review a new iteration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
jobs_app = typer.Typer(help="List and probe the job queue.", invoke_without_command=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(context_app, name="context")


def _settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(f"vibe: {exc}", err=True)
        raise typer.Exit(2) from None


def _engine(settings: Settings) -> Engine:
    """The configured database with its schema, or a clear error and exit code 2."""

    try:
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.effective_database_url)
        init_db(engine)
    except (OSError, SQLAlchemyError) as exc:
        typer.echo(f"vibe: cannot open the database: {exc}", err=True)
        raise typer.Exit(2) from None
    return engine


def startup_missing(settings: Settings, wait: float = 10.0) -> list[str]:
    """What tasks still need: the settings' missing list and GitHub's findings on the
    credentials (:meth:`bot.bootstrap.GitHubSetup.check`: the key, ``GET /app`` and the App's
    permissions and events). GitHub is waited for at most ``wait`` seconds: an unreachable
    GitHub is retried with backoff and must not hold up the start."""
    from bot.bootstrap import GitHubSetup  # the composition root: see the module docstring

    found: list[list[str]] = []

    def ask() -> None:
        check = GitHubSetup(settings).check()
        found.append(list(check.findings) if check else [])

    asking = threading.Thread(target=ask, name="github-check", daemon=True)
    asking.start()
    asking.join(wait)
    if not found:
        github = [
            f"GitHub did not answer within {wait:.0f} s; the service's GET / shows what it finds"
        ]
    else:
        github = found[0]
    return settings.missing() + github


def _logging(settings: Settings) -> None:

    configure_logging(settings.log_level, json=settings.log_json, secrets=settings.secret_values)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8000,
    workers: Annotated[
        int | None, typer.Option(help="Worker threads in this process.", min=0, max=64)
    ] = None,
) -> None:
    """Run the webhook service with an in-process worker pool (embedded SQLite by default)."""
    import uvicorn

    from bot.entrypoints.app import create_app

    settings = _settings()
    _logging(settings)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"vibe: cannot create data directory {settings.data_dir}: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        settings, generated = ensure_webhook_secret(settings)
    except SettingsError as exc:
        typer.echo(f"vibe: {exc}", err=True)
        raise typer.Exit(2) from None
    if workers is not None:
        settings = settings.model_copy(update={"workers": max(workers, 1)})
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
    if generated:
        typer.echo(
            "Generated a webhook secret (saved in "
            f"{settings.data_dir / 'webhook-secret'}); enter it in your GitHub App or "
            f"repository webhook settings:\n\n    {secret}\n"
        )
    database = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    typer.echo(f"Database: {database}")
    typer.echo(f"Webhook URL: http://{host}:{port}/webhook (put a public URL in front of it)")
    missing = startup_missing(settings)
    if missing:
        typer.echo("Deliveries are accepted, but tasks cannot run until you configure:")
        for item in missing:
            typer.echo(f"  - {item}")
    try:
        application = create_app(settings, run_workers=workers != 0)
    except Exception as exc:  # noqa: BLE001 - report any start-up failure plainly
        typer.echo(f"vibe: cannot start: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    uvicorn.run(application, host=host, port=port, log_level=settings.log_level.lower())


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Worker threads.", min=1, max=64)] = None,
    grace: Annotated[float, typer.Option(help="Seconds to let running jobs finish.")] = 30.0,
) -> None:
    """Run workers alone against the configured database (any number, any machine)."""
    from bot.bootstrap import build_queue, build_worker

    settings = _settings()
    _logging(settings)
    pool = build_worker(settings, build_queue(settings, _engine(settings)), concurrency=concurrency)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pool.start()
    typer.echo(f"worker {pool.name} running ({pool.concurrency} threads); SIGTERM stops it")
    missing = startup_missing(settings)
    if missing:
        typer.echo("Tasks cannot run until you configure:")
        for item in missing:
            typer.echo(f"  - {item}")
    stop.wait()
    pool.stop(grace)


@jobs_app.callback()
def jobs(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    limit: Annotated[int, typer.Option(help="Most recent jobs to show.", min=1)] = 50,
) -> None:
    """List jobs: id, kind, status, delivery id, attempts, last error."""
    if ctx.invoked_subcommand is not None:
        return

    engine = _engine(_settings())
    rows = Queue(engine).jobs(limit)
    records = [
        {
            "id": job.id,
            "kind": job.kind,
            "status": job.status,
            "delivery": job.delivery_id,
            "attempts": job.attempts,
            "last_error": job.last_error,
            "created_at": job.created_at.isoformat(),
        }
        for job in rows
    ]
    if as_json:
        typer.echo(json.dumps(records, indent=2))
        return
    if not records:
        typer.echo("no jobs")
        return
    typer.echo(f"{'id':>6}  {'kind':<10} {'status':<8} {'attempts':>8}  {'delivery':<38} error")
    for job in rows:
        error = (job.last_error or "").partition("\n")[0][:60]
        typer.echo(
            f"{job.id:>6}  {job.kind:<10} {job.status:<8} {job.attempts:>8}  "
            f"{job.delivery_id or '-':<38} {error}"
        )


@jobs_app.command("probe")
def jobs_probe(
    seconds: Annotated[float, typer.Option(help="How long the probe job runs.", min=0)] = 0.0,
) -> None:
    """Queue a probe job to check that workers are claiming and finishing jobs."""

    settings = _settings()
    engine = _engine(settings)
    with write_transaction(engine) as conn:
        job_id = enqueue(conn, "probe", {"seconds": seconds}, max_attempts=settings.max_attempts)
    with Session(engine) as session:
        job = session.get(Job, job_id)
        status = job.status if job else "missing"
    typer.echo(f"queued probe job {job_id} ({status})")


@app.command()
def run(
    instruction: Annotated[str, typer.Argument(help="What to do, as you would write an issue.")],
    repo: Annotated[str, typer.Option("--repo", help="Path of a local git checkout.")] = ".",
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="unconstrained, conversational, plan, test or context (default: config)"
        ),
    ] = None,
) -> None:
    """Run the loop on a local checkout: a local branch, commits, feedback from the terminal."""

    chosen = next((m for m in MODELS if m == model), None)
    if model is not None and chosen is None:
        typer.echo(f"vibe: unknown model {model!r}; use one of {', '.join(MODELS)}", err=True)
        raise typer.Exit(2)
    settings = _settings()
    _logging(settings)

    from bot.entrypoints.local import LocalError, run_local

    def read() -> str | None:
        line = sys.stdin.readline()
        return line if line else None

    try:
        result = run_local(
            settings, Path(repo), instruction, model=chosen, read=read, echo=typer.echo
        )
    except LocalError as exc:
        typer.echo(f"vibe: {exc}", err=True)
        raise typer.Exit(2) from None
    if any(it.outcome == "failed" for it in result.task.iterations[-1:]):
        raise typer.Exit(1)


@app.command()
def action(
    prompt: Annotated[
        str, typer.Option(help="Instruction for a workflow_dispatch task (the action's prompt).")
    ] = "",
    task_id: Annotated[
        str, typer.Option(help="Task to claim from the service (vibe-runner.yml only).")
    ] = "",
    service_url: Annotated[
        str, typer.Option(help="The vibe-bot service that dispatched the task.")
    ] = "",
) -> None:
    """Run inside a GitHub Actions job: handle the job's event (or a claimed task)."""
    from bot.entrypoints.action import main as action_main

    raise typer.Exit(action_main(prompt=prompt, task_id=task_id, service_url=service_url))


@app.command()
def setup(
    org: Annotated[
        str | None, typer.Option("--org", help="Register the App for this organisation.")
    ] = None,
    github_url: Annotated[
        str | None,
        typer.Option(
            "--github-url",
            help="GitHub's web address: https://github.com or https://HOST (Enterprise Server).",
        ),
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url", help="The REST API's address (default: derived from --github-url)."
        ),
    ] = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url",
            help="The public URL GitHub posts deliveries to (default: VIBE_PUBLIC_URL/webhook).",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="The App's name.")] = None,
    executor: Annotated[
        str,
        typer.Option(
            "--executor", help="local, or actions (adds Actions: write and workflow_run)."
        ),
    ] = "local",
    allow_workflow_changes: Annotated[
        bool,
        typer.Option(
            "--allow-workflow-changes", help="Ask for Workflows: write (.github/workflows)."
        ),
    ] = False,
    port: Annotated[
        int, typer.Option(help="Port of the local setup page (0: any free one).", min=0, max=65535)
    ] = 0,
) -> None:
    """Register the GitHub App through GitHub's manifest flow and store its credentials."""
    from bot.entrypoints.setup import SetupError, next_steps, options, run_setup

    settings = _settings()
    if webhook_url is None and settings.public_url:
        webhook_url = settings.public_url.rstrip("/") + "/webhook"
    if github_url is None:
        github_url = settings.github_server_url
        api_url = api_url or settings.github_api_url
    try:
        opts = options(
            github_url=github_url,
            api_url=api_url,
            org=org,
            name=name,
            webhook_url=webhook_url,
            executor=executor,
            allow_workflow_changes=allow_workflow_changes,
            data_dir=settings.data_dir,
        )
        registered = run_setup(
            opts,
            port=port,
            announce=lambda url: typer.echo(
                f"Open {url} in a browser signed in to {opts.web_url} and press the button."
            ),
        )
    except SetupError as exc:
        typer.echo(f"vibe: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(next_steps(opts, registered))
    # Settings from the environment win over the stored App: say which ones would hide it.
    hiding = sorted(
        f"VIBE_{name.upper()}"
        for name in settings.model_fields_set
        & {"github_app_id", "github_private_key", "github_private_key_path", "github_token"}
    )
    if settings.webhook_secret is not None:
        hiding.append("VIBE_WEBHOOK_SECRET")
    if hiding:
        typer.echo(f"Unset {', '.join(hiding)}: they take precedence over the stored App.")


@app.command()
def demo(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a machine-readable timeline instead.")
    ] = False,
) -> None:
    """Show the whole loop on loopback stand-ins for GitHub and the model (no credentials)."""
    from bot.entrypoints.demo import main as run_demo

    raise typer.Exit(run_demo(as_json))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
