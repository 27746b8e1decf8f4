"""A stateful GitHub on loopback, for tests, demos and trying a repository's configuration.

It speaks GitHub's real protocols over real HTTP on 127.0.0.1, so PyGithub, ``git`` and a
webhook receiver talk to it exactly as they would to github.com:

- **REST** (the routes the vibe-bot adapter uses, with GitHub's response shapes and the
  fake's own base URL in every ``url`` field): repositories, collaborator permissions,
  issues and comments, reactions, labels, pull requests, review requests, reviews, review
  comments and replies, check runs, repository contents. Errors look like GitHub's
  (``{"message": ..., "documentation_url": ...}``, 404 for what a token may not see, 422
  with ``errors`` for validation).
- **Pull requests and reviews as GitHub answers them**: a draft PR on a private repository
  of a Free or Pro plan (``create_repo(..., private=True, plan="free")``) is refused with
  422; a review comment's ``position`` is its index in the PR's diff (a line outside the
  diff takes no comment), the review's own listing omits ``line`` but keeps
  ``in_reply_to_id``; a reply in a thread is a review of its own (``pull_request_review``
  besides ``pull_request_review_comment``) and a reply to a reply is refused with 422;
  ids may start above 2**31 (``FakeGitHub(first_id=...)``).
- **GraphQL** at ``/graphql``: the ``reviewThreads`` connection of a pull request
  (variables ``owner``, ``name``, ``number``, ``first``, ``after``) and the
  ``resolveReviewThread`` / ``unresolveReviewThread`` mutations (which need Contents:
  write, like GitHub's). It answers with a fixed
  selection (``id isResolved isOutdated path line comments{nodes{fullDatabaseId body author
  {login} url createdAt}}``) and rejects any other operation with an ``errors`` entry.
- **Authentication like GitHub**: App routes (``/app...``, ``/repos/{o}/{r}/installation``)
  need an RS256 JWT signed with the App's key (``iss`` = App id, ``iat`` not in the future,
  at most 10 minutes of validity); everything else a token. Installation tokens
  (``ghs_``) are scoped to the repositories and permissions they were requested for and
  expire after ``token_lifetime`` seconds of the fake's clock; personal tokens (``ghp_``)
  act with the user's collaborator role.
- **git over smart HTTP** through ``git http-backend``: ``{base_url}/{owner}/{repo}.git``
  with Basic auth ``x-access-token:<token>``; clone, fetch and push hit bare repositories
  the fake holds, and a push moves the head of open pull requests (``synchronize``).
  Repository contents served by the REST API come from the same repositories.
- **The App manifest flow** (``vibe setup``): the web form at ``/settings/apps/new`` (and
  ``/organizations/{org}/settings/apps/new``) checks the manifest as GitHub does and
  redirects with a one-time code; ``POST /app-manifests/{code}/conversions`` turns it into
  the fake's App, with the manifest's permissions and events (see ``manifests.py``).
- **Acting as a user**: :meth:`FakeGitHub.open_issue`, ``label``, ``comment``, ``review``
  (with :class:`InlineComment` s), ``approve``, ``reply_to_review_comment``, ``merge``,
  ``close``, ``open_pull`` change the state and send the webhook GitHub would send, signed
  with ``X-Hub-Signature-256`` and carrying ``X-GitHub-Event``/``X-GitHub-Delivery``, to
  ``webhook_url``. Every delivery is kept in :attr:`FakeGitHub.deliveries`, and those made
  to a URL form the App's delivery log (``GET /app/hook/deliveries``, redelivery through
  ``POST .../attempts`` or :meth:`FakeGitHub.redeliver`). With ``echo_api_events=True``
  changes made through the REST API (issues, comments and their edits, labels, pull
  requests) send their webhooks too, the bot's own included, as GitHub does. Once an App
  exists, only the events it subscribed to and has the permission for are sent
  (``installation*`` always). ``webhook_order`` (``sent``, ``reversed``, ``shuffled``)
  orders the webhooks of one change, since GitHub does not guarantee their order.
- **Push rules** (a pre-receive hook): :meth:`FakeGitHub.protect_branch` refuses pushes to
  a branch (GH006), workflow files need an App token's Workflows permission, and files
  over 100 MiB are refused (GH001). Installation tokens expire on the fake's clock, and
  git over HTTP answers an expired one with 401.
- **The repository's CI** (:mod:`bot.testing.fake_github.ci`): ``set_ci(repo, [CiJob(...)])``
  declares commands the fake runs on every push to a pull request's head, in a checkout of
  the pushed commit, reported as GitHub Actions check suites, check runs with annotations,
  workflow runs with job logs (``/actions/jobs/{id}/logs``, re-runs), a third-party App's
  check runs or commit statuses, with their webhooks; faults ``flaky``, ``always_fails``
  and ``logs_gone``; ``hold`` for a suite that arrives late. GraphQL
  ``markPullRequestReadyForReview`` turns a draft ready for review.
- **Faults per route**: :meth:`FakeGitHub.inject` (method, route template such as
  ``/repos/{owner}/{repo}/pulls``, kind) for ``502``, ``timeout`` (nothing happens),
  ``timeout_after_write`` (the change happens, the answer comes too late),
  ``secondary_rate_limit`` (403 with ``retry-after``), ``secondary_rate_limit_no_headers``,
  ``secondary_rate_limit_429`` and ``primary_rate_limit`` (``x-ratelimit-remaining: 0``
  with ``x-ratelimit-reset``). The timeouts hold the answer for ``fault_delay`` seconds:
  set it above the client's timeout.

Example::

    from bot.testing.fake_github import FakeGitHub

    with FakeGitHub(webhook_url="http://127.0.0.1:8000/webhook", webhook_secret="s3cret") as gh:
        gh.create_repo("acme/widgets", {".github/vibe.yml": "model: plan\\n"},
                       collaborators={"alice": "write"})
        app = gh.create_app("vibe-bot")          # app.app_id, app.private_key_pem
        gh.install_app("acme")
        number = gh.open_issue("acme/widgets", "alice", "Add a widget")
        gh.label("acme/widgets", number, "alice", "vibe")   # sends issues.labeled
        # point the bot at gh.api_url; clone from gh.clone_url("acme/widgets")

Standalone: ``python -m bot.testing.fake_github --repo acme/widgets=. --collaborator
alice:write`` serves a directory as a repository and prints the App's credentials.

Share a :class:`FakeClock` between the fake and the code under test to check waits and
token expiry without sleeping. Every JSON response is kept in
:attr:`FakeGitHub.responses` (method, route template, status, body) so a test can check
it against GitHub's OpenAPI description; every request answered is logged in
:attr:`FakeGitHub.requests` (method, route template, status), counted by route with
:meth:`FakeGitHub.request_counts`. GET answers carry a weak ``ETag`` and a matching
``If-None-Match`` is answered ``304 Not Modified``, as GitHub does. ``latency_seconds``
delays every API answer (network latency for benchmarks).
"""

from bot.testing.fake_github.api import Fault, FaultKind, LoggedRequest, Recorded
from bot.testing.fake_github.ci import CiJob
from bot.testing.fake_github.server import AppCredentials, Delivery, FakeGitHub, InlineComment
from bot.testing.fake_github.state import Clock, FakeClock, SystemClock

__all__ = [
    "AppCredentials",
    "CiJob",
    "Clock",
    "Delivery",
    "FakeClock",
    "FakeGitHub",
    "Fault",
    "FaultKind",
    "InlineComment",
    "LoggedRequest",
    "Recorded",
    "SystemClock",
]
