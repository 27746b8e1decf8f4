"""The fake's rename and transfer of a repository, as GitHub does them: the id and the issues
stay, the old name answers 301 to the REST API and still serves git, and
``repository.renamed`` or ``repository.transferred`` reaches the App only if it subscribed to
``repository`` events. Assertions read the fake's records and its HTTP answers."""

from __future__ import annotations

import shutil
import subprocess

import httpx

from bot.testing.fake_github import FakeGitHub
from bot.testing.fake_github.server import DEFAULT_APP_EVENTS
from tests.github.conftest import app_key


def test_a_renamed_repository_keeps_its_id_and_redirects_its_old_name(fake: FakeGitHub) -> None:
    fake.create_app(private_key_pem=app_key(), events=(*DEFAULT_APP_EVENTS, "repository"))
    repo = fake.create_repo("acme/widgets")
    fake.install_app("acme")
    number = fake.open_issue("acme/widgets", "acme", "Widgets are slow")

    fake.rename_repo("acme/widgets", "acme/gadgets", sender="acme")

    assert fake.repo("acme/gadgets").id == repo.id
    assert fake.issue("acme/gadgets", number).title == "Widgets are slow"
    old = httpx.get(f"{fake.api_url}/repos/acme/widgets/issues/{number}", timeout=10)
    assert old.status_code == 301
    assert old.headers["location"] == f"{fake.api_url}/repos/acme/gadgets/issues/{number}"
    assert httpx.get(old.headers["location"], timeout=10).json()["title"] == "Widgets are slow"
    git = shutil.which("git")
    assert git is not None
    heads = subprocess.run(
        [git, "ls-remote", f"{fake.base_url}/acme/widgets.git"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "refs/heads/main" in heads
    (renamed,) = [d for d in fake.deliveries if d.event == "repository"]
    assert renamed.payload["action"] == "renamed"
    assert renamed.payload["changes"] == {"repository": {"name": {"from": "widgets"}}}
    assert renamed.payload["repository"]["full_name"] == "acme/gadgets"
    assert renamed.payload["repository"]["id"] == repo.id


def test_a_transfer_is_sent_only_to_an_app_that_subscribed(fake: FakeGitHub) -> None:
    fake.create_app(private_key_pem=app_key())
    assert "repository" not in DEFAULT_APP_EVENTS
    repo = fake.create_repo("acme/widgets")
    fake.install_app("acme")

    fake.rename_repo("acme/widgets", "labs/widgets")

    assert fake.repo("labs/widgets").id == repo.id
    assert [d for d in fake.deliveries if d.event == "repository"] == []
    assert httpx.get(f"{fake.api_url}/repos/labs/widgets", timeout=10).json()["id"] == repo.id
    assert httpx.get(f"{fake.api_url}/repos/acme/widgets", timeout=10).status_code == 301
    fake.create_repo("acme/widgets")  # the freed name, taken again: the redirect ends
    again = httpx.get(f"{fake.api_url}/repos/acme/widgets", timeout=10)
    assert again.status_code == 200
    assert again.json()["id"] != repo.id
