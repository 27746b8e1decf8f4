"""``vibe demo --keep``: the demo prints the task's console page, and the service stays up
to serve it until Ctrl-C (a bounded run: the test interrupts it)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

PAGE = "The task's page in the console: "


@pytest.mark.slow
@pytest.mark.usefixtures("bwrap_available")
def test_demo_keep_prints_the_task_page_and_serves_it_until_interrupted(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIBE_")}
    env["HOME"] = str(tmp_path)
    errors = (tmp_path / "stderr.txt").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--keep"],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None

    def read() -> None:
        for line in proc.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        url = None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            if line.startswith(PAGE):
                url = line[len(PAGE) :].strip()
        assert url is not None, "the demo printed no console page"
        assert url.startswith("http://127.0.0.1:")
        assert "/console/tasks/" in url
        # Still up after the demo's flow ended: the page is served (loopback, no token).
        time.sleep(0.5)
        assert proc.poll() is None
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200
        assert "add() subtracts instead of adding" in page.text
        task = httpx.get(url.replace("/console/", "/api/console/"), timeout=10).json()
        assert task["state"] == "accepted"
        assert [it["outcome"] for it in task["iterations"]] == ["succeeded", "succeeded"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        errors.seek(0)
        assert "stay up (--keep)" in errors.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(10)
        proc.stdout.close()
        errors.close()
