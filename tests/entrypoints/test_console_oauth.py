"""Sign-in to the console with the GitHub App's OAuth, against the fake GitHub's web
application flow on loopback: a person sees the tasks of repositories they can read and
acts on those they can write; the state, the code and the session cookie are checked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.entrypoints.app import create_app
from bot.entrypoints.console.signin import SESSION_COOKIE
from bot.store.tables import ConsoleAction
from bot.testing.fake_github import FakeGitHub
from bot.testing.fake_github.oauth import FakeOAuth
from tests.support.console import add_task
from tests.support.web import make_settings

DASH = "dash-token-0123456789"
CALLBACK = "http://testserver/console/oauth/callback"
SAME = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class World:
    client: TestClient
    fake: FakeGitHub
    oauth: FakeOAuth
    engine: Engine
    open_id: int  # a task in acme/open (public: everyone reads, "writer" writes)
    secret_id: int  # a task in acme/secret (private: only "writer")


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> Iterator[World]:
    with FakeGitHub() as fake:
        fake.create_repo("acme/open", collaborators={"reader": "read", "writer": "write"})
        fake.create_repo("acme/secret", private=True, collaborators={"writer": "write"})
        oauth = FakeOAuth.mount(fake, CALLBACK, "reader")
        settings = make_settings(
            tmp_path,
            database_url,
            dashboard_token=DASH,
            public_url="http://testserver",
            github_client_id=oauth.client_id,
            github_client_secret=oauth.client_secret,
            github_server_url=fake.base_url,
            github_api_url=fake.base_url,
        )
        app = create_app(settings, handlers={})
        engine: Engine = app.state.engine
        with Session(engine) as session:
            first = add_task(session, 1, repository="acme/open", title="open task")
            second = add_task(session, 2, repository="acme/secret", title="secret task")
            session.commit()
            assert first.id is not None
            assert second.id is not None
            ids = first.id, second.id
        with TestClient(app) as client:
            yield World(client, fake, oauth, engine, *ids)
        engine.dispose()


def _authorize(world: World, login: str) -> str:
    """Start sign-in and let the fake approve as ``login``; the callback URL it sends to."""
    world.oauth.approve_as = login
    start = world.client.get("/console/login", follow_redirects=False)
    assert start.status_code == 302
    target = start.headers["location"]
    assert target.startswith(f"{world.fake.base_url}/login/oauth/authorize?")
    asked = parse_qs(urlsplit(target).query)
    assert asked["redirect_uri"] == [CALLBACK]
    assert asked["client_id"] == [world.oauth.client_id]
    with httpx.Client() as browser:
        approved = browser.get(target, follow_redirects=False)
    assert approved.status_code == 302
    back: str = approved.headers["location"]
    assert back.startswith(CALLBACK + "?")
    return back


def _sign_in(world: World, login: str) -> None:
    done = world.client.get(_authorize(world, login), follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console"
    cookie = done.headers["set-cookie"]
    assert SESSION_COOKIE in cookie
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()


def _csrf(world: World, url: str) -> str:
    page = world.client.get(url)
    assert page.status_code == 200
    found = _CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def _audit(engine: Engine) -> list[ConsoleAction]:
    with Session(engine) as session:
        return list(session.exec(select(ConsoleAction)).all())


def test_a_reader_sees_only_readable_repositories_and_cannot_act(world: World) -> None:
    assert world.client.get("/console").status_code == 403
    _sign_in(world, "reader")
    listing = world.client.get("/console")
    assert listing.status_code == 200
    assert "open task" in listing.text
    assert "secret task" not in listing.text
    assert "reader" in listing.text
    assert 'action="/console/logout"' in listing.text
    api = world.client.get("/api/console/tasks").json()
    assert [t["repository"] for t in api["tasks"]] == ["acme/open"]
    # Asking for the private repository by name gives nothing either.
    hidden = world.client.get("/api/console/tasks", params={"repository": "acme/secret"})
    assert hidden.json()["tasks"] == []

    assert world.client.get(f"/console/tasks/{world.secret_id}").status_code == 403
    assert world.client.get(f"/api/console/tasks/{world.secret_id}").status_code == 403
    stream = world.client.get(f"/console/tasks/{world.secret_id}/iterations/1/events")
    assert stream.status_code == 403
    assert world.client.get("/console/jobs").status_code == 403
    assert world.client.get("/api/console/jobs").status_code == 403

    page = world.client.get(f"/console/tasks/{world.open_id}")
    assert page.status_code == 200
    assert "open task" in page.text
    assert "/stop" not in page.text  # no action offered to a reader
    token = _csrf(world, f"/console/tasks/{world.open_id}")
    refused = world.client.post(
        f"/console/tasks/{world.open_id}/stop", data={"csrf": token}, headers=SAME
    )
    assert refused.status_code == 403
    assert "write access" in refused.text
    assert _audit(world.engine) == []


def test_a_writer_acts_and_the_audit_names_their_login(world: World) -> None:
    _sign_in(world, "writer")
    listing = world.client.get("/api/console/tasks").json()
    assert sorted(t["repository"] for t in listing["tasks"]) == ["acme/open", "acme/secret"]
    page = world.client.get(f"/console/tasks/{world.secret_id}")
    assert page.status_code == 200
    assert f"/console/tasks/{world.secret_id}/stop" in page.text
    token = _csrf(world, f"/console/tasks/{world.secret_id}")
    done = world.client.post(
        f"/console/tasks/{world.secret_id}/stop", data={"csrf": token}, headers=SAME
    )
    assert done.status_code == 200, done.text
    (recorded,) = _audit(world.engine)
    assert recorded.actor == "writer (GitHub)"
    assert recorded.action == "stop"
    assert recorded.target_id == world.secret_id
    # Requeueing jobs stays the operator's.
    requeue = world.client.post("/console/jobs/1/requeue", data={"csrf": token}, headers=SAME)
    assert requeue.status_code == 403
    assert len(_audit(world.engine)) == 1


def test_state_mismatch_and_missing_state_cookie_are_refused(world: World) -> None:
    back = _authorize(world, "reader")
    forged = back.replace("state=", "state=x")
    answer = world.client.get(forged, follow_redirects=False)
    assert answer.status_code == 400
    assert "not started from this browser" in answer.text
    assert "Traceback" not in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    # The right state from a browser that did not start the sign-in (no state cookie).
    other = TestClient(world.client.app)  # the app is up: no second lifespan
    try:
        elsewhere = other.get(_authorize(world, "reader"), follow_redirects=False)
        assert elsewhere.status_code == 400
        assert other.get("/console").status_code == 403
    finally:
        other.close()


def test_a_wrong_or_reused_code_gets_a_clear_page(world: World) -> None:
    back = _authorize(world, "reader")
    wrong = re.sub(r"code=[0-9a-f]+", "code=0000", back)
    answer = world.client.get(wrong, follow_redirects=False)
    assert answer.status_code == 400
    assert "GitHub refused the sign-in (bad_verification_code)" in answer.text
    assert "Traceback" not in answer.text
    assert "Sign in with GitHub" in answer.text
    # The code of a completed sign-in, replayed with a fresh state, is refused by GitHub.
    used = _authorize(world, "reader")
    assert world.client.get(used, follow_redirects=False).status_code == 303
    fresh_state = parse_qs(urlsplit(_authorize(world, "reader")).query)["state"][0]
    code = parse_qs(urlsplit(used).query)["code"][0]
    replay = world.client.get(
        "/console/oauth/callback", params={"code": code, "state": fresh_state}
    )
    assert replay.status_code == 400
    assert "bad_verification_code" in replay.text


def test_a_denied_authorization_is_a_clear_page(world: World) -> None:
    world.oauth.approve_as = None
    start = world.client.get("/console/login", follow_redirects=False)
    with httpx.Client() as browser:
        denied = browser.get(start.headers["location"], follow_redirects=False)
    answer = world.client.get(denied.headers["location"], follow_redirects=False)
    assert answer.status_code == 400
    assert "GitHub did not sign you in: The user has denied your application access." in (
        answer.text
    )


def test_logout_needs_the_form_and_ends_the_session(world: World) -> None:
    _sign_in(world, "reader")
    token = _csrf(world, "/console")
    assert (
        world.client.post("/console/logout", data={"csrf": "0" * 64}, headers=SAME).status_code
        == 403
    )
    assert world.client.post("/console/logout", data={"csrf": token}).status_code == 403
    assert world.client.get("/console").status_code == 200
    session = world.client.cookies.get(SESSION_COOKIE)
    out = world.client.post("/console/logout", data={"csrf": token}, headers=SAME)
    assert out.status_code == 200
    assert "signed out" in out.text
    assert world.client.get("/console").status_code == 403
    # The old session id no longer opens anything, even if the browser kept it.
    assert session is not None
    world.client.cookies.set(SESSION_COOKIE, session)
    assert world.client.get("/console").status_code == 403


def test_a_tampered_session_cookie_is_refused(world: World) -> None:
    _sign_in(world, "writer")
    session = world.client.cookies.get(SESSION_COOKIE)
    assert session is not None
    world.client.cookies.delete(SESSION_COOKIE)
    flipped = ("A" if session[0] != "A" else "B") + session[1:]
    world.client.cookies.set(SESSION_COOKIE, flipped)
    assert world.client.get("/console").status_code == 403
    assert world.client.get("/api/console/tasks").status_code == 403
    # The bearer token keeps full access alongside sign-in.
    full = world.client.get("/console/jobs", headers={"Authorization": f"Bearer {DASH}"})
    assert full.status_code == 200


def test_sign_in_is_not_offered_when_not_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'n.db'}", dashboard_token=DASH)
    app = create_app(settings, handlers={})
    with TestClient(app) as client:
        refused = client.get("/console")
        assert refused.status_code == 403
        assert "Sign in with GitHub" not in refused.text
        assert client.get("/console/login", follow_redirects=False).status_code == 404
    app.state.engine.dispose()


def test_the_fake_refuses_wrong_client_secret_and_redirect_uri(world: World) -> None:
    back = _authorize(world, "reader")
    code = parse_qs(urlsplit(back).query)["code"][0]
    url = f"{world.fake.base_url}/login/oauth/access_token"
    base = {"client_id": world.oauth.client_id, "code": code}
    with httpx.Client(headers={"Accept": "application/json"}) as gh:
        wrong = gh.post(url, data={**base, "client_secret": "nope"}).json()
        assert wrong["error"] == "incorrect_client_credentials"
        elsewhere = gh.post(
            url,
            data={
                **base,
                "client_secret": world.oauth.client_secret,
                "redirect_uri": "http://evil.example/cb",
            },
        ).json()
        assert elsewhere["error"] == "redirect_uri_mismatch"
    with httpx.Client() as browser:
        redirected = browser.get(
            f"{world.fake.base_url}/login/oauth/authorize",
            params={"client_id": world.oauth.client_id, "redirect_uri": "http://evil.example/"},
            follow_redirects=False,
        )
    assert redirected.headers["location"].startswith(CALLBACK + "?error=redirect_uri_mismatch")


def test_cookies_are_secure_under_an_https_public_url(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 's.db'}",
        public_url="https://bot.example",
        github_client_id="Iv1.0123456789abcdef",
        github_client_secret="s" * 40,
    )
    app = create_app(settings, handlers={})
    with TestClient(app) as client:
        start = client.get("/console/login", follow_redirects=False)
        assert start.status_code == 302
        asked = parse_qs(urlsplit(start.headers["location"]).query)
        assert asked["redirect_uri"] == ["https://bot.example/console/oauth/callback"]
        cookie = start.headers["set-cookie"]
        assert "Secure" in cookie
        assert "HttpOnly" in cookie
        assert "Path=/console/oauth/callback" in cookie
    app.state.engine.dispose()
