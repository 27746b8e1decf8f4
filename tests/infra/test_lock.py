"""infra/requirements.lock pins, with hashes, every runtime dependency of pyproject.toml
(and what their extras pull in) at a version the dependency's specifier accepts, plus the
build backend, so `pip install --require-hashes` builds the image reproducibly."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra.common import DOCKERFILE, LOCK, ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\$")


def _locked() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    lines = LOCK.read_text().splitlines()
    pins: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(lines):
        match = _PIN.match(line)
        if match is None:
            continue
        hashes = 0
        for following in lines[i + 1 :]:
            if not following.startswith("    --hash=sha256:"):
                break
            hashes += 1
        pins[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return pins


def _extra_requirements(req: Requirement) -> list[Requirement]:
    """What ``req``'s extras add, from the installed distribution's metadata."""
    found = []
    for text in metadata.requires(req.name) or []:
        dep = Requirement(text)
        if (
            dep.marker is not None
            and any(dep.marker.evaluate({"extra": extra}) for extra in req.extras)
            and not dep.marker.evaluate({"extra": ""})
        ):
            found.append(dep)
    return found


def test_every_pin_has_hashes() -> None:
    pins = _locked()
    assert pins
    assert all(hashes >= 1 for _, hashes in pins.values())
    pinned_lines = [line for line in LOCK.read_text().splitlines() if "==" in line]
    assert len(pinned_lines) == len(pins)  # nothing pinned without the expected shape


def test_lock_covers_every_runtime_dependency() -> None:
    pins = _locked()
    for text in PYPROJECT["project"]["dependencies"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in {LOCK.name}: regenerate it (infra/README.md)"
        assert req.specifier.contains(pins[name][0], prereleases=True), (text, pins[name][0])
        for dep in _extra_requirements(req):
            assert canonicalize_name(dep.name) in pins, f"{dep.name} (from {text})"


def test_lock_holds_the_build_backend() -> None:
    pins = _locked()
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        assert req.specifier.contains(pins[canonicalize_name(req.name)][0])


def test_dockerfile_installs_from_the_lock_with_hashes() -> None:
    text = DOCKERFILE.read_text()
    assert "pip install --no-cache-dir --require-hashes -r infra/requirements.lock" in text
    assert "pip install --no-cache-dir --no-deps --no-build-isolation ." in text
    assert text.index("--require-hashes") < text.index("--no-deps")
    (base,) = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+-slim(@sha256:[0-9a-f]{64})?", base), base
