"""The ``vibe`` command line: serve, worker, check, jobs, run, action, setup, demo, context,
settings.

The subcommands that run the bot (serve, worker, check, run, action, demo) and setup import
the service, the composition root and uvicorn inside their functions, on purpose: those
take seconds to load (the agent, the model SDK, the context engine), and ``vibe --help``,
``vibe version`` and ``vibe jobs`` should answer without them. The settings, the database
and the logging set-up are imported where they are used too: ``vibe context rank``, run
cold by operators and benchmarks, needs none of them (a second of its start-up).

Every error is one line on stderr, ``vibe: ...``, never a traceback: invalid configuration
exits 2, a worker or check that finds the bot unable to run tasks exits 1, Ctrl-C exits
130 quietly.
"""

# ruff: noqa: E402 - the SIGINT handler below must be in place before the imports run

from __future__ import annotations

import signal
import sys
import threading

# Ctrl-C during the second the imports below take exits quietly (130, as main() does
# later) instead of printing a KeyboardInterrupt traceback; the handler is put back after.
_QUIET_IMPORTS = (
    threading.current_thread() is threading.main_thread()
    and signal.getsignal(signal.SIGINT) is signal.default_int_handler
)
if _QUIET_IMPORTS:
    signal.signal(signal.SIGINT, lambda _signum, _frame: sys.exit(130))

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot import __version__
from bot.core.tasks import MODELS
from bot.entrypoints.context_cli import app as context_app

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine

    from bot.settings import Settings

if _QUIET_IMPORTS:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


def _fail(*lines: str, code: int = 2) -> typer.Exit:
    """Each line on stderr as ``vibe: <line>``; the exit to raise."""
    for line in lines:
        typer.echo(f"vibe: {line}", err=True)
    return typer.Exit(code)


def _settings(**overrides: object) -> Settings:
    """The settings, or one line per invalid value and exit code 2. ``VIBE_*`` variables
    that are no setting are named first, with the nearest setting (a warning)."""
    from bot.settings import SettingsError, load_settings, misspelt_variables

    for line in misspelt_variables():
        typer.echo(f"vibe: warning: {line}", err=True)
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise _fail(*exc.lines) from None


def _writable_data_dir(settings: Settings) -> None:
    """Exit 2 with the path named when the data directory cannot be written."""
    from bot.settings import data_dir_problem

    problem = data_dir_problem(settings)
    if problem is not None:
        raise _fail(problem)


def _engine(settings: Settings) -> Engine:
    """The configured database with its schema, or a clear error: exit code 2 when it
    cannot be opened, 1 when its schema is one this version does not know."""
    from alembic.util.exc import CommandError  # alembic loads in 0.4 s: only where needed
    from sqlalchemy.exc import SQLAlchemyError

    from bot.store.engine import init_db, make_engine, schema_state

    try:
        if settings.database_url is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.effective_database_url)
        init_db(engine)
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise _fail(f"cannot open the database: {reason}; check VIBE_DATABASE_URL") from None
    except CommandError:
        raise _fail(f"database: {schema_state(engine).problem}", code=1) from None
    return engine


def _logging(settings: Settings) -> None:
    from bot.observability import configure_logging

    configure_logging(settings.log_level, json=settings.log_json, secrets=settings.secret_values)


def _announce(settings: Settings) -> Callable[[str], None]:
    """How start-up messages are told: console lines, or log events in JSON mode (where
    every line on the stream is JSON)."""
    if settings.log_json:
        import structlog

        log = structlog.get_logger(__name__)
        return lambda message: log.info("startup", message=message)
    return typer.echo


def _port_free(host: str, port: int) -> None:
    """Exit 2 when ``host:port`` cannot be bound, before any worker starts (uvicorn binds
    only after its start-up). SO_REUSEADDR as uvicorn sets it: a port whose old connections
    are in TIME_WAIT is free."""
    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise _fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses the "
            "port or pick another with --port"
        ) from None


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
    processes: Annotated[
        str,
        typer.Option(
            metavar="N",
            help="Ingest processes sharing the port; the job workers still run once, in "
            "this process.",
        ),
    ] = "1",
) -> None:
    """Run the webhook service with an in-process worker pool (embedded SQLite by default)."""
    settings = _settings()
    count = _processes(processes)
    _logging(settings)
    _writable_data_dir(settings)
    _port_free(host, port)
    import uvicorn
    from sqlalchemy.engine import make_url

    from bot.entrypoints.app import create_app
    from bot.entrypoints.ingest_process import settle_collector
    from bot.entrypoints.readiness import problems, render
    from bot.settings import SettingsError, ensure_webhook_secret
    from bot.store.engine import make_engine, schema_state

    try:
        settings, generated = ensure_webhook_secret(settings)
    except SettingsError as exc:
        raise _fail(*exc.lines) from None
    if workers is not None:
        settings = settings.model_copy(update={"workers": max(workers, 1)})
    say = _announce(settings)
    secret_file = settings.data_dir / "webhook-secret"
    if generated and settings.log_json:
        # A secret in a log line would end up in the log store: say where it is instead.
        say(
            f"Generated a webhook secret, stored in {secret_file} (mode 0600); enter it in "
            "your GitHub App or repository webhook settings"
        )
    elif generated and settings.webhook_secret is not None:
        say(
            f"Generated a webhook secret (saved in {secret_file}); enter it in your GitHub "
            f"App or repository webhook settings:\n\n    "
            f"{settings.webhook_secret.get_secret_value()}\n"
        )
    database = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    say(f"Database: {database}")
    say(f"Webhook URL: http://{host}:{port}/webhook (put a public URL in front of it)")
    engine = make_engine(settings.effective_database_url)
    from alembic.util.exc import CommandError  # alembic loads in 0.4 s: only where needed

    try:
        application = create_app(
            settings,
            engine=engine,
            run_workers=workers != 0,
            runs_jobs=workers != 0,
            # With --processes the ingest processes take the deliveries, each with a store
            # process of its own (bot/entrypoints/ingest_process.py).
            store_process=count == 1,
        )
    except CommandError:
        raise _fail(f"database: {schema_state(engine).problem}", code=1) from None
    except Exception as exc:  # noqa: BLE001 - report any start-up failure plainly
        raise _fail(f"cannot start: {type(exc).__name__}: {exc}", code=1) from None
    checks = application.state.readiness.run()
    say(
        "Checks:"
        if not problems(checks)
        else "Checks (deliveries are accepted, but tasks cannot run until the failed ones "
        "are fixed):"
    )
    for line in render(checks):
        say(line)
    if count > 1:
        say(f"Ingest processes: {count}; job workers run in this process only")
        _serve_processes(application, count, run_workers=workers != 0, host=host, port=port)
        return
    settle_collector()
    uvicorn.run(application, **_uvicorn_options(settings, host, port))


MAX_PROCESSES = 64


def _processes(value: str) -> int:
    """``--processes``: a whole number from 1 to :data:`MAX_PROCESSES`; else one line and
    exit 2. The processes share the database: PostgreSQL, or the SQLite file, whose
    writers take turns on a lock beside it (bot/store/engine.py)."""
    if not value.isdigit() or not 1 <= int(value) <= MAX_PROCESSES:
        raise _fail(
            f"--processes: expected a whole number from 1 to {MAX_PROCESSES}, not {value!r}"
        )
    return int(value)


def _serve_processes(
    application: FastAPI, count: int, *, run_workers: bool, host: str, port: int
) -> None:
    """Supervise ``count`` ingest processes on one socket (bot/entrypoints/ingest_process.py)
    while this process runs the one job worker pool."""
    import uvicorn

    settings: Settings = application.state.settings
    worker = application.state.worker
    if run_workers:
        worker.start()
    try:
        uvicorn.run(
            "bot.entrypoints.ingest_process:create",
            factory=True,
            workers=count,
            **_uvicorn_options(settings, host, port),
        )
    finally:
        if run_workers:
            worker.stop()


def _uvicorn_options(settings: Settings, host: str, port: int) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "log_level": settings.log_level.lower(),
        # uvicorn's lines go through the root logger (bot/observability.py)
        "log_config": None,
        # h11 whichever extras are installed, so its cap on a request head holds.
        "http": "h11",
        "h11_max_incomplete_event_size": 16 * 1024,
        "limit_concurrency": settings.http_max_connections,  # past it: 503
        "timeout_keep_alive": 5,
        # The peer address stays the socket's: nothing here trusts X-Forwarded-For, and a
        # forwarded address must never make a remote client look local (the dashboard).
        "proxy_headers": False,
        # uvicorn has no timeout for a request head that never completes: the fronting
        # proxy bounds it (nginx client_header_timeout, HAProxy timeout http-request).
    }


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Worker threads.", min=1, max=64)] = None,
    grace: Annotated[float, typer.Option(help="Seconds to let running jobs finish.")] = 30.0,
    port: Annotated[
        int | None,
        typer.Option(
            help="Serve /healthz and /metrics on this port (for Kubernetes probes); off "
            "by default.",
            min=0,
            max=65535,
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address of the --port listener.")] = "127.0.0.1",
) -> None:
    """Run workers alone against the configured database (any number, any machine).

    Refuses to start (exit 1, one line per problem) when a job could never run: GitHub
    credentials or the model key missing or rejected, a sandbox that cannot start, a
    database this version cannot use."""
    settings = _settings()
    _logging(settings)
    _writable_data_dir(settings)
    from bot.bootstrap import GitHubSetup, build_queue, build_worker
    from bot.entrypoints.metrics import start_worker_http
    from bot.entrypoints.readiness import Readiness, fatal, render

    engine = _engine(settings)
    setup = GitHubSetup(settings)
    say = _announce(settings)
    checks = Readiness(settings, engine, setup).run()
    say("Checks:")
    for line in render(checks):
        say(line)
    never = fatal(checks)
    if never:
        raise _fail(*never, code=1)
    pool = build_worker(
        settings, build_queue(settings, engine), concurrency=concurrency, setup=setup
    )
    stop_http: Callable[[], None] | None = None
    if port is not None:
        try:
            stop_http = start_worker_http(host, port, engine=engine, worker=pool)
        except OSError as exc:
            raise _fail(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses the "
                "port or pick another with --port"
            ) from None
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pool.start()
    say(f"worker {pool.name} running ({pool.concurrency} threads); SIGTERM stops it")
    stop.wait()
    pool.stop(grace)
    if stop_http is not None:
        stop_http()


@app.command()
def check() -> None:
    """Run every readiness check once and print it with its fix; exit 0 when tasks can
    run, 1 otherwise. Changes nothing (the database is not migrated)."""
    from sqlalchemy.exc import SQLAlchemyError

    from bot.entrypoints.readiness import Readiness, problems, render
    from bot.observability import configure_logging
    from bot.store.engine import make_engine

    settings = _settings()
    configure_logging("ERROR", json=settings.log_json, secrets=settings.secret_values)
    try:
        engine = make_engine(settings.effective_database_url)
    except (OSError, SQLAlchemyError) as exc:
        raise _fail(f"cannot open the database: {exc}; check VIBE_DATABASE_URL") from None
    checks = Readiness(settings, engine, migrated=False).run()
    engine.dispose()
    failed = problems(checks)
    typer.echo(
        "vibe-bot can run tasks."
        if not failed
        else f"vibe-bot cannot run tasks: {len(failed)} problem(s) to fix."
    )
    for line in render(checks):
        typer.echo(line)
    if failed:
        raise typer.Exit(1)


@app.command("settings")
def settings_table() -> None:
    """Print every setting as a Markdown table (docs/settings.md is this output)."""
    from bot.settings import settings_markdown

    typer.echo(settings_markdown(), nl=False)


@jobs_app.callback()
def jobs(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    limit: Annotated[int, typer.Option(help="Most recent jobs to show.", min=1)] = 50,
) -> None:
    """List jobs: id, kind, status, delivery id, attempts, last error."""
    if ctx.invoked_subcommand is not None:
        return
    from bot.jobs.queue import Queue

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
    from sqlmodel import Session

    from bot.jobs.queue import enqueue
    from bot.store.engine import write_transaction
    from bot.store.tables import Job

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
    keep: Annotated[
        bool,
        typer.Option("--keep", help="Keep the service up afterwards, until Ctrl-C."),
    ] = False,
) -> None:
    """Show the whole loop on loopback stand-ins for GitHub and the model (no credentials),
    then the task's page in the console."""
    from bot.entrypoints.demo import main as run_demo

    raise typer.Exit(run_demo(as_json, keep))


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C, or came from one: Python wraps what some hooks raise
    (a class body's ``__set_name__`` during an import becomes a RuntimeError whose cause is
    the KeyboardInterrupt)."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, KeyboardInterrupt):
            return True
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return False


def main() -> None:
    try:
        app()
    except BaseException as exc:
        if not _interrupted(exc):
            raise
        # The stack has unwound (every finally ran), but a Ctrl-C that lands while the
        # service starts can leave a thread it had just started (the delivery writer, the
        # worker pool) that nothing will stop: the interpreter would wait for it for good.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
