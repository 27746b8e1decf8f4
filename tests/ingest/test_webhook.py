"""POST /webhook against the real app under uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import select as io_select
import socket
import threading
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from bot.core import events
from bot.ingest.deliveries import RefusedDelivery, stored_delivery
from bot.ingest.webhook import signature_valid
from bot.store.tables import Delivery, Job, Task
from tests.support.web import (
    PREVIOUS,
    SECRET,
    WEBHOOKS,
    Live,
    fixture_payload,
    headers_for,
    post,
    sign,
)

# fixture -> (typed event class, delivery outcome)
EXPECTED: dict[str, tuple[type, str]] = {
    "check_run.completed": (events.CiEvent, "queued"),
    "check_run.rerequested": (events.Unsupported, "unsupported"),
    "installation.created": (events.InstallationEvent, "queued"),
    "installation.deleted": (events.InstallationEvent, "queued"),
    "installation_repositories.added": (events.InstallationEvent, "queued"),
    "issue_comment.created": (events.Comment, "queued"),
    "issue_comment.created.with-installation": (events.Comment, "queued"),
    "issue_comment.created.on-pull-request": (events.Comment, "queued"),
    "issue_comment.deleted": (events.Unsupported, "unsupported"),
    "issue_comment.edited": (events.Comment, "queued"),
    "issues.edited": (events.IssueEvent, "queued"),
    "issues.labeled": (events.IssueEvent, "queued"),
    "issues.opened": (events.IssueEvent, "queued"),
    "issues.unlabeled": (events.IssueEvent, "queued"),
    "ping": (events.Ping, "ping"),
    "pull_request.closed": (events.PullRequestEvent, "queued"),
    "pull_request.opened": (events.PullRequestEvent, "queued"),  # review.on (issue 18)
    "pull_request.reopened": (events.Unsupported, "unsupported"),
    "pull_request.synchronize": (events.PullRequestEvent, "queued"),
    "pull_request_review.submitted": (events.Comment, "queued"),
    "pull_request_review_comment.created": (events.Comment, "queued"),
    "pull_request_review_thread.resolved": (events.ReviewThreadEvent, "queued"),
    "workflow_dispatch": (events.WorkflowDispatch, "queued"),
}


def deliveries(live: Live) -> list[Delivery]:
    with Session(live.app.state.engine) as session:
        return list(session.exec(select(Delivery)))


def jobs(live: Live) -> list[Job]:
    with Session(live.app.state.engine) as session:
        return list(session.exec(select(Job)))


def test_every_fixture_is_covered() -> None:
    names = {p.name.removesuffix(".json") for p in WEBHOOKS.glob("*.json")}
    assert names == set(EXPECTED)


def test_github_documented_test_vector() -> None:
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_valid(b"Hello, World!", header, [b"It's a Secret to Everybody"])
    assert not signature_valid(b"Hello, World!", header, [b"another secret"])
    assert not signature_valid(b"Hello, World!", header.upper(), [b"x"])


def test_every_fixture_becomes_the_right_event_and_job(live: Live) -> None:
    for name, (kind, outcome) in EXPECTED.items():
        event_name, payload = fixture_payload(name)
        body = json.dumps(payload).encode()
        delivery = f"fixture-{name}"
        response = post(live, event_name, body, **{"X-GitHub-Delivery": delivery})
        assert response.status_code == (200 if outcome == "ping" else 202), (name, response.text)
        stored = {d.id: d for d in deliveries(live)}[delivery]
        assert stored.outcome == outcome, name
        # Stored as received; the job that handles it reads the same payload from it.
        assert stored.body == body
        read = stored_delivery(live.app.state.engine, delivery).payload
        assert read == payload
        assert isinstance(events.parse_event(stored.event, read), kind), name
        queued = [j for j in jobs(live) if j.delivery_id == delivery]
        if outcome == "queued":
            assert len(queued) == 1, name
            assert queued[0].kind == "event"
            assert queued[0].status == "queued"
        else:
            assert queued == [], name
    comment_job = next(j for j in jobs(live) if j.delivery_id == "fixture-issues.labeled")
    _, labeled = fixture_payload("issues.labeled")
    expected_key = f"repository:{labeled['repository']['id']}#{labeled['issue']['number']}"
    assert comment_job.serial_key == expected_key


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "sha256=",
        "sha1=0123456789abcdef0123456789abcdef01234567",
        "sha256=" + "0" * 64,
        "sha256=" + "z" * 64,
        "sha256=" + "a" * 63,
        "sha256=" + "a" * 65,
        "sha256 = abc",
    ],
)
def test_missing_malformed_or_forged_signature_is_401_and_stores_nothing(
    live: Live, signature: str | None
) -> None:
    body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
    headers = headers_for("issues", body)
    if signature is None:
        del headers["X-Hub-Signature-256"]
    else:
        headers["X-Hub-Signature-256"] = signature
    response = httpx.post(f"{live.url}/webhook", content=body, headers=headers)
    assert response.status_code == 401
    assert deliveries(live) == []
    assert jobs(live) == []


def test_wrong_secret_and_reserialised_body_are_refused(live: Live) -> None:
    payload = fixture_payload("issue_comment.created")[1]
    body = json.dumps(payload).encode()
    forged = post(live, "issue_comment", body, **{"X-Hub-Signature-256": sign(body, "wrong")})
    assert forged.status_code == 401
    # GitHub signs the exact bytes it sends: the same JSON serialised differently must fail.
    reserialised = json.dumps(payload, indent=2, sort_keys=True).encode()
    assert reserialised != body
    response = post(live, "issue_comment", reserialised, **{"X-Hub-Signature-256": sign(body)})
    assert response.status_code == 401
    assert deliveries(live) == []


def test_previous_secret_is_accepted_during_rotation(live: Live) -> None:
    body = json.dumps(fixture_payload("issues.opened")[1]).encode()
    response = post(live, "issues", body, **{"X-Hub-Signature-256": sign(body, PREVIOUS)})
    assert response.status_code == 202
    assert [d.outcome for d in deliveries(live)] == ["queued"]
    assert SECRET != PREVIOUS


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b"\xff\xfe\x00",
        b"",
        b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
    ],
)
def test_a_malformed_body_is_stored_and_refused_by_its_job(live: Live, body: bytes) -> None:
    """A signed delivery is stored as received (a 2xx means stored); the job that handles
    it refuses it for good and the delivery records why."""
    delivery = str(uuid.uuid4())
    response = post(live, "issues", body, **{"X-GitHub-Delivery": delivery})
    assert response.status_code == 202
    [stored] = deliveries(live)
    assert (stored.id, stored.body) == (delivery, body)
    assert [j.delivery_id for j in jobs(live)] == [delivery]
    with pytest.raises(RefusedDelivery):
        stored_delivery(live.app.state.engine, delivery)
    [refused] = deliveries(live)
    assert refused.outcome == "refused"
    assert refused.detail is not None
    assert refused.detail.startswith("body is not a JSON object the bot can store: ")


@pytest.mark.parametrize(
    ("body", "drop", "override", "status"),
    [
        (b"{}", "X-GitHub-Event", {}, 400),
        (b"{}", "X-GitHub-Delivery", {}, 400),
        (b"{}", None, {"X-GitHub-Delivery": "x" * 101}, 400),
        (b"{}", None, {"X-GitHub-Delivery": "../../etc/passwd"}, 400),
        (b"{}", None, {"X-GitHub-Event": "Issues; DROP TABLE job"}, 400),
    ],
)
def test_malformed_headers_are_400_and_store_nothing(
    live: Live, body: bytes, drop: str | None, override: dict[str, str], status: int
) -> None:
    headers = headers_for("issues", body)
    if drop:
        del headers[drop]
    headers.update(override)
    response = httpx.post(f"{live.url}/webhook", content=body, headers=headers)
    assert response.status_code == status
    assert "error" in response.json()
    assert deliveries(live) == []


def test_unknown_event_and_unparseable_payload_are_recorded_without_job(live: Live) -> None:
    body = json.dumps({"action": "created", "zen": "x"}).encode()
    assert post(live, "sponsorship", body).status_code == 202
    broken = json.dumps({"action": "labeled", "issue": "not an object"}).encode()
    response = post(live, "issues", broken)
    assert response.status_code == 202
    assert response.json()["status"] == "unparseable"
    outcomes = sorted(d.outcome for d in deliveries(live))
    assert outcomes == ["unparseable", "unsupported"]
    assert jobs(live) == []


def test_form_encoded_delivery_is_accepted(live: Live) -> None:
    from urllib.parse import urlencode

    payload = fixture_payload("issues.opened")[1]
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = headers_for("issues", body)
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert httpx.post(f"{live.url}/webhook", content=body, headers=headers).status_code == 202
    [stored] = deliveries(live)
    assert stored_delivery(live.app.state.engine, stored.id).payload == payload


def test_redelivery_is_deduplicated_unless_its_job_died(live: Live) -> None:
    body = json.dumps(fixture_payload("issues.labeled")[1]).encode()
    delivery = str(uuid.uuid4())
    first = post(live, "issues", body, **{"X-GitHub-Delivery": delivery})
    again = post(live, "issues", body, **{"X-GitHub-Delivery": delivery})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    assert len(jobs(live)) == 1
    with Session(live.app.state.engine) as session:
        job = session.exec(select(Job)).one()
        job.status, job.attempts, job.last_error = "dead", 5, "boom"
        session.add(job)
        session.commit()
    third = post(live, "issues", body, **{"X-GitHub-Delivery": delivery})
    assert third.status_code == 202
    assert third.json()["status"] == "requeued"
    [job] = jobs(live)
    assert (job.status, job.attempts) == ("queued", 0)
    [stored] = deliveries(live)
    assert stored.redeliveries == 2


def test_fifty_identical_deliveries_at_once_make_one_job(live: Live) -> None:
    body = json.dumps(fixture_payload("issue_comment.created")[1]).encode()
    headers = headers_for("issue_comment", body)
    barrier = threading.Barrier(50)
    statuses: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            code = client.post(f"{live.url}/webhook", content=body, headers=headers).status_code
        with lock:
            statuses.append(code)

    threads = [threading.Thread(target=send) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 49 + [202]
    assert len(jobs(live)) == 1
    assert len(deliveries(live)) == 1


def _raw_post(url: str, head: bytes, chunks: Any) -> tuple[int, int]:
    """Send a request over a raw socket, reading the answer as soon as the server sends it
    (it may answer and close before the body is complete). Returns (status, body bytes sent).
    """
    host, port = url.removeprefix("http://").split(":")
    sent = 0
    data = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head)
        for chunk in chunks:
            readable, _, _ = io_select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        with contextlib.suppress(OSError):
            while b"\r\n" not in data:
                part = sock.recv(4096)
                if not part:
                    break
                data += part
    return int(data.split(b" ")[1]), sent


@pytest.mark.parametrize("chunked", [True, False])
def test_thirty_megabytes_answer_413(live: Live, chunked: bool) -> None:
    size, piece = 30 * 1024 * 1024, b"x" * 65536
    signature = sign(b"irrelevant").encode()
    common = (
        b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: issues\r\n"
        b"X-GitHub-Delivery: big\r\nX-Hub-Signature-256: " + signature + b"\r\n"
    )
    if chunked:
        head = common + b"Transfer-Encoding: chunked\r\n\r\n"
        frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
        chunks = [frame] * (size // len(piece)) + [b"0\r\n\r\n"]
    else:
        head = common + b"Content-Length: %d\r\n\r\n" % size
        chunks = [piece] * (size // len(piece))
    status, sent = _raw_post(live.url, head, chunks)
    assert status == 413
    assert deliveries(live) == []
    if not chunked:
        # With a Content-Length over the cap nothing of the body needs reading.
        assert sent < size


def test_ping_answers_200_without_job(live: Live, tmp_path: Path) -> None:
    body = json.dumps(fixture_payload("ping")[1]).encode()
    response = post(live, "ping", body)
    assert response.status_code == 200
    assert jobs(live) == []
    assert [d.outcome for d in deliveries(live)] == ["ping"]


def test_metrics_count_deliveries_by_event_and_outcome(live: Live) -> None:
    body = json.dumps(fixture_payload("issues.opened")[1]).encode()
    post(live, "issues", body)
    post(live, "issues", body, **{"X-Hub-Signature-256": "sha256=" + "0" * 64})
    text = httpx.get(f"{live.url}/metrics").text
    assert 'vibe_deliveries_total{event="issues",outcome="queued"} 1.0' in text
    assert 'vibe_deliveries_total{event="-",outcome="bad_signature"} 1.0' in text
    assert 'vibe_jobs{status="queued"} 1.0' in text


def test_health_readiness_and_index(live: Live) -> None:
    assert httpx.get(f"{live.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{live.url}/readyz").json() == {"status": "ready"}
    index = httpx.get(f"{live.url}/").json()
    assert index["webhook"] == "/webhook"
    assert any("VIBE_ANTHROPIC_API_KEY" in item for item in index["missing"])
    assert index["ready_for_tasks"] is False
    assert SECRET not in json.dumps(index)


def test_memory_stays_bounded_by_the_cap_for_an_endless_chunked_body(live: Live) -> None:
    piece = b"x" * 65536
    frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
    head = (
        b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: issues\r\n"
        b"X-GitHub-Delivery: huge\r\nX-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    total = 200 * 1024 * 1024
    tracemalloc.start()
    try:
        status, sent = _raw_post(live.url, head, [frame] * (total // len(piece)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    assert sent < total  # the server answered before the sender finished
    cap = live.settings.max_body_bytes
    assert peak < cap * 1.5, f"peak {peak / 2**20:.0f} MiB for a {cap / 2**20:.0f} MiB cap"


def _store_task(
    live: Live, repo: str, number: int, pr: int, *, repository_id: int | None = None
) -> None:
    """A task of issue ``number`` that owns PR ``pr``, as the loop stores it."""
    with Session(live.app.state.engine) as session:
        session.add(
            Task(
                repository=repo,
                repository_id=repository_id,
                number=number,
                pr_number=pr,
                model="conversational",
                state="awaiting_review",
                branch="vibe/issue-x",
                base="main",
                requester="alice",
                title="t",
                instruction="i",
            )
        )
        session.commit()


def test_events_on_a_task_pr_share_the_task_lane(live: Live) -> None:
    _, payload = fixture_payload("pull_request_review.submitted")
    repo, pr = payload["repository"]["full_name"], payload["pull_request"]["number"]
    _store_task(live, repo, pr - 1, pr)
    body = json.dumps(payload).encode()
    assert post(live, "pull_request_review", body).status_code == 202
    [job] = jobs(live)
    assert job.serial_key == f"repository:{payload['repository']['id']}#{pr - 1}"


def test_a_renamed_repository_keeps_its_task_lanes(live: Live) -> None:
    """Events under the old and the new name of a repository share a lane: its id."""
    _, review = fixture_payload("pull_request_review.submitted")
    _, old_name = fixture_payload("issue_comment.created")
    repo_id, pr = review["repository"]["id"], review["pull_request"]["number"]
    assert old_name["repository"]["id"] == repo_id
    old_name["repository"]["full_name"] = "Codertocat/Old-Name"
    old_name["issue"]["number"] = pr - 1
    _store_task(live, "Codertocat/Old-Name", pr - 1, pr, repository_id=repo_id)
    assert post(live, "issue_comment", json.dumps(old_name).encode()).status_code == 202
    assert post(live, "pull_request_review", json.dumps(review).encode()).status_code == 202
    lanes = [j.serial_key for j in jobs(live)]
    assert lanes == [f"repository:{repo_id}#{pr - 1}"] * 2
