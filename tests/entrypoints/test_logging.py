"""Structured logs carry the delivery id and never a secret."""

from __future__ import annotations

import json

import pytest
import structlog

from bot.observability import configure_logging


def test_logs_are_json_with_context_and_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "configured-secret-value-123"
    token = "ghs_" + "b" * 36
    configure_logging("INFO", json=True, secrets=[secret])
    log = structlog.get_logger("test").bind(delivery="abc-123")
    log.info("delivery.stored", detail=f"token {token} and {secret}", count=3)
    log.debug("hidden")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert len(lines) == 1
    [record] = lines
    assert record["delivery"] == "abc-123"
    assert record["event"] == "delivery.stored"
    assert record["count"] == 3
    assert token not in record["detail"]
    assert secret not in record["detail"]
    assert record["detail"].count("[redacted]") == 2


def test_secrets_inside_structured_values_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    secret = "configured-secret-value-123"
    token = "ghp_" + "c" * 36
    configure_logging("INFO", json=True, secrets=[secret])
    log = structlog.get_logger("test")
    log.info("call.failed", request={"headers": [f"token {token}"]}, error=RuntimeError(secret))
    configure_logging("INFO", json=False, secrets=[secret])
    log.info("call.failed", request={"auth": secret}, error=RuntimeError(token))
    out = capsys.readouterr().err
    json_line, console_line = out.splitlines()
    record = json.loads(json_line)
    assert record["request"] == {"headers": ["token [redacted]"]}
    assert record["error"] == "RuntimeError('[redacted]')"
    assert "call.failed" in console_line
    assert console_line.count("[redacted]") == 2
    assert secret not in out
    assert token not in out
