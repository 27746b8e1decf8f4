"""Static checks for GitHub Actions files, shared by the tests in this folder.

``injections`` is the script-injection rule: any ``${{ ... }}`` expression inside a
``run:`` script is text substituted into shell code before the shell sees it, so a value an
attacker controls (an issue title, a comment, a workflow input) becomes code. Values must
reach scripts through ``env:`` instead. The rule is stricter than GitHub's guidance on
purpose: no expression at all in ``run:``, not only the known-dangerous contexts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
# Contexts an outsider can put text into; named in the message so a finding says why.
UNTRUSTED = re.compile(
    r"\b(inputs\.|github\.event\.|github\.head_ref|steps\.[^.]+\.outputs|env\.|vars\.)"
)


@dataclass(frozen=True)
class Script:
    where: str
    shell: str | None
    text: str


def _steps_of(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every step of a workflow (all jobs) or of a composite action, with a location."""
    out: list[tuple[str, dict[str, Any]]] = []
    runs = document.get("runs")
    if isinstance(runs, dict):
        for i, step in enumerate(runs.get("steps") or []):
            out.append((f"runs.steps[{i}]", step))
    jobs = document.get("jobs")
    if isinstance(jobs, dict):
        for job_id, job in jobs.items():
            for i, step in enumerate((job or {}).get("steps") or []):
                out.append((f"jobs.{job_id}.steps[{i}]", step))
    return out


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: top level is not a mapping"
    return data


def scripts(document: dict[str, Any]) -> list[Script]:
    out = []
    for where, step in _steps_of(document):
        if isinstance(step, dict) and "run" in step:
            out.append(Script(where, step.get("shell"), str(step["run"])))
    return out


def injections(document: dict[str, Any]) -> list[str]:
    """Every ``${{ }}`` found inside a ``run:`` script, as a readable finding."""
    findings = []
    for script in scripts(document):
        for match in EXPRESSION.finditer(script.text):
            expr = match.group(1).strip()
            why = "untrusted context" if UNTRUSTED.search(expr) else "expression"
            findings.append(f"{script.where}: {why} `${{{{ {expr} }}}}` inside run:")
    return findings
