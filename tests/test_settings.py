"""Settings that would make the bot unsafe are refused at start with one line naming the
variable (DESIGN.md section 4 rules 1 and 6); so is every other invalid value, with its fix.
List settings take comma lists, misspelt variables are named, and docs/settings.md is the
table generated from the model."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.ingest.webhook import signature_valid
from bot.settings import (
    Limits,
    Settings,
    SettingsError,
    ensure_webhook_secret,
    load_settings,
    misspelt_variables,
    settings_markdown,
)


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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("dependabot", ["dependabot"]),
        ("dependabot, renovate ,", ["dependabot", "renovate"]),
        ('["dependabot", "renovate"]', ["dependabot", "renovate"]),
        ("", []),
    ],
)
@pytest.mark.parametrize(
    "variable", ["VIBE_ALLOWED_BOTS", "VIBE_ALLOWED_OWNERS", "VIBE_ALLOWED_REPOSITORIES"]
)
def test_list_settings_take_a_comma_list_or_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv(variable, value)
    settings = load_settings(data_dir=tmp_path)
    assert getattr(settings, variable.removeprefix("VIBE_").lower()) == expected


def test_a_broken_json_list_is_one_line_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIBE_ALLOWED_OWNERS", '["octo-org"')
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path)
    [line] = caught.value.lines
    assert line.startswith("VIBE_ALLOWED_OWNERS: is not a JSON list (")
    assert "write a comma list (a,b) or a JSON list" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("garbage", "is not a database URL: use sqlite:///PATH or postgresql+psycopg://"),
        ("postgres://vibe:pw-secret@db/vibe", "use postgresql+psycopg://... (psycopg 3)"),
        ("postgresql://vibe:pw-secret@db/vibe", "use postgresql+psycopg://... (psycopg 3)"),
        ("mysql://vibe:pw-secret@db/vibe", "uses 'mysql', which the bot does not support"),
        ("sqlite://", "names an in-memory SQLite database, lost on exit: use sqlite:///PATH"),
        ("sqlite:///:memory:", "names an in-memory SQLite database, lost on exit"),
    ],
)
def test_a_database_url_the_bot_cannot_use_is_one_line_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, says: str
) -> None:
    monkeypatch.setenv("VIBE_DATABASE_URL", url)
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path)
    [line] = caught.value.lines
    assert line.startswith("VIBE_DATABASE_URL: ")
    assert says in line
    assert "pw-secret" not in line  # a database URL may hold a password: never echoed


def test_a_usable_database_url_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = "postgresql+psycopg://vibe:pw@db:5432/vibe"
    monkeypatch.setenv("VIBE_DATABASE_URL", url)
    assert load_settings(data_dir=tmp_path).database_url == url


def test_each_invalid_value_is_its_own_line_and_secrets_are_not_echoed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIBE_WORKERS", "many")
    monkeypatch.setenv("VIBE_LIMITS__DOLLARS_PER_TASK", "-3")
    monkeypatch.setenv("VIBE_WEBHOOK_SECRET", " ")
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path)
    assert sorted(line.split(":")[0] for line in caught.value.lines) == [
        "VIBE_LIMITS__DOLLARS_PER_TASK",
        "VIBE_WEBHOOK_SECRET",
        "VIBE_WORKERS",
    ]
    assert all("\n" not in line for line in caught.value.lines)
    workers = next(line for line in caught.value.lines if line.startswith("VIBE_WORKERS"))
    assert workers.endswith("(got 'many')")
    secret = next(line for line in caught.value.lines if line.startswith("VIBE_WEBHOOK_SECRET"))
    assert "got" not in secret


def test_a_json_setting_that_does_not_parse_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VIBE_LIMITS", "{not json")
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path)
    assert caught.value.lines == (
        "VIBE_LIMITS: is not valid JSON; write a JSON object, or set its parts one by one "
        "(VIBE_LIMITS__<NAME>=...)",
    )


def test_misspelt_variables_are_named_with_the_nearest_setting() -> None:
    environ = {
        "VIBE_WEBHOOK_SECERT": "x",
        "VIBE_ANTHROPIC_KEY": "x",
        "VIBE_LIMITS__STEPS_PER_ITERATOIN": "3",
        "VIBE_PRICES__claude-x__inptu": "1",
        "VIBE_NOTHING_LIKE_IT": "1",
        # Real settings, nested ones, the tests' own and those action.yml passes: no warning.
        "VIBE_WEBHOOK_SECRET": "x",
        "vibe_workers": "3",
        "VIBE_LIMITS__STEPS_PER_ITERATION": "3",
        "VIBE_LIMITS": "{}",
        "VIBE_PRICES__claude-x__input": "1",
        "VIBE_PRICES__claude-x__cache_read": "1",
        "VIBE_TEST_DATABASE_URL": "x",
        "VIBE_TEST_STRICT": "1",
        "VIBE_PROMPT": "x",
        "PATH": "/bin",
    }
    assert misspelt_variables(environ) == [
        "VIBE_ANTHROPIC_KEY is not a setting and is ignored (did you mean VIBE_ANTHROPIC_API_KEY?)",
        "VIBE_LIMITS__STEPS_PER_ITERATOIN is not a setting and is ignored (did you mean "
        "VIBE_LIMITS__STEPS_PER_ITERATION?)",
        "VIBE_NOTHING_LIKE_IT is not a setting and is ignored (see docs/settings.md)",
        "VIBE_PRICES__claude-x__inptu is not a setting and is ignored (did you mean "
        "VIBE_PRICES__claude-x__input?)",
        "VIBE_WEBHOOK_SECERT is not a setting and is ignored (did you mean VIBE_WEBHOOK_SECRET?)",
    ]


def test_docs_settings_md_is_the_generated_table() -> None:
    docs = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
    assert docs.read_text() == settings_markdown(), (
        "docs/settings.md is out of date: run `vibe settings > docs/settings.md`"
    )


def test_every_setting_is_documented() -> None:
    table = settings_markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert f"`VIBE_{name.upper()}" in table
    for name, field in Limits.model_fields.items():
        assert field.description, f"limits.{name} has no description"
        assert f"`VIBE_LIMITS__{name.upper()}`" in table
    assert "`VIBE_LOG_JSON` | true/false | false |" in table
    assert "`VIBE_ALLOWED_BOTS` | list | empty |" in table
