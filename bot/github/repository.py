"""The loop's Forge and PullRequests ports over :class:`bot.github.RepoClient`."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from bot.core import events as ev
from bot.core.ci import HeadChecks, PullHead
from bot.core.config import CONFIG_PATH
from bot.core.forge import IssueText, PullInfo, ReviewNote, ReviewTarget
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
            # The same answer as the clone URL's: one read of the repository per job.
            self._default_branch = str(self.client.repository()["default_branch"])
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

    def edit_comment(self, number: int, comment_id: int, mark: Marker, body: str) -> bool:
        return self.client.edit_comment(number, comment_id, mark, body)

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
            if self.client.hub.heeds(c.author, c.author_is_bot)
        ]

    # --- reviews (bot.loop.ports.Reviews) ------------------------------------------------

    def review_target(self, number: int) -> ReviewTarget | None:
        found = self.client.get_pull(number)
        if found is None or not found.head_sha or not found.base_ref:
            return None
        return ReviewTarget(
            number=found.number,
            title=found.title,
            body=found.body,
            head_sha=found.head_sha,
            head_ref=found.head_ref,
            base_ref=found.base_ref,
            same_repo=found.same_repo,
            author=found.author,
            open=found.state == "open",
            draft=found.draft,
        )

    def find_review(self, pr: int, mark: Marker) -> int | None:
        return self.client.find_review(pr, mark)

    def create_review(
        self, pr: int, commit_id: str, body: str, comments: Sequence[dict[str, object]]
    ) -> int:
        return self.client.create_review(pr, commit_id, body, comments)

    def review_comment(self, comment_id: int) -> ReviewNote | None:
        c = self.client.review_comment(comment_id)
        if c is None:
            return None
        return ReviewNote(
            c.id, c.path, c.line, c.body, c.author, c.in_reply_to_id, c.start_line, c.side
        )

    # --- the repository's own CI (bot.loop.ports.CiChecks) ------------------------------

    def head_checks(self, sha: str) -> HeadChecks:
        return self.client.head_checks(sha)

    def pull_head(self, pr_number: int) -> PullHead | None:
        found = self.client.get_pull(pr_number)
        if found is None:
            return None
        return PullHead(found.head_sha, found.same_repo, found.state == "open", found.draft)

    def job_log_tail(self, job_id: int, max_bytes: int) -> str | None:
        return self.client.job_log_tail(job_id, max_bytes)

    def rerun_job(self, job_id: int) -> bool:
        return self.client.rerun_job(job_id)

    def mark_ready_for_review(self, pr_number: int) -> None:
        self.client.mark_ready_for_review(pr_number)

    def threads_waiting(self, pr_number: int) -> int:
        """Unresolved threads whose last comment is the bot's (it answered; a person is to
        reply or resolve): one GraphQL query, asked only once every check is green."""
        bot = self.client.hub.bot_login.removesuffix("[bot]").casefold()
        return sum(
            1
            for thread in self.client.unresolved_threads(pr_number)
            if thread.comments
            and thread.comments[-1].author.removesuffix("[bot]").casefold() == bot
        )

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
