"""``vibe demo --json``: the whole loop on the stand-ins, as a newcomer would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.usefixtures("bwrap_available")
def test_demo_json_shows_the_loop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert any("fake GitHub" in s or "GitHub" in s for s in record["stand_ins"])
    assert record["task"]["state"] == "accepted"
    assert record["pr_number"] == 2
    first, second = record["iterations"]
    assert first["trigger"] == "start"
    assert second["trigger"] == "review"
    assert "human" in second["feedback_kinds"]
    assert len(first["commits"]) == 1
    assert len(second["commits"]) == 1
    assert all(c["passed"] for it in record["iterations"] for c in it["checks"])
    whats = [e["what"] for e in record["events"]]
    assert any("labelled" in w for w in whats)
    assert any("opened draft PR #2" in w for w in whats)
    assert whats[-1] == "task accepted"
    assert not list(tmp_path.glob("vibe-demo-*"))
