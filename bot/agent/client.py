"""The model client: one streamed Messages API turn, with API failures classified.

Retries of 408/409/429/5xx/529 and connection errors are the SDK's (``max_retries`` from
``VIBE_ANTHROPIC_MAX_RETRIES``, honouring ``retry-after``); what is left when they run out
becomes a :class:`ModelError` the caller can act on:

- ``spend_limit``: a billing error, or a 429/400 whose ``error.details.error_code`` (or,
  from older API versions, its message) says a spend limit was reached. Retrying cannot
  help, so a middleware stops the SDK's retries at once (DESIGN.md section 5: "a
  spending-limit 429 is not" retried).
- ``too_large``: 413, or 400 "prompt is too long"; the loop trims its context once.
- ``stream_broken``: the stream ended early (an ``error`` event, a cut connection, no
  ``message_stop``); nothing of the turn is used and the loop retries the turn.
- ``unavailable``: overload, rate limit, server errors or no connection after the SDK's
  retries, or a wait longer than :data:`MAX_INLINE_WAIT` (not slept through); retryable
  later at the job level. ``retry_after`` carries the wait the API asked for (the last
  answer's, in any form :func:`retry_after` reads) to the job's retry time.
- ``fatal``: any other 4xx (bad key, permission, invalid request); not retryable.
- ``cancelled``: the run was stopped while a turn was streaming.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import anthropic
import httpx2
from anthropic import Anthropic, APIRequest, APIResponse, CallNext, Middleware

from bot.agent.cost import TokenUsage
from bot.core.waits import delay_seconds
from bot.observability import model_error, model_request
from bot.settings import Settings

ErrorKind = Literal[
    "spend_limit", "too_large", "stream_broken", "unavailable", "fatal", "cancelled"
]

# https://docs.anthropic.com/en/api/errors ; error codes as the SDK's error classes name them.
MAX_INLINE_WAIT = 30.0  # seconds the SDK may sleep for a retry-after inside a job

SPEND_LIMIT_CODES = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
        "linked_organization_billing_unavailable",
    }
)


class ModelError(Exception):
    """A model call that did not produce a usable turn. ``retry_after`` is the wait the
    API asked for, when it asked for one longer than the worker should sleep through."""

    def __init__(self, kind: ErrorKind, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.kind: ErrorKind = kind
        self.reason = reason
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in ("unavailable", "stream_broken")


class SpendLimitReached(anthropic.AnthropicError):
    """Raised by the middleware so the SDK does not retry a spending-limit 429."""


def _error_fields(body: object) -> tuple[str | None, str | None, str | None]:
    if not isinstance(body, dict):
        return None, None, None
    error = body.get("error")
    if not isinstance(error, dict):
        return None, None, None
    details = error.get("details")
    code = details.get("error_code") if isinstance(details, dict) else None
    return (
        error.get("type") if isinstance(error.get("type"), str) else None,
        error.get("message") if isinstance(error.get("message"), str) else None,
        code if isinstance(code, str) else None,
    )


# Before error codes existed the API said so only in words ("You have reached your
# specified API usage limits", "Your credit balance is too low").
SPEND_LIMIT_WORDS = re.compile(r"usage limits|spend(?:ing)? limit|credit balance", re.IGNORECASE)


def _is_spend_limit(
    status: int, error_type: str | None, code: str | None, message: str | None
) -> bool:
    return (
        status == 402
        or error_type == "billing_error"
        or code in SPEND_LIMIT_CODES
        or (status in (400, 429) and SPEND_LIMIT_WORDS.search(message or "") is not None)
    )


class RetryLater(anthropic.AnthropicError):
    """Raised by the middleware when the API asks for a wait too long to sleep through."""

    def __init__(self, seconds: float, message: str) -> None:
        super().__init__(message)
        self.seconds = seconds


RESET_HEADERS = ("requests", "tokens", "input-tokens", "output-tokens")


def _reset_wait(headers: Any, now: float) -> float | None:
    """The wait until the spent limit resets: the latest ``anthropic-ratelimit-<limit>-reset``
    (RFC 3339) among the limits whose ``-remaining`` is 0
    (https://docs.anthropic.com/en/api/rate-limits#response-headers)."""
    waits: list[float] = []
    for limit in RESET_HEADERS:
        prefix = f"anthropic-ratelimit-{limit}"
        reset = headers.get(f"{prefix}-reset")
        if headers.get(f"{prefix}-remaining") != "0" or reset is None:
            continue
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is not None:
            waits.append(max(0.0, when.timestamp() - now))
    return max(waits) if waits else None


def retry_after(headers: Any, now: float | None = None) -> float | None:
    """The wait the API asked for, in seconds: ``retry-after-ms``, else ``retry-after``
    (seconds or an HTTP date), else the reset time of a spent rate limit."""
    now = time.time() if now is None else now
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    wait = delay_seconds(value, now) if value is not None else None
    return wait if wait is not None else _reset_wait(headers, now)


def _retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


class _ApiPolicy(Middleware):
    """Stops the SDK's retries where retrying inside the worker thread is wrong: a spending
    limit (it will not lift by itself) and a wait longer than ``MAX_INLINE_WAIT`` (the job
    should back off and free its worker rather than sleep holding it)."""

    def handle(self, request: APIRequest, call_next: CallNext) -> APIResponse[Any]:
        # Called once per HTTP attempt, inside the SDK's retries: each attempt is counted.
        body = request.json
        model = str(body.get("model", "-")) if isinstance(body, dict) else "-"
        try:
            response = call_next(request)
        except anthropic.APIConnectionError as exc:
            timeout = isinstance(exc, anthropic.APITimeoutError)
            model_request(model, "timeout" if timeout else "connection_error")
            raise
        http = response.http_response
        model_request(model, str(http.status_code))
        if http.status_code in (402, 429):
            http.read()
            try:
                body = json.loads(http.text)
            except ValueError:
                body = None
            error_type, message, code = _error_fields(body)
            if _is_spend_limit(http.status_code, error_type, code, message):
                raise SpendLimitReached(message or f"spend limit reached ({code or error_type})")
        if _retryable_status(http.status_code):
            wait = retry_after(http.headers)
            if wait is not None and wait > MAX_INLINE_WAIT:
                raise RetryLater(
                    wait, f"the API asked to retry after {wait:.0f} s ({http.status_code})"
                )
        return response


def make_client(settings: Settings) -> Anthropic:
    """The SDK client for ``settings``: key, ``base_url`` (the scripted server in tests),
    retries, and the spend-limit middleware. Explicit arguments keep the SDK from reading
    credentials, a base URL or tracing options from the environment."""
    key = settings.anthropic_api_key
    if key is None:
        raise ValueError("no model access: set VIBE_ANTHROPIC_API_KEY")
    return Anthropic(
        api_key=key.get_secret_value(),
        base_url=settings.anthropic_base_url or "https://api.anthropic.com",
        max_retries=settings.anthropic_max_retries,
        middleware=[_ApiPolicy()],
        # The SDK's OpenTelemetry spans are on by default when opentelemetry-api is
        # installed; the bot does not export them, and they cost about 4 ms per call
        # (tests/benchmarks/bench_agent.py). Off also keeps request content out of spans.
        open_telemetry=False,
    )


@dataclass(frozen=True)
class Turn:
    """One complete assistant turn."""

    content: list[dict[str, Any]]
    stop_reason: str
    usage: TokenUsage
    duration: float
    request_id: str | None

    @property
    def text(self) -> str:
        return "\n".join(b["text"] for b in self.content if b["type"] == "text").strip()

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b["type"] == "tool_use"]


def _block_param(block: Any) -> dict[str, Any] | None:
    if block.type == "text":
        # The API refuses empty text blocks in a request, so one is never sent back.
        return {"type": "text", "text": block.text} if block.text else None
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return None


def classify(exc: BaseException) -> ModelError:
    """Map an SDK or transport exception to a :class:`ModelError`."""
    if isinstance(exc, RetryLater):
        return ModelError("unavailable", str(exc), retry_after=exc.seconds)
    if isinstance(exc, SpendLimitReached):
        return ModelError("spend_limit", f"the API spending limit was reached: {exc}")
    if isinstance(exc, anthropic.APIStatusError):
        error_type, message, code = _error_fields(exc.body)
        status = exc.status_code
        detail = message or str(exc)
        if status == 200:
            return ModelError("stream_broken", f"the stream broke with {error_type}: {detail}")
        if _is_spend_limit(status, error_type, code, detail):
            return ModelError("spend_limit", f"the API spending limit was reached: {detail}")
        if status == 413 or (status == 400 and "prompt is too long" in detail):
            return ModelError("too_large", f"the request is too large: {detail}")
        if _retryable_status(status):
            # The SDK's retries are spent: the wait the last answer asked for is the job's.
            return ModelError(
                "unavailable",
                f"the API is unavailable ({status} {error_type}): {detail}",
                retry_after=retry_after(exc.response.headers),
            )
        if status == 401:
            return ModelError(
                "fatal", "the API key was rejected (401); check VIBE_ANTHROPIC_API_KEY"
            )
        return ModelError("fatal", f"the API refused the request ({status} {error_type}): {detail}")
    if isinstance(exc, anthropic.APIConnectionError):
        return ModelError("unavailable", f"cannot reach the API: {exc}")
    if isinstance(exc, httpx2.TransportError):
        return ModelError("stream_broken", f"the connection broke mid-stream: {exc}")
    return ModelError("fatal", f"{type(exc).__name__}: {exc}")


def stream_turn(
    client: Anthropic,
    request: dict[str, Any],
    *,
    timeout: float | None = None,
    cancel: threading.Event | None = None,
) -> Turn:
    """Stream one turn; return it only when it arrived complete, else raise ModelError.

    ``timeout`` bounds each HTTP attempt (the SDK's default is 10 minutes); ``cancel``
    abandons the stream between events (kind ``cancelled``)."""
    started = time.monotonic()
    complete = False
    opened = False
    options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    try:
        with client.messages.stream(**request, **options) as stream:
            opened = True
            for event in stream:
                if cancel is not None and cancel.is_set():
                    raise ModelError("cancelled", "stopped while the model was answering")
                if event.type == "message_stop":
                    complete = True
            if not complete:
                raise ModelError("stream_broken", "the stream ended before message_stop")
            message = stream.get_final_message()
            request_id = stream.request_id
    except ModelError as exc:
        model_error(str(request.get("model", "-")), exc.kind)
        raise
    except (anthropic.AnthropicError, httpx2.TransportError) as exc:
        error = classify(exc)
        if opened and isinstance(exc, anthropic.APIConnectionError):
            # The SDK (2.17 and later) wraps a read that fails once the answer has begun
            # as a connection error (anthropic/_streaming.py: iter_response_bytes): the API
            # was reached, the stream broke, and the turn is retried as a broken stream.
            error = ModelError("stream_broken", f"the connection broke mid-stream: {exc}")
        model_error(str(request.get("model", "-")), error.kind)
        raise error from exc
    content = [p for p in (_block_param(b) for b in message.content) if p is not None]
    return Turn(
        content=content,
        stop_reason=message.stop_reason or "end_turn",
        usage=TokenUsage.from_api(message.usage),
        duration=time.monotonic() - started,
        request_id=request_id,
    )
