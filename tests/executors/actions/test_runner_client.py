"""The runner's HTTP client against a broken or hostile service (respx stands in for the
service's answers; the real service routes are tested in test_executor.py)."""

from __future__ import annotations

import httpx
import pytest
import respx

from bot.entrypoints.action import ActionError, ActionResult, RunnerClient, ServiceError

BASE = "https://vibe.example.test/api/runner/tasks/7"
GOOD_CLAIM = {
    "token": "runner-token",
    "repository": "octo/demo",
    "spec": {"event_name": "issue_comment", "payload": {"action": "created"}},
}


@respx.mock
def test_claim_sends_the_credential_and_reads_the_task() -> None:
    route = respx.post(f"{BASE}/claim").mock(return_value=httpx.Response(200, json=GOOD_CLAIM))
    client = RunnerClient("https://vibe.example.test/", 7)
    task = client.claim("one-time-credential", 99)
    assert route.calls.last.request.headers["authorization"] == "Bearer one-time-credential"
    assert (task.repository, task.event_name, task.token) == (
        "octo/demo",
        "issue_comment",
        "runner-token",
    )
    progress = respx.post(f"{BASE}/progress").mock(return_value=httpx.Response(200, json={}))
    client.progress("x" * 5000)
    assert progress.calls.last.request.headers["authorization"] == "Bearer runner-token"
    assert len(progress.calls.last.request.content) < 2100


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(403, json={"detail": "spent"}), "credential wrong, spent or expired"),
        (httpx.Response(500, text="boom"), "answered 500"),
        (httpx.Response(200, text="<html>not json"), "not JSON"),
        (httpx.Response(200, json=[1, 2]), "not an object"),
        (httpx.Response(200, json={"token": "t"}), "lacks token, spec or repository"),
        (
            httpx.Response(200, json={**GOOD_CLAIM, "spec": {"event_name": 3}}),
            "names no event",
        ),
        (httpx.Response(200, json={**GOOD_CLAIM, "records": "x"}), "records are not an object"),
    ],
)
@respx.mock
def test_a_broken_or_hostile_answer_is_a_clear_service_error(
    response: httpx.Response, message: str
) -> None:
    respx.post(f"{BASE}/claim").mock(return_value=response)
    with pytest.raises(ServiceError, match=message):
        RunnerClient("https://vibe.example.test", 7).claim("c", None)


@respx.mock
def test_an_unreachable_service_and_calls_out_of_order_are_refused() -> None:
    respx.post(f"{BASE}/claim").mock(side_effect=httpx.ConnectError("refused"))
    client = RunnerClient("https://vibe.example.test", 7)
    with pytest.raises(ServiceError, match="cannot reach"):
        client.claim("c", None)
    with pytest.raises(ServiceError, match="before claim"):
        client.result(ActionResult("failed"))
    with pytest.raises(ActionError, match="must be an http"):
        RunnerClient("file:///etc/passwd", 7)
