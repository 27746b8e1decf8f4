"""Per-repository configuration, ``.github/vibe.yml``: parsed and validated, no I/O.

An invalid file never stops the bot: :func:`parse_repo_config` returns safe defaults plus
the problems found, each naming the line, so the caller can comment once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from bot.core.attempts import MAX_ATTEMPTS
from bot.core.ci import CiPolicy
from bot.core.mcp import McpConfig
from bot.core.tasks import DevelopmentModel

CONFIG_PATH = ".github/vibe.yml"
MAX_CONFIG_BYTES = 64 * 1024

DEFAULT_PROTECTED_PATHS: tuple[str, ...] = (
    ".github/workflows/**",
    ".git/**",
    ".bashrc",
    ".bash_profile",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".envrc",
    "**/.bashrc",
    "**/.profile",
    "**/.zshrc",
    "**/.envrc",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Commands(_Strict):
    setup: list[str] = Field(default_factory=list)
    lint: list[str] = Field(default_factory=list)
    test: list[str] = Field(default_factory=list)


class RepoLimits(_Strict):
    steps_per_iteration: int | None = Field(default=None, ge=1, le=1000)
    dollars_per_iteration: float | None = Field(default=None, gt=0)
    minutes_per_iteration: float | None = Field(default=None, gt=0)
    dollars_per_task: float | None = Field(default=None, gt=0)
    minutes_per_task: float | None = Field(default=None, gt=0)


class Paths(_Strict):
    protected: list[str] = Field(default_factory=list)
    allowed: list[str] = Field(default_factory=list)


class Network(_Strict):
    allow: list[str] = Field(default_factory=list)


CheckGlob = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class CiKinds(_Strict):
    """Which failing checks are ``compiler`` feedback and which ``execution``, by check
    name glob (``*`` matches any text, case-insensitive); unmatched names by default words
    (:func:`bot.core.ci.classify`)."""

    compiler: list[CheckGlob] = Field(default_factory=list, max_length=50)
    execution: list[CheckGlob] = Field(default_factory=list, max_length=50)


class Ci(_Strict):
    """The repository's own CI as feedback on the bot's PR (:mod:`bot.loop.ci`)."""

    auto_fix: bool = True
    max_fix_iterations: int = Field(default=3, ge=0, le=20)
    settle_seconds: float = Field(default=30.0, ge=0, le=3600)
    rerun_failed_jobs: bool = False
    ready_when: Literal["checks_green", "never"] = "checks_green"
    kinds: CiKinds = Field(default_factory=CiKinds)

    def policy(self) -> CiPolicy:
        return CiPolicy(
            auto_fix=self.auto_fix,
            max_fix_iterations=self.max_fix_iterations,
            rerun_failed_jobs=self.rerun_failed_jobs,
            ready_when=self.ready_when,
            compiler=tuple(self.kinds.compiler),
            execution=tuple(self.kinds.execution),
        )


class Status(_Strict):
    # A task's status comment is edited at most once per this many seconds for progress
    # within a phase (phase changes are written when they happen); the last state is
    # always written. GitHub's secondary limits on content creation are per account and
    # shared by every task (bot/loop/status.py).
    min_interval: float = Field(default=15.0, ge=0.0, le=3600.0)


ReviewTrigger = Literal["opened", "ready_for_review"]
SeverityName = Literal["critical", "major", "minor", "nit"]


class Review(_Strict):
    """Reviews by the bot (:mod:`bot.loop.review`): of any PR when a ``pull_request``
    event in ``on`` arrives, and of its own PR before a person looks (``before_ready``)."""

    on: list[ReviewTrigger] = Field(default_factory=list, max_length=2)
    forks: bool = True
    instructions: str = Field(default="", max_length=8000)
    max_comments: int = Field(default=20, ge=1, le=50)
    before_ready: bool = False
    max_rounds: int = Field(default=2, ge=0, le=5)
    threshold: SeverityName = "major"

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 (PyYAML) reads an unquoted ``on:`` key as the boolean true, as GitHub's
        workflow files are known for; here it can only mean ``on``."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class RepoConfig(_Strict):
    trigger_label: str | None = None
    model: DevelopmentModel | None = None
    commands: Commands = Field(default_factory=Commands)
    limits: RepoLimits = Field(default_factory=RepoLimits)
    paths: Paths = Field(default_factory=Paths)
    network: Network = Field(default_factory=Network)
    reviewers: list[str] = Field(default_factory=list)
    draft: bool = True
    resolve_threads: bool = False
    executor: Literal["local", "actions"] | None = None
    status: Status = Field(default_factory=Status)
    ci: Ci = Field(default_factory=Ci)
    mcp: McpConfig = Field(default_factory=McpConfig)
    # Best-of-N: independent agent attempts per iteration, chosen by the checks
    # (bot/core/attempts.py); `/vibe attempts=N ...` sets it for one iteration.
    attempts: int = Field(default=1, ge=1, le=MAX_ATTEMPTS)
    review: Review = Field(default_factory=Review)

    @property
    def protected_paths(self) -> tuple[str, ...]:
        return DEFAULT_PROTECTED_PATHS + tuple(self.paths.protected)


@dataclass(frozen=True)
class ConfigProblem:
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.message}"


def _line_of(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at ``loc``, or of its nearest existing parent."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                return line
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def parse_repo_config(text: str | None) -> tuple[RepoConfig, list[ConfigProblem]]:
    """Parse ``.github/vibe.yml``; on any problem return defaults and the problems."""
    if text is None or not text.strip():
        return RepoConfig(), []
    if len(text.encode()) > MAX_CONFIG_BYTES:
        return RepoConfig(), [ConfigProblem(None, f"file is larger than {MAX_CONFIG_BYTES} bytes")]
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return RepoConfig(), [ConfigProblem(line, f"not valid YAML: {problem}")]
    if data is None:
        return RepoConfig(), []
    if not isinstance(data, dict):
        return RepoConfig(), [ConfigProblem(1, "the top level must be a mapping of settings")]
    try:
        return RepoConfig.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            name = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(ConfigProblem(_line_of(root, loc), f"{name}: {err['msg']}"))
        return RepoConfig(), problems
