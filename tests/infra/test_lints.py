"""The linters CI runs on the deployment files, each with a probe showing it can fail:
hadolint on the Dockerfile, compose against the compose-spec JSON schema, the Kubernetes
manifests with kubernetes-validate, and actionlint on the release workflow."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.infra.common import (
    COMPOSE,
    DOCKERFILE,
    INFRA,
    MANIFEST,
    RELEASE,
    ROOT,
    compose,
    tool,
)

# The oldest version the manifests support (securityContext.appArmorProfile is GA in 1.30)
# and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=120, cwd=cwd
    )


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = _run(tool("hadolint"), DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install -y git\n")
    result = _run(tool("hadolint"), bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "Using latest is prone to errors"


def _check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    """Against the compose-spec schema as check-jsonschema vendors it (its licence is there)."""
    return _run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path)


def test_compose_matches_the_compose_spec_schema() -> None:
    result = _check_compose(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_schema_check_can_fail(tmp_path: Path) -> None:
    bad = compose()
    bad["services"]["worker"]["stop_grace_period"] = {"seconds": 60}
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = _check_compose(path)
    assert result.returncode != 0
    assert "stop_grace_period" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_validate(version: str) -> None:
    result = _run(tool("kubernetes-validate"), "--strict", "-k", version, MANIFEST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed for resource") == len(
        [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    )


def test_kubernetes_validate_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.read_text().replace("terminationGracePeriodSeconds: 60", "grace: 60"))
    result = _run(tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSIONS[-1], bad)
    assert result.returncode != 0


# Actions are pinned to exact releases; actionlint knows the inputs of each action by major
# version only, so the inputs are checked on a copy with the majors.
_EXACT = re.compile(r"(uses: [\w./-]+@v\d+)\.\d+\.\d+")


def _release_by_major(tmp_path: Path, text: str) -> Path:
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    path = workflows / "release.yml"
    path.write_text(_EXACT.sub(r"\1", text))
    return path


def test_release_actions_are_pinned_to_exact_versions() -> None:
    uses = re.findall(r"uses: (\S+)", RELEASE.read_text())
    assert uses
    assert all(_EXACT.fullmatch(f"uses: {u}") for u in uses), uses


def test_actionlint_passes_on_the_release_workflow(tmp_path: Path) -> None:
    tool("shellcheck")  # actionlint checks every run: script with it when it is on PATH
    result = _run(tool("actionlint"), "-oneline", "-no-color", RELEASE)
    assert result.returncode == 0, result.stdout + result.stderr
    by_major = _release_by_major(tmp_path, RELEASE.read_text())
    result = _run(tool("actionlint"), "-oneline", "-no-color", by_major, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_can_fail_on_the_release_workflow(tmp_path: Path) -> None:
    text = RELEASE.read_text().replace("file: infra/Dockerfile", "dockerfile: infra/Dockerfile")
    bad = _release_by_major(tmp_path, text)
    result = _run(tool("actionlint"), "-oneline", "-no-color", bad, cwd=tmp_path)
    assert result.returncode != 0
    assert 'input "dockerfile" is not defined' in result.stdout


def test_release_refuses_a_tag_other_than_the_version() -> None:
    check = INFRA / "check-release-tag.sh"
    assert f"bash {check.relative_to(ROOT)}" in RELEASE.read_text()
    ok = _run("bash", check, f"v{VERSION}")
    assert ok.returncode == 0, ok.stderr
    wrong = _run("bash", check, f"v{VERSION}.1")
    assert wrong.returncode != 0
    assert "does not match" in wrong.stderr
