"""``vibe action``'s edge: the runner's variables, the event file, outputs and summary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bot.entrypoints.action import ActionEnv, ActionError, ActionResult, load_event, write_outputs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


def environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "GITHUB_EVENT_NAME": "issue_comment",
        "GITHUB_EVENT_PATH": str(FIXTURES / "issue_comment.created.json"),
        "GITHUB_REPOSITORY": "Codertocat/Hello-World",
        "GITHUB_API_URL": "http://127.0.0.1:9/",
        "GITHUB_SERVER_URL": "http://127.0.0.1:9",
        "GITHUB_RUN_ID": "12345678901",
        "GITHUB_WORKSPACE": str(tmp_path / "ws"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
    }
    env.update(extra)
    return env


def test_reads_the_runner_variables(tmp_path: Path) -> None:
    env = ActionEnv.from_environ(environ(tmp_path))
    assert env.event_name == "issue_comment"
    assert env.repository == "Codertocat/Hello-World"
    assert env.api_url == "http://127.0.0.1:9"
    assert env.run_id == 12345678901
    assert env.output == tmp_path / "output.txt"
    payload = load_event(env.event_path)
    assert payload["comment"]["user"]["login"] == "Codertocat"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"GITHUB_EVENT_NAME": ""}, "GITHUB_EVENT_NAME not set"),
        ({"GITHUB_REPOSITORY": "no-slash"}, "must be owner/name"),
        ({"GITHUB_REPOSITORY": "a/b/c"}, "must be owner/name"),
        ({"GITHUB_API_URL": "file:///etc/passwd"}, "GITHUB_API_URL must be an http"),
    ],
)
def test_bad_variables_are_named(tmp_path: Path, override: dict[str, str], message: str) -> None:
    with pytest.raises(ActionError, match=message):
        ActionEnv.from_environ(environ(tmp_path, **override))


def test_run_id_that_is_not_a_number_is_dropped(tmp_path: Path) -> None:
    assert ActionEnv.from_environ(environ(tmp_path, GITHUB_RUN_ID="1; rm -rf")).run_id is None


@pytest.mark.parametrize(
    ("value", "attempt"),
    [("3", 3), ("", 1), ("0", 1), ("-2", 1), ("2; rm -rf", 1), ("9" * 40, 1)],
)
def test_run_attempt_is_read_and_hostile_values_read_as_the_first(
    tmp_path: Path, value: str, attempt: int
) -> None:
    env = ActionEnv.from_environ(environ(tmp_path, GITHUB_RUN_ATTEMPT=value))
    assert env.run_attempt == attempt


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "is not JSON"),
        (b"[1, 2]", "holds a list, not an object"),
        (b"\xff\xfe", "is not JSON"),
    ],
)
def test_bad_event_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(content)
    with pytest.raises(ActionError, match=message):
        load_event(path)


def test_missing_and_oversized_event_files(tmp_path: Path) -> None:
    with pytest.raises(ActionError, match="cannot read the event file"):
        load_event(tmp_path / "absent.json")
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.write(b'{"x": "')
        fh.seek(26 * 1024 * 1024)
        fh.write(b'"}')
    with pytest.raises(ActionError, match="larger than"):
        load_event(big)


def test_outputs_survive_hostile_values(tmp_path: Path) -> None:
    env = ActionEnv.from_environ(environ(tmp_path))
    (tmp_path / "output.txt").write_text("earlier=1\n")
    hostile = "done\noutcome=forged\n| table | break |"
    write_outputs(env, ActionResult("refused", detail=hostile, pr_number=None, cost=0.5))
    text = (tmp_path / "output.txt").read_text()
    assert text.startswith("earlier=1\n")  # appended, not overwritten
    entries = dict(re.findall(r"^([a-z-]+)<<(vibe_[0-9a-f]{32})\n", text, flags=re.M))
    assert sorted(entries) == ["cost", "outcome", "pr-number"]
    parsed = {
        name: re.search(rf"{name}<<{d}\n(.*?)\n{d}\n", text, flags=re.S).group(1)  # type: ignore[union-attr]
        for name, d in entries.items()
    }
    assert parsed == {"outcome": "refused", "pr-number": "", "cost": "0.5000"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| Outcome | refused |" in summary
    assert "| Detail | done outcome=forged \\| table \\| break \\| |" in summary


def test_summary_links_the_pull_request(tmp_path: Path) -> None:
    env = ActionEnv.from_environ(environ(tmp_path))
    write_outputs(env, ActionResult("started", pr_number=12, cost=1.25, task_number=3))
    summary = (tmp_path / "summary.md").read_text()
    assert "[#12](http://127.0.0.1:9/Codertocat/Hello-World/pull/12)" in summary
    assert "| Issue | #3 |" in summary
    assert "| Model cost | $1.25 |" in summary
    assert json.dumps(summary)  # plain text
