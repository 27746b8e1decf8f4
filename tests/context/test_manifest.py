"""The context manifest (survey Eq. 2-3 made visible): each part's tokens against the
budget, the ranked files with the reason, and what the budget left out."""

from __future__ import annotations

from pathlib import Path

from bot.context.budget import PART_ORDER
from bot.context.files import DirectorySnapshot
from bot.context.index import build_index
from bot.context.pack import MANIFEST_FILES, assemble_context
from bot.core.render import render_pr_body
from bot.core.tasks import IterationRecord, State, TaskRecord
from tests.support.context import project  # noqa: F401 - a fixture

ISSUE = "Cart.total ignores the discount code"


def test_the_manifest_accounts_for_every_item(project: Path) -> None:  # noqa: F811
    index = build_index(DirectorySnapshot(project))
    memory = [f"earlier iteration {n}: " + "x " * 400 for n in range(6)]
    pack = assemble_context(index, ISSUE, 1_200, memory=memory)
    m = pack.manifest()
    assert m["budget"] == 1_200
    assert m["total_tokens"] == pack.total_tokens <= 1_200
    assert sum(k["tokens"] for k in m["kinds"]) == pack.total_tokens
    assert [k["kind"] for k in m["kinds"]] == [k for k in PART_ORDER if k in {
        p.kind for p in pack.parts}]  # fmt: skip
    assert [(i["kind"], i["source"]) for i in m["items"]] == [
        (p.kind, p.source) for p in pack.parts
    ]
    # The ranking, best first, with the signals that put each file there.
    ranks = [f["rank"] for f in m["files"]]
    assert ranks == list(range(1, len(ranks) + 1))
    assert len(ranks) <= MANIFEST_FILES
    assert m["files"][0]["path"].endswith(".py")
    assert m["files"][0]["signals"]
    scores = [f["score"] for f in m["files"]]
    assert scores == sorted(scores, reverse=True)
    # A small budget leaves memory out, and says so: nothing is both in and left out.
    left = {(o["kind"], o["source"]) for o in m["left_out"]}
    assert ("mem", "memory-6") in left
    assert not left & {(p.kind, p.source) for p in pack.parts}
    assert all(o["tokens"] > 0 for o in m["left_out"])


def test_the_pr_body_carries_the_latest_manifest_collapsed(project: Path) -> None:  # noqa: F811
    index = build_index(DirectorySnapshot(project))
    manifest = assemble_context(index, ISSUE, 1_200, memory=["m " * 2_000]).manifest()
    manifest["files"][0]["path"] = "evil`|<img src=x>.py"
    task = TaskRecord(
        id=1,
        repo="octo/shop",
        number=3,
        model="context",
        state=State.AWAITING_FEEDBACK,
        branch="vibe/issue-3-x",
        base="main",
        requester="ann",
        title="x",
        instruction="y",
        iterations=(IterationRecord(1, "label"), IterationRecord(2, "review", context=manifest)),
    )
    body = render_pr_body(task, "Fixed.")
    start = body.index("<details><summary>Context of iteration 2: ")
    section = body[start : body.index("</details>", start)]
    assert f"of {1_200:,} tokens</summary>" in section
    for kind in manifest["kinds"]:
        assert f"| {kind['kind']} | {kind['tokens']:,} |" in section
    assert "Files by rank: 1. `evil'/(img src=x).py`" in section
    assert "<img" not in body
    first = manifest["left_out"][0]
    assert f"Left out for lack of budget: `{first['source']}`" in section
    # An iteration without a manifest adds nothing.
    bare = TaskRecord(**{**task.__dict__, "iterations": (IterationRecord(1, "label"),)})
    assert "Context of iteration" not in render_pr_body(bare, "Fixed.")
