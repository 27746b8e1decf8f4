"""Operator settings: the only module that reads the process environment.

Every setting has the prefix ``VIBE_`` (``VIBE_DATABASE_URL``, ``VIBE_WEBHOOK_SECRET`` ...).
Nested values use ``__`` (``VIBE_PRICES__claude-sonnet-4-5__input=3``). Missing
configuration never crashes the service: :meth:`Settings.missing` says what is still
needed. Configuration that is present but invalid raises :class:`SettingsError` with a
message naming the variable.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.policy import AllowList, BotIdentity
from bot.core.tasks import DevelopmentModel


class ModelPrice(BaseModel):
    """US dollars per million tokens, as on Anthropic's pricing page."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# https://docs.anthropic.com/en/docs/about-claude/pricing (5-minute cache writes are
# 1.25x input, cache reads 0.1x input).
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": ModelPrice(input=5.0, output=25.0, cache_write=6.25, cache_read=0.5),
    "claude-sonnet-4-6": ModelPrice(input=3.0, output=15.0, cache_write=3.75, cache_read=0.3),
    "claude-opus-4-5": ModelPrice(input=5.0, output=25.0, cache_write=6.25, cache_read=0.5),
    "claude-sonnet-4-5": ModelPrice(input=3.0, output=15.0, cache_write=3.75, cache_read=0.3),
    "claude-haiku-4-5": ModelPrice(input=1.0, output=5.0, cache_write=1.25, cache_read=0.1),
}


class Limits(BaseModel):
    """Spend limits (DESIGN.md section 4 rule 10), per iteration and per task."""

    steps_per_iteration: int = Field(default=60, ge=1)
    input_tokens_per_iteration: int = Field(default=3_000_000, ge=1)
    output_tokens_per_iteration: int = Field(default=200_000, ge=1)
    dollars_per_iteration: float = Field(default=5.0, gt=0)
    minutes_per_iteration: float = Field(default=30.0, gt=0)
    dollars_per_task: float = Field(default=20.0, gt=0)
    minutes_per_task: float = Field(default=120.0, gt=0)
    runs_per_hour: int = Field(default=10, ge=1)


class SettingsError(Exception):
    """Configuration is present but invalid; the message names what to fix."""


def _default_data_dir() -> Path:
    return Path("~/.local/share/vibe-bot").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIBE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    # storage
    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None

    # ingest
    webhook_secret: SecretStr | None = None
    webhook_secret_previous: SecretStr | None = None
    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)

    # GitHub
    github_api_url: str = "https://api.github.com"
    github_graphql_url: str | None = None
    github_server_url: str = "https://github.com"
    github_app_id: int | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_token: SecretStr | None = None
    github_min_write_interval: float = Field(default=1.0, ge=0)
    github_timeout: float = Field(default=30.0, gt=0)
    # None: asked of GitHub (the App's ``<slug>[bot]``, the token's user) by bootstrap
    bot_login: str | None = None
    allowed_bots: list[str] = Field(default_factory=list)
    # Whose deliveries the bot works on, as JSON lists (VIBE_ALLOWED_OWNERS='["octo-org"]',
    # VIBE_ALLOWED_REPOSITORIES='["octo/hello"]'); both empty: the account that owns the
    # App (the token's user), asked of GitHub by bootstrap. Others' deliveries are stored
    # and refused with one log line.
    allowed_owners: list[str] = Field(default_factory=list)
    allowed_repositories: list[str] = Field(default_factory=list)
    trigger_label: str = "vibe"

    # model
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    model: str = "claude-sonnet-4-6"
    max_output_tokens: int = Field(default=8192, ge=1)
    anthropic_max_retries: int = Field(default=4, ge=0)
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    limits: Limits = Field(default_factory=Limits)
    default_model: DevelopmentModel = "conversational"
    context_budget_tokens: int = Field(default=60_000, ge=1000)

    # workers and execution
    workers: int = Field(default=2, ge=1, le=64)
    lease_seconds: float = Field(default=60.0, gt=0)
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    # a task's status comment is edited at most this often (GitHub asks for >= 1 s
    # between writes: https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api)
    status_update_seconds: float = Field(default=3.0, ge=0)
    executor: Literal["local", "actions"] = "local"
    public_url: str | None = None
    # The one-time credential a vibe-runner.yml job claims its task with (``vibe action``).
    task_credential: SecretStr | None = None
    actions_poll_seconds: float = Field(default=15.0, gt=0)  # following a run on Actions

    # sandbox and workspaces
    sandbox: Literal["bwrap", "none"] = "bwrap"
    sandbox_uid: int | None = None
    sandbox_allow_network: bool = False
    sandbox_memory_cgroup: bool = True
    workspace_cache_bytes: int = Field(default=20 * 1024**3, ge=1024**2)

    # dashboard: with a token, requests need "Authorization: Bearer <token>"; without one,
    # only loopback clients are served
    dashboard_token: SecretStr | None = None

    # logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    @field_validator("webhook_secret", "webhook_secret_previous")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty key would make any body "signed": HMAC with b"" is computable by anyone.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError(
                "is empty: a delivery signed with an empty key would be accepted; set a "
                "secret or unset the variable to have one generated"
            )
        return value

    @field_validator("sandbox_uid")
    @classmethod
    def _sandbox_uid_not_root(cls, value: int | None) -> int | None:
        if value is not None and value <= 0:
            raise ValueError(
                "must be an unprivileged uid (for example 65534): as root (0) the sandbox's "
                "process limit is ignored"
            )
        return value

    @field_validator("github_api_url", "github_server_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vibe.db'}"

    @property
    def workspace_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def secret_values(self) -> list[str]:
        """Every configured secret, for redaction (DESIGN.md section 4 rule 8)."""
        values = [
            s.get_secret_value()
            for s in (
                self.webhook_secret,
                self.webhook_secret_previous,
                self.github_token,
                self.anthropic_api_key,
                self.github_private_key,
                self.task_credential,
            )
            if s is not None
        ]
        return [v for v in values if len(v) >= 8]

    def private_key(self) -> str | None:
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value()
        if self.github_private_key_path is not None:
            return self.github_private_key_path.read_text()
        return None

    @property
    def has_github_credentials(self) -> bool:
        app = self.github_app_id is not None and (
            self.github_private_key is not None or self.github_private_key_path is not None
        )
        return self.github_token is not None or app

    def bot_identity(self) -> BotIdentity:
        """Who the bot is and the operator's defaults, as the trigger policy takes them.

        Without an allow-list every owner is served: ``vibe action`` and ``vibe run`` work
        on the one repository they run in; the service fills the list in bootstrap."""
        restricted = bool(self.allowed_owners or self.allowed_repositories)
        return BotIdentity(
            login=self.bot_login or "",
            allowed_bots=frozenset(self.allowed_bots),
            allowed=(
                AllowList(frozenset(self.allowed_owners), frozenset(self.allowed_repositories))
                if restricted
                else None
            ),
            trigger_label=self.trigger_label,
            default_model=self.default_model,
            runs_per_hour=self.limits.runs_per_hour,
        )

    def missing(self) -> list[str]:
        """What is still needed before tasks can run, in plain words."""
        out: list[str] = []
        if not self.has_github_credentials:
            out.append(
                "GitHub credentials: set VIBE_GITHUB_APP_ID and VIBE_GITHUB_PRIVATE_KEY_PATH "
                "(a GitHub App) or VIBE_GITHUB_TOKEN (a personal or Actions token), or run "
                "`vibe setup` to register an App"
            )
        if self.anthropic_api_key is None:
            out.append("model access: set VIBE_ANTHROPIC_API_KEY")
        if self.sandbox == "bwrap" and shutil.which("bwrap") is None:
            out.append(
                "bubblewrap: install it (Debian/Ubuntu: apt-get install bubblewrap); "
                "without it the bot refuses to run commands"
            )
        return out


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, raising SettingsError on invalid values.

    Without GitHub credentials in the environment, the App that ``vibe setup`` stored in the
    data directory is used (:func:`with_stored_app`)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = "__".join(str(p) for p in err["loc"])
            problems.append(f"VIBE_{loc.upper()}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(problems)) from None
    return with_stored_app(settings)


# What ``vibe setup`` stores in the data directory (each file mode 0600): the App's
# registration (id, slug, client id and secret, URLs) and its private key. Its webhook secret
# goes to ``webhook-secret``, which :func:`ensure_webhook_secret` reads.
STORED_APP_FILE = "github-app.json"
STORED_APP_KEY_FILE = "github-app.pem"


def with_stored_app(settings: Settings) -> Settings:
    """``settings`` completed with the App stored in the data directory, when the
    environment names no App id, private key or token. The stored App's API and web URLs
    apply unless ``VIBE_GITHUB_API_URL``/``VIBE_GITHUB_SERVER_URL`` say otherwise."""
    configured = {"github_app_id", "github_private_key", "github_private_key_path", "github_token"}
    if configured & settings.model_fields_set:
        return settings
    path = settings.data_dir / STORED_APP_FILE
    key_path = settings.data_dir / STORED_APP_KEY_FILE
    if not path.is_file() or not key_path.is_file():
        return settings
    try:
        stored = json.loads(path.read_text())
        update: dict[str, object] = {
            "github_app_id": int(stored["id"]),
            "github_private_key_path": key_path,
        }
        for field_name, key in (("github_api_url", "api_url"), ("github_server_url", "web_url")):
            if field_name not in settings.model_fields_set and isinstance(stored.get(key), str):
                update[field_name] = stored[key]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SettingsError(f"the App stored in {path} is unreadable: {exc}") from None
    return settings.model_copy(update=update)


def ensure_webhook_secret(settings: Settings) -> tuple[Settings, bool]:
    """Return settings with a webhook secret, generating and persisting one if none is set.

    The generated secret is stored in ``<data_dir>/webhook-secret`` (mode 0600) so that a
    restart keeps accepting deliveries signed with it. The boolean says whether it was
    generated now.
    """
    if settings.webhook_secret is not None:
        return settings, False
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "webhook-secret"
    generated = False
    if path.exists():
        value = path.read_text().strip()
        if not value:
            raise SettingsError(
                f"the webhook secret stored in {path} is empty; delete the file to have a "
                "new one generated, or set VIBE_WEBHOOK_SECRET"
            )
    else:
        value = secrets.token_hex(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        generated = True
    return settings.model_copy(update={"webhook_secret": SecretStr(value)}), generated
