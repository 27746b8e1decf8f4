"""The image's filesystem, tested without a Docker engine: `.ci/run` builds the root the
Dockerfile builds (``infra/rootfs.sh build``: debootstrap, the Dockerfile's packages, the
hashed lock, the project) and sets VIBE_TEST_ROOTFS; these tests run the service and the
real sandbox in it with the container's capability set (``infra/rootfs.sh run``).

Without VIBE_TEST_ROOTFS they skip (building takes about a minute and a half); when it is
set, a missing root is a failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require
from tests.infra.common import DOCKER_DEFAULT_CAPS, INFRA, compose, compose_caps

ROOTFS = os.environ.get("VIBE_TEST_ROOTFS", "")
SANDBOX_UID = 65534
WEB_UID = 10001  # the Kubernetes web pod's runAsUser, the image's vibe user

# Runs in the image's Python: the start-up probe, then one command through the real
# BwrapSandbox reporting who it runs as and what it could still gain.
PROBE = """
import json, os, tempfile
from pathlib import Path
from bot.sandbox.bwrap import check_sandbox, make_sandbox
from bot.settings import load_settings
settings = load_settings()
check = check_sandbox(settings)
status = ""
if check.ok:
    sandbox = make_sandbox(settings)
    work = Path(tempfile.mkdtemp())
    os.chown(work, sandbox.uid, sandbox.uid)
    result = sandbox.run("grep -E '^(Uid|CapBnd)' /proc/self/status", workdir=work)
    status = result.stdout
print(json.dumps({"ok": check.ok, "detail": check.detail, "status": status}))
"""


@pytest.fixture(scope="module")
def image_root() -> Path:
    if not ROOTFS:
        pytest.skip(
            "the image's root is not built: `infra/rootfs.sh build DIR` then "
            "VIBE_TEST_ROOTFS=DIR (.ci/run does both)"
        )
    root = Path(ROOTFS)
    if not (root / "opt" / "vibe" / "bin" / "vibe").is_file():
        pytest.fail(
            f"VIBE_TEST_ROOTFS={ROOTFS} is not a built root: infra/rootfs.sh build {ROOTFS}"
        )
    require(os.geteuid() == 0, "running in the image's root needs root (namespaces, pivot_root)")
    return root


def _argv(root: Path, caps: Iterable[str], command: list[str]) -> list[str]:
    names = ",".join(sorted(c.lower() for c in caps))
    return ["bash", str(INFRA / "rootfs.sh"), "run", str(root), names, *command]


def _env(uid: int | None = None, read_only: bool = False) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"]}
    if uid is not None:
        env["RUN_UID"] = str(uid)
    if read_only:
        env["READ_ONLY"] = "1"
    return env


def _probe(root: Path, caps: Iterable[str]) -> dict[str, Any]:
    result = subprocess.run(
        _argv(root, caps, ["python3", "-c", PROBE]),
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Servers started in the root; each is stopped with its whole process group."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _get(url: str, proc: subprocess.Popen[bytes]) -> str:
    """The body of a 200 answer, waiting (up to 60 s) for the server to come up."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
                body: str = response.read().decode()
                return body
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_sandbox_runs_with_the_compose_capabilities(image_root: Path) -> None:
    found = _probe(image_root, compose_caps("worker"))
    assert found["ok"], found["detail"]
    status = dict(line.split(":\t", 1) for line in found["status"].splitlines())
    assert status["Uid"].split()[0] == str(SANDBOX_UID)
    assert int(status["CapBnd"], 16) == 0  # nothing left to gain inside the sandbox


def test_sandbox_fails_with_docker_defaults_alone(image_root: Path) -> None:
    """The shipped files before this change: Docker's default set, nothing added."""
    found = _probe(image_root, DOCKER_DEFAULT_CAPS)
    assert not found["ok"]
    assert "Creating new namespace failed: Operation not permitted" in found["detail"]


def test_sandbox_needs_net_admin_for_its_loopback(image_root: Path) -> None:
    found = _probe(image_root, compose_caps("worker") - {"NET_ADMIN"})
    assert not found["ok"]
    assert "loopback" in found["detail"]


def test_sandbox_keeps_a_bounding_set_without_setpcap(image_root: Path) -> None:
    """Why SETPCAP is granted: without it setpriv cannot empty the command's bounding set."""
    found = _probe(image_root, compose_caps("worker") - {"SETPCAP"})
    assert found["ok"], found["detail"]
    status = dict(line.split(":\t", 1) for line in found["status"].splitlines())
    assert int(status["CapBnd"], 16) != 0


def test_web_serves_as_the_kubernetes_web_pod(
    image_root: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """Non-root, no capabilities, read-only root; compose's healthcheck command answers."""
    port = _free_port()
    command = ["env", "VIBE_DATA_DIR=/tmp/data", "vibe", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "0"]
    proc = subprocess.Popen(
        _argv(image_root, (), command),
        env=_env(uid=WEB_UID, read_only=True),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started.append(proc)
    assert json.loads(_get(f"http://127.0.0.1:{port}/healthz", proc)) == {"status": "ok"}
    healthcheck = compose()["services"]["web"]["healthcheck"]["test"]
    assert healthcheck[0] == "CMD"
    probe = [part.replace(":8000/", f":{port}/") for part in healthcheck[1:]]
    result = subprocess.run(
        _argv(image_root, (), probe), env=_env(uid=WEB_UID), capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_worker_serves_health_with_the_compose_capabilities(
    image_root: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    """`vibe worker --port` starts (its start-up checks run the sandbox) and answers."""
    port = _free_port()
    # Placeholders, so that the worker starts: with no network here its GitHub and model
    # checks report unreachable, which does not stop it.
    command = ["env", "VIBE_GITHUB_TOKEN=ghp_placeholder", "VIBE_ANTHROPIC_API_KEY=placeholder"]
    command += ["vibe", "worker", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        _argv(image_root, compose_caps("worker"), command),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started.append(proc)
    assert _get(f"http://127.0.0.1:{port}/healthz", proc)
    assert "# TYPE vibe_" in _get(f"http://127.0.0.1:{port}/metrics", proc)
