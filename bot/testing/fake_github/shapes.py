"""GitHub's JSON shapes for the fake's objects, with the fake's own base URL in every URL.

Field lists follow GitHub's OpenAPI description (``components/schemas``: ``simple-user``,
``full-repository``, ``issue``, ``issue-comment``, ``pull-request``, ...); the contract test
validates them against it, so a missing required field fails the suite.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from bot.testing.fake_github.state import (
    App,
    CheckRun,
    Installation,
    Issue,
    IssueComment,
    Label,
    PullRequest,
    Reaction,
    Repo,
    Review,
    ReviewComment,
    User,
    World,
)

JSON = dict[str, Any]


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(prefix: str, ident: int | str) -> str:
    raw = base64.b64encode(f"{prefix}:{ident}".encode()).decode().rstrip("=")
    return f"{prefix}_{raw}"


class Shapes:
    """Serialisers bound to one fake's base URL and world."""

    def __init__(self, base: str, world: World) -> None:
        self.base = base
        self.world = world

    # people -----------------------------------------------------------------------------

    def user(self, login: str) -> JSON:
        u: User = self.world.user(login)
        url = f"{self.base}/users/{u.login}"
        return {
            "login": u.login,
            "id": u.id,
            "node_id": node_id("U", u.id),
            "avatar_url": f"{self.base}/avatars/u/{u.id}",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.base}/{u.login}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": u.type,
            "user_view_type": "public",
            "site_admin": False,
        }

    def private_user(self, login: str) -> JSON:
        """``GET /user``: the public profile plus the private counters."""
        now = iso(self.world.clock.now())
        return {
            **self.user(login),
            "name": login,
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": now,
            "updated_at": now,
            "collaborators": 0,
            "disk_usage": 0,
            "owned_private_repos": 0,
            "private_gists": 0,
            "total_private_repos": 0,
            "two_factor_authentication": False,
        }

    def app(self, app: App) -> JSON:
        return {
            "id": app.id,
            "slug": app.slug,
            "node_id": node_id("A", app.id),
            "client_id": f"Iv1.{app.id:016x}",
            "owner": self.user(app.owner),
            "name": app.name,
            "description": "vibe-bot on the fake GitHub",
            "external_url": f"{self.base}/apps/{app.slug}",
            "html_url": f"{self.base}/apps/{app.slug}",
            "created_at": iso(self.world.clock.now()),
            "updated_at": iso(self.world.clock.now()),
            "permissions": dict(app.permissions),
            "events": list(app.events),
        }

    def installation(self, inst: Installation) -> JSON:
        app = self.world.app
        assert app is not None
        now = iso(self.world.clock.now())
        return {
            "id": inst.id,
            "account": self.user(inst.account),
            "repository_selection": "all" if inst.repositories is None else "selected",
            "access_tokens_url": f"{self.base}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{self.base}/installation/repositories",
            "html_url": f"{self.base}/settings/installations/{inst.id}",
            "app_id": app.id,
            "app_slug": app.slug,
            "target_id": self.world.user(inst.account).id,
            "target_type": self.world.user(inst.account).type,
            "permissions": dict(inst.permissions),
            "events": ["issues", "issue_comment", "pull_request", "pull_request_review"],
            "created_at": now,
            "updated_at": now,
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        }

    # repositories -----------------------------------------------------------------------

    def repo_url(self, repo: Repo) -> str:
        return f"{self.base}/repos/{repo.full_name}"

    def repository(self, repo: Repo, full: bool = True) -> JSON:
        url = self.repo_url(repo)
        html = f"{self.base}/{repo.full_name}"
        open_issues = sum(1 for i in repo.issues.values() if i.state == "open")
        data: JSON = {
            "id": repo.id,
            "node_id": node_id("R", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.user(repo.owner),
            "html_url": html,
            "description": None,
            "fork": repo.parent is not None,
            "url": url,
            "archive_url": f"{url}/{{archive_format}}{{/ref}}",
            "assignees_url": f"{url}/assignees{{/user}}",
            "blobs_url": f"{url}/git/blobs{{/sha}}",
            "branches_url": f"{url}/branches{{/branch}}",
            "collaborators_url": f"{url}/collaborators{{/collaborator}}",
            "comments_url": f"{url}/comments{{/number}}",
            "commits_url": f"{url}/commits{{/sha}}",
            "compare_url": f"{url}/compare/{{base}}...{{head}}",
            "contents_url": f"{url}/contents/{{+path}}",
            "contributors_url": f"{url}/contributors",
            "deployments_url": f"{url}/deployments",
            "downloads_url": f"{url}/downloads",
            "events_url": f"{url}/events",
            "forks_url": f"{url}/forks",
            "git_commits_url": f"{url}/git/commits{{/sha}}",
            "git_refs_url": f"{url}/git/refs{{/sha}}",
            "git_tags_url": f"{url}/git/tags{{/sha}}",
            "git_url": f"{html}.git",
            "issue_comment_url": f"{url}/issues/comments{{/number}}",
            "issue_events_url": f"{url}/issues/events{{/number}}",
            "issues_url": f"{url}/issues{{/number}}",
            "keys_url": f"{url}/keys{{/key_id}}",
            "labels_url": f"{url}/labels{{/name}}",
            "languages_url": f"{url}/languages",
            "merges_url": f"{url}/merges",
            "milestones_url": f"{url}/milestones{{/number}}",
            "notifications_url": f"{url}/notifications{{?since,all,participating}}",
            "pulls_url": f"{url}/pulls{{/number}}",
            "releases_url": f"{url}/releases{{/id}}",
            "ssh_url": f"git@fake-github.invalid:{repo.full_name}.git",
            "stargazers_url": f"{url}/stargazers",
            "statuses_url": f"{url}/statuses/{{sha}}",
            "subscribers_url": f"{url}/subscribers",
            "subscription_url": f"{url}/subscription",
            "tags_url": f"{url}/tags",
            "teams_url": f"{url}/teams",
            "trees_url": f"{url}/git/trees{{/sha}}",
            "hooks_url": f"{url}/hooks",
            "clone_url": f"{html}.git",
            "mirror_url": None,
            "svn_url": html,
            "homepage": None,
            "language": None,
            "forks_count": 0,
            "forks": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "watchers": 0,
            "size": 0,
            "default_branch": repo.default_branch,
            "open_issues_count": open_issues,
            "open_issues": open_issues,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private" if repo.private else "public",
            "pushed_at": iso(repo.created_at),
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.created_at),
            "allow_forking": True,
            "web_commit_signoff_required": False,
            "license": None,
        }
        if full:
            data.update({"network_count": 0, "subscribers_count": 0})
            parent = self._parent(repo)
            if parent is not None:
                # full-repository: "parent" and "source" of a fork (@octokit/openapi); the
                # fake forks only once, so the parent is the source.
                data["parent"] = self.repository(parent, full=False)
                data["source"] = self.repository(parent, full=False)
        return data

    def _parent(self, repo: Repo) -> Repo | None:
        if repo.parent is None:
            return None
        owner, _, name = repo.parent.partition("/")
        return self.world.repo(owner, name)

    def head_repo(self, repo: Repo, pr: PullRequest) -> Repo | None:
        """The repository a pull request's head branch lives in: ``repo`` itself, its fork,
        or None when the fork was deleted."""
        if pr.head_repo is None:
            return repo
        owner, _, name = pr.head_repo.partition("/")
        return self.world.repo(owner, name)

    def label(self, repo: Repo, label: Label) -> JSON:
        return {
            "id": label.id,
            "node_id": node_id("LA", label.id),
            "url": f"{self.repo_url(repo)}/labels/{label.name}",
            "name": label.name,
            "description": label.description,
            "color": label.color,
            "default": False,
        }

    def reaction(self, reaction: Reaction) -> JSON:
        return {
            "id": reaction.id,
            "node_id": node_id("REA", reaction.id),
            "user": self.user(reaction.user),
            "content": reaction.content,
            "created_at": iso(reaction.created_at),
        }

    def reaction_rollup(self, url: str, reactions: list[Reaction]) -> JSON:
        counts = dict.fromkeys(
            ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"), 0
        )
        for r in reactions:
            counts[r.content] += 1
        return {"url": url, "total_count": len(reactions), **counts}

    def author_association(self, repo: Repo, login: str) -> str:
        role = self.world.role_of(repo, login)
        if login.lower() == repo.owner.lower():
            return "OWNER"
        return "COLLABORATOR" if role is not None else "NONE"

    # issues and comments ----------------------------------------------------------------

    def issue(self, repo: Repo, issue: Issue) -> JSON:
        url = f"{self.repo_url(repo)}/issues/{issue.number}"
        html = f"{self.base}/{repo.full_name}/{'pull' if issue.pull else 'issues'}/{issue.number}"
        data: JSON = {
            "id": issue.id,
            "node_id": node_id("I", issue.id),
            "url": url,
            "repository_url": self.repo_url(repo),
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": html,
            "number": issue.number,
            "state": issue.state,
            "state_reason": issue.state_reason,
            "title": issue.title,
            "body": issue.body,
            "user": self.user(issue.user),
            "labels": [self.label(repo, repo.labels[n]) for n in issue.labels],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(issue.comments),
            "closed_at": iso(issue.closed_at),
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_by": None,
            "author_association": self.author_association(repo, issue.user),
            "reactions": self.reaction_rollup(f"{url}/reactions", issue.reactions),
            "timeline_url": f"{url}/timeline",
            "performed_via_github_app": None,
        }
        data["draft"] = issue.pull.draft if issue.pull is not None else False
        if issue.pull is not None:
            pr_url = f"{self.repo_url(repo)}/pulls/{issue.number}"
            data["pull_request"] = {
                "url": pr_url,
                "html_url": html,
                "diff_url": f"{html}.diff",
                "patch_url": f"{html}.patch",
                "merged_at": iso(issue.pull.merged_at),
            }
        return data

    def issue_comment(self, repo: Repo, comment: IssueComment) -> JSON:
        url = f"{self.repo_url(repo)}/issues/comments/{comment.id}"
        issue = repo.issues[comment.issue_number]
        kind = "pull" if issue.pull else "issues"
        return {
            "id": comment.id,
            "node_id": node_id("IC", comment.id),
            "url": url,
            "html_url": (
                f"{self.base}/{repo.full_name}/{kind}/{comment.issue_number}"
                f"#issuecomment-{comment.id}"
            ),
            "issue_url": f"{self.repo_url(repo)}/issues/{comment.issue_number}",
            "body": comment.body,
            "user": self.user(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "author_association": self.author_association(repo, comment.user),
            "performed_via_github_app": None,
            "reactions": self.reaction_rollup(f"{url}/reactions", comment.reactions),
        }

    # pull requests ----------------------------------------------------------------------

    def _branch(self, repo: Repo, ref: str, sha: str) -> JSON:
        return {
            "label": f"{repo.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": self.user(repo.owner),
            "repo": self.repository(repo, full=False),
        }

    def pull(self, repo: Repo, issue: Issue, full: bool = True) -> JSON:
        pr = issue.pull
        assert pr is not None
        url = f"{self.repo_url(repo)}/pulls/{issue.number}"
        html = f"{self.base}/{repo.full_name}/pull/{issue.number}"
        issue_url = f"{self.repo_url(repo)}/issues/{issue.number}"
        data: JSON = {
            "url": url,
            "id": issue.id,
            "node_id": node_id("PR", issue.id),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue_url,
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{self.repo_url(repo)}/pulls/comments{{/number}}",
            "comments_url": f"{issue_url}/comments",
            "statuses_url": f"{self.repo_url(repo)}/statuses/{pr.head_sha}",
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "user": self.user(issue.user),
            "body": issue.body,
            "labels": [self.label(repo, repo.labels[n]) for n in issue.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at),
            "merged_at": iso(pr.merged_at),
            "merge_commit_sha": pr.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [self.user(u) for u in pr.requested_reviewers],
            "requested_teams": [],
            # head/base as octokit's pull_request.opened.json (/work/shared/fixtures/webhooks):
            # label "owner:ref", user, repo; a fork's PR has head.repo = the fork, whose
            # "fork" is true (pull-request.head.repo, @octokit/openapi).
            "head": self._branch(self.head_repo(repo, pr) or repo, pr.head_ref, pr.head_sha),
            "base": self._branch(repo, pr.base_ref, pr.base_sha),
            "_links": {
                "self": {"href": url},
                "html": {"href": html},
                "issue": {"href": issue_url},
                "comments": {"href": f"{issue_url}/comments"},
                "review_comments": {"href": f"{url}/comments"},
                "review_comment": {"href": f"{self.repo_url(repo)}/pulls/comments{{/number}}"},
                "commits": {"href": f"{url}/commits"},
                "statuses": {"href": f"{self.repo_url(repo)}/statuses/{pr.head_sha}"},
            },
            "author_association": self.author_association(repo, issue.user),
            "auto_merge": None,
            "draft": pr.draft,
        }
        if full:
            review_comments = sum(
                1
                for c in self.world.review_comments.values()
                if c.repo == repo.full_name and c.pull_number == issue.number
            )
            data.update(
                {
                    "merged": pr.merged,
                    "mergeable": None if pr.merged else True,
                    "rebaseable": None if pr.merged else True,
                    "mergeable_state": "unknown" if pr.merged else "clean",
                    "merged_by": self.user(pr.merged_by) if pr.merged_by else None,
                    "comments": len(issue.comments),
                    "review_comments": review_comments,
                    "maintainer_can_modify": False,
                    "commits": 1,
                    "additions": 0,
                    "deletions": 0,
                    "changed_files": 0,
                }
            )
        return data

    def review(self, repo: Repo, review: Review) -> JSON:
        pr_url = f"{self.repo_url(repo)}/pulls/{review.pull_number}"
        html = (
            f"{self.base}/{repo.full_name}/pull/{review.pull_number}#pullrequestreview-{review.id}"
        )
        return {
            "id": review.id,
            "node_id": node_id("PRR", review.id),
            "user": self.user(review.user),
            "body": review.body,
            "state": review.state,
            "html_url": html,
            "pull_request_url": pr_url,
            "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
            "submitted_at": iso(review.submitted_at),
            "commit_id": review.commit_id,
            "author_association": self.author_association(repo, review.user),
        }

    def review_comment(self, repo: Repo, comment: ReviewComment) -> JSON:
        url = f"{self.repo_url(repo)}/pulls/comments/{comment.id}"
        pr_url = f"{self.repo_url(repo)}/pulls/{comment.pull_number}"
        html = f"{self.base}/{repo.full_name}/pull/{comment.pull_number}#discussion_r{comment.id}"
        data: JSON = {
            "url": url,
            "pull_request_review_id": comment.review_id,
            "id": comment.id,
            "node_id": node_id("PRRC", comment.id),
            "diff_hunk": comment.diff_hunk,
            "path": comment.path,
            # An index into the diff, not a file line: "The line index in the diff to which
            # the comment applies" (https://docs.github.com/en/rest/pulls/comments).
            "position": comment.position,
            "original_position": comment.position,
            "commit_id": comment.commit_id,
            "original_commit_id": comment.commit_id,
            "user": self.user(comment.user),
            "body": comment.body,
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "html_url": html,
            "pull_request_url": pr_url,
            "author_association": self.author_association(repo, comment.user),
            "_links": {
                "self": {"href": url},
                "html": {"href": html},
                "pull_request": {"href": pr_url},
            },
            "start_line": comment.start_line,
            "original_start_line": comment.start_line,
            "start_side": comment.start_side,
            "line": comment.line,
            "original_line": comment.line,
            "side": comment.side,
            "subject_type": "line",
            "reactions": self.reaction_rollup(f"{url}/reactions", comment.reactions),
        }
        if comment.in_reply_to_id is not None:
            data["in_reply_to_id"] = comment.in_reply_to_id
        return data

    # checks and contents ----------------------------------------------------------------

    def pull_minimal(self, repo: Repo, sha: str, branch: str | None) -> list[JSON]:
        """The ``pull_requests`` of a check run or suite: the open pull requests whose head is
        this commit on this branch ("A pull request matches a check suite if they have the
        same head_sha and head_branch", GitHub's webhook reference). Never a pull request
        from a fork: "The Checks API only looks for pushes in the repository where the check
        suite or check run were created. Pushes to a branch in a forked repository are not
        detected and return an empty `pull_requests` array" (@octokit/openapi, "Get a check
        run"/"Get a check suite"; the ``check_suite`` webhook adds "and a `null` value for
        `head_branch`")."""
        api = self.repo_url(repo)
        ref = {"id": repo.id, "url": api, "name": repo.name}
        found = []
        for issue in repo.issues.values():
            pr = issue.pull
            if pr is None or issue.state != "open" or pr.head_sha != sha:
                continue
            if pr.head_repo is not None:
                continue
            if branch is not None and pr.head_ref != branch:
                continue
            found.append(
                {
                    "url": f"{api}/pulls/{issue.number}",
                    "id": issue.id,
                    "number": issue.number,
                    "head": {"ref": pr.head_ref, "sha": pr.head_sha, "repo": ref},
                    "base": {"ref": pr.base_ref, "sha": pr.base_sha, "repo": ref},
                }
            )
        return found

    def check_run(self, repo: Repo, run: CheckRun) -> JSON:
        url = f"{self.repo_url(repo)}/check-runs/{run.id}"
        mine = self.world.app
        app = run.other_app or (mine if mine is not None and run.app_id == mine.id else None)
        return {
            "id": run.id,
            "node_id": node_id("CR", run.id),
            "head_sha": run.head_sha,
            "external_id": run.external_id,
            "url": url,
            "html_url": f"{self.base}/{repo.full_name}/runs/{run.id}",
            "details_url": run.details_url,
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": iso(run.started_at),
            "completed_at": iso(run.completed_at),
            "output": {
                "title": run.output.get("title"),
                "summary": run.output.get("summary"),
                "text": run.output.get("text"),
                "annotations_count": len(run.annotations),
                "annotations_url": f"{url}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": run.suite_id if run.suite_id is not None else run.id},
            "app": self.app(app) if app is not None else None,
            "pull_requests": self.pull_minimal(repo, run.head_sha, None),
        }

    def content_file(
        self, repo: Repo, path: str, ref: str, sha: str, content: bytes, kind: str = "file"
    ) -> JSON:
        url = f"{self.repo_url(repo)}/contents/{path}?ref={ref}"
        html = f"{self.base}/{repo.full_name}/blob/{ref}/{path}"
        git_url = f"{self.repo_url(repo)}/git/blobs/{sha}"
        data: JSON = {
            "type": kind,
            "encoding": "base64",
            "size": len(content),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": base64.encodebytes(content).decode() if kind == "file" else "",
            "sha": sha,
            "url": url,
            "git_url": git_url,
            "html_url": html,
            "download_url": f"{self.base}/raw/{repo.full_name}/{ref}/{path}",
            "_links": {"self": url, "git": git_url, "html": html},
        }
        return data

    def dir_entry(self, repo: Repo, path: str, ref: str, kind: str, sha: str, size: int) -> JSON:
        url = f"{self.repo_url(repo)}/contents/{path}?ref={ref}"
        html = f"{self.base}/{repo.full_name}/{'blob' if kind == 'file' else 'tree'}/{ref}/{path}"
        git_url = f"{self.repo_url(repo)}/git/{'blobs' if kind == 'file' else 'trees'}/{sha}"
        return {
            "type": kind,
            "size": size,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "url": url,
            "git_url": git_url,
            "html_url": html,
            "download_url": f"{self.base}/raw/{repo.full_name}/{ref}/{path}"
            if kind == "file"
            else None,
            "_links": {"self": url, "git": git_url, "html": html},
        }
