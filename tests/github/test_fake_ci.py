"""The fake GitHub's CI: declared commands run on pushes to a PR's head in a checkout of the
pushed commit, and come back as check suites, check runs, annotations, workflow runs, job
logs and commit statuses, with GitHub's webhooks, faults and refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.testing.fake_github import FakeClock, FakeGitHub
from bot.testing.fake_github.ci import CiJob, parse_annotations
from tests.github.conftest import Receiver, app_key

REPO = "acme/widgets"
# Passes only in a checkout where a.py holds "x = 2": the command really runs in the commit.
# (Shell commands: a Python interpreter takes a third of a second to start here.)
NEEDS_TWO = [
    "sh",
    "-c",
    "if grep -q 'x = 2' a.py; then echo ok; else echo 'a.py:1: error: x should be 2'; exit 1; fi",
]


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def _wait_for_file(flag: Path) -> list[str]:
    """A command that runs until ``flag`` exists (holds a job in progress)."""
    return sh(f"while [ ! -e '{flag}' ]; do sleep 0.01; done; echo done")


@pytest.fixture
def gh(fake: FakeGitHub) -> FakeGitHub:
    fake.create_repo(REPO, {"a.py": "x = 1\n"}, collaborators={"alice": "write"})
    fake.create_app(private_key_pem=app_key())
    fake.install_app("acme")
    return fake


def _token(fake: FakeGitHub, login: str = "alice") -> dict[str, str]:
    return {"Authorization": f"token {fake.user_token(login)}"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """One client per test (making one costs ~70 ms)."""
    with httpx.Client() as client:
        yield client


def _get(http: httpx.Client, fake: FakeGitHub, path: str, **params: Any) -> httpx.Response:
    return http.get(f"{fake.api_url}{path}", headers=_token(fake), params=params)


def _open(fake: FakeGitHub, content: str = "x = 1\n", *, draft: bool = False) -> tuple[int, str]:
    fake.commit(REPO, "feature", {"a.py": content})
    number = fake.open_pull(REPO, "alice", "feature", "Feature", draft=draft)
    pull = fake.issue(REPO, number).pull
    assert pull is not None
    return number, pull.head_sha


def _ci_events(fake: FakeGitHub, since: int = 0) -> list[tuple[str, str, str]]:
    out = []
    for d in fake.deliveries[since:]:
        if d.event in ("check_suite", "check_run", "workflow_run", "status"):
            p = d.payload
            what = (
                (p.get("check_run") or {}).get("name")
                or ((p.get("check_suite") or {}).get("app") or {}).get("slug")
                or p.get("context")
                or ""
            )
            out.append((d.event, str(p.get("action", p.get("state"))), what))
    return out


def test_a_pull_request_runs_the_commands_on_its_head_and_reports_like_actions(
    http: httpx.Client, gh: FakeGitHub, receiver: Receiver
) -> None:
    gh.set_ci(REPO, [CiJob("lint", NEEDS_TWO), CiJob("tests", sh("echo fine"))])
    number, sha = _open(gh)
    gh.ci.wait(20)
    assert _ci_events(gh) == [
        # the bot's App (Checks: write) is asked for its own suite of the new head
        ("check_suite", "requested", "vibe-bot"),
        ("workflow_run", "requested", ""),
        ("check_run", "created", "lint"),
        ("check_run", "created", "tests"),
        ("workflow_run", "in_progress", ""),
        ("check_run", "completed", "lint"),
        ("check_run", "completed", "tests"),
        ("workflow_run", "completed", ""),
        ("check_suite", "completed", "github-actions"),
    ]
    # signed and received like every other webhook
    got = [r.headers["x-github-event"] for r in receiver.got]
    assert got.count("check_run") == 4
    completed = [d.payload for d in gh.deliveries if d.event == "check_suite"][-1]
    assert completed["check_suite"]["conclusion"] == "failure"
    assert completed["check_suite"]["pull_requests"][0]["number"] == number
    assert completed["check_suite"]["head_sha"] == sha

    runs = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()
    by_name = {r["name"]: r for r in runs["check_runs"]}
    assert runs["total_count"] == 2
    assert by_name["lint"]["conclusion"] == "failure"
    assert by_name["tests"]["conclusion"] == "success"
    assert by_name["lint"]["app"]["slug"] == "github-actions"
    assert by_name["lint"]["output"]["title"] is None  # Actions leaves the output empty
    assert by_name["lint"]["output"]["annotations_count"] == 2
    # the job's id is the check run's
    run_id = [d.payload for d in gh.deliveries if d.event == "workflow_run"][-1]["workflow_run"]
    assert by_name["lint"]["details_url"].endswith(
        f"/actions/runs/{run_id['id']}/job/{by_name['lint']['id']}"
    )
    notes = _get(http, gh, f"/repos/{REPO}/check-runs/{by_name['lint']['id']}/annotations").json()
    assert [(n["path"], n["start_line"], n["annotation_level"], n["message"]) for n in notes] == [
        ("a.py", 1, "failure", "x should be 2"),
        (".github", 1, "failure", "Process completed with exit code 1."),
    ]
    jobs = _get(http, gh, f"/repos/{REPO}/actions/runs/{run_id['id']}/jobs").json()
    assert [(j["name"], j["conclusion"], j["run_attempt"]) for j in jobs["jobs"]] == [
        ("lint", "failure", 1),
        ("tests", "success", 1),
    ]
    assert jobs["jobs"][0]["id"] == by_name["lint"]["id"]
    suites = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-suites").json()
    assert {(s["app"]["slug"], s["status"]) for s in suites["check_suites"]} == {
        ("vibe-bot", "queued"),
        ("github-actions", "completed"),
    }

    # a push that fixes it runs again, on the new head, and passes
    since = len(gh.deliveries)
    gh.commit(REPO, "feature", {"a.py": "x = 2\n"})
    gh.ci.wait(20)
    new_sha = gh.issue(REPO, number).pull.head_sha  # type: ignore[union-attr]
    assert new_sha != sha
    assert ("check_suite", "completed", "github-actions") in _ci_events(gh, since)
    again = _get(http, gh, f"/repos/{REPO}/commits/{new_sha}/check-runs").json()["check_runs"]
    assert {r["name"]: r["conclusion"] for r in again} == {"lint": "success", "tests": "success"}
    # the old head keeps its results
    old = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert {r["name"]: r["conclusion"] for r in old} == {"lint": "failure", "tests": "success"}


def test_a_flaky_job_fails_then_passes_on_rerun_and_an_always_failing_one_does_not(
    http: httpx.Client, gh: FakeGitHub, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    gh.set_ci(
        REPO,
        [
            CiJob("tests", sh("echo ok"), fault="flaky"),
            CiJob("broken", ["true"], fault="always_fails"),
            CiJob("slow", _wait_for_file(flag)),
        ],
    )
    _, sha = _open(gh)
    # while "slow" runs, its log is not there and nothing of the run may be re-run
    for _ in range(500):
        jobs = {j.name: j for j in gh.ci.jobs.values()}
        if "slow" in jobs and jobs["slow"].status == "in_progress":
            break
        time.sleep(0.01)
    writer = {"Authorization": f"token {gh.user_token('alice')}"}
    slow = jobs["slow"]
    logs = http.get(f"{gh.api_url}/repos/{REPO}/actions/jobs/{slow.id}/logs", headers=writer)
    assert logs.status_code == 404
    early = http.post(f"{gh.api_url}/repos/{REPO}/actions/jobs/{slow.id}/rerun", headers=writer)
    assert early.status_code == 403
    flag.touch()
    gh.ci.wait(20)
    first = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert {r["name"]: r["conclusion"] for r in first} == {
        "tests": "failure",
        "broken": "failure",
        "slow": "success",
    }
    ids = {r["name"]: r["id"] for r in first}
    since = len(gh.deliveries)
    for name in ("tests", "broken"):
        answer = http.post(
            f"{gh.api_url}/repos/{REPO}/actions/jobs/{ids[name]}/rerun", headers=writer
        )
        assert answer.status_code == 201
        assert answer.json() == {}
        gh.ci.wait(20)
    latest = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert {r["name"]: r["conclusion"] for r in latest} == {
        "tests": "success",
        "broken": "failure",
        "slow": "success",
    }
    assert {r["name"]: r["id"] for r in latest}["tests"] != ids["tests"]  # a new job
    every = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs", filter="all").json()
    assert every["total_count"] == 5
    runs = [d.payload["workflow_run"] for d in gh.deliveries[since:] if d.event == "workflow_run"]
    assert [(r["status"], r["run_attempt"]) for r in runs] == [
        ("queued", 2),
        ("in_progress", 2),
        ("completed", 2),
        ("queued", 3),
        ("in_progress", 3),
        ("completed", 3),
    ]
    run_id = runs[-1]["id"]
    jobs_all = _get(http, gh, f"/repos/{REPO}/actions/runs/{run_id}/jobs", filter="all").json()
    assert jobs_all["total_count"] == 5
    suite = [d.payload for d in gh.deliveries if d.event == "check_suite"][-1]["check_suite"]
    assert (suite["status"], suite["conclusion"]) == ("completed", "failure")


def test_job_logs_redirect_to_a_download_that_expires_or_are_gone(
    http: httpx.Client, gh: FakeGitHub, clock: FakeClock
) -> None:
    gh.set_ci(
        REPO,
        [
            CiJob("lint", sh("echo 'line one'; echo 'a.py:3: warning: hm'")),
            CiJob("old", ["true"], fault="logs_gone"),
        ],
    )
    _, sha = _open(gh)
    gh.ci.wait(20)
    ids = {
        r["name"]: r["id"]
        for r in _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    }
    path = f"/repos/{REPO}/actions/jobs/{ids['lint']}/logs"
    answer = http.get(f"{gh.api_url}{path}", headers=_token(gh), follow_redirects=False)
    assert answer.status_code == 302
    location = answer.headers["location"]
    log = http.get(location)  # the signed URL needs no credentials
    assert log.status_code == 200
    assert "Z line one\n" in log.text
    assert "##[group]Run " in log.text
    tail = http.get(location, headers={"Range": "bytes=-40"})
    assert tail.status_code == 206
    assert tail.content == log.content[-40:]
    assert (
        tail.headers["content-range"]
        == f"bytes {len(log.content) - 40}-{len(log.content) - 1}/{len(log.content)}"
    )
    clock.advance(61)  # "This link expires after 1 minute"
    assert http.get(location).status_code == 403
    gone = _get(http, gh, f"/repos/{REPO}/actions/jobs/{ids['old']}/logs")
    assert gone.status_code == 410
    assert (
        _get(http, gh, f"/repos/{REPO}/actions/jobs/{ids['lint'] + 10**6}/logs").status_code == 404
    )
    # a passing job's compiler-style lines are warnings
    notes = _get(http, gh, f"/repos/{REPO}/check-runs/{ids['lint']}/annotations").json()
    assert [(n["path"], n["start_line"], n["annotation_level"]) for n in notes] == [
        ("a.py", 3, "warning")
    ]


def test_a_late_suite_arrives_only_when_released(http: httpx.Client, gh: FakeGitHub) -> None:
    gh.set_ci(REPO, [CiJob("tests", ["true"])])
    gh.set_ci(REPO, [CiJob("e2e", ["false"])], workflow="Nightly checks", hold=True)
    _, sha = _open(gh)
    gh.ci.wait(20)
    first = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert [(r["name"], r["conclusion"]) for r in first] == [("tests", "success")]
    since = len(gh.deliveries)
    assert gh.ci.release() == 1
    gh.ci.wait(20)
    assert ("check_suite", "completed", "github-actions") in _ci_events(gh, since)
    later = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert {r["name"]: r["conclusion"] for r in later} == {"tests": "success", "e2e": "failure"}
    suites = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-suites").json()["check_suites"]
    assert len([s for s in suites if s["app"]["slug"] == "github-actions"]) == 2
    names = {
        d.payload["workflow"]["name"] for d in gh.deliveries[since:] if d.event == "workflow_run"
    }
    assert names == {"Nightly checks"}


def test_statuses_and_a_third_party_check_app(http: httpx.Client, gh: FakeGitHub) -> None:
    gh.set_ci(
        REPO,
        [
            CiJob("deploy", sh("echo 'preview at https://x'"), via="status"),
            CiJob(
                "codecheck",
                sh("echo 'a.py:1:5: error: nope'; exit 2"),
                via="app",
            ),
            CiJob("slowpoke", ["sleep", "5"], via="app", timeout=0.3),
        ],
    )
    _, sha = _open(gh)
    gh.ci.wait(20)
    runs = {
        r["name"]: r
        for r in _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    }
    code = runs["codecheck"]
    assert code["app"]["slug"] == "fake-ci"
    assert code["conclusion"] == "failure"
    assert code["output"]["title"] == "codecheck: failure (1 problem(s))"
    assert "a.py:1:5: error: nope" in code["output"]["text"]
    assert runs["slowpoke"]["conclusion"] == "timed_out"
    combined = _get(http, gh, f"/repos/{REPO}/commits/{sha}/status").json()
    assert combined["state"] == "success"
    assert [(s["context"], s["state"], s["description"]) for s in combined["statuses"]] == [
        ("deploy", "success", "preview at https://x")
    ]
    statuses = [d.payload for d in gh.deliveries if d.event == "status"]
    assert [s["state"] for s in statuses] == ["pending", "success"]
    assert "action" not in statuses[0]  # GitHub's status event has none
    assert statuses[0]["commit"]["sha"] == sha
    assert statuses[0]["branches"] == [
        {
            "name": "feature",
            "commit": {"sha": sha, "url": f"{gh.api_url}/repos/{REPO}/commits/{sha}"},
            "protected": False,
        }
    ]

    # POST .../statuses/{sha}: the latest per context decides; error counts as failure
    post = f"{gh.api_url}/repos/{REPO}/statuses/{sha}"
    made = http.post(post, headers=_token(gh), json={"state": "error", "context": "ext"})
    assert made.status_code == 201
    assert made.json()["creator"]["login"] == "alice"
    assert _get(http, gh, f"/repos/{REPO}/commits/{sha}/status").json()["state"] == "failure"
    http.post(post, headers=_token(gh), json={"state": "pending", "context": "ext"})
    assert _get(http, gh, f"/repos/{REPO}/commits/feature/status").json()["state"] == "pending"
    http.post(post, headers=_token(gh), json={"state": "success", "context": "ext"})
    assert _get(http, gh, f"/repos/{REPO}/commits/{sha}/status").json()["total_count"] == 2


def test_the_fake_refuses_what_github_refuses(http: httpx.Client, gh: FakeGitHub) -> None:
    gh.set_ci(REPO, [CiJob("tests", ["false"])])
    _, sha = _open(gh)
    gh.ci.wait(20)
    [run] = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    api = f"{gh.api_url}/repos/{REPO}"
    alice = _token(gh)
    reader = {"Authorization": f"token {gh.user_token('rita')}"}
    gh.set_role(REPO, "rita", "read")
    inst = next(iter(gh.world.installations))
    # the App's default installation reads Actions but may not re-run jobs
    app_token = gh.world.new_token(
        "vibe-bot[bot]",
        "installation",
        "ghs_",
        3600,
        permissions=dict(gh.world.installations[inst].permissions),
        installation_id=inst,
    ).value
    bot = {"Authorization": f"token {app_token}"}
    assert gh.world.installations[inst].permissions["actions"] == "read"
    checks = [
        (http.post(f"{api}/actions/jobs/{run['id']}/rerun", headers=bot), 403),
        (http.post(f"{api}/actions/jobs/{run['id']}/rerun", headers=reader), 403),
        (http.post(f"{api}/actions/jobs/999999999/rerun", headers=alice), 404),
        (http.put(f"{api}/actions/jobs/{run['id']}/rerun", headers=alice), 405),
        (http.post(f"{api}/actions/jobs/{run['id']}/rerun", headers=alice, content=b"[1"), 400),
        (http.get(f"{api}/actions/runs/999999999/jobs", headers=alice), 404),
        (http.get(f"{api}/check-runs/999999999/annotations", headers=alice), 404),
        (http.get(f"{api}/commits/{sha}/check-runs?filter=newest", headers=alice), 422),
        (http.get(f"{api}/commits/{sha}/check-runs?status=done", headers=alice), 422),
        (http.get(f"{api}/commits/{'0' * 40}/check-runs", headers=alice), 422),
        (http.get(f"{api}/commits/nowhere/status", headers=alice), 404),
        (http.post(f"{api}/statuses/{sha}", headers=alice, json={"state": "green"}), 422),
        (
            http.post(
                f"{api}/statuses/{sha}",
                headers=alice,
                json={"state": "success", "description": "x" * 141},
            ),
            422,
        ),
        (http.post(f"{api}/statuses/{'0' * 40}", headers=alice, json={"state": "success"}), 422),
        (http.post(f"{api}/statuses/{sha}", headers=reader, json={"state": "success"}), 403),
        (http.post(f"{api}/statuses/{sha}", json={"state": "success"}), 401),
        (
            http.get(f"{gh.api_url}/repos/acme/nothing/commits/{sha}/check-runs", headers=alice),
            404,
        ),
    ]
    assert [(a.status_code, want) for a, want in checks if a.status_code != want] == []
    assert checks[2][0].json()["message"] == "Not Found"
    with pytest.raises(ValueError, match="repeat"):
        gh.set_ci(REPO, [CiJob("a", ["true"]), CiJob("a", ["true"])])
    with pytest.raises(ValueError, match="name and a command"):
        CiJob("a", [])


def test_mark_ready_for_review_flips_the_draft_and_says_so(
    http: httpx.Client, clock: FakeClock, receiver: Receiver
) -> None:
    with FakeGitHub(clock=clock, webhook_url=receiver.url, echo_api_events=True) as fake:
        fake.create_repo(
            REPO, {"a.py": "x = 1\n"}, collaborators={"alice": "write", "rita": "read"}
        )
        fake.commit(REPO, "feature", {"a.py": "x = 2\n"})
        number = fake.open_pull(REPO, "alice", "feature", "F", draft=True)
        pr_id = http.get(
            f"{fake.api_url}/repos/{REPO}/pulls/{number}", headers=_token(fake)
        ).json()["node_id"]
        mutation = (
            "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) "
            "{ pullRequest { id isDraft } } }"
        )

        def ask(login: str, ident: str) -> dict[str, Any]:
            answer = http.post(
                fake.graphql_url,
                headers=_token(fake, login),
                json={"query": mutation, "variables": {"input": {"pullRequestId": ident}}},
            )
            assert answer.status_code == 200
            return dict(answer.json())

        refused = ask("rita", pr_id)
        assert refused["errors"][0]["type"] == "FORBIDDEN"
        assert fake.issue(REPO, number).pull.draft  # type: ignore[union-attr]
        unknown = ask("alice", "PR_nope")
        assert unknown["errors"][0]["type"] == "NOT_FOUND"
        done = ask("alice", pr_id)
        assert done == {
            "data": {
                "markPullRequestReadyForReview": {"pullRequest": {"id": pr_id, "isDraft": False}}
            }
        }
        assert not fake.issue(REPO, number).pull.draft  # type: ignore[union-attr]
        again = ask("alice", pr_id)
        assert "errors" not in again
    ready = [
        json.loads(r.body)
        for r in receiver.got
        if r.headers["x-github-event"] == "pull_request"
        and json.loads(r.body)["action"] == "ready_for_review"
    ]
    assert len(ready) == 1  # once: the second call changed nothing
    assert ready[0]["pull_request"]["draft"] is False
    assert ready[0]["sender"]["login"] == "alice"


def test_annotation_conventions() -> None:
    output = "\n".join(
        [
            "::error file=src/a.py,line=4,endLine=6,title=Boom::it broke",
            "::notice::no file",
            "src/b.py:10:2: warning: unused",
            "tests/test_x.py:12: AssertionError",
            "/abs/path.py:1: error: not a checkout path",
            "Traceback (most recent call last):",
            "note: x",
        ]
    )
    assert parse_annotations(output, failed=True) == [
        ("src/a.py", 4, 6, "failure", "Boom", "it broke"),
        (".github", 1, 1, "notice", "", "no file"),
        ("src/b.py", 10, 10, "warning", "", "unused"),
        ("tests/test_x.py", 12, 12, "failure", "", "AssertionError"),
    ]
    many = "\n".join(f"a.py:{i}: error: e{i}" for i in range(1, 30))
    assert len(parse_annotations(many, failed=True)) == 10
    assert parse_annotations("a.py:1: something", failed=False)[0][3] == "warning"


def test_a_missing_command_fails_the_job_and_a_broken_runner_is_reported(
    http: httpx.Client, gh: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    gh.set_ci(REPO, [CiJob("tests", ["no-such-command-here"])])
    _, sha = _open(gh)
    gh.ci.wait(20)
    [run] = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert run["conclusion"] == "failure"
    [job] = gh.ci.jobs.values()
    assert "no-such-command-here: No such file or directory" in job.log

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(gh.ci, "_execute", boom)
    gh.commit(REPO, "feature", {"a.py": "x = 3\n"})
    with pytest.raises(RuntimeError, match="the fake CI failed: workflow of acme/widgets: OSError"):
        gh.ci.wait(20)


def test_a_pull_request_from_a_fork_runs_ci_but_its_checks_name_no_pull_request(
    http: httpx.Client, gh: FakeGitHub
) -> None:
    """A fork's PR as GitHub shapes it: ``head.repo`` is the fork (``fork: true``), and its
    suites and check runs have an empty ``pull_requests`` (and a suite a null
    ``head_branch``) because "Pushes to a branch in a forked repository are not detected"."""
    # fails only in a checkout of the fork's commit: CI really ran the fork's head
    gh.set_ci(REPO, [CiJob("tests", sh("if grep -q 'x = 3' a.py; then exit 1; fi"))])
    fork = gh.fork(REPO, "mallory")
    assert fork.full_name == "mallory/widgets"
    gh.commit(fork.full_name, "feature", {"a.py": "x = 3\n"}, author="mallory")
    number = gh.open_pull(REPO, "mallory", "mallory:feature", "From a fork")
    gh.ci.wait(20)

    pull = _get(http, gh, f"/repos/{REPO}/pulls/{number}").json()
    assert pull["head"]["label"] == "mallory:feature"
    assert pull["head"]["user"]["login"] == "mallory"
    assert pull["head"]["repo"]["full_name"] == "mallory/widgets"
    assert pull["head"]["repo"]["fork"] is True
    assert pull["base"]["repo"]["full_name"] == REPO
    assert pull["base"]["repo"]["fork"] is False
    # the head filter is user:ref-name; the base repository's owner does not match a fork's
    assert [
        p["number"] for p in _get(http, gh, f"/repos/{REPO}/pulls", head="acme:feature").json()
    ] == []
    mine = _get(http, gh, f"/repos/{REPO}/pulls", head="mallory:feature").json()
    assert [p["number"] for p in mine] == [number]
    full = _get(http, gh, "/repos/mallory/widgets").json()
    assert full["fork"] is True
    assert full["parent"]["full_name"] == REPO
    sha = pull["head"]["sha"]

    suite = [
        d.payload["check_suite"]
        for d in gh.deliveries
        if d.event == "check_suite" and d.payload["action"] == "completed"
    ][-1]
    assert suite["head_sha"] == sha
    assert suite["conclusion"] == "failure"
    assert suite["pull_requests"] == []
    assert suite["head_branch"] is None
    runs = [d.payload for d in gh.deliveries if d.event == "check_run"]
    assert runs
    assert all(r["check_run"]["pull_requests"] == [] for r in runs)
    workflow = [d.payload["workflow_run"] for d in gh.deliveries if d.event == "workflow_run"][-1]
    assert workflow["head_repository"]["full_name"] == "mallory/widgets"
    assert workflow["head_repository"]["fork"] is True
    assert workflow["repository"]["full_name"] == REPO
    assert workflow["pull_requests"] == []
    listed = _get(http, gh, f"/repos/{REPO}/commits/{sha}/check-runs").json()["check_runs"]
    assert [(r["name"], r["conclusion"], r["pull_requests"]) for r in listed] == [
        ("tests", "failure", [])
    ]

    # a push to the fork moves the PR's head; a branch of the same name in the base
    # repository does not
    gh.commit(REPO, "feature", {"a.py": "x = 4\n"})
    assert gh.issue(REPO, number).pull.head_sha == sha  # type: ignore[union-attr]
    since = len(gh.deliveries)
    new = gh.commit(fork.full_name, "feature", {"a.py": "x = 5\n"}, author="mallory")
    gh.ci.wait(20)
    assert gh.issue(REPO, number).pull.head_sha == new  # type: ignore[union-attr]
    sync = [d.payload for d in gh.deliveries[since:] if d.event == "pull_request"]
    assert [(p["action"], p["pull_request"]["head"]["sha"]) for p in sync] == [("synchronize", new)]
    again = _get(http, gh, f"/repos/{REPO}/commits/{new}/check-runs").json()["check_runs"]
    assert [(r["name"], r["conclusion"]) for r in again] == [("tests", "success")]
    with pytest.raises(ValueError, match="has no fork"):
        gh.open_pull(REPO, "eve", "eve:feature", "No fork")
