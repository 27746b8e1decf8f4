"""The deployment files parse and agree with the CLI they start."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from bot.entrypoints.cli import app

INFRA = Path(__file__).resolve().parents[1] / "infra"


def commands() -> list[list[str]]:
    found: list[list[str]] = []
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    found += [svc["command"] for svc in compose["services"].values() if "command" in svc]
    for doc in yaml.safe_load_all((INFRA / "kubernetes" / "vibe-bot.yaml").read_text()):
        if doc["kind"] == "Deployment":
            found += [c["command"] for c in doc["spec"]["template"]["spec"]["containers"]]
    return found


def test_every_deployed_command_is_a_valid_vibe_invocation() -> None:
    runner = CliRunner()
    cmds = commands()
    assert len(cmds) == 4
    for command in cmds:
        assert command[0] == "vibe"
        result = runner.invoke(app, [*command[1:], "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_kubernetes_selectors_match_their_pods() -> None:
    for doc in yaml.safe_load_all((INFRA / "kubernetes" / "vibe-bot.yaml").read_text()):
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
