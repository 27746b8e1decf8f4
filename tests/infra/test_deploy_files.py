"""What compose and the Kubernetes manifests grant and promise (infra/README.md): the
sandbox's capability model and nothing more, probes, drains longer than the service's,
pinned images, the database URL from a Secret, a workspace volume and disruption budgets."""

from __future__ import annotations

import inspect
import re
import tomllib
from typing import Any

from bot.entrypoints import cli
from tests.infra.common import (
    DOCKER_DEFAULT_CAPS,
    DOCKERFILE,
    INFRA,
    ROOT,
    compose,
    compose_caps,
    deployment,
    manifests,
)

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
WORKER_DRAIN = float(inspect.signature(cli.worker).parameters["grace"].default)
WEB_DRAIN = 35.0  # `vibe serve`: running jobs get the worker grace, then uvicorn shuts down
SANDBOX_ADDS = {"SYS_ADMIN", "NET_ADMIN"}  # beyond Docker's defaults: namespaces, loopback
SANDBOXED = ("web", "worker")  # compose's web runs an in-process worker


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write compose durations in seconds, not {duration!r}"
    return float(match.group(1))


def _container(component: str) -> dict[str, Any]:
    (container,) = deployment(component)["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = container
    return found


def test_compose_grants_the_sandbox_exactly_its_capabilities() -> None:
    for service in SANDBOXED:
        caps = compose_caps(service)
        assert caps - DOCKER_DEFAULT_CAPS == SANDBOX_ADDS, service
        svc = compose()["services"][service]
        assert "privileged" not in svc
        assert set(svc["security_opt"]) == {
            "apparmor=unconfined",
            "seccomp=unconfined",
            "no-new-privileges:true",
        }
    assert compose_caps("web") == compose_caps("worker")


def test_kubernetes_worker_grants_what_compose_grants() -> None:
    context = _container("worker")["securityContext"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert frozenset(context["capabilities"]["add"]) == compose_caps("worker")
    assert context["runAsUser"] == 0
    assert context["appArmorProfile"] == {"type": "Unconfined"}
    assert context["seccompProfile"] == {"type": "Unconfined"}
    assert "privileged" not in context


def test_kubernetes_web_runs_unprivileged() -> None:
    pod = deployment("web")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container("web")["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert _container("web")["command"][-2:] == ["--workers", "0"]  # it runs no commands


def test_compose_waits_longer_than_each_drain() -> None:
    services = compose()["services"]
    assert _seconds(services["web"]["stop_grace_period"]) > WEB_DRAIN
    assert _seconds(services["worker"]["stop_grace_period"]) > WORKER_DRAIN


def test_kubernetes_waits_longer_than_each_drain() -> None:
    web = deployment("web")["spec"]["template"]["spec"]
    worker = deployment("worker")["spec"]["template"]["spec"]
    assert web["terminationGracePeriodSeconds"] > WEB_DRAIN
    assert worker["terminationGracePeriodSeconds"] > WORKER_DRAIN


def test_compose_healthchecks_ask_each_process_on_its_port() -> None:
    services = compose()["services"]
    for service in SANDBOXED:
        svc = services[service]
        port = svc["command"][svc["command"].index("--port") + 1]
        assert f"127.0.0.1:{port}/healthz" in " ".join(svc["healthcheck"]["test"])


def test_kubernetes_probes_resources_and_worker_port() -> None:
    for component in ("web", "worker"):
        container = _container(component)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            assert ports[container[probe]["httpGet"]["port"]], (component, probe)
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]["memory"]
    # Probes come from the kubelet on the pod's address, so not 127.0.0.1.
    command = ["vibe", "worker", "--host", "0.0.0.0", "--port", "9000"]  # noqa: S104
    assert _container("worker")["command"] == command
    assert compose()["services"]["worker"]["command"] == command
    assert {p["containerPort"] for p in _container("worker")["ports"]} == {9000}


def test_images_are_pinned_to_the_package_version() -> None:
    for component in ("web", "worker"):
        assert _container(component)["image"] == f"ghcr.io/OWNER/vibe-bot:{VERSION}"
    for name, svc in compose()["services"].items():
        image = svc["image"]
        assert ":" in image, name
        assert not image.endswith(":latest"), name
    assert compose()["services"]["web"]["image"].endswith(f"vibe-bot:{VERSION}}}")


def test_database_url_comes_from_the_secret() -> None:
    for component in ("web", "worker"):
        env = {e["name"]: e for e in _container(component)["env"]}
        ref = env["VIBE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "vibe-bot", "key": "VIBE_DATABASE_URL"}


def test_workers_keep_workspaces_on_a_persistent_volume() -> None:
    pod = deployment("worker")["spec"]["template"]["spec"]
    (mount,) = [m for m in _container("worker")["volumeMounts"] if m["mountPath"] == "/data"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claim = volume["persistentVolumeClaim"]["claimName"]
    (pvc,) = [
        d
        for d in manifests()
        if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim
    ]
    # Shared by the worker replicas, as compose shares its data volume.
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert {"name": "VIBE_DATA_DIR", "value": "/data"} in _container("worker")["env"]


def test_each_deployment_has_a_disruption_budget() -> None:
    budgets = [d for d in manifests() if d["kind"] == "PodDisruptionBudget"]
    for component in ("web", "worker"):
        labels = deployment(component)["spec"]["template"]["metadata"]["labels"]
        matching = [
            b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(matching) == 1, component
        assert matching[0]["spec"]["minAvailable"] < deployment(component)["spec"]["replicas"]


def test_rootfs_script_runs_with_the_image_path() -> None:
    """infra/rootfs.sh runs the Dockerfile's RUN lines; its PATH must be the image's."""
    (image_path,) = re.findall(r"^ENV PATH=(\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    script = (INFRA / "rootfs.sh").read_text()
    (venv,) = re.findall(r"^VENV=(\S+)$", script, re.MULTILINE)
    (inside,) = re.findall(r'^PATH_INSIDE="(\S+)"$', script, re.MULTILINE)
    assert inside.replace("$VENV", venv) == image_path
