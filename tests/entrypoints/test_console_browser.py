"""The console in a real browser (Playwright driving Debian's /usr/bin/chromium): the task
list, a task page, the jobs page, a running iteration updating live without a reload, and
access refused without the token. Screenshots go to the test's artifacts directory
(``tmp_path``/screenshots)."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from bot.entrypoints.app import create_app
from bot.store.tables import Iteration
from tests.conftest import require
from tests.support.actions import serve
from tests.support.console import HOSTILE, TOKEN, seed_story, step
from tests.support.web import make_settings

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DASH = "dash-token-0123456789"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Skipped without them; under VIBE_TEST_STRICT=1 (.ci/run, which installs both) a
    # missing one fails.
    require(
        importlib.util.find_spec("playwright") is not None,
        "playwright is not installed (pip install playwright)",
    )
    require(CHROMIUM.exists(), "/usr/bin/chromium is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


def _page(browser: Any, **context: Any) -> tuple[Any, Any, list[str]]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, **context)
    page = ctx.new_page()
    problems: list[str] = []
    # A CSP violation or a script error shows up as a console error.
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    # The hostile text's alert() would open a dialog if any of it ran.
    page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
    return ctx, page, problems


@pytest.mark.slow
def test_pages_render_and_a_running_iteration_updates_live(
    browser: Any, shots: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'b.db'}")
    app = create_app(settings, handlers={})
    engine = app.state.engine
    ids = seed_story(engine)
    with serve(app) as url:
        ctx, page, problems = _page(browser)
        try:
            page.goto(f"{url}/console")
            assert page.locator("table.tasks tbody tr").count() == 2
            assert HOSTILE + " fix the widget" in page.inner_text("table.tasks")
            assert page.locator("script").count() == 1  # the hostile title is text, not code
            page.screenshot(path=str(shots / "console-tasks.png"), full_page=True)

            page.select_option("select[name=state]", "working")
            page.click("form.filters button")
            page.wait_for_url("**state=working**")
            assert page.locator("table.tasks tbody tr").count() == 1

            page.goto(f"{url}/console/tasks/{ids['done']}")
            assert "Stopped by a limit: steps limit" in page.inner_text(".limit")
            failed = page.locator("details.step.failed")
            assert failed.count() == 1
            failed.locator("summary").click()
            assert "[redacted]" in failed.inner_text()
            assert TOKEN not in page.content()
            page.screenshot(path=str(shots / "console-task.png"), full_page=True)

            page.goto(f"{url}/console/jobs")
            assert "worker-a" in page.inner_text("ul.workers")
            page.screenshot(path=str(shots / "console-jobs.png"), full_page=True)

            page.goto(f"{url}/console/tasks/{ids['running']}")
            card = page.locator("article.iteration[data-number='1']")
            assert card.locator("details.step").count() == 1

            def work() -> None:
                time.sleep(0.3)
                with Session(engine) as session:
                    session.add(step(ids["live_iteration"], 2, text="a new step, live " + HOSTILE))
                    session.commit()

            writer = threading.Thread(target=work)
            writer.start()
            page.wait_for_selector(
                "details.step >> text=a new step, live", state="attached", timeout=8_000
            )
            writer.join(5)
            assert card.locator("details.step").count() == 2
            assert "2 steps" in card.locator(".steps").inner_text()
            new_step = card.locator("details.step").nth(1)
            new_step.locator("summary").click()
            assert HOSTILE in new_step.locator("pre.text").inner_text()
            page.screenshot(path=str(shots / "console-live.png"), full_page=True)

            with Session(engine) as session:
                row = session.get(Iteration, ids["live_iteration"])
                assert row is not None
                row.outcome = "succeeded"
                session.add(row)
                session.commit()
            page.wait_for_selector("article.iteration[data-running='no']", timeout=8_000)
            assert card.locator(".badge.outcome").inner_text() == "succeeded"
            assert problems == []
        finally:
            ctx.close()
    engine.dispose()


def test_the_browser_is_refused_without_the_token(
    browser: Any, shots: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", dashboard_token=DASH)
    app = create_app(settings, handlers={})
    seed_story(app.state.engine)
    with serve(app) as url:
        ctx, page, _ = _page(browser)
        try:
            answer = page.goto(f"{url}/console")
            assert answer is not None
            assert answer.status == 403
            assert "Access denied" in page.inner_text("h1")
            assert "fix the widget" not in page.content()
            page.screenshot(path=str(shots / "console-refused.png"), full_page=True)
        finally:
            ctx.close()
        ctx, page, _ = _page(browser, extra_http_headers={"Authorization": f"Bearer {DASH}"})
        try:
            answer = page.goto(f"{url}/console")
            assert answer is not None
            assert answer.status == 200
            assert page.locator("table.tasks tbody tr").count() == 2
        finally:
            ctx.close()
    app.state.engine.dispose()
