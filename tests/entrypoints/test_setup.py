"""``vibe setup`` against the fake GitHub: the local page's form registers the App through
the manifest flow, the credentials land in the data directory (mode 0600) and the settings
of ``vibe serve`` pick them up; a wrong state, a used code and bad input end with one line
and exit code 2.

The browser is played by httpx: it reads the page's form, posts it to the fake and follows
GitHub's redirect back to the page.
"""

from __future__ import annotations

import html
import json
import os
import re
import socket
import stat
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from typer.testing import CliRunner

from bot.entrypoints.cli import app as cli
from bot.entrypoints.setup import options
from bot.github.manifest import build_manifest
from bot.settings import Settings, ensure_webhook_secret, load_settings
from bot.testing.fake_github import FakeGitHub

WEBHOOK = "https://vibe.example.org/webhook"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No VIBE_* settings but a fresh data directory."""
    for name in list(os.environ):
        if name.startswith("VIBE_") and not name.startswith("VIBE_TEST"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("VIBE_DATA_DIR", str(data))
    return data


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        yield gh


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Setup:
    """``vibe setup`` running in a thread, as a person would start it."""

    def __init__(self, *args: str) -> None:
        self.port = _free_port()
        self.page = f"http://127.0.0.1:{self.port}/"
        self.exit_code: int | None = None
        self.output = ""
        self._thread = threading.Thread(target=self._run, args=args, daemon=True)
        self._thread.start()
        for _ in range(500):
            try:
                httpx.get(self.page, timeout=1)
                return
            except httpx.TransportError:
                threading.Event().wait(0.02)
        raise AssertionError(f"the setup page did not start: {self.finish()}")

    def _run(self, *args: str) -> None:
        result = CliRunner().invoke(cli, ["setup", "--port", str(self.port), *args])
        self.exit_code, self.output = result.exit_code, result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.output += f"\nEXCEPTION {result.exception!r}"

    def finish(self) -> str:
        self._thread.join(timeout=30)
        return self.output

    def form(self) -> tuple[str, dict[str, object]]:
        """The form's target and its manifest, as a browser reads them."""
        page = httpx.get(self.page).text
        action = re.search(r'<form method="post" action="([^"]+)"', page)
        manifest = re.search(r'name="manifest" value="([^"]+)"', page)
        assert action is not None
        assert manifest is not None
        return html.unescape(action.group(1)), json.loads(html.unescape(manifest.group(1)))

    def submit(self) -> httpx.Response:
        """Press the button: post to GitHub and follow its redirect back to the page."""
        action, manifest = self.form()
        answer = httpx.post(action, data={"manifest": json.dumps(manifest)})
        assert answer.status_code == 302, answer.text
        return httpx.get(answer.headers["location"])


def _on(fake: FakeGitHub) -> list[str]:
    return ["--github-url", fake.base_url, "--api-url", fake.api_url, "--webhook-url", WEBHOOK]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_setup_registers_the_app_and_serve_picks_it_up(env: Path, fake: FakeGitHub) -> None:
    fake.manifests.login = "alice"
    setup = Setup(*_on(fake))
    action, manifest = setup.form()
    assert action.startswith(f"{fake.base_url}/settings/apps/new?state=")
    callback = setup.submit()
    assert callback.status_code == 200
    output = setup.finish()
    assert setup.exit_code == 0, output

    # the App GitHub holds has exactly the manifest's permissions and events
    gh_app = fake.world.app
    assert gh_app is not None
    assert gh_app.owner == "alice"
    assert gh_app.permissions == manifest["default_permissions"]
    assert list(gh_app.events) == manifest["default_events"]
    assert manifest == build_manifest(
        name=str(manifest["name"]),
        url="https://vibe.example.org",
        webhook_url=WEBHOOK,
        redirect_url=f"{setup.page}callback",
    )

    stored = json.loads((env / "github-app.json").read_text())
    assert stored["id"] == gh_app.id
    assert stored["slug"] == gh_app.slug
    assert stored["client_id"]
    assert stored["client_secret"]
    assert stored["api_url"] == fake.api_url
    for name in ("github-app.json", "github-app.pem", "webhook-secret"):
        assert _mode(env / name) == 0o600, name
    assert (env / "webhook-secret").read_text().strip() == fake.webhook_secret
    assert fake.webhook_url == WEBHOOK

    assert f"{fake.base_url}/apps/{gh_app.slug}/installations/new" in output
    assert WEBHOOK in output
    assert f"VIBE_DATA_DIR={env}" in output

    settings = load_settings()
    assert settings.has_github_credentials
    assert settings.github_app_id == gh_app.id
    assert settings.github_api_url == fake.api_url
    assert settings.private_key() == (env / "github-app.pem").read_text()
    settings, generated = ensure_webhook_secret(settings)
    assert not generated
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get_secret_value() == fake.webhook_secret
    # the stored key signs JWTs the fake accepts
    app_answer = httpx.get(f"{fake.api_url}/app", headers=_jwt_header(settings))
    assert app_answer.json()["slug"] == gh_app.slug


def _jwt_header(settings: Settings) -> dict[str, str]:
    now = int(time.time())
    claims = {"iat": now - 30, "exp": now + 300, "iss": str(settings.github_app_id)}
    token = jwt.encode(claims, settings.private_key() or "", algorithm="RS256")
    return {"Authorization": f"Bearer {token}"}


def test_setup_for_an_organisation_with_the_actions_executor(
    env: Path, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.add_user("acme", org=True)
    monkeypatch.setenv("VIBE_WEBHOOK_SECRET", "an-old-secret-of-a-repository-hook")
    setup = Setup(
        "--github-url",
        fake.base_url,
        "--api-url",
        fake.api_url,
        "--webhook-url",
        WEBHOOK,
        "--org",
        "acme",
        "--executor",
        "actions",
        "--allow-workflow-changes",
        "--name",
        "Acme Vibes",
    )
    action, _ = setup.form()
    assert action.startswith(f"{fake.base_url}/organizations/acme/settings/apps/new?state=")
    setup.submit()
    output = setup.finish()
    assert setup.exit_code == 0, output
    gh_app = fake.world.app
    assert gh_app is not None
    assert gh_app.owner == "acme"
    assert gh_app.slug == "acme-vibes"
    assert gh_app.permissions["actions"] == "write"
    assert gh_app.permissions["workflows"] == "write"
    assert "workflow_run" in gh_app.events
    assert "VIBE_EXECUTOR=actions VIBE_PUBLIC_URL=https://vibe.example.org" in output
    assert "Unset VIBE_WEBHOOK_SECRET: they take precedence over the stored App." in output


def test_a_wrong_or_missing_state_is_refused(env: Path, fake: FakeGitHub) -> None:
    for state in ("forged", None):
        setup = Setup(*_on(fake))
        action, manifest = setup.form()
        answer = httpx.post(action, data={"manifest": json.dumps(manifest)})
        target = urllib.parse.urlsplit(answer.headers["location"])
        query = dict(urllib.parse.parse_qsl(target.query))
        if state is None:
            query.pop("state")
        else:
            query["state"] = state
        page = httpx.get(target._replace(query=urllib.parse.urlencode(query)).geturl())
        assert page.status_code == 400
        output = setup.finish()
        assert setup.exit_code == 2, output
        assert output.strip().splitlines()[-1] == (
            "vibe: the redirect to the setup page carried a wrong state; nothing was stored "
            "(run vibe setup again)"
        )
        assert "Traceback" not in output
        assert not env.exists() or list(env.iterdir()) == []
        # the code was never traded: GitHub still holds it, unused
        assert len(fake.manifests.pending) == 1
        fake.manifests.pending.clear()


def test_a_rebound_name_cannot_read_the_form_or_call_back(env: Path, fake: FakeGitHub) -> None:
    # DNS rebinding: a hostile site's name now resolves to 127.0.0.1, so the browser sends
    # its requests to the setup page with the site's own Host header.
    setup = Setup(*_on(fake))
    rebound = {"Host": f"evil.example:{setup.port}"}
    page = httpx.get(setup.page, headers=rebound)
    assert page.status_code == 403
    assert "state=" not in page.text
    assert "127.0.0.1" in page.text  # where to open it instead
    forwarded = httpx.get(setup.page, headers={"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403
    called = httpx.get(f"{setup.page}callback?code=theirs&state=guess", headers=rebound)
    assert called.status_code == 403
    # the page still serves its own machine, and the setup completes
    assert setup.submit().status_code == 200
    output = setup.finish()
    assert setup.exit_code == 0, output


def test_a_used_code_is_refused(env: Path, fake: FakeGitHub) -> None:
    first = Setup(*_on(fake))
    action, manifest = first.form()
    answer = httpx.post(action, data={"manifest": json.dumps(manifest)})
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(answer.headers["location"]).query))
    assert httpx.get(answer.headers["location"]).status_code == 200
    assert first.finish()
    assert first.exit_code == 0

    (env / "github-app.json").rename(env / "first-app.json")
    second = Setup(*_on(fake))
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(second.form()[0]).query)["state"][0]
    page = httpx.get(f"{second.page}callback", params={"code": code["code"], "state": state})
    assert page.status_code == 400
    output = second.finish()
    assert second.exit_code == 2
    last = output.strip().splitlines()[-1]
    assert last.startswith("vibe: GitHub refused the code: HTTP 404 Not Found")
    assert "Traceback" not in output
    assert not (env / "github-app.json").exists()


def test_an_app_already_stored_is_kept(env: Path) -> None:
    env.mkdir()
    (env / "github-app.json").write_text("{}")
    result = CliRunner().invoke(cli, ["setup", "--webhook-url", WEBHOOK])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"vibe: an App is already stored in {env / 'github-app.json'}; move it away or set "
        "VIBE_DATA_DIR to another directory"
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--github-url", "github.com"], "vibe: --github-url must be an http(s) URL"),
        (["--github-url", "https://ghe.example.org/path"], "vibe: --github-url is the server"),
        (["--webhook-url", "not a url"], "vibe: --webhook-url must be an http(s) URL"),
        (["--org", "-acme"], "vibe: --org must be an organisation's login"),
        (["--org", "acme/widgets"], "vibe: --org must be an organisation's login"),
        (["--executor", "cloud"], "vibe: --executor must be local or actions"),
        (["--name", "x" * 35], "vibe: --name must be 1 to 34 characters"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(env: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["setup", "--webhook-url", WEBHOOK, *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(message), lines[0]


def test_a_webhook_url_is_needed(env: Path) -> None:
    result = CliRunner().invoke(cli, ["setup"])
    assert result.exit_code == 2
    assert result.output.startswith("vibe: --webhook-url is needed")


def test_the_enterprise_api_lives_under_api_v3(env: Path) -> None:
    opts = options(
        github_url="https://ghe.example.org/",
        api_url=None,
        org="acme",
        name=None,
        webhook_url=WEBHOOK,
        executor="local",
        allow_workflow_changes=False,
        data_dir=env,
    )
    assert opts.api_url == "https://ghe.example.org/api/v3"
    assert opts.name == "vibe-bot-acme"
    assert opts.new_app_url("s") == (
        "https://ghe.example.org/organizations/acme/settings/apps/new?state=s"
    )
    dotcom = options(
        github_url="https://github.com",
        api_url=None,
        org=None,
        name="mine",
        webhook_url=WEBHOOK,
        executor="local",
        allow_workflow_changes=False,
        data_dir=env,
    )
    assert dotcom.api_url == "https://api.github.com"
    assert dotcom.new_app_url("s") == "https://github.com/settings/apps/new?state=s"
