"""The wait an API asks for reaches the job's retry time in every form it is said in: the
model API's ``retry-after-ms``, ``retry-after`` as seconds or as an HTTP date (RFC 9110
section 10.2.3), the reset time of a spent ``anthropic-ratelimit-*`` limit
(https://docs.anthropic.com/en/api/rate-limits#response-headers), the last answer once the
SDK's own retries are spent, and GitHub's ``retry-after`` as an HTTP date
(https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api). The
end-to-end path (scripted model server -> job row) is tests/e2e/test_loop_faults.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from github import GithubException

from bot.agent.client import ModelError, make_client, retry_after, stream_turn
from bot.bootstrap import job_verdict
from bot.github.retry import GitHubUnavailable, RequestPolicy, RetrySettings, rate_limit_wait
from bot.jobs.queue import Retry
from bot.loop.errors import AgentUnavailable
from bot.settings import load_settings
from bot.testing.model_server import ScriptedModelServer, load_script

NOW = 1_800_000_000.0


def _http_date(seconds: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + seconds, UTC), usegmt=True)


def _rfc3339(seconds: float) -> str:
    return (datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=seconds)).isoformat()


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "40"}, 40.0),
        ({"retry-after-ms": "40000", "retry-after": "1"}, 40.0),
        ({"retry-after": _http_date(40)}, 40.0),
        (
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": _rfc3339(40),
                "anthropic-ratelimit-tokens-remaining": "5000",
                "anthropic-ratelimit-tokens-reset": _rfc3339(90),
            },
            40.0,
        ),
        (
            {"anthropic-ratelimit-tokens-remaining": "5", "anthropic-ratelimit-tokens-reset": "x"},
            None,
        ),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
    ids=["seconds", "ms", "http-date", "ratelimit-reset", "not-spent", "garbage", "none"],
)
def test_the_model_apis_wait_in_every_form(headers: dict[str, str], wait: float | None) -> None:
    found = retry_after(headers, NOW)
    assert found == (None if wait is None else pytest.approx(wait, abs=1.0))


def test_the_last_answers_wait_survives_the_sdks_retries(tmp_path: Path) -> None:
    """A wait short enough for the SDK to sleep through, asked again once its retries are
    spent: the error carries it to the job."""
    overloaded = {"error": {"status": 529, "type": "overloaded_error", "retry_after": 0.01}}
    with ScriptedModelServer(load_script([{**overloaded, "repeat": 2}])) as server:
        settings = load_settings(
            data_dir=tmp_path,
            anthropic_base_url=server.base_url,
            anthropic_api_key="sk-test-local-key-0000",
            anthropic_max_retries=1,
        )
        hello = [{"role": "user", "content": "hello"}]
        request = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": hello}
        # closed: a pooled connection left to the garbage collector is a ResourceWarning in
        # whichever later test it happens to run under
        with make_client(settings) as client, pytest.raises(ModelError) as err:
            stream_turn(client, request)
        assert len(server.message_requests) == 2
    assert err.value.kind == "unavailable"
    assert err.value.retry_after == pytest.approx(0.01)


def test_the_agents_retry_time_is_the_jobs() -> None:
    at = datetime.now(UTC).timestamp() + 40
    verdict = job_verdict(AgentUnavailable("the API asked to retry after 40 s (429)", at))
    assert isinstance(verdict, Retry)
    assert verdict.at == datetime.fromtimestamp(at, UTC)


class StillClock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> float:
        return NOW

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def test_githubs_retry_after_as_an_http_date() -> None:
    limited = GithubException(403, {"message": "rate limited"}, {"Retry-After": _http_date(40)})
    assert rate_limit_wait(limited, NOW, 0, RetrySettings()) == pytest.approx(40.0)


def test_githubs_503_says_when_to_come_back() -> None:
    clock = StillClock()
    policy = RequestPolicy(clock, RetrySettings(attempts=2))

    def unavailable() -> None:
        raise GithubException(503, {"message": "Service Unavailable"}, {"retry-after": "120"})

    with pytest.raises(GitHubUnavailable) as err:
        policy.run("GET issue", unavailable)
    assert err.value.retry_at == NOW + 120
    verdict = job_verdict(err.value)
    assert isinstance(verdict, Retry)
    assert verdict.at == datetime.fromtimestamp(NOW + 120, UTC)
