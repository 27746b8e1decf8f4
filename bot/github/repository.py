"""The loop's Forge and PullRequests ports over :class:`bot.github.RepoClient`."""

from __future__ import annotations

import structlog

from bot.core import events as ev
from bot.core.config import CONFIG_PATH
from bot.core.forge import IssueText, PullInfo, ReviewNote
from bot.core.markers import Marker
from bot.github import RepoClient
from bot.workspace.git import (
    GitCredentials,
)

log = structlog.get_logger(__name__)


class GitHubRepository:
    """:class:`bot.loop.handlers.Repository` over :class:`bot.github.RepoClient`."""

    def __init__(self, client: RepoClient) -> None:
        self.client = client
        self.repo = client.repo
        # One job asks for these several times (policy, loop, workspace); once is enough.
        self._default_branch: str | None = None
        self._files: dict[tuple[str, str], str | None] = {}

    def default_branch(self) -> str:
        if self._default_branch is None:
            self._default_branch = self.client.default_branch()
        return self._default_branch

    def read_file(self, path: str, ref: str) -> str | None:
        """A file at ``ref``; the config falls back to the owner's ``.github`` repository."""
        if (path, ref) not in self._files:
            self._files[(path, ref)] = (
                self.client.read_config(ref).text
                if path == CONFIG_PATH
                else self.client.read_file(path, ref)
            )
        return self._files[(path, ref)]

    def issue_text(self, number: int) -> IssueText:
        return self.client.issue_text(number)

    def pull(self, number: int) -> PullInfo | None:
        return self.client.pull(number)

    def react(self, number: int, comment_id: int | None, content: str) -> None:
        self.client.react(number, comment_id, content)

    def upsert_comment(self, number: int, mark: Marker, body: str) -> int:
        return self.client.upsert_comment(number, mark, body)

    def find_or_create_pr(self, head: str, base: str, title: str, body: str, draft: bool) -> int:
        return self.client.find_or_create_pr(head, base, title, body, draft)

    def update_pr_body(self, number: int, body: str) -> None:
        self.client.update_pr_body(number, body)

    def request_review(self, number: int, login: str) -> None:
        self.client.request_review(number, login)

    def reply_in_thread(self, pr: int, comment_id: int, body: str) -> int:
        return self.client.reply_in_thread(pr, comment_id, body)

    def resolve_thread(self, pr: int, comment_id: int) -> None:
        self.client.resolve_thread(pr, comment_id)

    def review_notes(self, pr: int, review_id: int) -> list[ReviewNote]:
        # A reply in a thread is a review of its own (GitHub sends pull_request_review for
        # it), so a person answering the bot in a thread is feedback like a new comment.
        return [
            ReviewNote(
                c.id, c.path, c.line, c.body, c.author, c.in_reply_to_id, c.start_line, c.side
            )
            for c in self.client.review_comments(pr, review_id)
        ]

    def permission(self, login: str) -> str:
        return str(self.client.permission(login))

    def pull_request(self, number: int) -> ev.PullRequest | None:
        found = self.client.get_pull(number)
        if found is None:
            return None
        return ev.PullRequest(
            number=found.number,
            title=found.title,
            body=found.body,
            author=ev.Actor(found.author, None, False) if found.author else None,
            state=found.state,
            merged=found.merged,
            draft=found.draft,
            head_ref=found.head_ref,
            head_sha=found.head_sha,
            head_repo=self.repo if found.same_repo else None,
            base_ref=found.base_ref,
            labels=(),
            html_url=found.html_url,
        )

    def git_credentials(self, fresh: bool = False) -> GitCredentials:
        creds = self.client.git_credentials(fresh)
        return GitCredentials(creds.token, creds.username)

    def clone_url(self) -> str:
        return self.client.git_credentials().clone_url
