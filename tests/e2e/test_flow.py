"""The main flow: label -> draft PR, review -> one iteration, require, approve."""

from __future__ import annotations

from typing import Any

from bot.core.markers import find_marker
from bot.demo import REPO, WRITER, Stage, fix_add, wait_for
from tests.e2e.conftest import Bot

World = tuple[Stage, Bot]


def bot_comments(st: Stage, number: int, needle: str = "") -> list[Any]:
    login = st.creds.bot_login
    return [c for c in st.fake.comments(REPO, number) if c.user == login and needle in c.body]


def final_status(st: Stage, number: int, count: int = 1) -> Any:
    """The status comment once ``count`` iterations have ended (a final line each)."""

    def done() -> Any:
        found = bot_comments(st, number, "vibe:status")
        if found and "_Working" not in found[0].body and f"iteration {count}" in found[0].body:
            return found[0]
        return None

    return wait_for(done, f"the end of iteration {count} on #{number}")


def test_label_opens_a_draft_pr(world: World) -> None:
    st, _ = world
    fake = st.fake
    st.model.add(fix_add())
    number = fake.open_issue(REPO, WRITER, "add() subtracts instead of adding", "`add(2, 3)` is -1")
    fake.label(REPO, number, WRITER, "vibe")
    status = final_status(st, number)
    assert "Done" in status.body
    assert "tests passed" in status.body
    assert len(bot_comments(st, number, "vibe:status")) == 1
    pr = next(p for p in fake.pulls(REPO) if f"Fixes #{number}" in (p.body or ""))
    assert pr.pull.draft
    assert pr.pull.head_ref == f"vibe/issue-{number}-add-subtracts-instead-of-adding"
    assert pr.pull.requested_reviewers == [WRITER]
    assert "- [ ] add() subtracts instead of adding" in pr.body
    assert find_marker(pr.body, "task") is not None
    assert "| 1 | start |" in pr.body
    calc = fake.read_file(REPO, pr.pull.head_ref, "calc.py")
    assert calc is not None
    assert "return a + b" in calc
    assert any(r.content == "eyes" for r in fake.issue(REPO, number).reactions)
