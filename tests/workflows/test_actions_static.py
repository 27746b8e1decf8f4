"""The composite action and the workflow templates: actionlint, shellcheck, structure and
the script-injection rule (no expression inside any ``run:`` script)."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.workflows.workflow_checks import injections, load, scripts

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
TEMPLATES = sorted((ROOT / "workflows").glob("*.yml"))
PUBLISHED = "vibe-bot/vibe-bot@v1"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, f"{name} is not installed (it is in the [dev] extras)"
    return path


def _actionlint(cwd: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("actionlint"), "-oneline", "-no-color", *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _probe_repo(tmp_path: Path, workflows: dict[str, str]) -> list[Path]:
    """A repository whose root is this action, with workflows that use it as ``./``.

    actionlint reads the metadata of local actions: it then checks the action file parses
    and that every ``with:`` key is a declared input and every required input is given.
    """
    # actionlint finds the project (and so ``./``) by its .git directory.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=60)
    shutil.copy(ACTION, tmp_path / "action.yml")
    wf_dir = tmp_path / ".github" / "workflows"
    wf_dir.mkdir(parents=True)
    paths = []
    for name, text in workflows.items():
        path = wf_dir / name
        path.write_text(text)
        paths.append(path)
    return paths


def test_templates_exist() -> None:
    assert [p.name for p in TEMPLATES] == ["vibe-runner.yml", "vibe.yml"]
    assert (ROOT / "workflows" / "README.md").is_file()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_actionlint_passes_on_template(template: Path) -> None:
    _tool("shellcheck")  # actionlint runs it on every run: script when it is on PATH
    result = _actionlint(ROOT, template)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_checks_the_action_through_the_templates(tmp_path: Path) -> None:
    workflows = {p.name: p.read_text().replace(PUBLISHED, "./") for p in TEMPLATES}
    for text in workflows.values():
        assert "uses: ./" in text
    paths = _probe_repo(tmp_path, workflows)
    result = _actionlint(tmp_path, *paths)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_probe_can_fail(tmp_path: Path) -> None:
    """The probe above is a real check: an undeclared input and a missing required one."""
    bad = textwrap.dedent(
        """\
        on: workflow_dispatch
        permissions: {}
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - uses: ./
                with:
                  no-such-input: x
        """
    )
    paths = _probe_repo(tmp_path, {"bad.yml": bad})
    result = _actionlint(tmp_path, *paths)
    assert result.returncode == 1
    assert "no-such-input" in result.stdout
    assert "anthropic-api-key" in result.stdout


def test_action_structure() -> None:
    action = load(ACTION)
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    ids = {s["id"] for s in steps if "id" in s}
    for script in scripts(action):
        assert script.shell == "bash", f"{script.where}: composite run steps need shell: bash"
    # Every output comes from a step that exists.
    for name, output in action["outputs"].items():
        step_id = output["value"].split("steps.")[1].split(".")[0]
        assert step_id in ids, f"output {name} reads unknown step {step_id}"
    # Every input reaches something: a `with:` of a used action, an `if:` or an `env:`.
    text_uses = "\n".join(
        str(step.get("with", "")) + str(step.get("env", "")) + str(step.get("if", ""))
        for step in steps
    )
    for name in action["inputs"]:
        assert f"inputs.{name}" in text_uses, f"input {name} is declared but never used"
    # The action installs itself from its own checkout, found through env.
    assert any("github.action_path" in str(step.get("env", "")) for step in steps)
    # setup-python can be skipped (self-hosted runners, act) by an input.
    setup = [s for s in steps if str(s.get("uses", "")).startswith("actions/setup-python@")]
    assert len(setup) == 1
    assert setup[0]["if"] == "inputs.python == 'setup'"


@pytest.mark.parametrize("path", [ACTION, *TEMPLATES], ids=lambda p: p.name)
def test_no_expression_inside_run_scripts(path: Path) -> None:
    document = load(path)
    if path != ROOT / "workflows" / "vibe.yml":  # that one only uses actions
        assert scripts(document), f"{path.name} has no run: step to check"
    assert injections(document) == []


def test_injection_rule_flags_interpolated_inputs() -> None:
    document = {
        "runs": {
            "using": "composite",
            "steps": [
                {"shell": "bash", "run": 'echo "${{ inputs.prompt }}"'},
                {"shell": "bash", "run": "echo ${{github.event.comment.body}}"},
                {"shell": "bash", "env": {"P": "${{ inputs.prompt }}"}, "run": 'echo "$P"'},
            ],
        }
    }
    findings = injections(document)
    assert len(findings) == 2
    assert "runs.steps[0]: untrusted context `${{ inputs.prompt }}`" in findings[0]
    assert "github.event.comment.body" in findings[1]


def test_every_action_script_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = _tool("shellcheck")
    action = load(ACTION)
    for i, script in enumerate(scripts(action)):
        path = tmp_path / f"step{i}.sh"
        path.write_text("#!/usr/bin/env bash\n" + script.text)
        result = subprocess.run(
            [shellcheck, "--shell=bash", str(path)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, f"{script.where}:\n{result.stdout}"


def test_vibe_template_is_safe() -> None:
    wf = load(ROOT / "workflows" / "vibe.yml")
    triggers = wf[True]  # PyYAML reads the key `on` as the boolean True
    assert set(triggers) == {
        "issues",
        "issue_comment",
        "pull_request_review",
        "pull_request_review_comment",
        "workflow_dispatch",
    }
    assert "pull_request_target" not in triggers
    assert triggers["workflow_dispatch"]["inputs"]["prompt"]["required"] is True
    assert wf["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "issues": "write",
    }
    (job,) = wf["jobs"].values()
    assert "github.event.sender.type != 'Bot'" in job["if"]
    assert job["concurrency"]["cancel-in-progress"] is False
    group = job["concurrency"]["group"]
    assert "github.event.issue.number" in group
    assert "github.event.pull_request.number" in group
    # No checkout at all: no token in a .git/config, no pull request code beside secrets.
    uses = [str(step.get("uses", "")) for step in job["steps"]]
    assert not any(u.startswith("actions/checkout") for u in uses)
    (bot,) = [step for step in job["steps"] if step.get("uses") == PUBLISHED]
    assert bot["with"]["anthropic-api-key"] == "${{ secrets.ANTHROPIC_API_KEY }}"
    assert bot["with"]["python"] == "${{ vars.VIBE_PYTHON || 'setup' }}"
    # The task records are carried between runs, and saved even when the bot failed.
    restore, save = job["steps"][0], job["steps"][-1]
    assert restore["uses"].startswith("actions/cache/restore@")
    assert save["uses"].startswith("actions/cache/save@")
    assert save["if"].startswith("always()")
    assert restore["with"]["path"] == save["with"]["path"]
    assert save["with"]["path"] == "${{ runner.temp }}/vibe-bot-data/vibe.db"
    # ... which is where the action keeps the bot's database (settings: data_dir/vibe.db).
    assert 'export VIBE_DATA_DIR="$RUNNER_TEMP/vibe-bot-data"' in ACTION.read_text()


def test_runner_template_masks_the_credential_first() -> None:
    wf = load(ROOT / "workflows" / "vibe-runner.yml")
    inputs = wf[True]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"task_id", "credential"}
    assert "inputs.task_id" in wf["run-name"]
    (job,) = wf["jobs"].values()
    first = job["steps"][0]
    assert first["env"] == {"CREDENTIAL": "${{ inputs.credential }}"}
    assert first["run"].strip() == 'echo "::add-mask::$CREDENTIAL"'
    used = job["steps"][-1]
    assert used["uses"] == PUBLISHED
    assert used["with"]["task-credential"] == "${{ inputs.credential }}"
    assert used["with"]["task-id"] == "${{ inputs.task_id }}"
    assert wf["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "issues": "write",
    }
