"""Settings that would make the bot unsafe are refused at start with one line naming the
variable (DESIGN.md section 4 rules 1 and 6)."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.ingest.webhook import signature_valid
from bot.settings import SettingsError, ensure_webhook_secret, load_settings


@pytest.mark.parametrize("variable", ["VIBE_WEBHOOK_SECRET", "VIBE_WEBHOOK_SECRET_PREVIOUS"])
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_webhook_secret_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=rf"{variable}: .*is empty"):
        load_settings(data_dir=tmp_path)


@pytest.mark.parametrize("uid", ["0", "-1"])
def test_a_root_sandbox_uid_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uid: str
) -> None:
    monkeypatch.setenv("VIBE_SANDBOX_UID", uid)
    with pytest.raises(SettingsError, match=r"VIBE_SANDBOX_UID: .*unprivileged uid"):
        load_settings(data_dir=tmp_path)


def test_an_empty_stored_webhook_secret_is_refused(tmp_path: Path) -> None:
    (tmp_path / "webhook-secret").write_text("\n")
    with pytest.raises(SettingsError, match="is empty"):
        ensure_webhook_secret(load_settings(data_dir=tmp_path))


def test_a_delivery_signed_with_an_empty_key_is_never_valid() -> None:
    body = b'{"zen": "forged"}'
    forged = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    assert not signature_valid(body, forged, [b""])
    real = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature_valid(body, real, [b"", b"s3cret"])
    assert not signature_valid(body, forged, [b"", b"s3cret"])


def test_vibe_serve_with_an_empty_secret_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
    env.update(VIBE_DATA_DIR=str(tmp_path / "data"), VIBE_WEBHOOK_SECRET="")
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "VIBE_WEBHOOK_SECRET" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
