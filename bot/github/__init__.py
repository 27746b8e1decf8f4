"""The GitHub adapter: everything the bot does on GitHub goes through here (PyGithub).

Build one :class:`GitHub` per process (``GitHub.from_settings(settings)``) and ask it for
a :class:`RepoClient` per repository (``hub.repo("owner/name")``). A ``RepoClient``
satisfies :class:`bot.loop.ports.Forge` and offers more: permissions, labels, check runs,
review threads, configuration with the organisation fallback, instruction files and git
credentials. Calls block; run them in worker threads, never on an event loop.

Failures come out as :class:`GitHubUnavailable` (a :class:`bot.queue.RetryableError`:
5xx, timeouts, long rate limits) or :class:`GitHubRequestError` (a
:class:`bot.queue.PermanentError`: a 4xx that retrying cannot fix).
"""

from bot.github.auth import AppTokens, IssuedToken, StaticToken, SystemClock, TokenSource
from bot.github.client import (
    INSTRUCTION_FILES,
    WRITERS,
    CheckConclusion,
    CheckStatus,
    Comment,
    ConfigSource,
    GitCredentials,
    GitHub,
    InstructionFile,
    IssueThread,
    Permission,
    PullRequest,
    RepoClient,
    ReviewComment,
    ReviewThread,
    ThreadComment,
)
from bot.github.retry import (
    AmbiguousWrite,
    Clock,
    GitHubRequestError,
    GitHubUnavailable,
    RequestPolicy,
    RetrySettings,
)

__all__ = [
    "INSTRUCTION_FILES",
    "WRITERS",
    "AmbiguousWrite",
    "AppTokens",
    "CheckConclusion",
    "CheckStatus",
    "Clock",
    "Comment",
    "ConfigSource",
    "GitCredentials",
    "GitHub",
    "GitHubRequestError",
    "GitHubUnavailable",
    "InstructionFile",
    "IssueThread",
    "IssuedToken",
    "Permission",
    "PullRequest",
    "RepoClient",
    "RequestPolicy",
    "RetrySettings",
    "ReviewComment",
    "ReviewThread",
    "StaticToken",
    "SystemClock",
    "ThreadComment",
    "TokenSource",
]
