from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.context.budget import PART_ORDER, Item, allocate, truncate
from bot.context.files import DirectorySnapshot
from bot.context.index import build_index
from bot.context.pack import assemble_context
from bot.context.terms import estimate_tokens
from tests.support.context import write_tree

names = st.from_regex(r"[a-z]{1,8}(/[a-z_]{1,8}){0,2}\.(py|md|json|txt|cfg)", fullmatch=True)
words = st.lists(
    st.sampled_from(
        ["def", "apply_discount", "Cart", "total", "price", "return", "x", "(", ")", "\n"]
    ),
    max_size=400,
).map(" ".join)
repos = st.dictionaries(names, words, min_size=1, max_size=8)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=repos,
    budget=st.integers(min_value=1, max_value=4000),
    issue=words,
    memory=st.lists(words, max_size=3),
)
def test_the_assembled_context_never_exceeds_the_budget(
    files: dict[str, str], budget: int, issue: str, memory: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tree(root, dict(files))
        index = build_index(DirectorySnapshot(root))
        pack = assemble_context(
            index, issue, budget, instructions="Be careful.", requirements=["Keep it small"],
            tools="search_code(query)", tasks="- [ ] step", memory=memory,
        )  # fmt: skip
    assert pack.total_tokens <= budget
    assert estimate_tokens(pack.render()) <= budget
    assert all(p.tokens == estimate_tokens(p.text) for p in pack.parts)
    order = [PART_ORDER.index(p.kind) for p in pack.parts]
    assert order == sorted(order)
    for part in pack.parts:
        if part.truncated:
            assert "[... truncated by the context budget:" in part.text


@given(
    items=st.dictionaries(
        st.sampled_from(PART_ORDER),
        st.lists(st.builds(Item, st.text(max_size=5), st.text(max_size=3000)), max_size=4),
    ),
    budget=st.integers(min_value=1, max_value=3000),
)
def test_allocation_fits_any_items_and_is_deterministic(
    items: dict[str, list[Item]], budget: int
) -> None:
    parts = allocate(items, budget)
    assert sum(p.tokens for p in parts) <= budget
    assert allocate(items, budget) == parts


@given(text=st.text(max_size=5000), limit=st.integers(min_value=1, max_value=1500))
def test_truncation_respects_the_limit_and_says_so(text: str, limit: int) -> None:
    cut, truncated = truncate(text, limit)
    assert estimate_tokens(cut) <= limit
    assert truncated == (estimate_tokens(text) > limit)
    if truncated and cut:
        assert "truncated by the context budget" in cut
    if not truncated:
        assert cut == text


def test_a_small_budget_keeps_the_stable_parts_first(project: Path) -> None:
    index = build_index(DirectorySnapshot(project))
    pack = assemble_context(index, "Cart.total ignores the discount code", 2_000)
    kinds = [p.kind for p in pack.parts]
    assert kinds[0] == "instr"
    assert "know" in kinds
    assert "code" in kinds
    assert pack.total_tokens <= 2_000
    # Without files, the code part is only the repository map.
    base = assemble_context(index, "Cart.total ignores the discount code", 2_000, files=False)
    assert [p.source for p in base.parts if p.kind == "code"] == ["repository-map"]
    assert "class Cart:" in base.render()
    assert "AGENTS.md" in {p.source for p in base.parts}
