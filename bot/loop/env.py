"""What one job of the loop works with, and the repository config it reads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from bot.core.config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.core.render import (
    config_marker,
    render_config_problems,
)
from bot.loop.ports import Agent as AgentPort
from bot.loop.ports import (
    CiChecks,
    CiRounds,
    ContextBuilder,
    Forge,
    PullRequests,
    Reviews,
    TaskStore,
    Workspaces,
)
from bot.sandbox.bwrap import Sandbox
from bot.settings import Settings

log = structlog.get_logger(__name__)


@dataclass
class Env:
    """Everything one job of the loop works with."""

    settings: Settings
    tasks: TaskStore
    forge: Forge
    prs: PullRequests | None
    workspaces: Workspaces
    agent: AgentPort
    sandbox: Sandbox
    context: ContextBuilder
    cancel: threading.Event = field(default_factory=threading.Event)
    status_interval: float = 3.0
    attempt: int = 1
    max_attempts: int = 1
    timeline: Callable[[str], None] | None = None
    configs: dict[str, RepoConfig] = field(default_factory=dict)
    ci: CiChecks | None = None  # the repository's own CI (absent in local mode)
    ci_rounds: CiRounds | None = None
    reviews: Reviews | None = None  # reviewing pull requests (absent in local mode)

    @property
    def secrets(self) -> list[str]:
        return self.settings.secret_values

    def note(self, text: str) -> None:
        if self.timeline is not None:
            self.timeline(text)


def repo_config(env: Env, ref: str, number: int) -> RepoConfig:
    """``.github/vibe.yml`` at ``ref``; problems get one comment naming the line."""
    if ref in env.configs:
        return env.configs[ref]
    text = env.forge.read_file(CONFIG_PATH, ref)
    config, problems = parse_repo_config(text)
    if problems:
        env.forge.upsert_comment(
            number,
            config_marker(ref),
            render_config_problems(problems, CONFIG_PATH, ref, env.secrets),
        )
        env.note(f"config: {CONFIG_PATH} invalid ({problems[0]}); using defaults")
    env.configs[ref] = config
    return config
