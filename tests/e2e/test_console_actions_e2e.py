"""The console's stop and retry on the real service (``vibe serve`` with the fake GitHub
and the scripted model): a running iteration stops, the retry runs it again, and the PR's
status comment and body link to the task's console page (the stage sets VIBE_PUBLIC_URL),
and each iteration's context manifest is recorded, shown and summed up in the PR."""

from __future__ import annotations

import re

import httpx
import pytest

from bot.entrypoints.demo import REPO, WRITER, Stage, edit, fix_add, wait_for
from tests.e2e.conftest import Bot
from tests.e2e.test_faults import request_arrives
from tests.e2e.test_flow import bot_comments, final_status

World = tuple[Stage, Bot]
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


def _act(http: httpx.Client, st: Stage, task_id: int, action: str) -> httpx.Response:
    """What the browser does: open the task page, submit its form (same origin)."""
    page = http.get(f"{st.bot_url}/console/tasks/{task_id}")
    found = _CSRF.search(page.text)
    assert found is not None, f"no action form on the task page ({page.status_code})"
    return http.post(
        f"{st.bot_url}/console/tasks/{task_id}/{action}",
        data={"csrf": found.group(1)},
        headers={"Origin": st.bot_url, "Sec-Fetch-Site": "same-origin"},
    )


@pytest.mark.slow
def test_stop_then_retry_from_the_console(world: World) -> None:
    st, _ = world
    st.model.add([edit("calc.py", "return a - b", "return a + b", delay=3.0)])
    requests = len(st.model.message_requests)
    number = st.fake.open_issue(REPO, WRITER, "Fix add from the console", "")
    st.fake.label(REPO, number, WRITER, "vibe")
    request_arrives(st, requests)
    with httpx.Client(timeout=10) as http:
        listed = http.get(f"{st.bot_url}/api/console/tasks", params={"repository": REPO}).json()
        [task_id] = [t["id"] for t in listed["tasks"] if t["number"] == number]
        link = f"{st.bot_url}/console/tasks/{task_id}"
        stopped = _act(http, st, task_id, "stop")
        assert stopped.status_code == 200, stopped.text
        status = wait_for(
            lambda: [c for c in bot_comments(st, number, "vibe:status") if "Stopped" in c.body],
            "the stopped status",
        )
        assert f"[The task in the console]({link})" in status[0].body
        task = http.get(f"{st.bot_url}/api/console/tasks/{task_id}").json()
        assert [it["outcome"] for it in task["iterations"]] == ["stopped"]
        st.model.add(fix_add())
        retried = _act(http, st, task_id, "retry")
        assert retried.status_code == 200, retried.text
        done = final_status(st, number, 2)
        assert "Done" in done.body
        assert f"[The task in the console]({link})" in done.body
        [pr] = [p for p in st.fake.pulls(REPO) if f"Fixes #{number}" in (p.body or "")]
        assert f"[The task in the console]({link})" in (pr.body or "")
        task = http.get(f"{st.bot_url}/api/console/tasks/{task_id}").json()
        assert [(it["trigger"], it["outcome"]) for it in task["iterations"]] == [
            ("start", "stopped"),
            ("retry", "succeeded"),
        ]
        # The real context builder's manifest, recorded with each iteration and shown.
        manifest = task["iterations"][1]["context"]
        assert manifest["budget"] > 0
        assert 0 < manifest["total"] <= manifest["budget"]
        assert {"instr", "know", "code"} <= {k["kind"] for k in manifest["kinds"]}
        assert "calc.py" in [f["path"] for f in manifest["files"]]
        assert "<details><summary>Context of iteration 2: " in (pr.body or "")
        page = http.get(link).text
    assert '<details class="manifest">' in page
    assert "Actions taken here" in page
    assert page.count("<td>loopback</td>") == 2
