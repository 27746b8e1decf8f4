"""Materialise the localisation benchmark's snapshots (see ../shared/bench/localize/README.md).

Each instance's snapshot is a source distribution: ``pip download --no-binary :all:`` fetches
it into ``tests/benchmarks/.cache/sdists`` and it is unpacked into ``.cache/trees``. pip runs
an old ``setup.py`` after downloading, which fails for six early ``requests`` releases; for
those the archive is fetched from the simple page of the index pip is configured with
(read from ``pip download -v``), and its sha256 from the link fragment is checked.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CACHE = BENCH_DIR / ".cache"
SDISTS = CACHE / "sdists"
TREES = CACHE / "trees"
DATA = BENCH_DIR.parents[2] / "shared" / "bench" / "localize" / "instances.jsonl"
# SWE-bench Lite instances of django, matplotlib and scikit-learn (localize_extra.py).
EXTRA = BENCH_DIR / "localize_extra.jsonl"


@dataclass(frozen=True)
class Instance:
    instance_id: str
    repo: str
    pypi_name: str
    pypi_version: str
    sdist_root: str
    problem_statement: str
    gold_files: tuple[str, ...]

    @property
    def tree(self) -> Path:
        return TREES / self.sdist_root


def load_instances(paths: tuple[Path, ...] = (DATA, EXTRA)) -> list[Instance]:
    """The shared set's 95 instances, then the added ones (when their file is there)."""
    rows = [
        json.loads(line)
        for path in paths
        if path.exists()
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    return [
        Instance(
            r["instance_id"],
            r["repo"],
            r["pypi_name"],
            r["pypi_version"],
            r["sdist_root"],
            r["problem_statement"],
            tuple(r["gold_files"]),
        )
        for r in rows
    ]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)


def _index_url(name: str, version: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-v", "--no-deps", "--no-binary", ":all:",
         "-d", str(CACHE / "pip-probe"), f"{name}=={version}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(r"Looking in indexes: (\S+?)(?:,|\s)", proc.stdout + proc.stderr)
    if not match:
        raise RuntimeError(f"cannot find pip's index for {name}")
    return match.group(1).rstrip("/")


def _fetch_from_simple_page(name: str, version: str) -> Path:
    filename = f"{name}-{version}.tar.gz"
    page_url = f"{_index_url(name, version)}/{name}/"
    with urllib.request.urlopen(page_url, timeout=120) as resp:  # noqa: S310
        parser = _Links()
        parser.feed(resp.read().decode("utf-8", "replace"))
    for link in parser.links:
        url, _, fragment = link.partition("#")
        if url.rsplit("/", 1)[-1] != filename:
            continue
        url = urllib.parse.urljoin(page_url, url)
        with urllib.request.urlopen(url, timeout=300) as resp:  # noqa: S310
            content = resp.read()
        if fragment.startswith("sha256="):
            digest = hashlib.sha256(content).hexdigest()
            if digest != fragment.split("=", 1)[1]:
                raise RuntimeError(f"{filename}: sha256 mismatch")
        target = SDISTS / filename
        target.write_bytes(content)
        return target
    raise RuntimeError(f"{filename} is not on {page_url}")


def _archive(name: str, version: str) -> Path | None:
    for candidate in SDISTS.glob("*.tar.gz"):
        stem = candidate.name[: -len(".tar.gz")]
        if stem.lower().replace("_", "-") == f"{name}-{version}".lower():
            return candidate
    return None


def materialise(instances: list[Instance], log: bool = True) -> list[str]:
    """Download and unpack every snapshot; return the ids of instances left without one."""
    SDISTS.mkdir(parents=True, exist_ok=True)
    TREES.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    done: set[str] = set()
    failed: set[str] = set()
    for inst in instances:
        if inst.sdist_root in failed:
            missing.append(inst.instance_id)
            continue
        if inst.tree.is_dir() or inst.sdist_root in done:
            done.add(inst.sdist_root)
            continue
        archive = _archive(inst.pypi_name, inst.pypi_version)
        if archive is None:
            if log:
                print(f"downloading {inst.pypi_name}=={inst.pypi_version}", file=sys.stderr)
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                 ":all:", "-d", str(SDISTS), f"{inst.pypi_name}=={inst.pypi_version}"],
                capture_output=True, check=False,
            )  # fmt: skip
            archive = _archive(inst.pypi_name, inst.pypi_version)
        if archive is None:
            try:
                archive = _fetch_from_simple_page(inst.pypi_name, inst.pypi_version)
            except (OSError, RuntimeError) as exc:
                print(f"no snapshot for {inst.instance_id}: {exc}", file=sys.stderr)
                missing.append(inst.instance_id)
                failed.add(inst.sdist_root)
                continue
        with tarfile.open(archive) as tar:
            tar.extractall(TREES, filter="data")
        done.add(inst.sdist_root)
    return missing
