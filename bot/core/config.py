"""Per-repository configuration, ``.github/vibe.yml``: parsed and validated, no I/O.

An invalid file never stops the bot: :func:`parse_repo_config` returns safe defaults plus
the problems found, each naming the line, so the caller can comment once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
