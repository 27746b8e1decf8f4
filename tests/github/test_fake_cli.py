"""``python -m bot.testing.fake_github``: a standalone fake for trying a repository."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bot.testing.fake_github.__main__ import main


def test_standalone_fake_serves_a_directory_as_a_repository(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "vibe.yml").write_text("model: plan\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("not served\n")
    command = [
        sys.executable,
        "-m",
        "bot.testing.fake_github",
        "--repo",
        f"acme/widgets={tmp_path}",
    ]
    with subprocess.Popen(
        [*command, "--collaborator", "alice:write"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            info = json.loads(proc.stdout.readline())
            headers = {"Authorization": f"token {info['tokens']['alice']}"}
            base = f"{info['base_url']}/repos/acme/widgets/contents"
            got = httpx.get(f"{base}/.github/vibe.yml", headers=headers)
            assert got.status_code == 200
            assert got.json()["path"] == ".github/vibe.yml"
            assert httpx.get(f"{base}/.git/config", headers=headers).status_code == 404
            assert Path(info["private_key_path"]).read_text().startswith("-----BEGIN")
            assert info["clone_urls"]["acme/widgets"].endswith("/acme/widgets.git")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
    assert not Path(info["private_key_path"]).exists()


def test_standalone_fake_refuses_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = [
        ["--repo", "nonsense"],
        ["--collaborator", "alice:god"],
        ["--repo", f"a/b={tmp_path / 'nope'}"],
        ["--port", "70000"],
    ]
    for args in bad:
        assert main(args) == 2
        assert capsys.readouterr().err.startswith("error:")
