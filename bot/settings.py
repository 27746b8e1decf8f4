"""Operator settings: the only module that reads the process environment.

Every setting has the prefix ``VIBE_`` (``VIBE_DATABASE_URL``, ``VIBE_WEBHOOK_SECRET`` ...).
Nested values use ``__`` (``VIBE_PRICES__claude-sonnet-4-5__input=3``). Missing
configuration never crashes the service: :meth:`Settings.missing` says what is still
needed. Configuration that is present but invalid raises :class:`SettingsError` with one
line per problem naming the variable and the fix. List settings take a comma list
(``VIBE_ALLOWED_BOTS=dependabot,renovate``) or JSON. Each field's description is the
operator's documentation: :func:`settings_markdown` renders them as ``docs/settings.md``.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.core.policy import AllowList, BotIdentity
from bot.core.tasks import DevelopmentModel


class ModelPrice(BaseModel):
    """US dollars per million tokens, as on Anthropic's pricing page."""

    input: float = Field(description="Dollars per million input tokens.")
    output: float = Field(description="Dollars per million output tokens.")
    cache_write: float = Field(description="Dollars per million tokens written to the cache.")
    cache_read: float = Field(description="Dollars per million tokens read from the cache.")


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

    steps_per_iteration: int = Field(
        default=60, ge=1, description="Model calls (agent steps) per iteration."
    )
    input_tokens_per_iteration: int = Field(
        default=3_000_000, ge=1, description="Input tokens (cached ones included) per iteration."
    )
    output_tokens_per_iteration: int = Field(
        default=200_000, ge=1, description="Output tokens per iteration."
    )
    dollars_per_iteration: float = Field(
        default=5.0, gt=0, description="Model spend in US dollars per iteration."
    )
    minutes_per_iteration: float = Field(
        default=30.0, gt=0, description="Wall-clock minutes per iteration."
    )
    dollars_per_task: float = Field(
        default=20.0, gt=0, description="Model spend in US dollars per task, all iterations."
    )
    minutes_per_task: float = Field(
        default=120.0, gt=0, description="Wall-clock minutes per task, all iterations."
    )
    runs_per_hour: int = Field(
        default=10,
        ge=1,
        description="Runs per issue or pull request per hour (the loop breaker).",
    )


class SettingsError(Exception):
    """Configuration is present but invalid: one line per problem (``lines``), each naming
    the variable and what to fix."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


# Settings that hold a list: a comma list or a JSON list (pydantic-settings would decode
# them as JSON only, and ``VIBE_ALLOWED_BOTS=dependabot`` would be an error).
CommaList = Annotated[list[str], NoDecode]
# RFC 9110 section 5.6.2: a field name is a token.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*", re.I
)

# What a database URL may name: the drivers the bot ships with.
_DATABASE_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg")
_DATABASE_FIX = "use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE"


def _default_data_dir() -> Path:
    return Path("~/.local/share/vibe-bot").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VIBE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    # storage
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the bot keeps its SQLite database, workspaces, the generated "
        "webhook secret and the App `vibe setup` registered. Must be writable.",
        json_schema_extra={"shown_default": "~/.local/share/vibe-bot"},
    )
    min_free_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="Free bytes the data directory's file system must keep (workspaces, "
        "SQLite, logs); below it `/readyz` answers 503 naming both numbers. 0 turns the "
        "check off.",
    )
    min_free_inodes: int = Field(
        default=10_000,
        ge=0,
        description="Free inodes (files) the data directory's file system must keep; below "
        "it `/readyz` answers 503. 0 turns the check off.",
    )
    database_url: str | None = Field(
        default=None,
        description="The database: `sqlite:///PATH` (a file: an in-memory database is "
        "refused) or `postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE`. Unset: SQLite in "
        "the data directory (`vibe.db`).",
    )

    # ingest
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="The webhook secret GitHub signs deliveries with. Unset: one is generated "
        "and stored in `<data dir>/webhook-secret`. Empty is refused.",
    )
    webhook_secret_previous: SecretStr | None = Field(
        default=None,
        description="The previous webhook secret, still accepted while you rotate it.",
    )
    max_body_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        description="Largest delivery body accepted, in bytes (GitHub caps payloads at 25 MB).",
    )
    webhook_body_budget_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1024,
        description="Bytes of delivery bodies the process holds at once, over all requests "
        "(a body is unauthenticated until its signature is checked); a delivery past it "
        "answers 503 with `Retry-After`. At least `VIBE_MAX_BODY_BYTES`.",
    )
    webhook_max_bodies: int = Field(
        default=128,
        ge=1,
        description="Delivery bodies read at once; one more answers 503 with `Retry-After`.",
    )
    webhook_body_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to receive a whole delivery body before answering 408 (GitHub "
        "waits 10 s for an answer).",
    )
    http_max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections and requests `vibe serve` takes before answering 503.",
    )
    database_wait_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest wait for the database on a request; past it the request answers "
        "503 with `Retry-After` (GitHub redelivers, the catch-up job asks for what it missed).",
    )

    # GitHub
    github_api_url: str = Field(
        default="https://api.github.com",
        description="GitHub's REST API (`https://HOST/api/v3` on GitHub Enterprise Server).",
    )
    github_graphql_url: str | None = Field(
        default=None,
        description="GitHub's GraphQL API. Unset: derived from the REST API's address.",
    )
    github_server_url: str = Field(
        default="https://github.com", description="GitHub's web address (for links and clones)."
    )
    github_app_id: int | None = Field(default=None, description="The GitHub App's id.")
    github_private_key: SecretStr | None = Field(
        default=None,
        description="The GitHub App's private key (PEM; `\\n` escapes are accepted).",
    )
    github_private_key_path: Path | None = Field(
        default=None, description="A file holding the GitHub App's private key."
    )
    github_token: SecretStr | None = Field(
        default=None,
        description="A personal access token or an Actions token, instead of an App.",
    )
    github_min_write_interval: float = Field(
        default=1.0,
        ge=0,
        description="Seconds between two writes to GitHub (GitHub asks for at least one).",
    )
    github_timeout: float = Field(
        default=30.0, gt=0, description="Seconds before a GitHub request times out."
    )
    bot_login: str | None = Field(
        default=None,
        description="The bot's login. Unset: asked of GitHub (the App's `<slug>[bot]`, the "
        "token's user).",
    )
    allowed_bots: CommaList = Field(
        default_factory=list,
        description="Bot accounts whose events may trigger the bot (other bots are refused).",
    )
    allowed_owners: CommaList = Field(
        default_factory=list,
        description="Owners whose repositories the bot works on. With this and "
        "`VIBE_ALLOWED_REPOSITORIES` both empty: the account that owns the App (the token's "
        "user). Others' deliveries are stored and refused with one log line.",
    )
    allowed_repositories: CommaList = Field(
        default_factory=list,
        description="Repositories (`owner/name`) the bot works on, besides the allowed owners'.",
    )
    trigger_label: str = Field(default="vibe", description="The issue label that starts a task.")

    # model
    anthropic_api_key: SecretStr | None = Field(
        default=None, description="The Anthropic API key the agent uses."
    )
    anthropic_base_url: str | None = Field(
        default=None,
        description="The Messages API's address. Unset: `https://api.anthropic.com`.",
    )
    model: str = Field(default="claude-sonnet-4-6", description="The model the agent uses.")
    max_output_tokens: int = Field(default=8192, ge=1, description="Output tokens per model call.")
    anthropic_max_retries: int = Field(
        default=4,
        ge=0,
        description="Retries of a model call that failed with 429, 529 or 5xx.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="Model prices, for the spend limits.",
        json_schema_extra={
            "shown_default": "Anthropic's list prices of " + ", ".join(DEFAULT_PRICES)
        },
    )
    limits: Limits = Field(default_factory=Limits, description="Spend limits.")
    default_model: DevelopmentModel = Field(
        default="conversational",
        description="The development model of a task that names none.",
    )
    context_budget_tokens: int = Field(
        default=60_000,
        ge=1000,
        description="Tokens of repository context given to the agent at the start.",
    )

    # workers and execution
    workers: int = Field(
        default=2, ge=1, le=64, description="Worker threads of `vibe serve` and `vibe worker`."
    )
    lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a claimed job stays a worker's without a heartbeat.",
    )
    heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="Seconds between a running job's heartbeats."
    )
    max_attempts: int = Field(
        default=5, ge=1, description="Attempts of a job before it is given up."
    )
    # GitHub asks for >= 1 s between writes:
    # https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api
    status_update_seconds: float = Field(
        default=3.0,
        ge=0,
        description="A task's status comment is edited at most this often (seconds).",
    )
    executor: Literal["local", "actions"] = Field(
        default="local",
        description="Where the agent runs: here (`local`) or on the repository's Actions "
        "runners (`actions`).",
    )
    public_url: str | None = Field(
        default=None,
        description="The service's public address (for `vibe setup` and Actions runners); "
        "when set, the PR's status comment and iteration log link to the task's console page "
        "(`<address>/console/tasks/<id>`).",
    )
    task_credential: SecretStr | None = Field(
        default=None,
        description="The one-time credential a vibe-runner.yml job claims its task with "
        "(`vibe action`).",
    )
    actions_poll_seconds: float = Field(
        default=15.0, gt=0, description="Seconds between looks at a run on Actions."
    )

    # sandbox and workspaces
    sandbox: Literal["bwrap", "none"] = Field(
        default="bwrap",
        description="How commands are isolated: `bwrap` (bubblewrap) or `none` (development "
        "only: no isolation).",
    )
    sandbox_uid: int | None = Field(
        default=None,
        description="The unprivileged uid sandboxed commands run as when the bot is root "
        "(for example 65534). 0 is refused.",
    )
    sandbox_allow_network: bool = Field(
        default=False,
        description="Let a repository's `network.allow` hosts be reached from the sandbox, "
        "through an allow-listing proxy (off: no network at all).",
    )
    sandbox_allow_private_hosts: CommaList = Field(
        default_factory=list,
        description="Non-public destinations (addresses, CIDR networks, host names) that a "
        "repository's `network.allow` may reach through the egress proxy, such as an "
        "internal package mirror. Loopback, private, link-local (cloud metadata) and other "
        "non-public addresses are refused unless listed here.",
    )
    sandbox_memory_cgroup: bool = Field(
        default=True,
        description="Also bound each command's whole process tree with a memory cgroup "
        "where the host allows one (costs about 10-20 ms per command).",
    )
    mcp_enabled: bool = Field(
        default=True,
        description="Start the MCP servers a repository lists under `mcp.servers` in "
        "`.github/vibe.yml` (stdio servers run inside the task's sandbox). false: none at all.",
    )
    mcp_allowed_servers: CommaList = Field(
        default_factory=list,
        description="MCP server names a repository may start; empty: any name.",
    )
    mcp_http_hosts: CommaList = Field(
        default_factory=list,
        description="Hosts a repository's streamable-HTTP MCP server (`url`) may be at; the "
        "bot connects to them from the host. Empty: no HTTP MCP servers.",
    )
    mcp_http_headers: dict[str, dict[str, SecretStr]] = Field(
        default_factory=dict,
        description="Credentials for HTTP MCP servers, as JSON: host -> header -> value "
        '(`{"mcp.example.com": {"Authorization": "Bearer ..."}}`). Sent only to that host; '
        "keyed by host so no repository can send them elsewhere.",
    )
    mcp_secrets: dict[str, dict[str, SecretStr]] = Field(
        default_factory=dict,
        description="Values a repository's stdio MCP servers may take into their environment "
        'through `secrets`, as JSON: repository -> name -> value (`{"owner/repo": '
        '{"docs_token": "..."}}`). A repository sees only its own names.',
    )
    mcp_start_seconds: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="Seconds an MCP server has to start, answer `initialize` and list its "
        "tools; a slower one is left out of the run.",
    )
    mcp_call_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Seconds one MCP tool call may take; a server that lets one run out is "
        "stopped and left out of the rest of the run.",
    )
    workspace_cache_bytes: int = Field(
        default=20 * 1024**3,
        ge=1024**2,
        description="Size in bytes of the git mirror and worktree cache before the least "
        "recently used mirrors are evicted.",
    )

    dashboard_token: SecretStr | None = Field(
        default=None,
        description="With a token, dashboard requests need `Authorization: Bearer <token>`; "
        "without one, only loopback clients are served.",
    )
    github_client_id: str | None = Field(
        default=None,
        description="The GitHub App's client id (its settings page): with "
        "`VIBE_GITHUB_CLIENT_SECRET` and `VIBE_PUBLIC_URL`, the console offers sign-in with "
        "GitHub, showing a person the tasks of repositories they can read. The App's "
        "callback URL must be `<VIBE_PUBLIC_URL>/console/oauth/callback`.",
    )
    github_client_secret: SecretStr | None = Field(
        default=None, description="The GitHub App's client secret, for console sign-in."
    )

    # retention
    retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Deliveries, finished jobs and agent steps older than this many days are "
        "deleted by the periodic `prune` job.",
    )
    prune_interval_seconds: float = Field(
        default=3600.0, gt=0, description="Seconds between two runs of the `prune` job."
    )

    api_docs: bool = Field(
        default=False,
        description="Serve the interactive API description (`/docs`, `/redoc`, "
        "`/openapi.json`) on the public port.",
    )

    # logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="The lowest level logged."
    )
    log_json: bool = Field(
        default=False,
        description="Log one JSON object per line (for log collectors) instead of text.",
    )

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

    @field_validator("webhook_body_budget_bytes")
    @classmethod
    def _budget_holds_one_body(cls, value: int, info: ValidationInfo) -> int:
        cap = info.data.get("max_body_bytes")
        if isinstance(cap, int) and value < cap:
            raise ValueError(
                f"is {value}, below VIBE_MAX_BODY_BYTES ({cap}): the largest delivery "
                "could never be read"
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

    @field_validator(
        "allowed_bots",
        "allowed_owners",
        "allowed_repositories",
        "sandbox_allow_private_hosts",
        "mcp_allowed_servers",
        "mcp_http_hosts",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(
                    f"is not a JSON list ({exc}); write a comma list (a,b) or a JSON list"
                ) from None
        return [item.strip() for item in value.split(",") if item.strip()]

    @field_validator("sandbox_allow_private_hosts")
    @classmethod
    def _private_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            with contextlib.suppress(ValueError):
                ipaddress.ip_network(entry.strip("[]"), strict=False)
                continue
            if not _HOST_NAME.fullmatch(entry.rstrip(".")):
                raise ValueError(f"{entry[:100]!r} is not an IP address, CIDR network or host name")
        return value

    @field_validator("mcp_http_hosts")
    @classmethod
    def _mcp_hosts(cls, value: list[str]) -> list[str]:
        for entry in value:
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(entry.strip("[]"))
                continue
            if not _HOST_NAME.fullmatch(entry.rstrip(".")):
                raise ValueError(f"{entry[:100]!r} is not a host name or IP address")
        return [entry.lower() for entry in value]

    @field_validator("mcp_http_headers")
    @classmethod
    def _mcp_headers(
        cls, value: dict[str, dict[str, SecretStr]]
    ) -> dict[str, dict[str, SecretStr]]:
        for host, headers in value.items():
            for name, secret in headers.items():
                if not _HEADER_NAME.fullmatch(name):
                    raise ValueError(f"{name[:100]!r} (for {host[:100]}) is not a header name")
                if any(c in secret.get_secret_value() for c in "\r\n\0"):
                    raise ValueError(f"the value of {name} for {host[:100]} has a line break")
        return {host.lower(): headers for host, headers in value.items()}

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(f"is not a database URL: {_DATABASE_FIX}") from None
        if url.drivername in ("postgres", "postgresql"):
            raise ValueError(
                "names no driver the bot ships with: use postgresql+psycopg://... (psycopg 3)"
            )
        if url.drivername not in _DATABASE_DRIVERS:
            raise ValueError(
                f"uses {url.drivername!r}, which the bot does not support: {_DATABASE_FIX}"
            )
        if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
            # Jobs, tasks and deliveries must outlive the process, and its workers, its
            # ingest processes and `vibe worker` share the database.
            raise ValueError(f"names an in-memory SQLite database, lost on exit: {_DATABASE_FIX}")
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
                self.github_client_secret,
            )
            if s is not None
        ]
        values += [v.get_secret_value() for h in self.mcp_http_headers.values() for v in h.values()]
        values += [v.get_secret_value() for r in self.mcp_secrets.values() for v in r.values()]
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
    """Read settings from the environment, raising SettingsError on invalid values (one
    line per problem: the variable, what is wrong, what to write).

    Without GitHub credentials in the environment, the App that ``vibe setup`` stored in the
    data directory is used (:func:`with_stored_app`)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(*(_problem(err) for err in exc.errors())) from None
    except SourceError as exc:
        # A JSON-valued setting (VIBE_LIMITS, VIBE_PRICES) that does not parse.
        field = str(exc).split('"')[1] if '"' in str(exc) else ""
        raise SettingsError(
            f"VIBE_{field.upper()}: is not valid JSON; write a JSON object, or set its "
            f"parts one by one (VIBE_{field.upper()}__<NAME>=...)"
        ) from None
    return with_stored_app(settings)


def _problem(err: Any) -> str:
    loc = [str(p) for p in err["loc"]]
    name = "VIBE_" + "__".join(loc).upper()
    message = str(err["msg"]).removeprefix("Value error, ")
    field = Settings.model_fields.get(loc[0]) if loc else None
    # Secrets are never echoed, nor a database URL (it may hold a password).
    secret = field is not None and "SecretStr" in str(field.annotation)
    given = err.get("input")
    if secret or loc[:1] == ["database_url"] or not isinstance(given, str | int | float):
        return f"{name}: {message}"
    return f"{name}: {message} (got {given!r})"


# VIBE_* variables that are not settings: the tests' own, and those action.yml passes to
# ``vibe action``'s options.
_NOT_SETTINGS_PREFIXES = ("VIBE_TEST_",)
_NOT_SETTINGS = frozenset({"VIBE_PROMPT", "VIBE_NETWORK_ALLOW", "VIBE_TASK_ID", "VIBE_SERVICE_URL"})


def _known_variables() -> list[str]:
    names: list[str] = []
    for name, field in Settings.model_fields.items():
        names.append(f"VIBE_{name.upper()}")
        if field.annotation is Limits:
            names += [f"VIBE_{name.upper()}__{sub.upper()}" for sub in Limits.model_fields]
    return names


def misspelt_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per ``VIBE_*`` variable in the environment that is no setting,
    with the nearest setting's name when one is close (a misspelt variable is otherwise
    silently ignored)."""
    env = os.environ if environ is None else environ
    known = _known_variables()
    price_parts = {part.upper() for part in ModelPrice.model_fields}
    out: list[str] = []
    for raw in sorted(env):
        name = raw.upper()
        if not name.startswith("VIBE_") or name in known or name in _NOT_SETTINGS:
            continue
        if name.startswith(_NOT_SETTINGS_PREFIXES):
            continue
        parts = name.split("__")
        if parts[0] == "VIBE_PRICES" and len(parts) in (2, 3):
            if len(parts) == 2 or parts[2] in price_parts:
                continue
            close = difflib.get_close_matches(parts[2], sorted(price_parts), n=1)
            model = raw.split("__")[1]
            hint = f"VIBE_PRICES__{model}__{close[0].lower()}" if close else None
        else:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
            hint = close[0] if close else None
        suggestion = f"did you mean {hint}?" if hint else "see docs/settings.md"
        out.append(f"{raw} is not a setting and is ignored ({suggestion})")
    return out


def _type_text(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "")
    text = text.replace("pydantic.types.", "").replace(" | None", "").replace("NoneType", "")
    if text.startswith("Literal["):
        return " \\| ".join(f"`{v.strip().strip(chr(39))}`" for v in text[8:-1].split(","))
    names = {"str": "text", "int": "integer", "float": "number", "bool": "true/false"}
    names |= {"Path": "path", "SecretStr": "secret", "list[str]": "list"}
    names |= {"dict[str, dict[str, SecretStr]]": "JSON (secret values)"}
    for raw, shown in names.items():
        if text == raw or text == f"<class '{raw}'>":
            return shown
    return text


def _default_text(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, list) and not value:
        return "empty"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


def _rows(prefix: str, model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        if field.annotation is Limits:
            rows += _rows(f"{variable}__", Limits)
        elif name == "prices" and model is Settings:
            for part, sub in ModelPrice.model_fields.items():
                rows.append(
                    (
                        f"{variable}__<model>__{part}",
                        "number",
                        _default_text(field),
                        f"{field.description} {sub.description}",
                    )
                )
        else:
            description = field.description or ""
            if _type_text(field.annotation) == "list":
                description += " A comma list (`a,b`) or a JSON list."
            rows.append((variable, _type_text(field.annotation), _default_text(field), description))
    return rows


def settings_markdown() -> str:
    """``docs/settings.md``: every setting with its type, default and description, from
    the model itself (a test compares the file with this text, so it cannot drift)."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated by `vibe settings` from bot/settings.py; do not edit by hand. -->",
        "",
        "Every setting is an environment variable. Nested settings use `__`; list settings "
        "take a comma list or a JSON list. An invalid value stops `vibe` with one line "
        "naming the variable; a `VIBE_*` variable that is no setting is named at start with "
        "the nearest setting.",
        "",
        "| Variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for variable, kind, default, description in _rows("VIBE_", Settings):
        cells = (f"`{variable}`", kind, default, description.replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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


def data_dir_problem(settings: Settings) -> str | None:
    """Why the data directory cannot be written, naming it (``None``: it can). A file is
    really created and deleted there: permissions alone do not tell (root, read-only
    mounts)."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".vibe-write-check-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        return (
            f"the data directory {path} is not writable ({exc.strerror or exc}): set "
            "VIBE_DATA_DIR to a writable directory or make this one writable"
        )
    return None


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
