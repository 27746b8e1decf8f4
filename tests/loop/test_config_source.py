"""The loop reads a repository's config through the GitHub adapter with the organisation
``.github`` repository as the fallback (``RepoClient.read_config``)."""

from __future__ import annotations

from bot.core.config import CONFIG_PATH
from bot.github.repository import GitHubRepository
from bot.testing.fake_github import FakeClock, FakeGitHub
from tests.github.conftest import app_key
from tests.github.test_adapter import app_hub


def test_repository_without_config_uses_the_organisation_config() -> None:
    clock = FakeClock()
    with FakeGitHub(clock=clock) as world:
        creds = world.create_app("vibe-bot", private_key_pem=app_key())
        world.create_repo("acme/bare", {"README.md": "# bare\n"})
        world.create_repo("acme/own", {CONFIG_PATH: "model: test\n"})
        world.create_repo("acme/.github", {CONFIG_PATH: "model: context\n"})
        world.install_app("acme")
        hub = app_hub(world, clock, creds)
        try:
            bare = GitHubRepository(hub.repo("acme/bare"))
            own = GitHubRepository(hub.repo("acme/own"))
            assert bare.read_file(CONFIG_PATH, "main") == "model: context\n"
            assert own.read_file(CONFIG_PATH, "main") == "model: test\n"
            assert bare.read_file("README.md", "main") == "# bare\n"
        finally:
            hub.close()
