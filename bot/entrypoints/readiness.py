"""Ready means able (DESIGN.md section 5): one list of checks that run the real thing.

``vibe serve`` prints them at start, ``vibe worker`` prints them and refuses to start when a
job could never run, ``vibe check`` prints them with their fixes, and ``GET /`` and
``GET /readyz`` answer from them. Each check is ``ok``, ``failed`` (each line says what is
wrong and how to fix it) or ``not checked`` (it could not be asked, or depends on a setting
that is missing; that alone never makes the service unready).

- settings: what :meth:`Settings.missing` says is still needed;
- GitHub: what GitHub says of the credentials (:meth:`GitHubSetup.check`, itself reused for
  a minute);
- sandbox: a real sandboxed command with the configured limits and network mode
  (:func:`check_sandbox`);
- database: reachable, its schema at the latest migration, and writable (a row that needs
  new pages, written and rolled back: a full or read-only database refuses it);
- data directory: a file really created and deleted in it, and free bytes and inodes above
  ``VIBE_MIN_FREE_BYTES`` and ``VIBE_MIN_FREE_INODES`` (a full disk fails the next task);
- model key: one cheap authenticated call (``GET /v1/models?limit=1``,
  https://docs.anthropic.com/en/api/models-list); a 401 means the key is rejected, an
  unreachable API leaves it not checked.

The sandbox and the model key are asked at most once a minute (:data:`CACHE_SECONDS`), so
``/readyz`` stays cheap; every slow check is bounded by ``wait`` seconds.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import insert

from bot.bootstrap import GitHubSetup
from bot.ingest.store_process import StoreProcess
from bot.sandbox.bwrap import check_sandbox
from bot.settings import Settings, data_dir_problem
from bot.store.engine import schema_state, write_transaction
from bot.store.tables import Delivery

if TYPE_CHECKING:
    import anthropic

Status = Literal["ok", "failed", "not checked"]
CACHE_SECONDS = 60.0
MODEL_KEY_TIMEOUT = 10.0
SETTINGS = "settings"


@dataclass(frozen=True)
class Check:
    """One check's finding. ``lines``: what was found; for a failure, each problem with
    its fix. ``lasting``: a failure that stays until the operator changes something (a
    worker that meets one at start can never run a job)."""

    name: str
    status: Status
    lines: tuple[str, ...]
    lasting: bool = True

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "status": self.status, "details": list(self.lines)}


def problems(checks: list[Check]) -> list[str]:
    """One line per problem of the failed checks: empty when tasks can run."""
    return [line for c in checks if c.failed for line in c.lines]


def unready(checks: list[Check]) -> list[str]:
    """Why the service is not ready: what is configured and does not work. Settings that
    are still missing leave it ready: deliveries are taken and stored until they are
    configured (``GET /`` lists them)."""
    return problems([c for c in checks if c.name != SETTINGS])


def fatal(checks: list[Check]) -> list[str]:
    """The problems that last until the operator changes something: a worker that has
    one can never run a job."""
    return problems([c for c in checks if c.lasting])


def render(checks: list[Check]) -> list[str]:
    """The console form: one line per finding, its check's status in front."""
    out: list[str] = []
    for c in checks:
        for i, line in enumerate(c.lines or ("",)):
            status = c.status if i == 0 else ""
            out.append(f"  {status:<12} {c.name + ':' if i == 0 else '':<16} {line}".rstrip())
    return out


def _size(count: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if count < 1024:
            return f"{count:.0f} bytes" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} EiB"


def _data_directory(settings: Settings) -> Check:
    problem = data_dir_problem(settings)
    if problem is not None:
        return Check("data directory", "failed", (problem,))
    path = settings.data_dir
    # What an unprivileged writer may still use (f_bavail, f_favail): the root-reserved
    # blocks do not help the bot. A file system without an inode limit reports 0 files.
    st = os.statvfs(path)
    free, inodes = st.f_bavail * st.f_frsize, st.f_favail
    low: list[str] = []
    if free < settings.min_free_bytes:
        low.append(
            f"{path} has {_size(free)} free, below VIBE_MIN_FREE_BYTES "
            f"({_size(settings.min_free_bytes)})"
        )
    if st.f_files and inodes < settings.min_free_inodes:
        low.append(
            f"{path} has {inodes} free inodes, below VIBE_MIN_FREE_INODES "
            f"({settings.min_free_inodes})"
        )
    if low:
        # Freeing space fixes it without a restart: not lasting.
        fix = "free space there (old workspaces, logs) or move VIBE_DATA_DIR to a larger disk"
        return Check("data directory", "failed", (f"{'; '.join(low)}: {fix}",), lasting=False)
    return Check(
        "data directory", "ok", (f"{path} is writable, {_size(free)} and {inodes} inodes free",)
    )


# Larger than a page of either database (SQLite 4 KiB, PostgreSQL 8 KiB) and incompressible,
# so the probe needs new pages: a database at its size limit or on a full disk refuses it.
WRITE_PROBE_BYTES = 16 * 1024


def _write_problem(engine: Engine) -> str | None:
    """Why the database refuses a write, or None. The probe row is a delivery that is
    rolled back, so nothing of it stays (and no sequence number is spent)."""
    probe = {
        "id": f"vibe-readiness-{secrets.token_hex(8)}",
        "event": "readiness",
        "outcome": "probe",
        "detail": secrets.token_hex(WRITE_PROBE_BYTES // 2),
        "payload": {},
    }
    try:
        with write_transaction(engine) as conn:
            conn.execute(insert(Delivery).values(**probe))
            conn.rollback()
    except SQLAlchemyError as exc:
        return str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return None


def _database(settings: Settings, engine: Engine, migrated: bool) -> Check:
    shown = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    try:
        state = schema_state(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc)
        return Check(
            "database",
            "failed",
            (f"{shown} is unreachable: {reason.splitlines()[0]}; check VIBE_DATABASE_URL",),
            lasting=False,
        )
    problem = state.problem
    if problem is None:
        refused = _write_problem(engine)
        if refused is not None:
            return Check(
                "database",
                "failed",
                (
                    f"{shown} refuses writes: {refused}; free space on the database's disk "
                    "or make it writable",
                ),
                lasting=False,
            )
        return Check("database", "ok", (f"{shown} at the latest migration and writable",))
    if not state.known:
        fix = "run the vibe-bot version that migrated it, or a newer one"
    elif migrated:
        fix = "restart `vibe serve` or `vibe worker`: they migrate the database at start"
    else:
        return Check("database", "ok", (f"{shown}: {problem}; `vibe serve` upgrades it at start",))
    return Check("database", "failed", (f"{shown}: {problem}: {fix}",))


def _github(setup: GitHubSetup) -> Check:
    check = setup.check()
    if check is None:
        return Check("GitHub", "not checked", ("no credentials (see settings)",))
    if not check.ok:
        # GitHub may answer differently in a minute (unreachable, a permission granted).
        return Check("GitHub", "failed", check.findings, lasting=False)
    return Check("GitHub", "ok", (f"{check.kind} {check.login}: credentials and permissions",))


def _sandbox(settings: Settings) -> Check:
    if settings.sandbox == "bwrap" and shutil.which("bwrap") is None:
        return Check("sandbox", "not checked", ("bubblewrap is not installed (see settings)",))
    found = check_sandbox(settings)
    if found.ok:
        return Check("sandbox", "ok", (found.detail,))
    return Check(
        "sandbox", "failed", (f"the sandbox cannot start: {found.detail}. Fix: {found.fix}",)
    )


def _model_key(settings: Settings) -> Check:
    if settings.anthropic_api_key is None:
        return Check("model key", "not checked", ("no key (see settings)",))
    # The SDK (about three seconds of imports) loads only when there is a key to check.
    import anthropic

    from bot.agent.client import make_client

    base = settings.anthropic_base_url or "https://api.anthropic.com"
    client = make_client(settings).with_options(max_retries=0, timeout=MODEL_KEY_TIMEOUT)
    try:
        client.models.list(limit=1)
    except anthropic.AuthenticationError as exc:
        return Check(
            "model key",
            "failed",
            (
                f"VIBE_ANTHROPIC_API_KEY was rejected by {base} (401: {_message(exc)}): set a "
                "valid key (https://console.anthropic.com/settings/keys)",
            ),
        )
    except anthropic.PermissionDeniedError as exc:
        return Check(
            "model key",
            "failed",
            (f"VIBE_ANTHROPIC_API_KEY may not use {base} (403: {_message(exc)}): check the key",),
        )
    except anthropic.APIStatusError as exc:
        why = f"{base} answered {exc.status_code}: {_message(exc)}"
        return Check("model key", "not checked", (why,))
    except anthropic.APIConnectionError as exc:
        why = f"cannot reach {base}: {exc.__cause__ or exc}"
        return Check("model key", "not checked", (why,))
    finally:
        client.close()
    return Check("model key", "ok", (f"accepted by {base}",))


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message


class _Cached:
    """A check's finding reused for ``seconds``."""

    def __init__(self, run: Callable[[], Check], seconds: float) -> None:
        self._run = run
        self._seconds = seconds
        self._lock = threading.Lock()
        self._found: tuple[float, Check] | None = None

    def __call__(self) -> Check:
        with self._lock:
            now = time.monotonic()
            if self._found is None or now - self._found[0] >= self._seconds:
                self._found = (now, self._run())
            return self._found[1]


def _bounded(name: str, run: Callable[[], Check], wait: float) -> Callable[[], Check]:
    """``run`` in a thread of its own; "not checked" when it takes longer than ``wait``."""
    found: list[Check] = []
    thread = threading.Thread(target=lambda: found.append(run()), name=f"check-{name}", daemon=True)
    thread.start()

    def result() -> Check:
        thread.join(wait)
        if found:
            return found[0]
        return Check(name, "not checked", (f"no answer within {wait:g} s",), lasting=False)

    return result


class _Single:
    """``run`` in a thread of its own, one at a time: while one is still waiting (a frozen
    database never answers) no second is started, and each caller waits at most ``wait``
    seconds for it; ``late(seconds)`` is the finding of a check without an answer."""

    def __init__(self, name: str, run: Callable[[], Check], late: Callable[[float], Check]) -> None:
        self._name = name
        self._run = run
        self._late = late
        self._lock = threading.Lock()
        self._running: tuple[threading.Thread, list[Check], float] | None = None

    def start(self) -> Callable[[float], Check]:
        """Start the check unless one is running; the result: its finding, waiting at most
        the seconds given."""
        with self._lock:
            if self._running is None or not self._running[0].is_alive():
                found: list[Check] = []
                thread = threading.Thread(
                    target=lambda: found.append(self._run()),
                    name=f"check-{self._name}",
                    daemon=True,
                )
                thread.start()
                self._running = (thread, found, time.monotonic())
            thread, found, started = self._running

        def result(wait: float) -> Check:
            thread.join(wait)
            return found[0] if found else self._late(time.monotonic() - started)

        return result


def _delivery_store(store: StoreProcess) -> Check:
    """The process that reads and stores the deliveries runs (bot/ingest/store_process.py).
    A store that ended is started again at once: not a lasting failure."""
    if store.alive:
        return Check(
            "delivery store", "ok", (f"a process of its own (pid {store.pid}) takes deliveries",)
        )
    return Check(
        "delivery store",
        "failed",
        ("its process is not running: deliveries are answered 503 until it is started again",),
        lasting=False,
    )


class Readiness:
    """The checks of one process. ``migrated``: this process brought the database to the
    latest migration at start (serve, worker), so a schema behind it is a failure; for
    ``vibe check`` it is what the next start will do. ``runs_jobs``: False for a process
    that runs no jobs, whose sandbox is not checked. ``store``: the process that reads and
    stores this process's deliveries, when it has one (``vibe serve``); a check of its own
    says whether it runs."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        setup: GitHubSetup | None = None,
        *,
        migrated: bool = True,
        wait: float = 10.0,
        runs_jobs: bool = True,
        store: StoreProcess | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.setup = setup or GitHubSetup(settings)
        self.migrated = migrated
        self.wait = wait
        # A web process that runs no jobs (``vibe serve --workers 0``) runs no command: its
        # readiness must not hang on a sandbox it never uses (the Kubernetes web pod has no
        # capabilities for one); the workers check their own.
        self._sandbox = (
            _Cached(lambda: _sandbox(settings), CACHE_SECONDS)
            if runs_jobs
            else lambda: Check(
                "sandbox", "not checked", ("this process runs no jobs (--workers 0)",)
            )
        )
        self._model_key = _Cached(lambda: _model_key(settings), CACHE_SECONDS)
        shown = make_url(settings.effective_database_url).render_as_string(hide_password=True)
        # A frozen database (it accepts and never answers) must not hang /readyz.
        self._database = _Single(
            "database",
            lambda: _database(settings, engine, migrated),
            lambda seconds: Check(
                "database",
                "failed",
                (
                    f"{shown} has not answered for {seconds:.0f} s: check that the database "
                    "server is running and not overloaded",
                ),
                lasting=False,
            ),
        )

    def run(self) -> list[Check]:
        """Every check, in a fixed order; the slow ones run at once, each bounded."""
        github = _bounded("GitHub", lambda: _github(self.setup), self.wait)
        sandbox = _bounded("sandbox", self._sandbox, self.wait)
        model_key = _bounded("model key", self._model_key, self.wait)
        # The data directory before the database starts: SQLite's file lives in it, and the
        # check creates it when missing.
        data_directory = _data_directory(self.settings)
        database = self._database.start()
        missing = self.settings.missing()
        checks = [
            Check(SETTINGS, "failed", tuple(missing))
            if missing
            else Check(SETTINGS, "ok", ("nothing missing",)),
            github(),
            sandbox(),
            data_directory,
            database(self.settings.database_wait_seconds),
            model_key(),
        ]
        if self.store is not None:
            checks.append(_delivery_store(self.store))
        return checks
