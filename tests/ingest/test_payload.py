"""The reading of a delivery's body (bot/ingest/payload.py): orjson's fast reading gives what
the careful reading (the standard library with its checks and repairs) gives, and hands
over to it whatever it cannot vouch for."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from bot.ingest import payload
from bot.ingest.payload import BadPayload, decode_payload
from tests.support.web import WEBHOOKS


def careful(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    payload._clean(data)
    return data


@pytest.mark.parametrize("path", sorted(WEBHOOKS.glob("*.json")), ids=lambda p: p.stem)
def test_every_fixture_is_read_the_fast_way_and_the_same(path: Any) -> None:
    body = path.read_bytes()
    fast = payload._fast_decode(body)
    assert fast is not None
    assert fast == careful(body)
    assert decode_payload(body, "application/json; charset=utf-8") == fast


@pytest.mark.parametrize(
    ("body", "expected", "fast"),
    [
        (b'{"a": "x\\u0000y"}', {"a": "x\ufffdy"}, False),  # NUL: replaced, not kept
        (b'{"a": "\\ud800"}', {"a": "\ufffd"}, False),  # a lone surrogate: replaced
        (b'{"a": 123456789012345678901234567890}', {"a": 123456789012345678901234567890}, False),
        (b'{"a": -9223372036854775809}', {"a": -9223372036854775809}, False),
        (b'{"a": 1, "a": 2}', {"a": 2}, True),  # the last of a repeated key, in both readings
    ],
)
def test_what_orjson_would_read_otherwise_goes_the_careful_way(
    body: bytes, expected: dict[str, Any], fast: bool
) -> None:
    assert (payload._fast_decode(body) is not None) == fast
    read = decode_payload(body, "application/json")
    assert read == expected
    assert [type(v) for v in read.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"a": ' * 65 + b"1" + b"}" * 65, "nested deeper than 64 levels"),
        # Past orjson's own limit of 1024 levels (pyproject asks for orjson 3.10 or newer,
        # which refuses it; 3.8 crashed the process): the careful reading says why.
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested deeper than 64 levels"),
        (b'{"a": NaN}', "NaN is not JSON"),
        (b'{"a": 1e400}', "does not fit a double"),
        (b"[1]", "a JSON list, not an object"),
        (b'{"a": "\xff"}', "not UTF-8"),
    ],
)
def test_what_no_reading_accepts_is_refused_saying_why(body: bytes, why: str) -> None:
    with pytest.raises(BadPayload) as refused:
        decode_payload(body, "application/json")
    assert why in str(refused.value)


def test_up_to_64_levels_is_read_the_fast_way() -> None:
    body = b'{"a": ' + b"[" * 63 + b"]" * 63 + b"}"
    assert payload._fast_decode(body) == json.loads(body)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _chain(levels: int) -> Any:
    value: Any = 1
    for n in range(levels):
        value = {"k": value} if n % 2 else [value]
    return value


@pytest.mark.parametrize("chain", [62, 63, 64])
@pytest.mark.parametrize("siblings", [0, 5, 80])
def test_a_deep_chain_among_many_shallow_containers_is_measured_exactly(
    chain: int, siblings: int
) -> None:
    """A chain hidden beside many shallow siblings is found, at exactly the limit."""
    data = {"shallow": [{"n": n} for n in range(siblings)], "deep": _chain(chain)}
    body = json.dumps(data).encode()
    deeper = _depth(data) > payload.MAX_DEPTH
    assert _depth(data) == chain + 1
    assert (payload._fast_decode(body) is None) == deeper
    if deeper:
        with pytest.raises(BadPayload, match="nested deeper than 64 levels"):
            decode_payload(body, "application/json")
    else:
        assert decode_payload(body, "application/json") == data


def _has_double(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_double(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_double(v) for v in value)
    return isinstance(value, float)


def test_the_shape_walk_agrees_with_a_plain_recursive_reading() -> None:
    rng = random.Random(15)

    def grow(depth: int, room: list[int]) -> Any:
        """A random value with a spine that may reach past 64 levels and at most
        ``room[0]`` containers in all."""
        if room[0] <= 0 or rng.random() < 0.1:
            return rng.choice([1, 2.5, "s", None, True, "[{", [], {}])
        room[0] -= 1
        width = rng.choice([1, 1, 1, 2, 4])
        items = [grow(depth + 1, room) for _ in range(width)]
        return items if rng.random() < 0.5 else {f"k{i}": v for i, v in enumerate(items)}

    seen = set()
    for _ in range(300):
        data = {"root": grow(1, [rng.randint(10, 200)])}
        for limit in (64, 8):
            shape = payload._shape(data, limit)
            assert shape[0] == (_depth(data) > limit)
            # Past the limit the walk may stop before it has seen every double.
            if not shape[0]:
                assert shape[1] == _has_double(data)
            seen.add(shape)
    assert seen == {(False, False), (False, True), (True, False), (True, True)}


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1.5, "b": 12345678901234567890123}',  # a double beside a big integer
        b'{"a": [1.5, {"b": -92233720368547758090}]}',
    ],
)
def test_a_big_integer_beside_a_double_goes_the_careful_way(body: bytes) -> None:
    assert payload._fast_decode(body) is None
    assert decode_payload(body, "application/json") == json.loads(body)


def test_doubles_without_a_big_integer_are_read_the_fast_way() -> None:
    body = b'{"a": 1.5, "b": [2e10, {"c": 123456789012345678}]}'
    assert payload._fast_decode(body) == json.loads(body)


def test_the_form_encoded_variant_is_read_from_its_payload_field() -> None:
    from urllib.parse import urlencode

    body = urlencode({"payload": json.dumps({"action": "opened"})}).encode()
    form = "application/x-www-form-urlencoded"
    assert decode_payload(body, form) == {"action": "opened"}
    with pytest.raises(BadPayload, match="no payload field"):
        decode_payload(b"other=1", form)
