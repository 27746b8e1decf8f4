"""One bad delivery affects only itself, on SQLite and PostgreSQL: text no PostgreSQL text
holds (a lone surrogate, NUL) is kept with U+FFFD in its place; what cannot be JSON stored
(NaN, a number past a double, nesting past 64 levels, bytes that are not UTF-8) is stored as
received and refused by the job that handles it, which records why on the delivery; a batch
that fails anyway is stored one delivery at a time."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from bot.ingest.deliveries import (
    RefusedDelivery,
    Unstorable,
    store_deliveries,
    stored_delivery,
)
from bot.store.tables import Delivery, Job
from tests.support.web import Live, fixture_payload, headers_for, incoming, post


def stored(live: Live) -> dict[str, Delivery]:
    with Session(live.app.state.engine) as session:
        return {d.id: d for d in session.exec(select(Delivery))}


def payload_of(live: Live, delivery_id: str) -> dict[str, Any]:
    """The payload as the job that handles the delivery reads it from the stored body."""
    return stored_delivery(live.app.state.engine, delivery_id).payload


def comment_with(body_text: str) -> bytes:
    """An issue_comment delivery whose comment body is ``body_text`` (raw JSON text)."""
    payload = json.dumps(fixture_payload("issue_comment.created")[1])
    marker = "@@BODY@@"
    data = json.loads(payload)
    data["comment"]["body"] = marker
    return json.dumps(data).replace(json.dumps(marker), body_text).encode()


TEXTS = [
    ('"fix \\ud800 this"', "fix \ufffd this"),  # a lone high surrogate
    ('"\\udfff"', "\ufffd"),  # a lone low surrogate
    ('"a\\u0000b"', "a\ufffdb"),  # NUL: PostgreSQL text refuses it
    ('"pair \\ud83d\\ude00 kept"', "pair \U0001f600 kept"),  # a real pair is no problem
]


def test_text_no_database_holds_is_kept_with_a_replacement(live: Live) -> None:
    for text, kept in TEXTS:
        body = comment_with(text)
        delivery = str(uuid.uuid4())
        response = post(live, "issue_comment", body, **{"X-GitHub-Delivery": delivery})
        assert response.status_code == 202, response.text
        assert payload_of(live, delivery)["comment"]["body"] == kept


def test_a_surrogate_in_a_key_and_in_the_action_is_replaced(live: Live) -> None:
    payload = fixture_payload("issues.opened")[1]
    raw = json.dumps(payload).replace('"action": "opened"', '"action": "open\\ud800"')
    raw = raw.replace("{", '{"k\\ud800\\u0000": 1, ', 1)
    response = post(live, "issues", raw.encode())
    assert response.status_code == 202, response.text
    [delivery] = stored(live).values()
    assert delivery.action == "open\ufffd"
    assert payload_of(live, delivery.id)["k\ufffd\ufffd"] == 1
    # A repeated key keeps its last value, in the column and in the payload alike.
    raw = json.dumps(payload).replace('"action": "opened"', '"action": "x", "action": "opened"')
    delivery_id = str(uuid.uuid4())
    response = post(live, "issues", raw.encode(), **{"X-GitHub-Delivery": delivery_id})
    assert response.status_code == 202
    again = stored(live)[delivery_id]
    assert (again.action, payload_of(live, delivery_id)["action"]) == ("opened", "opened")


REFUSED = [
    (b'{"a": NaN}', "NaN is not JSON"),
    (b'{"a": -Infinity}', "-Infinity is not JSON"),
    (b'{"a": 1e400}', "does not fit a double"),
    (b'{"a": ' + b"9" * 5000 + b"}", "Exceeds the limit"),
    (b'{"a": ' * 65 + b"1" + b"}" * 65, "nested deeper than 64"),
    (b'{"a": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded as UTF-8 bytes
    (b'{"a": "\xff"}', "not UTF-8"),
    (b'"a string"', "a JSON str, not an object"),
    (b"null", "a JSON NoneType, not an object"),
]


def test_what_cannot_be_stored_is_refused_by_its_job_with_one_line(live: Live) -> None:
    """Stored as received with its job (a 2xx means stored, and nothing is lost); the job
    that handles it refuses it for good and the delivery records why, in one line."""
    sent: dict[str, bytes] = {}
    for body, _ in REFUSED:
        delivery = str(uuid.uuid4())
        response = post(live, "issues", body, **{"X-GitHub-Delivery": delivery})
        assert response.status_code == 202, body[:40]
        sent[delivery] = body
    rows = stored(live)
    assert {d: bytes(rows[d].body or b"") for d in sent} == sent
    with Session(live.app.state.engine) as session:
        queued = {j.delivery_id for j in session.exec(select(Job))}
    assert queued == set(sent)
    for (delivery, _), (_, why) in zip(sent.items(), REFUSED, strict=True):
        with pytest.raises(RefusedDelivery) as refused:
            stored_delivery(live.app.state.engine, delivery)
        assert why in str(refused.value)
        row = stored(live)[delivery]
        assert row.outcome == "refused"
        assert row.detail is not None
        assert why in row.detail
        assert "\n" not in row.detail
    # Up to the limit is a delivery like any other.
    deep = str(uuid.uuid4())
    body = b'{"a": ' * 63 + b"1" + b"}" * 63
    assert post(live, "issues", body, **{"X-GitHub-Delivery": deep}).status_code == 202
    assert payload_of(live, deep)["a"]["a"]["a"] is not None


def test_a_batch_with_a_delivery_the_database_refuses_stores_the_others(
    live: Live,
) -> None:
    """Past the webhook's checks (a caller that skipped them, or a class not foreseen), the
    store itself isolates the bad one: the batch is retried one delivery at a time."""
    engine = live.app.state.engine
    good = fixture_payload("issue_comment.created")[1]
    batch = [
        incoming(good),
        incoming(good, action="\ud800"),  # UTF-8 cannot encode it: the driver raises
        incoming({"installation": {"id": 2**70}, **good}),  # bounded: stored without it
        incoming(good),
    ]
    results = store_deliveries(engine, batch, max_attempts=3)
    assert results[0] == results[2] == results[3] == "new"
    assert isinstance(results[1], Unstorable)
    with Session(engine) as session:
        ids = {d.id for d in session.exec(select(Delivery))}
        jobs = list(session.exec(select(Job)))
    assert ids == {batch[0].delivery_id, batch[2].delivery_id, batch[3].delivery_id}
    assert len(jobs) == 3


def test_concurrent_good_deliveries_are_not_failed_by_a_bad_one(live: Live) -> None:
    good = json.dumps(fixture_payload("issue_comment.created")[1]).encode()
    bad = comment_with('"\\ud800\\u0000"')
    bodies = [good] * 20 + [bad] * 5
    statuses: list[int] = []
    barrier = threading.Barrier(len(bodies))
    lock = threading.Lock()

    def send(body: bytes) -> None:
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            code = client.post(
                f"{live.url}/webhook", content=body, headers=headers_for("issue_comment", body)
            ).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [202] * len(bodies)
    assert len(stored(live)) == len(bodies)
