"""Policy: who may make the bot do what, and which lane a job runs in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.config import RepoConfig
from bot.core.events import Event, PullRequest, parse_event, parse_pull_request
from bot.core.policy import (
    RUN_ACTIONS,
    Abandon,
    Accept,
    AddRequirement,
    AllowList,
    ApprovePlan,
    BotIdentity,
    Decision,
    Help,
    Ignore,
    Iterate,
    NeedsPermission,
    NeedsPullRequest,
    Refusal,
    RefusalReason,
    Retry,
    StartTask,
    Status,
    Stop,
    TaskView,
    Undo,
    admit,
    decide,
    serial_key,
)
from bot.settings import Limits, load_settings

WEBHOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
BOT = "vibe-bot[bot]"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WEBHOOKS / f"{name}.json").read_text())
    return data


def comment(body: str, fixture: str = "issue_comment.created") -> Event:
    payload = load(fixture)
    payload["comment"]["body"] = body
    return parse_event(fixture.split(".")[0], payload)


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (parse_event("issues", load("issues.labeled")), "Codertocat/Hello-World#1"),
        (comment("hello"), "Codertocat/Hello-World#1"),
        (comment("/vibe fix it"), "Codertocat/Hello-World#1"),
        (comment("/vibe stop"), "Codertocat/Hello-World#1/control"),
        (comment("/vibe status"), "Codertocat/Hello-World#1/control"),
        (comment("@vibe-bot stop"), "Codertocat/Hello-World#1/control"),
        (comment("/vibe stop now"), "Codertocat/Hello-World#1"),
        (comment("/vibe retry\n/vibe stop"), "Codertocat/Hello-World#1"),
        (comment("```\n/vibe stop\n```"), "Codertocat/Hello-World#1"),
        (
            comment("/vibe stop", "issue_comment.created.on-pull-request"),
            "Codertocat/Hello-World#1/control",
        ),
        (
            parse_event("pull_request_review", load("pull_request_review.submitted")),
            "Codertocat/Hello-World#2",
        ),
        (
            parse_event("pull_request_review_comment", load("pull_request_review_comment.created")),
            "Codertocat/Hello-World#2",
        ),
        (
            parse_event("pull_request_review_thread", load("pull_request_review_thread.resolved")),
            "Codertocat/Hello-World#2",
        ),
        # closing the PR, like closing the issue, must stop an iteration holding the lane
        (
            parse_event("pull_request", load("pull_request.closed")),
            "Codertocat/Hello-World#2/control",
        ),
        (
            parse_event("pull_request", load("pull_request.synchronize")),
            "Codertocat/Hello-World#2",
        ),
        (parse_event("installation", load("installation.created")), None),
        (parse_event("ping", load("ping")), None),
        (parse_event("workflow_dispatch", load("workflow_dispatch")), None),
        (parse_event("check_run", load("check_run.completed")), None),
        (parse_event("issues", []), None),
    ],
)
def test_serial_key(event: Event, key: str | None) -> None:
    assert serial_key(event, BOT) == key


def test_serial_key_without_bot_login_still_sees_slash_vibe() -> None:
    assert serial_key(comment("/vibe stop")) == "Codertocat/Hello-World#1/control"
    assert serial_key(comment("@vibe-bot stop")) == "Codertocat/Hello-World#1"


# ------------------------------------------------------------------------- decide

ALICE = "alice"
IDENTITY = BotIdentity(login=BOT, allowed_bots=frozenset({"helper[bot]"}), runs_per_hour=10)
REPO = "Codertocat/Hello-World"
ACTIVE = TaskView()
ENDED = TaskView(ended=True)
AWAITING = TaskView(awaiting_approval=True, plan_comment_id=492700400)


def user(login: str = ALICE, kind: str = "User") -> dict[str, Any]:
    return {"login": login, "id": 7, "type": kind}


def labeled(label: str, *, state: str = "open", action: str = "labeled") -> Event:
    payload = load("issues.labeled")
    payload["label"]["name"] = label
    payload["issue"]["state"] = state
    payload["action"] = action
    payload["sender"] = user()
    return parse_event("issues", payload)


def said(
    body: str,
    *,
    on_pr: bool = False,
    sender: str = ALICE,
    sender_type: str = "User",
    action: str = "created",
    author: str | None = None,
    state: str = "open",
) -> Event:
    fixture = "issue_comment.created.on-pull-request" if on_pr else "issue_comment.created"
    payload = load(fixture)
    payload["comment"]["body"] = body
    payload["action"] = action
    payload["sender"] = user(sender, sender_type)
    payload["comment"]["user"] = user(author or sender)
    payload["issue"]["state"] = state
    return parse_event("issue_comment", payload)


def reviewed(state: str, body: str | None = None, *, sender: str = ALICE) -> Event:
    payload = load("pull_request_review.submitted")
    payload["review"]["state"] = state
    payload["review"]["body"] = body
    payload["sender"] = user(sender)
    return parse_event("pull_request_review", payload)


def inline(body: str, *, review_id: int | None = 237895671, head: str = REPO) -> Event:
    payload = load("pull_request_review_comment.created")
    payload["comment"]["body"] = body
    payload["comment"]["pull_request_review_id"] = review_id
    payload["pull_request"]["head"]["repo"]["full_name"] = head
    payload["sender"] = user()
    return parse_event("pull_request_review_comment", payload)


def closed(*, merged: bool, sender: str = ALICE) -> Event:
    payload = load("pull_request.closed")
    payload["pull_request"]["merged"] = merged
    payload["sender"] = user(sender)
    return parse_event("pull_request", payload)


def dispatched(**inputs: str) -> Event:
    payload = load("workflow_dispatch")
    payload["inputs"] = inputs
    return parse_event("workflow_dispatch", payload)


def pull(*, head: str = REPO, state: str = "open", ref: str | None = "changes") -> PullRequest:
    raw = load("pull_request.synchronize")["pull_request"]
    raw["number"] = 1
    raw["head"]["repo"]["full_name"] = head
    raw["head"]["ref"] = ref
    raw["state"] = state
    return parse_pull_request(raw)


def run(
    event: Event,
    *,
    permission: str | None = "write",
    task: TaskView | None = None,
    recent_runs: int = 0,
    config: RepoConfig | None = None,
    pull_request: PullRequest | None = None,
) -> Decision:
    return decide(
        event,
        permission=permission,
        repo_config=config or RepoConfig(),
        bot=IDENTITY,
        recent_runs=recent_runs,
        task=task,
        pull_request=pull_request,
    )


def refused(reason: RefusalReason) -> Any:
    class Match:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Refusal) and other.reason is reason

        def __repr__(self) -> str:
            return f"Refusal({reason})"

    return Match()


def ignored() -> Any:
    class Match:
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Ignore)

        def __repr__(self) -> str:
            return "Ignore(...)"

    return Match()


CASES: list[tuple[str, Event, dict[str, Any], Any]] = [
    # who: the bot itself, other bots, senders without write access
    ("own comment", said("/vibe fix it", sender=BOT, sender_type="Bot"), {}, ignored()),
    ("own login without [bot]", said("/vibe fix it", sender="vibe-bot"), {}, ignored()),
    ("other bot", said("/vibe fix it", sender="renovate[bot]", sender_type="Bot"), {}, ignored()),
    (
        "allow-listed bot",
        said("/vibe fix it", sender="helper[bot]", sender_type="Bot"),
        {},
        StartTask(REPO, 1, "helper[bot]", "conversational", "fix it"),
    ),
    (
        "allow-listed bot still needs permission",
        said("/vibe fix it", sender="helper[bot]", sender_type="Bot"),
        {"permission": None},
        NeedsPermission("helper[bot]"),
    ),
    ("permission unknown", said("/vibe fix it"), {"permission": None}, NeedsPermission(ALICE)),
    ("no lookup for chatter", said("nice work"), {"permission": None}, ignored()),
    (
        "reader command",
        said("/vibe fix it"),
        {"permission": "read"},
        refused(RefusalReason.NOT_WRITER),
    ),
    (
        "triage command",
        said("/vibe stop"),
        {"permission": "triage", "task": ACTIVE},
        refused(RefusalReason.NOT_WRITER),
    ),
    (
        "no permission",
        said("/vibe help"),
        {"permission": "none"},
        refused(RefusalReason.NOT_WRITER),
    ),
    (
        "admin",
        said("/vibe fix it"),
        {"permission": "admin"},
        StartTask(REPO, 1, ALICE, "conversational", "fix it"),
    ),
    (
        "maintain",
        said("/vibe fix it"),
        {"permission": "maintain"},
        StartTask(REPO, 1, ALICE, "conversational", "fix it"),
    ),
    (
        "permission case",
        said("/vibe fix it"),
        {"permission": "WRITE"},
        StartTask(REPO, 1, ALICE, "conversational", "fix it"),
    ),
    (
        "reader review",
        reviewed("changes_requested", "no"),
        {"permission": "read", "task": ACTIVE},
        ignored(),
    ),
    (
        "review needs permission",
        reviewed("approved"),
        {"permission": None, "task": ACTIVE},
        NeedsPermission(ALICE),
    ),
    # labels
    ("trigger label", labeled("vibe"), {}, StartTask(REPO, 1, ALICE, "conversational", "")),
    (
        "trigger label any case",
        labeled("VIBE"),
        {},
        StartTask(REPO, 1, ALICE, "conversational", ""),
    ),
    (
        "repo default model",
        labeled("vibe"),
        {"config": RepoConfig(model="test")},
        StartTask(REPO, 1, ALICE, "test", ""),
    ),
    (
        "repo trigger label",
        labeled("ai"),
        {"config": RepoConfig(trigger_label="ai")},
        StartTask(REPO, 1, ALICE, "conversational", ""),
    ),
    (
        "settings label overridden",
        labeled("vibe"),
        {"config": RepoConfig(trigger_label="ai")},
        ignored(),
    ),
    ("vibe:plan", labeled("vibe:plan"), {}, StartTask(REPO, 1, ALICE, "plan", "")),
    ("vibe:test", labeled("vibe:test"), {}, StartTask(REPO, 1, ALICE, "test", "")),
    (
        "vibe:unconstrained",
        labeled("vibe:unconstrained"),
        {},
        StartTask(REPO, 1, ALICE, "unconstrained", ""),
    ),
    (
        "vibe:conversational",
        labeled("vibe:conversational"),
        {},
        StartTask(REPO, 1, ALICE, "conversational", ""),
    ),
    ("vibe:context", labeled("Vibe:Context"), {}, StartTask(REPO, 1, ALICE, "context", "")),
    (
        "custom prefix",
        labeled("ai:plan"),
        {"config": RepoConfig(trigger_label="ai")},
        StartTask(REPO, 1, ALICE, "plan", ""),
    ),
    ("unknown model label", labeled("vibe:fast"), {}, refused(RefusalReason.UNKNOWN_MODEL_LABEL)),
    (
        "unknown model label by reader",
        labeled("vibe:fast"),
        {"permission": "triage"},
        refused(RefusalReason.NOT_WRITER),
    ),
    (
        "label by reader",
        labeled("vibe"),
        {"permission": "triage"},
        refused(RefusalReason.NOT_WRITER),
    ),
    ("other label", labeled("bug"), {}, ignored()),
    ("unlabeled", labeled("vibe", action="unlabeled"), {}, ignored()),
    ("closed issue", labeled("vibe", state="closed"), {}, ignored()),
    ("label again", labeled("vibe"), {"task": ACTIVE}, ignored()),
    (
        "label after end",
        labeled("vibe"),
        {"task": ENDED},
        StartTask(REPO, 1, ALICE, "conversational", ""),
    ),
    ("issue opened", parse_event("issues", load("issues.opened")), {}, ignored()),
    ("issue edited", parse_event("issues", load("issues.edited")), {}, ignored()),
    # /vibe on an issue
    ("run on issue", said("/vibe"), {}, StartTask(REPO, 1, ALICE, "conversational", "")),
    (
        "plan on issue",
        said("/vibe plan add cache"),
        {},
        StartTask(REPO, 1, ALICE, "plan", "add cache"),
    ),
    ("test on issue", said("/vibe test dates"), {}, StartTask(REPO, 1, ALICE, "test", "dates")),
    (
        "mention on issue",
        said("@vibe-bot fix it"),
        {},
        StartTask(REPO, 1, ALICE, "conversational", "fix it"),
    ),
    (
        "repo model for run",
        said("/vibe fix it"),
        {"config": RepoConfig(model="plan")},
        StartTask(REPO, 1, ALICE, "plan", "fix it"),
    ),
    (
        "feedback on issue",
        said("/vibe also X"),
        {"task": ACTIVE},
        Iterate(REPO, 1, ALICE, "also X", comment_id=492700400),
    ),
    ("bare run with task", said("/vibe"), {"task": ACTIVE}, refused(RefusalReason.TASK_EXISTS)),
    ("plan with task", said("/vibe plan x"), {"task": ACTIVE}, refused(RefusalReason.TASK_EXISTS)),
    (
        "run after end",
        said("/vibe again"),
        {"task": ENDED},
        StartTask(REPO, 1, ALICE, "conversational", "again"),
    ),
    (
        "closed issue command",
        said("/vibe fix it", state="closed"),
        {},
        refused(RefusalReason.CLOSED),
    ),
    (
        "first command only",
        said("/vibe stop\n/vibe fix it"),
        {"task": ACTIVE},
        Stop(REPO, 1, ALICE),
    ),
    ("quoted command", said("> /vibe fix it"), {}, ignored()),
    ("edited command", said("/vibe fix it", action="edited"), {}, ignored()),
    # /vibe on a PR
    (
        "feedback on PR",
        said("/vibe rename it", on_pr=True),
        {"task": ACTIVE},
        Iterate(REPO, 1, ALICE, "rename it", comment_id=492700400),
    ),
    (
        "bare run on own PR",
        said("/vibe", on_pr=True),
        {"task": ACTIVE},
        refused(RefusalReason.NO_FEEDBACK),
    ),
    ("unowned PR needs it", said("/vibe fix it", on_pr=True), {}, NeedsPullRequest(1)),
    (
        "unowned PR reader",
        said("/vibe fix it", on_pr=True),
        {"permission": "read"},
        refused(RefusalReason.NOT_WRITER),
    ),
    (
        "unowned same-repo PR",
        said("/vibe fix it", on_pr=True),
        {"pull_request": pull()},
        StartTask(REPO, 1, ALICE, "conversational", "fix it", pull_request=1, head_ref="changes"),
    ),
    (
        "unowned PR, test model",
        said("/vibe test edge cases", on_pr=True),
        {"pull_request": pull()},
        StartTask(REPO, 1, ALICE, "test", "edge cases", pull_request=1, head_ref="changes"),
    ),
    (
        "PR from the default branch",
        said("/vibe fix it", on_pr=True),
        {"pull_request": pull(ref="master")},
        refused(RefusalReason.DEFAULT_BRANCH),
    ),
    (
        "PR without a head branch",
        said("/vibe fix it", on_pr=True),
        {"pull_request": pull(ref=None)},
        refused(RefusalReason.DEFAULT_BRANCH),
    ),
    (
        "fork PR",
        said("/vibe fix it", on_pr=True),
        {"pull_request": pull(head="someone/fork")},
        refused(RefusalReason.FORK),
    ),
    (
        "closed PR",
        said("/vibe fix it", on_pr=True),
        {"pull_request": pull(state="closed")},
        refused(RefusalReason.CLOSED),
    ),
    (
        "PR from event",
        inline("/vibe fix it"),
        {},
        StartTask(REPO, 2, ALICE, "conversational", "fix it", pull_request=2, head_ref="changes"),
    ),
    (
        "fork from event",
        inline("/vibe fix it", head="someone/fork"),
        {},
        refused(RefusalReason.FORK),
    ),
    ("PR chatter", said("looks good", on_pr=True), {"task": ACTIVE}, ignored()),
    # reviews
    (
        "changes requested",
        reviewed("changes_requested", "use a dict"),
        {"task": ACTIVE},
        Iterate(REPO, 2, ALICE, "use a dict", review_id=237895671),
    ),
    (
        "commented review",
        reviewed("commented"),
        {"task": ACTIVE},
        Iterate(REPO, 2, ALICE, "", review_id=237895671),
    ),
    (
        "approved",
        reviewed("approved"),
        {"task": ACTIVE},
        Accept(REPO, 2, ALICE, "approved by @alice"),
    ),
    ("approved by reader", reviewed("approved"), {"task": ACTIVE, "permission": "read"}, ignored()),
    ("review without task", reviewed("changes_requested", "x"), {}, ignored()),
    ("review after end", reviewed("approved"), {"task": ENDED}, ignored()),
    ("review by bot", reviewed("commented", sender=BOT), {"task": ACTIVE}, ignored()),
    (
        "feedback command in review",
        reviewed("commented", "/vibe use a set"),
        {"task": ACTIVE},
        Iterate(REPO, 2, ALICE, "use a set", review_id=237895671),
    ),
    (
        "command in review",
        reviewed("changes_requested", "/vibe require tests"),
        {"task": ACTIVE},
        AddRequirement(REPO, 2, ALICE, "tests"),
    ),
    ("inline comment of a review", inline("rename this"), {"task": ACTIVE}, ignored()),
    (
        "inline comment without review",
        inline("rename this", review_id=None),
        {"task": ACTIVE},
        Iterate(REPO, 2, ALICE, "rename this", comment_id=284312630),
    ),
    ("inline without task", inline("rename this", review_id=None), {}, ignored()),
    ("inline command", inline("/vibe stop"), {"task": ACTIVE}, Stop(REPO, 2, ALICE)),
    (
        "thread resolved",
        parse_event("pull_request_review_thread", load("pull_request_review_thread.resolved")),
        {"task": ACTIVE},
        ignored(),
    ),
    # the other commands
    (
        "require",
        said("/vibe require works offline"),
        {"task": ACTIVE},
        AddRequirement(REPO, 1, ALICE, "works offline"),
    ),
    ("require without task", said("/vibe require x"), {}, refused(RefusalReason.NO_TASK)),
    ("approve", said("/vibe approve"), {"task": AWAITING}, ApprovePlan(REPO, 1, ALICE)),
    (
        "approve nothing",
        said("/vibe approve"),
        {"task": ACTIVE},
        refused(RefusalReason.NOTHING_TO_APPROVE),
    ),
    ("approve without task", said("/vibe approve"), {}, refused(RefusalReason.NOTHING_TO_APPROVE)),
    (
        "approve ended",
        said("/vibe approve"),
        {"task": TaskView(ended=True, awaiting_approval=True)},
        refused(RefusalReason.NOTHING_TO_APPROVE),
    ),
    ("stop", said("/vibe stop"), {"task": ACTIVE}, Stop(REPO, 1, ALICE)),
    ("stop on PR", said("/vibe stop", on_pr=True), {"task": ACTIVE}, Stop(REPO, 1, ALICE)),
    ("stop nothing", said("/vibe stop"), {}, refused(RefusalReason.NO_TASK)),
    ("stop ended", said("/vibe stop"), {"task": ENDED}, refused(RefusalReason.NO_TASK)),
    ("retry", said("/vibe retry"), {"task": ACTIVE}, Retry(REPO, 1, ALICE)),
    ("retry nothing", said("/vibe retry"), {}, refused(RefusalReason.NO_TASK)),
    ("undo", said("/vibe undo"), {"task": ACTIVE}, Undo(REPO, 1, ALICE)),
    ("undo nothing", said("/vibe undo"), {}, refused(RefusalReason.NO_TASK)),
    ("status", said("/vibe status"), {"task": ACTIVE}, Status(REPO, 1, ALICE)),
    ("status nothing", said("/vibe status"), {}, refused(RefusalReason.NO_TASK)),
    ("help", said("/vibe help"), {}, Help(REPO, 1, ALICE)),
    ("unknown", said("/vibe halp"), {}, Help(REPO, 1, ALICE, "halp")),
    # approving by editing the plan comment
    (
        "plan edited",
        said("- [ ] step", action="edited", author=BOT),
        {"task": AWAITING},
        ApprovePlan(REPO, 1, ALICE, plan_edited=True),
    ),
    (
        "plan edited by reader",
        said("- [ ] step", action="edited", author=BOT),
        {"task": AWAITING, "permission": "read"},
        refused(RefusalReason.NOT_WRITER),
    ),
    (
        "other bot comment edited",
        said("x", action="edited", author=BOT),
        {"task": TaskView(awaiting_approval=True, plan_comment_id=5)},
        ignored(),
    ),
    ("plan edited, no wait", said("x", action="edited", author=BOT), {"task": ACTIVE}, ignored()),
    ("human comment edited", said("x", action="edited"), {"task": AWAITING}, ignored()),
    # PR closed
    (
        "merged",
        closed(merged=True),
        {"task": ACTIVE, "permission": None},
        Accept(REPO, 2, ALICE, "merged by @alice"),
    ),
    (
        "closed unmerged",
        closed(merged=False),
        {"task": ACTIVE, "permission": None},
        Abandon(REPO, 2, ALICE, "closed without merging by @alice"),
    ),
    ("closed by bot", closed(merged=False, sender=BOT), {"task": ACTIVE}, ignored()),
    ("closed without task", closed(merged=True), {}, ignored()),
    ("closed after end", closed(merged=False), {"task": ENDED}, ignored()),
    (
        "synchronize",
        parse_event("pull_request", load("pull_request.synchronize")),
        {"task": ACTIVE},
        ignored(),
    ),
    # workflow_dispatch
    (
        "dispatch",
        dispatched(prompt="add a CLI flag"),
        {},
        StartTask("octo-org/octo-repo", None, "Codertocat", "conversational", "add a CLI flag"),
    ),
    (
        "dispatch model",
        dispatched(prompt="x y", model="plan"),
        {},
        StartTask("octo-org/octo-repo", None, "Codertocat", "plan", "x y"),
    ),
    (
        "dispatch bad model",
        dispatched(prompt="x y", model="warp"),
        {},
        StartTask("octo-org/octo-repo", None, "Codertocat", "conversational", "x y"),
    ),
    ("dispatch no prompt", dispatched(name="x"), {}, ignored()),
    (
        "dispatch by reader",
        dispatched(prompt="x y"),
        {"permission": "read"},
        refused(RefusalReason.NOT_WRITER),
    ),
    # everything else
    ("ping", parse_event("ping", load("ping")), {}, ignored()),
    ("installation", parse_event("installation", load("installation.created")), {}, ignored()),
    ("unsupported", parse_event("check_run", load("check_run.completed")), {}, ignored()),
    ("unparseable", parse_event("issues", {"action": "labeled"}), {}, ignored()),
]


@pytest.mark.parametrize(("name", "event", "inputs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decide(name: str, event: Event, inputs: dict[str, Any], expected: Any) -> None:
    assert run(event, **inputs) == expected


def test_no_sender_is_ignored() -> None:
    payload = load("issue_comment.created")
    payload["comment"]["body"] = "/vibe fix it"
    del payload["sender"]
    assert isinstance(run(parse_event("issue_comment", payload)), Ignore)


def test_refusal_names_its_reason_and_where_to_reply() -> None:
    decision = run(said("/vibe fix it"), permission="read")
    assert isinstance(decision, Refusal)
    assert decision.repo == REPO
    assert decision.number == 1
    assert "@alice" in decision.message
    assert "write access" in decision.message
    dispatch = run(dispatched(prompt="x y"), permission="read")
    assert isinstance(dispatch, Refusal)
    assert dispatch.number is None


RUNS = [
    ("start", said("/vibe fix it"), None),
    ("iterate", said("/vibe more", on_pr=True), ACTIVE),
    ("review", reviewed("changes_requested", "x"), ACTIVE),
    ("require", said("/vibe require y"), ACTIVE),
    ("approve", said("/vibe approve"), AWAITING),
    ("retry", said("/vibe retry"), ACTIVE),
    ("label", labeled("vibe"), None),
]


@pytest.mark.parametrize(("name", "event", "task"), RUNS, ids=[r[0] for r in RUNS])
def test_loop_breaker_caps_runs_per_hour(name: str, event: Event, task: TaskView | None) -> None:
    assert isinstance(run(event, task=task, recent_runs=9), RUN_ACTIONS)
    decision = run(event, task=task, recent_runs=10)
    assert decision == refused(RefusalReason.LOOP_BREAKER)
    assert isinstance(decision, Refusal)
    assert "10 runs" in decision.message


NOT_RUNS = [
    ("stop", said("/vibe stop"), ACTIVE, Stop),
    ("status", said("/vibe status"), ACTIVE, Status),
    ("undo", said("/vibe undo"), ACTIVE, Undo),
    ("help", said("/vibe help"), None, Help),
    ("accept", reviewed("approved"), ACTIVE, Accept),
    ("abandon", closed(merged=False), ACTIVE, Abandon),
]


@pytest.mark.parametrize(("name", "event", "task", "kind"), NOT_RUNS, ids=[r[0] for r in NOT_RUNS])
def test_loop_breaker_lets_control_through(
    name: str, event: Event, task: TaskView | None, kind: type
) -> None:
    assert isinstance(run(event, task=task, recent_runs=1000), kind)


def test_identity_from_settings() -> None:
    settings = load_settings(
        bot_login="my-bot[bot]",
        allowed_bots=["dependabot[bot]"],
        trigger_label="ai",
        default_model="plan",
        limits=Limits(runs_per_hour=3),
    )
    identity = settings.bot_identity()
    assert identity == BotIdentity(
        login="my-bot[bot]",
        allowed_bots=frozenset({"dependabot[bot]"}),
        trigger_label="ai",
        default_model="plan",
        runs_per_hour=3,
    )
    decision = decide(
        labeled("ai"),
        permission="write",
        repo_config=RepoConfig(),
        bot=identity,
        recent_runs=3,
    )
    assert decision == refused(RefusalReason.LOOP_BREAKER)


@settings(max_examples=300, deadline=None)
@given(
    body=st.text(max_size=200) | st.sampled_from(["/vibe fix", "/vibe require x", "/vibe approve"]),
    permission=st.sampled_from(["read", "triage", "none", "pull", ""]),
    on_pr=st.booleans(),
    task=st.sampled_from([None, ACTIVE, ENDED, AWAITING]),
)
def test_non_writers_never_reach_the_agent(
    body: str, permission: str, on_pr: bool, task: TaskView | None
) -> None:
    decision = run(said(body, on_pr=on_pr), permission=permission, task=task)
    assert isinstance(decision, Refusal | Ignore)
    assert not isinstance(decision, RUN_ACTIONS)


FIXTURES = sorted(p.name.removesuffix(".json") for p in WEBHOOKS.glob("*.json"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    fixture=st.sampled_from(FIXTURES),
    key=st.sampled_from(["comment", "review", "label", "issue", "pull_request", "inputs", "x"]),
    field=st.sampled_from(["body", "state", "name", "merged", "number", "head", "prompt"]),
    value=json_values,
    permission=st.none() | st.sampled_from(["admin", "write", "read", "WRITE", ""]),
    task=st.sampled_from([None, ACTIVE, ENDED, AWAITING]),
    recent_runs=st.integers(min_value=0, max_value=20),
)
def test_decide_and_serial_key_never_raise(
    fixture: str,
    key: str,
    field: str,
    value: Any,
    permission: str | None,
    task: TaskView | None,
    recent_runs: int,
) -> None:
    payload = load(fixture)
    if isinstance(payload.get(key), dict):
        payload[key][field] = value
    else:
        payload[key] = value
    event = parse_event(fixture.split(".")[0], payload)
    decision = run(event, permission=permission, task=task, recent_runs=recent_runs)
    assert isinstance(
        decision,
        (
            *RUN_ACTIONS,
            Stop,
            Undo,
            Status,
            Help,
            Accept,
            Abandon,
            Refusal,
            Ignore,
            NeedsPermission,
            NeedsPullRequest,
        ),
    )
    key_or_none = serial_key(event, BOT)
    assert key_or_none is None or key_or_none.startswith(("Codertocat/", "octo-org/"))


# ------------------------------------------------------------------ allow-list


@pytest.mark.parametrize(
    ("allowed", "admitted"),
    [
        (None, True),  # vibe action / vibe run: the repository it runs in
        (AllowList(owners=frozenset({"codertocat"})), True),  # owners match without case
        (AllowList(repositories=frozenset({"Codertocat/Hello-World"})), True),
        (AllowList(owners=frozenset({"octo-org"})), False),
        (AllowList(repositories=frozenset({"Codertocat/Other"})), False),
    ],
)
def test_only_allowed_owners_and_repositories_are_served(
    allowed: AllowList | None, admitted: bool
) -> None:
    event = comment("/vibe add a greeting")
    refusal = admit(event, BotIdentity(BOT, allowed=allowed))
    if admitted:
        assert refusal is None
    else:
        assert refusal == Refusal(
            RefusalReason.NOT_ALLOWED_OWNER,
            "Refused: Codertocat is not an allowed owner (Codertocat/Hello-World)",
            "Codertocat/Hello-World",
            None,  # answered nowhere: a stranger's repository gets no write
        )


def test_the_allow_list_comes_from_the_settings() -> None:
    assert load_settings(bot_login=BOT).bot_identity().allowed is None
    bot = load_settings(
        bot_login=BOT, allowed_owners=["octo-org"], allowed_repositories=["a/b"]
    ).bot_identity()
    assert bot.allowed == AllowList(frozenset({"octo-org"}), frozenset({"a/b"}))
    assert admit(comment("/vibe go"), bot) is not None
