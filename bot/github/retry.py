"""How the adapter waits and retries (DESIGN.md section 5), independent of PyGithub's own.

GitHub's rules, https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
and https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api:

- a ``retry-after`` header: wait that many seconds;
- ``x-ratelimit-remaining: 0``: the primary limit is spent, wait until ``x-ratelimit-reset``;
- a secondary limit without either header: wait at least a minute, longer each time;
- writes (POST, PATCH, PUT, DELETE) at least a second apart;
- 5xx and timeouts are worth retrying with backoff for requests that are safe to repeat;
- a 4xx that is not a rate limit (422, 403 permission, 404) cannot succeed by retrying.

Every wait goes through an injectable :class:`Clock`, so tests check the waits without
sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import requests
import structlog
from github import GithubException

from bot.core.waits import delay_seconds
from bot.observability import github_rate_limit_wait, github_request

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class GitHubUnavailable(Exception):
    """GitHub did not answer usefully after the retries (5xx, timeouts, long rate limits).

    ``retry_at`` (epoch seconds) is set when GitHub said when to come back.
    """

    def __init__(self, message: str, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class GitHubRequestError(Exception):
    """GitHub refused the request in a way retrying cannot fix (4xx other than limits)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message}")
        self.status = status
        self.message = message


class AmbiguousWrite(GitHubUnavailable):
    """A write timed out or failed with 5xx: it may or may not have happened."""


@dataclass(frozen=True)
class RetrySettings:
    attempts: int = 4  # for 5xx and timeouts on idempotent requests
    backoff: float = 1.0  # first wait, doubled each time
    rate_limit_waits: int = 3  # how many rate-limit waits one call may do
    max_wait: float = 15 * 60.0  # a longer wait is handed back to the job queue
    secondary_wait: float = 60.0  # first wait for a secondary limit without headers
    min_write_interval: float = 1.0


def _header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            return str(value)
    return None


def error_message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        message = str(data.get("message", ""))
        errors = data.get("errors")
        if isinstance(errors, list):
            details = [
                str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e)
                for e in errors
            ]
            message = "; ".join([message, *details]) if message else "; ".join(details)
        return message
    return str(data or exc)


def rate_limit_wait(
    exc: GithubException, now: float, secondary_count: int, cfg: RetrySettings
) -> float | None:
    """Seconds to wait before repeating a rate-limited request, or None if not rate limited."""
    if exc.status not in (403, 429):
        return None
    retry_after = _header(exc.headers, "retry-after")
    if retry_after is not None:
        wait = delay_seconds(retry_after, now)
        return cfg.secondary_wait if wait is None else wait
    remaining = _header(exc.headers, "x-ratelimit-remaining")
    reset = _header(exc.headers, "x-ratelimit-reset")
    if remaining == "0" and reset is not None:
        try:
            return max(0.0, float(reset) - now) + 1.0
        except ValueError:
            return cfg.secondary_wait
    message = error_message(exc).lower()
    if "secondary rate limit" in message or "abuse" in message or exc.status == 429:
        return cfg.secondary_wait * pow(2.0, secondary_count)
    if "rate limit" in message:
        return cfg.secondary_wait
    return None


def _limit_kind(exc: GithubException) -> str:
    """Which rate limit a refusal is (the kinds of ``vibe_github_rate_limit_waits_total``)."""
    if _header(exc.headers, "retry-after") is not None:
        return "retry_after"
    if _header(exc.headers, "x-ratelimit-remaining") == "0":
        return "primary"
    return "secondary"


def _refuse_event_loop(what: str) -> None:
    """The calls block: on an event loop they would stall every other request."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"{what}: blocking GitHub call on an event loop; run it in a worker thread "
        "(asyncio.to_thread)"
    )


class RequestPolicy:
    """Runs one GitHub operation with GitHub's waiting rules and our retry rules."""

    def __init__(self, clock: Clock, settings: RetrySettings) -> None:
        self.clock = clock
        self.settings = settings
        self._write_lock = threading.Lock()
        self._last_write = float("-inf")

    def _pace_write(self) -> None:
        interval = self.settings.min_write_interval
        if interval <= 0:
            return
        with self._write_lock:
            wait = self._last_write + interval - self.clock.now()
            if wait > 0:
                self.clock.sleep(wait)
            self._last_write = self.clock.now()

    def run(
        self,
        what: str,
        call: Callable[[], T],
        *,
        write: bool = False,
        idempotent: bool = True,
        on_unauthorized: Callable[[], bool] | None = None,
    ) -> T:
        """Call ``call`` until it succeeds or cannot; see the module docstring.

        ``on_unauthorized`` is called once on a 401 (e.g. to drop a cached installation
        token); if it returns True the request is repeated once.
        """
        _refuse_event_loop(what)
        cfg = self.settings
        failures = 0
        limited = 0
        secondary = 0
        refreshed = False
        while True:
            if write:
                self._pace_write()
            try:
                result = call()
            except GithubException as exc:
                github_request(str(exc.status))
                wait = rate_limit_wait(exc, self.clock.now(), secondary, cfg)
                if wait is not None:
                    kind = _limit_kind(exc)
                    if kind == "secondary":
                        secondary += 1
                    limited += 1
                    if limited > cfg.rate_limit_waits or wait > cfg.max_wait:
                        raise GitHubUnavailable(
                            f"{what}: rate limited by GitHub", self.clock.now() + wait
                        ) from None
                    log.info("github.rate_limited", what=what, wait=wait, status=exc.status)
                    github_rate_limit_wait(kind, wait)
                    self.clock.sleep(wait)
                    continue
                if exc.status == 401 and on_unauthorized is not None and not refreshed:
                    refreshed = True
                    if on_unauthorized():
                        continue
                if exc.status >= 500 or exc.status == 408:
                    failures += 1
                    if not idempotent:
                        raise AmbiguousWrite(f"{what}: GitHub answered {exc.status}") from None
                    if failures >= cfg.attempts:
                        # A 503 may say when to come back; the job waits that long.
                        after = _header(exc.headers, "retry-after")
                        wait = None if after is None else delay_seconds(after, self.clock.now())
                        raise GitHubUnavailable(
                            f"{what}: GitHub answered {exc.status}",
                            None if wait is None else self.clock.now() + wait,
                        ) from None
                    self._backoff(what, failures, exc.status)
                    continue
                raise GitHubRequestError(exc.status, f"{what}: {error_message(exc)}") from None
            except (requests.Timeout, requests.ConnectionError) as exc:
                github_request(
                    "timeout" if isinstance(exc, requests.Timeout) else "connection_error"
                )
                failures += 1
                if not idempotent:
                    raise AmbiguousWrite(f"{what}: {type(exc).__name__}") from None
                if failures >= cfg.attempts:
                    raise GitHubUnavailable(f"{what}: {type(exc).__name__}") from None
                self._backoff(what, failures, None)
            except (GitHubRequestError, GitHubUnavailable):
                # GitHub answered, with something unusable (GraphQL errors, another shape).
                github_request("2xx")
                raise
            else:
                github_request("2xx")
                return result

    def _backoff(self, what: str, failures: int, status: int | None) -> None:
        wait = self.settings.backoff * (2 ** (failures - 1))
        log.info("github.retry", what=what, wait=wait, status=status)
        self.clock.sleep(wait)
