"""Paths and helpers shared by the deployment-file tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
DOCKERFILE = INFRA / "Dockerfile"
COMPOSE = INFRA / "compose.yaml"
MANIFEST = INFRA / "kubernetes" / "vibe-bot.yaml"
LOCK = INFRA / "requirements.lock"
RELEASE = ROOT / ".github" / "workflows" / "release.yml"


def tool(name: str) -> str:
    """A command-line tool of the [dev] extras: beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    require(found is not None, f"{name} is not installed (it is in the [dev] extras)")
    assert found is not None
    return found


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def deployment(component: str) -> dict[str, Any]:
    (found,) = [
        doc
        for doc in manifests()
        if doc["kind"] == "Deployment" and doc["metadata"]["labels"]["component"] == component
    ]
    return found


# Docker's default capability set for a container (moby oci/caps/defaults.go; containerd's
# default spec has the same fourteen), as `setpriv` names them.
DOCKER_DEFAULT_CAPS = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)


def compose_caps(service: str) -> frozenset[str]:
    """The capabilities a compose service ends with (it drops ALL, then adds)."""
    svc = compose()["services"][service]
    assert svc["cap_drop"] == ["ALL"], f"{service} must drop every capability first"
    return frozenset(svc["cap_add"])
