"""``vibe setup``: register the GitHub App through GitHub's manifest flow.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest

A page on 127.0.0.1 (a random port) holds a form that POSTs the manifest (built by
:mod:`bot.github.manifest`) to ``https://HOST/settings/apps/new`` or the organisation's
``https://HOST/organizations/ORG/settings/apps/new`` with a random ``state``. GitHub creates
the App and sends the browser back to the page's ``/callback`` with a one-time ``code`` and
the same ``state`` (anything else is refused: it did not come from our form). The code is
traded for the App's id, slug, private key, webhook secret and client secret, which are
stored in the data directory, each file mode 0600, where :func:`bot.settings.load_settings`
finds them.
"""

from __future__ import annotations

import hmac
import html
import json
import os
import re
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from bot.entrypoints.dashboard import is_local_request
from bot.github.manifest import (
    ConversionError,
    Executor,
    RegisteredApp,
    build_manifest,
    convert_code,
)
from bot.settings import STORED_APP_FILE, STORED_APP_KEY_FILE

WEBHOOK_SECRET_FILE = "webhook-secret"  # noqa: S105 - a file name: what ensure_webhook_secret reads
# A GitHub login: letters, digits and single hyphens inside, at most 39 characters.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
MAX_NAME = 34  # GitHub's limit for an App's name


class SetupError(Exception):
    """``vibe setup`` cannot go on; the message is one line that says why."""


@dataclass(frozen=True)
class SetupOptions:
    web_url: str  # https://github.com or https://HOST (GitHub Enterprise Server)
    api_url: str  # https://api.github.com or https://HOST/api/v3
    org: str | None
    name: str
    webhook_url: str
    executor: Executor
    allow_workflow_changes: bool
    data_dir: Path

    def new_app_url(self, state: str) -> str:
        where = f"/organizations/{self.org}" if self.org else ""
        return f"{self.web_url}{where}/settings/apps/new?" + urllib.parse.urlencode(
            {"state": state}
        )


def _base_url(value: str, what: str) -> str:
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SetupError(f"{what} must be an http(s) URL such as https://github.com, got {value!r}")
    return value.strip().rstrip("/")


def options(
    *,
    github_url: str,
    api_url: str | None,
    org: str | None,
    name: str | None,
    webhook_url: str | None,
    executor: str,
    allow_workflow_changes: bool,
    data_dir: Path,
) -> SetupOptions:
    """Check the command line; every problem is a :class:`SetupError`."""
    web = _base_url(github_url, "--github-url")
    if urllib.parse.urlsplit(web).path not in ("", "/"):
        raise SetupError(f"--github-url is the server's address without a path, got {web!r}")
    host = urllib.parse.urlsplit(web).hostname
    # github.com serves its API on api.github.com; GitHub Enterprise Server under /api/v3
    # (https://docs.github.com/en/enterprise-server@latest/rest/quickstart).
    api = (
        _base_url(api_url, "--api-url")
        if api_url
        else ("https://api.github.com" if host == "github.com" else f"{web}/api/v3")
    )
    if org is not None and not _LOGIN.fullmatch(org):
        raise SetupError(
            f"--org must be an organisation's login (letters, digits, single hyphens), got {org!r}"
        )
    if executor not in ("local", "actions"):
        raise SetupError(f"--executor must be local or actions, got {executor!r}")
    if webhook_url is None:
        raise SetupError(
            "--webhook-url is needed: the public URL GitHub posts deliveries to, such as "
            "https://vibe.example.org/webhook (or set VIBE_PUBLIC_URL)"
        )
    hook = _base_url(webhook_url, "--webhook-url")
    # App names are unique across GitHub: the default carries the organisation or a nonce.
    chosen = name if name is not None else f"vibe-bot-{org or secrets.token_hex(3)}"[:MAX_NAME]
    if not chosen.strip() or len(chosen) > MAX_NAME:
        raise SetupError(f"--name must be 1 to {MAX_NAME} characters, got {chosen!r}")
    return SetupOptions(
        web_url=web,
        api_url=api,
        org=org,
        name=chosen,
        webhook_url=hook,
        executor="actions" if executor == "actions" else "local",
        allow_workflow_changes=allow_workflow_changes,
        data_dir=data_dir,
    )


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, replacing it whole."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)


def store(opts: SetupOptions, app: RegisteredApp) -> list[Path]:
    """Keep the App's registration, private key and webhook secret in the data directory."""
    opts.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = {
        "id": app.id,
        "slug": app.slug,
        "name": app.name,
        "owner": app.owner,
        "html_url": app.html_url,
        "client_id": app.client_id,
        "client_secret": app.client_secret,
        "web_url": opts.web_url,
        "api_url": opts.api_url,
        "permissions": app.permissions,
        "events": app.events,
    }
    paths = [
        opts.data_dir / STORED_APP_KEY_FILE,
        opts.data_dir / WEBHOOK_SECRET_FILE,
        opts.data_dir / STORED_APP_FILE,
    ]
    # The registration goes last: settings use the App only once it is there.
    _write_private(paths[0], app.pem)
    _write_private(paths[1], app.webhook_secret + "\n")
    _write_private(paths[2], json.dumps(record, indent=2) + "\n")
    return paths


def next_steps(opts: SetupOptions, app: RegisteredApp) -> str:
    env = f"VIBE_DATA_DIR={opts.data_dir}"
    if opts.executor == "actions":
        origin = opts.webhook_url.rsplit("/webhook", 1)[0]
        env += f" VIBE_EXECUTOR=actions VIBE_PUBLIC_URL={origin}"
    return "\n".join(
        [
            f"Registered the GitHub App {app.name!r} (id {app.id}, owner {app.owner}).",
            f"Stored in {opts.data_dir} (mode 0600): {STORED_APP_FILE}, "
            f"{STORED_APP_KEY_FILE}, {WEBHOOK_SECRET_FILE}.",
            "",
            "Next:",
            f"  1. Install the App on the repositories it may work on: {app.install_url}",
            f"  2. Make {opts.webhook_url} reach `vibe serve` (a reverse proxy or tunnel to "
            "http://127.0.0.1:8000/webhook); change it later under the App's settings, "
            "Webhook URL.",
            "  3. Start the bot; it reads the App from the data directory:",
            f"       {env} VIBE_ANTHROPIC_API_KEY=... vibe serve",
        ]
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vibe-bot setup</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Register the vibe-bot GitHub App</h1>
<p>{where}. GitHub asks you to confirm the name, then sends you back here.</p>
<form method="post" action="{action}">
<input type="hidden" name="manifest" value="{manifest}">
<button type="submit">Create the GitHub App on {host}</button>
</form>
<details><summary>The manifest</summary><pre>{pretty}</pre></details>
</body></html>
"""


_NOT_LOCAL = (
    "<p>This setup page answers only its own machine: open the 127.0.0.1 address "
    "<code>vibe setup</code> printed.</p>"
)


@dataclass
class _Outcome:
    app: RegisteredApp | None = None
    error: SetupError | None = None


def setup_app(
    opts: SetupOptions, redirect_url: str, state: str, done: Callable[[_Outcome], None]
) -> FastAPI:
    """The local page: the form at ``/``, GitHub's redirect at ``/callback``."""
    manifest = build_manifest(
        name=opts.name,
        url=urllib.parse.urlsplit(opts.webhook_url)._replace(path="").geturl(),
        webhook_url=opts.webhook_url,
        redirect_url=redirect_url,
        executor=opts.executor,
        allow_workflow_changes=opts.allow_workflow_changes,
    )
    page = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    finished = threading.Lock()

    @page.get("/")
    def form(request: Request) -> HTMLResponse:
        # A page whose name a hostile site rebinds to 127.0.0.1 would read the state from
        # the form and then hand our callback its own App's code: serve the bot's machine
        # only, by the request as it arrived (the dashboard's rule).
        if not is_local_request(request):
            return HTMLResponse(_NOT_LOCAL, 403)
        where = f"for the organisation {opts.org}" if opts.org else "for your own account"
        return HTMLResponse(
            _PAGE.format(
                where=html.escape(f"The App will be registered {where} on {opts.web_url}"),
                action=html.escape(opts.new_app_url(state)),
                manifest=html.escape(json.dumps(manifest)),
                host=html.escape(urllib.parse.urlsplit(opts.web_url).netloc),
                pretty=html.escape(json.dumps(manifest, indent=2)),
            )
        )

    @page.get("/callback")
    def callback(request: Request) -> HTMLResponse:
        if not is_local_request(request):
            return HTMLResponse(_NOT_LOCAL, 403)
        if not finished.acquire(blocking=False):
            return HTMLResponse("<p>This setup has finished; run vibe setup again.</p>", 410)
        outcome = _Outcome()
        given = request.query_params.get("state", "")
        code = request.query_params.get("code", "")
        # The state proves the redirect answers our own form (a forged one carries none).
        if not hmac.compare_digest(given.encode(), state.encode()):
            outcome.error = SetupError(
                "the redirect to the setup page carried a wrong state; nothing was stored "
                "(run vibe setup again)"
            )
        elif not code:
            outcome.error = SetupError("GitHub's redirect carried no code; nothing was stored")
        else:
            try:
                outcome.app = convert_code(opts.api_url, code)
                store(opts, outcome.app)
            except ConversionError as exc:
                outcome.error = SetupError(f"{exc}; nothing was stored (run vibe setup again)")
            except OSError as exc:
                outcome.error = SetupError(f"cannot store the App in {opts.data_dir}: {exc}")
        done(outcome)
        if outcome.error is not None:
            return HTMLResponse(
                f"<h1>Setup failed</h1><p>{html.escape(str(outcome.error))}</p>", 400
            )
        assert outcome.app is not None
        steps = html.escape(next_steps(opts, outcome.app))
        return HTMLResponse(f"<h1>The App is registered</h1><pre>{steps}</pre>")

    return page


def run_setup(
    opts: SetupOptions,
    *,
    port: int = 0,
    announce: Callable[[str], None],
    timeout: float | None = None,
) -> RegisteredApp:
    """Serve the page until GitHub's redirect arrives; the registered App, or SetupError.

    ``announce`` gets the page's URL once it listens."""
    if (opts.data_dir / STORED_APP_FILE).exists():
        raise SetupError(
            f"an App is already stored in {opts.data_dir / STORED_APP_FILE}; move it away or "
            "set VIBE_DATA_DIR to another directory"
        )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise SetupError(f"cannot listen on 127.0.0.1:{port}: {exc}") from None
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = _Outcome()
    arrived = threading.Event()

    def done(outcome: _Outcome) -> None:
        result.app, result.error = outcome.app, outcome.error
        arrived.set()

    state = secrets.token_urlsafe(24)
    page = setup_app(opts, f"{base}/callback", state, done)
    server = uvicorn.Server(
        uvicorn.Config(
            page,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="vibe-setup", daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise SetupError(f"the setup page on {base} did not start")
            threading.Event().wait(0.01)
        announce(base + "/")
        if not arrived.wait(timeout):
            raise SetupError("no answer from GitHub in time; nothing was stored")
    finally:
        # Let the page's last answer reach the browser before the server stops.
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    if result.error is not None:
        raise result.error
    assert result.app is not None
    return result.app
