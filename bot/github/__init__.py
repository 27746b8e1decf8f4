"""The GitHub adapter: everything the bot does on GitHub goes through here (PyGithub).

Build one :class:`GitHub` per process (``GitHub.from_settings(settings)``) and ask it for
a :class:`RepoClient` per repository (``hub.repo("owner/name")``). A ``RepoClient``
satisfies :class:`bot.loop.ports.Forge` and offers more: permissions, labels, check runs,
review threads, configuration with the organisation fallback, and git
credentials. Calls block; run them in worker threads, never on an event loop.
:class:`bot.github.actions.RepoActions` makes the Actions calls (workflow dispatch, runs)
through the same request policy.

Failures come out as :class:`GitHubUnavailable` (5xx, timeouts, long rate limits; with
``retry_at`` when GitHub said when to come back) or :class:`GitHubRequestError` (a 4xx that
retrying cannot fix); the job boundary in ``bot/bootstrap.py`` maps them to retry-at and
dead.
"""

from bot.github.auth import AppTokens, IssuedToken, StaticToken, SystemClock, TokenSource
from bot.github.client import (
    CheckConclusion,
    CheckStatus,
    Comment,
    ConfigSource,
    GitCredentials,
    GitHub,
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
