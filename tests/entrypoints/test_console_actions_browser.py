"""The console's actions in a real browser (Playwright driving /usr/bin/chromium), in
loopback mode (no dashboard token), where they matter most: the retry, stop and requeue
buttons work, and a form on another site that posts to the console is refused.
Screenshots go to the test's artifacts directory (``tmp_path``/screenshots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select

from bot.entrypoints.app import create_app
from bot.loop.console import CONSOLE_JOB
from bot.store.tables import ConsoleAction, Iteration, Job, Task
from tests.entrypoints.test_console_browser import _page, browser, shots
from tests.support.actions import serve
from tests.support.console import seed_story
from tests.support.web import make_settings

__all__ = ["browser", "shots"]  # the fixtures, shared with the console's browser test


MANIFEST = {
    "budget": 24_000,
    "total_tokens": 20_150,
    "kinds": [
        {"kind": "instr", "tokens": 1_200},
        {"kind": "know", "tokens": 3_400},
        {"kind": "code", "tokens": 13_150},
        {"kind": "data", "tokens": 1_200},
        {"kind": "mem", "tokens": 1_200},
    ],
    "items": [
        {"kind": "instr", "source": "instructions", "tokens": 700, "truncated": False},
        {"kind": "instr", "source": "task", "tokens": 500, "truncated": False},
        {"kind": "know", "source": "README.md", "tokens": 3_400, "truncated": False},
        {"kind": "code", "source": "repository-map", "tokens": 2_150, "truncated": False},
        {"kind": "code", "source": "calc.py", "tokens": 11_000, "truncated": True},
        {"kind": "data", "source": "config.json", "tokens": 1_200, "truncated": False},
        {"kind": "mem", "source": "memory-1", "tokens": 1_200, "truncated": False},
    ],
    "files": [
        {"rank": 1, "path": "calc.py", "score": 0.91, "included": True,
         "signals": {"named": 1.0, "bm25": 0.7}},
        {"rank": 2, "path": "test_calc.py", "score": 0.55, "included": False,
         "signals": {"bm25": 0.5, "graph": 0.2}},
    ],
    "left_out": [{"kind": "code", "source": "test_calc.py", "tokens": 2_400}],
    "skipped_files": [],
}  # fmt: skip


def _attacker(target: str) -> FastAPI:
    """Another site: a page with a form that posts to the console (no script needed)."""
    site = FastAPI()

    @site.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (
            "<!doctype html><title>cute cats</title>"
            f'<form method="post" action="{target}"><input type="hidden" name="csrf" '
            f'value="{"f" * 64}"><button type="submit">See the cats</button></form>'
        )

    return site


@pytest.mark.slow
def test_actions_from_the_pages_and_a_forged_form_refused(
    browser: Any, shots: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'act.db'}")
    app = create_app(settings, handlers={})
    engine = app.state.engine
    ids = seed_story(engine)
    with serve(app) as url:
        stop = f"{url}/console/tasks/{ids['running']}/stop"
        with serve(_attacker(stop)) as evil:
            ctx, page, problems = _page(browser)
            try:
                # Another origin (localhost is not 127.0.0.1 to a browser) posts the form.
                page.goto(evil.replace("127.0.0.1", "localhost") + "/")
                page.click("button")
                page.wait_for_load_state()
                assert "Refused" in page.inner_text("h1")
                assert "another site" in page.inner_text(".message")
                page.screenshot(path=str(shots / "console-action-forged.png"), full_page=True)
                with Session(engine) as session:
                    running = session.get(Task, ids["running"])
                    assert running is not None
                    assert running.stop_requested is False
                # The refusal and the other site's missing favicon are logged as errors;
                # from here on the console's own pages must log none.
                problems.clear()

                with Session(engine) as session:
                    first = session.exec(
                        select(Iteration).where(Iteration.task_id == ids["done"])
                    ).one()
                    first.context = MANIFEST
                    session.add(first)
                    session.commit()
                page.goto(f"{url}/console/tasks/{ids['done']}")
                page.screenshot(path=str(shots / "console-action-task.png"), full_page=True)
                manifest = page.locator("details.manifest")
                assert not manifest.locator("table.files").is_visible()  # collapsed
                manifest.locator("summary").click()
                assert "calc.py" in manifest.locator("table.files").inner_text()
                manifest.screenshot(path=str(shots / "console-manifest.png"))
                page.click("button.retry")
                page.wait_for_selector("h1:text('Done')")
                assert "is retried" in page.inner_text(".message")
                page.click("a.back")
                assert "Actions taken here" in page.inner_text("main")
                page.screenshot(path=str(shots / "console-action-retried.png"), full_page=True)

                page.goto(f"{url}/console/tasks/{ids['running']}")
                assert page.locator("button.retry").count() == 0  # running: stop it first
                page.click("button.stop")
                page.wait_for_selector("h1:text('Done')")
                assert "asked to stop" in page.inner_text(".message")

                page.goto(f"{url}/console/jobs")
                page.click("button.requeue")
                page.wait_for_selector("h1:text('Done')")
                page.click("a.back")
                assert page.locator("button.requeue").count() == 0  # nothing dead any more
                page.screenshot(path=str(shots / "console-action-requeued.png"), full_page=True)
                assert problems == []
            finally:
                ctx.close()
    with Session(engine) as session:
        running = session.get(Task, ids["running"])
        assert running is not None
        assert running.stop_requested is True
        assert session.exec(select(Job).where(Job.kind == CONSOLE_JOB)).one().status == "queued"
        assert session.exec(select(Job).where(Job.status == "dead")).all() == []
        done = session.exec(select(ConsoleAction).order_by(ConsoleAction.id)).all()  # type: ignore[arg-type]
        assert [(a.action, a.actor, a.outcome) for a in done] == [
            ("retry", "loopback", "done"),
            ("stop", "loopback", "done"),
            ("requeue", "loopback", "done"),
        ]
    engine.dispose()
