"""What the bot asks of GitHub: the App's permissions and events, from one table.

The table :data:`FEATURES` says, for each thing the bot does, which permission and which
webhook events it needs. :func:`build_manifest` turns it into the manifest of GitHub's
manifest flow (``vibe setup``) and :func:`render_doc` into ``docs/github-app.md`` for people
who create the App by hand; a test keeps the committed page equal to the generated text.
:func:`convert_code` is the flow's one API call: it trades the code GitHub hands back for
the new App's credentials.

Manifest parameters: https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest
Permissions and the events each one unlocks:
https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps and
https://docs.github.com/en/webhooks/webhook-events-and-payloads
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

Access = Literal["read", "write"]
Needed = Literal["always", "actions executor", "workflow changes"]
Executor = Literal["local", "actions"]

_RANK: Mapping[str, int] = {"read": 1, "write": 2}

# GitHub's names for the permissions, as shown on the App's settings page.
PERMISSION_TITLES: Mapping[str, str] = {
    "metadata": "Metadata",
    "contents": "Contents",
    "issues": "Issues",
    "pull_requests": "Pull requests",
    "checks": "Checks",
    "actions": "Actions",
    "statuses": "Commit statuses",
    "workflows": "Workflows",
}


@dataclass(frozen=True)
class Feature:
    """One thing the bot does and what it needs of GitHub for it."""

    name: str
    why: str
    permissions: Mapping[str, Access]
    events: tuple[str, ...] = ()
    needed: Needed = "always"


FEATURES: tuple[Feature, ...] = (
    Feature(
        "Repositories",
        "find repositories and their installation (GitHub grants it to every App)",
        {"metadata": "read"},
    ),
    Feature(
        "Code",
        "clone, push the task branch, read `.github/vibe.yml` and instruction files, "
        "resolve answered review threads",
        {"contents": "write"},
    ),
    Feature(
        "Issues as tasks",
        "a label or `/vibe` on an issue starts a task; status comments, reactions, labels",
        {"issues": "write"},
        ("issues", "issue_comment"),
    ),
    Feature(
        "Pull requests as iterations",
        "open and update the task's pull request; reviews, review comments and resolved "
        "threads are feedback; a merge or close ends the task",
        {"pull_requests": "write"},
        (
            "pull_request",
            "pull_request_review",
            "pull_request_review_comment",
            "pull_request_review_thread",
        ),
    ),
    Feature(
        "Check runs",
        "one check run per iteration shows its feedback on the pull request",
        {"checks": "write"},
    ),
    Feature(
        "Repository CI as feedback",
        "failed check runs, job logs and commit statuses of the bot's pull requests start a fix "
        "iteration; all green marks the draft ready for review (re-running a failed job "
        "needs Actions: write, which the Actions executor grants)",
        {"checks": "read", "actions": "read", "statuses": "read"},
        ("check_run", "check_suite", "status", "workflow_run"),
    ),
    Feature(
        "Actions executor",
        "dispatch `vibe-runner.yml` on the repository's runners and follow the run",
        {"actions": "write"},
        ("workflow_run",),
        "actions executor",
    ),
    Feature(
        "Workflow changes",
        "push changes under `.github/workflows` (only where a repository's config allows them)",
        {"workflows": "write"},
        (),
        "workflow changes",
    ),
)


def features(executor: Executor = "local", allow_workflow_changes: bool = False) -> list[Feature]:
    """The features enabled by these options."""
    enabled: set[Needed] = {"always"}
    if executor == "actions":
        enabled.add("actions executor")
    if allow_workflow_changes:
        enabled.add("workflow changes")
    return [f for f in FEATURES if f.needed in enabled]


def permissions_of(chosen: Iterable[Feature]) -> dict[str, Access]:
    """The union of the features' permissions (write covers read)."""
    out: dict[str, Access] = {}
    for feature in chosen:
        for name, access in feature.permissions.items():
            if _RANK[access] > _RANK.get(out.get(name, ""), 0):
                out[name] = access
    return out


def events_of(chosen: Iterable[Feature]) -> list[str]:
    return sorted({e for f in chosen for e in f.events})


def build_manifest(
    *,
    name: str,
    url: str,
    webhook_url: str,
    redirect_url: str,
    executor: Executor = "local",
    allow_workflow_changes: bool = False,
) -> dict[str, Any]:
    """The manifest for GitHub's App manifest flow. The App is private (``public: False``):
    installed only on the account that owns it, so no stranger spends the operator's model key."""
    chosen = features(executor, allow_workflow_changes)
    return {
        "name": name,
        "url": url,
        "hook_attributes": {"url": webhook_url, "active": True},
        "redirect_url": redirect_url,
        "public": False,
        "default_permissions": permissions_of(chosen),
        "default_events": events_of(chosen),
    }


_WHEN: Mapping[Needed, str] = {
    "always": "always",
    "actions executor": "with `VIBE_EXECUTOR=actions`",
    "workflow changes": "only if repositories may change `.github/workflows`",
}


def render_doc() -> str:
    """The text of ``docs/github-app.md``."""
    lines = [
        "# The GitHub App: permissions and events",
        "",
        "<!-- Generated from bot/github/manifest.py (FEATURES); "
        "tests/github/test_manifest.py keeps it equal. -->",
        "",
        "`vibe setup` registers the App for you through GitHub's manifest flow (see the "
        "README). To create it by hand (Settings > Developer settings > GitHub Apps > New "
        "GitHub App), give it exactly these permissions and events, set the webhook URL to "
        "your public `https://HOST/webhook` with a webhook secret, and keep it private "
        '("Only on this account").',
        "",
        "## Repository permissions",
        "",
        "| permission | access | when | needed for |",
        "|---|---|---|---|",
    ]
    for feature in FEATURES:
        for perm, access in feature.permissions.items():
            lines.append(
                f"| {PERMISSION_TITLES[perm]} | {access} | {_WHEN[feature.needed]} | "
                f"{feature.name}: {feature.why} |"
            )
    lines += [
        "",
        "## Events",
        "",
        "| event | when | needed for |",
        "|---|---|---|",
    ]
    for feature in FEATURES:
        for event in feature.events:
            lines.append(f"| `{event}` | {_WHEN[feature.needed]} | {feature.name} |")
    lines += [
        "",
        "GitHub sends `installation` and `installation_repositories` to every App without a "
        "subscription; the bot records them.",
        "",
        "After creating the App: generate a private key, note the App id, install the App on "
        "the repositories it may work on, and set `VIBE_GITHUB_APP_ID`, "
        "`VIBE_GITHUB_PRIVATE_KEY_PATH` and `VIBE_WEBHOOK_SECRET`.",
        "",
        "## Personal access token mode",
        "",
        "`VIBE_GITHUB_TOKEN` with a fine-grained personal access token instead of an App: "
        "repository access to the chosen repositories and the same repository permissions "
        "as above (Contents, Issues, Pull requests: read and write; Metadata, Checks and "
        "Commit statuses: read; Actions: read, and write with the Actions executor; "
        "Workflows: read and write only if "
        "workflow changes are allowed). Check runs need an App, so the bot skips them. "
        "Webhooks come from a repository or organisation webhook (Settings > Webhooks, "
        "content type `application/json`, the same secret as `VIBE_WEBHOOK_SECRET`) with "
        "the events above. The bot acts as the token's user: use a dedicated account.",
        "",
        "Who may use the bot: by default only the account that owns the App, and with a "
        "personal access token the token's user. A token used on an organisation's "
        "repositories therefore needs `VIBE_ALLOWED_OWNERS='[\"the-org\"]'` (or "
        "`VIBE_ALLOWED_REPOSITORIES='[\"the-org/repo\"]'`); without it the bot stores the "
        "organisation's deliveries and refuses them.",
        "",
        "## Actions mode",
        "",
        "`vibe action` in a workflow (`workflows/vibe.yml`) uses the job's token. The "
        "workflow's `permissions:` block grants `contents: write`, `issues: write` and "
        "`pull-requests: write`. A pull request opened with the "
        "workflow's `GITHUB_TOKEN` starts no workflows (GitHub does this to prevent "
        "recursive runs: "
        "https://docs.github.com/en/actions/security-for-github-actions/security-guides/"
        "automatic-token-authentication), so the repository's CI never runs on the "
        "bot's pull requests. Recommended: create an App with the permissions above, store "
        "its id and private key as repository secrets, and pass a token made by "
        "`actions/create-github-app-token` to the action's `github-token` input instead.",
        "",
    ]
    return "\n".join(lines)


class ConversionError(Exception):
    """GitHub did not turn the manifest code into an App; the message says why."""


@dataclass(frozen=True)
class RegisteredApp:
    """The App the manifest flow created, with the credentials GitHub shows only once."""

    id: int
    slug: str
    name: str
    owner: str
    html_url: str
    client_id: str
    client_secret: str
    webhook_secret: str
    pem: str
    permissions: dict[str, str]
    events: list[str]

    @property
    def install_url(self) -> str:
        return f"{self.html_url}/installations/new"


def convert_code(api_url: str, code: str, *, timeout: float = 30.0) -> RegisteredApp:
    """``POST /app-manifests/{code}/conversions`` (no authentication): the App's id, slug,
    private key, webhook secret and client credentials. GitHub answers 404 for an unknown,
    used or expired code (it works once, within an hour) and 422 when validation fails.
    https://docs.github.com/en/rest/apps/apps#create-a-github-app-from-a-manifest"""
    url = f"{api_url.rstrip('/')}/app-manifests/{urllib.parse.quote(code, safe='')}/conversions"
    try:
        response = httpx.post(
            url,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise ConversionError(f"cannot reach {api_url}: {exc}") from None
    if response.status_code != 201:
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = response.text[:200]
        hint = " (the code works once, within an hour)" if response.status_code == 404 else ""
        raise ConversionError(
            f"GitHub refused the code: HTTP {response.status_code} {message}{hint}".rstrip()
        )
    try:
        data = response.json()
        return RegisteredApp(
            id=int(data["id"]),
            slug=str(data["slug"]),
            name=str(data["name"]),
            owner=str((data.get("owner") or {}).get("login", "")),
            html_url=str(data["html_url"]),
            client_id=str(data["client_id"]),
            client_secret=str(data["client_secret"]),
            webhook_secret=str(data.get("webhook_secret") or ""),
            pem=str(data["pem"]),
            permissions={str(k): str(v) for k, v in dict(data.get("permissions") or {}).items()},
            events=[str(e) for e in data.get("events") or []],
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConversionError(f"GitHub's answer is not an App: {exc!r}") from None
