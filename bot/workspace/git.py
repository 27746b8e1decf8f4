"""Git workspaces for tasks: a mirror cache, one worktree per task, commits and safe pushes.

Public API (the loop's workspace adapter codes against this)::

    cache = WorkspaceCache.from_settings(settings, sandbox)   # or WorkspaceCache(root, ...)
    branch = task_branch(12, "Fix the parser")      # bot.core.branches: the one rule
    ws = cache.prepare("o/r", url, branch=branch, default_branch="main",
                       credentials=GitCredentials(token), pr_number=None)
    ws.path, ws.branch, ws.base_sha, ws.head()
    sha = ws.commit("message", author=BOT, co_authors=[Identity("Ann", "1+ann@users...")])
    ws.changed_paths(since)               # paths changed between ``since`` and HEAD
    ws.check_protected(repo_config)       # raises ProtectedPathError with the paths
    ws.push(credentials, repo_config)     # only ws.branch, after the protected-path check
    ws.undo(since, author=BOT, co_authors=...)           # one revert commit (default)
    ws.undo(since, author=BOT, mode="reset"); ws.push(...)   # rewrite + --force-with-lease
    ws.discard()                          # drop uncommitted changes
    ws.close()                            # release the worktree and locks, evict

Layout under the cache root: ``mirrors/<owner>__<repo>.git`` (bare, updated by fetch into
``refs/remotes/origin/*``), ``worktrees/<owner>__<repo>/w<N>`` (a pool of worktrees per
repository) and ``locks/``. A repository's mirror lock (``flock``) serialises fetches and
worktree changes across threads and processes. An open workspace holds its slot's lock
(two tasks never share a working tree), its branch's lock (one branch is never checked
out twice) and a shared "in use" lock that keeps the mirror from being evicted.
:meth:`WorkspaceCache.evict` removes least recently used mirrors beyond ``max_bytes``;
:meth:`WorkspaceCache.prune` removes worktrees idle for longer than a given age.

Idle worktrees are reused: the next task (the same branch's slot first) gets a forced
checkout of its start commit, which writes only the files that differ, plus ``git clean
-ffdx``; on a 20,000-file repository that is the difference between ~0.3 s and a full
checkout (see ``tests/benchmarks/bench_workspace.py``).

Network operations (fetch, push) are killed after ``git_timeout`` seconds and fail on a
transfer that stalls below 1 KB/s for a minute, so a hanging remote cannot hold a worker.

Preparing is idempotent: the remote is the source of truth. The task branch restarts from
``origin/<branch>`` when the remote has it, else from the PR head (``pr_number``) or the
default branch; commits a crashed attempt never pushed, and any file it left, are dropped.

Credentials never touch the disk: a token is handed to the one ``git fetch``/``git push``
process that needs it as an ``http.extraHeader`` through ``GIT_CONFIG_COUNT`` environment
variables (not argv, which ``/proc`` shows to everyone). Remote URLs with embedded
credentials are refused, and nothing is configured in the mirror. Host-side git ignores
system and global config, runs no hooks and never trusts the worktree's ``.git`` file:
every command names ``GIT_DIR`` and ``GIT_WORK_TREE`` itself (the sandbox can write the
worktree, and a planted ``.git`` could otherwise point git at a config with commands).
A fetch or push the remote answers with 401 raises :class:`AuthenticationFailed`, so the
caller (:mod:`bot.workspace.checkout`) can ask for a fresh token and try once more.

Publishing is narrow (DESIGN.md section 4 rule 7): only the task's own branch is pushed,
never the default branch, never a branch outside ``vibe/`` unless the task was opened on a
same-repository PR's head branch, never forced, except ``--force-with-lease`` right after
the task's own :meth:`Workspace.undo` in ``reset`` mode, and never with changes under
protected paths the repository config does not allow.

Undo defaults to a revert commit whose tree is the tree before the last iteration: no
history is rewritten, nothing is force-pushed, reviewers see the undo, anyone who checked
out the branch can pull it, and running it twice changes nothing. Both modes refuse when a
commit in the range is not the bot's, so a person's commits are never reverted or dropped.

When the sandbox runs commands as another uid (the bot is root), the worktree is handed to
that uid after every host-side checkout, except its ``.git`` file.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import git

from bot.core.branches import BRANCH_PREFIX, valid_branch
from bot.core.globs import Glob, covers, shadows
from bot.core.redact import redact
from bot.core.tasks import CommitStat

if TYPE_CHECKING:
    from io import TextIOWrapper

    from bot.core.config import RepoConfig
    from bot.sandbox.bwrap import Sandbox
    from bot.settings import Settings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
_REPO_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
_IDENTITY_NAME = re.compile(r"[^\x00-\x1f<>\x7f]{1,200}")
_IDENTITY_EMAIL = re.compile(r"[^\s<>@\x00-\x1f\x7f]{1,200}@[^\s<>@\x00-\x1f\x7f]{1,200}")
_LOCK_POLL = 0.05


class WorkspaceError(Exception):
    """A workspace operation failed; the message says why (credentials redacted)."""


class WorkspaceBusy(WorkspaceError):
    """Another task holds the lock this one needs."""


class PushRefused(WorkspaceError):
    """The push was refused before reaching the remote (wrong branch, protected paths)."""


class ProtectedPathError(PushRefused):
    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        shown = ", ".join(self.paths[:10]) + (" ..." if len(self.paths) > 10 else "")
        super().__init__(
            f"refusing to push changes to protected paths: {shown} "
            "(a repository can allow them with paths.allowed in .github/vibe.yml)"
        )


class PushRejected(WorkspaceError):
    """The remote rejected the push (for example someone else pushed to the branch)."""


class AuthenticationFailed(WorkspaceError):
    """The remote answered 401 to the credentials of a fetch or push (an installation token
    that expired or was revoked meanwhile): a fresh token may succeed."""


# git's words when the server answers 401 to the token it sent: with no credential helper
# and prompts disabled it cannot ask for another ("could not read Username"); with a
# helper that answered, "Authentication failed".
_AUTH_FAILED = re.compile(
    r"could not read Username|Authentication failed|terminal prompts disabled"
)


class UndoRefused(WorkspaceError):
    """Undo would touch commits that are not the bot's, or ``since`` is not in history."""


@dataclass(frozen=True)
class Identity:
    """A commit identity: the bot, or the person credited with ``Co-authored-by``."""

    name: str
    email: str

    def __post_init__(self) -> None:
        if not _IDENTITY_NAME.fullmatch(self.name) or self.name != self.name.strip():
            raise WorkspaceError(f"invalid name for a commit identity: {self.name[:80]!r}")
        if not _IDENTITY_EMAIL.fullmatch(self.email):
            raise WorkspaceError(f"invalid email for a commit identity: {self.email[:80]!r}")

    @property
    def trailer(self) -> str:
        return f"Co-authored-by: {self.name} <{self.email}>"


@dataclass(frozen=True)
class GitCredentials:
    """A token for git over HTTPS (a GitHub App installation token or a PAT)."""

    token: str
    username: str = "x-access-token"

    def __post_init__(self) -> None:
        if not self.token or any(c in self.token for c in "\r\n\0"):
            raise WorkspaceError("the git token is empty or contains control characters")
        if not self.username or any(c in self.username for c in ":\r\n\0"):
            raise WorkspaceError("invalid git username")

    def __repr__(self) -> str:
        return f"GitCredentials(username={self.username!r}, token=[redacted])"

    def config(self) -> list[tuple[str, str]]:
        raw = f"{self.username}:{self.token}".encode()
        basic = base64.b64encode(raw).decode()
        return [("http.extraHeader", f"Authorization: Basic {basic}")]

    def secrets(self) -> list[str]:
        basic = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
        return [self.token, basic]


def protected_paths_hit(
    paths: Iterable[str],
    protected: Sequence[str],
    allowed: Sequence[str] = (),
    links: Iterable[str] = (),
) -> list[str]:
    """Paths matching a protected pattern and no allowed pattern, and symlinks (``links``,
    among ``paths``) placed at or above something protected (issue 14: the rules hold for
    the path itself, not only for what is below it)."""
    # Globs come from repository config and paths from the agent: match in linear time.
    deny = [Glob(g) for g in (p.strip().strip("/") for p in protected) if g]
    allow = [Glob(g) for g in (p.strip().strip("/") for p in allowed) if g]
    symlinks = set(links)
    return [
        p
        for p in paths
        if (shadows(deny, p) if p in symlinks else covers(deny, p)) and not covers(allow, p)
    ]


def _repo_key(repo: str) -> str:
    if not _REPO_NAME.fullmatch(repo) or repo.split("/")[1] in (".", ".."):
        raise WorkspaceError(f"not a repository name (owner/name): {repo[:100]!r}")
    owner, name = repo.split("/")
    return f"{owner.lower()}__{name.lower()}"


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http", "file"):
        raise WorkspaceError("the remote URL must use https, http or file")
    if parts.username is not None or parts.password is not None:
        raise WorkspaceError(
            "the remote URL carries credentials; pass them as GitCredentials instead"
        )
    if any(c in url for c in "\r\n\0 "):
        raise WorkspaceError("the remote URL contains whitespace or control characters")
    return url


def _base_config() -> list[tuple[str, str]]:
    return [
        ("safe.directory", "*"),
        ("core.hooksPath", os.devnull),
        ("core.fsmonitor", "false"),
        ("credential.helper", ""),
        ("commit.gpgSign", "false"),
        ("tag.gpgSign", "false"),
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
        ("advice.detachedHead", "false"),
        # A stalled transfer (under 1 KB/s for a minute) fails instead of hanging a worker.
        ("http.lowSpeedLimit", "1000"),
        ("http.lowSpeedTime", "60"),
        ("init.defaultBranch", "main"),
    ]


def _git_env(
    config: Sequence[tuple[str, str]], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "SSH_ASKPASS": "",
        "GIT_CONFIG_COUNT": str(len(config)),
        "LC_ALL": "C",
    }
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    env.update(extra or {})
    return env


def run_git(
    args: Sequence[str],
    *,
    cwd: Path,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    credentials: GitCredentials | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = None,
) -> tuple[int, str, str]:
    """Run one host-side git command through GitPython; returns (status, stdout, stderr).

    Credentials live only in this process's environment. Errors are redacted. After
    ``timeout`` seconds the command and its helpers are killed and it fails.
    """
    config = _base_config() + (credentials.config() if credentials else [])
    extra = dict(env or {})
    if git_dir is not None:
        extra["GIT_DIR"] = str(git_dir)
    if work_tree is not None:
        extra["GIT_WORK_TREE"] = str(work_tree)
    runner = git.Git(str(cwd))
    status, out, err = runner.execute(
        ["git", *args],
        env=_git_env(config, extra),
        with_extended_output=True,
        with_exceptions=False,
        stdout_as_string=True,
        kill_after_timeout=timeout,
    )
    if check and status != 0:
        secrets = credentials.secrets() if credentials else []
        message = redact(f"git {args[0]} failed: {str(err).strip()[-2000:]}", secrets)
        if credentials is not None and _AUTH_FAILED.search(str(err)):
            raise AuthenticationFailed(message)
        raise WorkspaceError(message)
    return int(status), str(out), str(err)


class _FileLock:
    """An ``flock`` on a file, held until :meth:`release`; works across threads and
    processes because every holder opens its own file description."""

    def __init__(self, path: Path, *, shared: bool = False) -> None:
        self.path = path
        self._shared = shared
        self._fh: TextIOWrapper | None = None

    def acquire(self, timeout: float) -> _FileLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a")
        mode = fcntl.LOCK_SH if self._shared else fcntl.LOCK_EX
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    fh.close()
                    raise
                if time.monotonic() >= deadline:
                    fh.close()
                    raise WorkspaceBusy(f"{self.path.name} is locked by another task") from None
                time.sleep(_LOCK_POLL)
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    @contextlib.contextmanager
    def held(self, timeout: float) -> Iterator[None]:
        self.acquire(timeout)
        try:
            yield
        finally:
            self.release()


def _tree_size(path: Path) -> int:
    """Bytes on disk under ``path`` (symlinks not followed)."""
    total = 0
    stack = [str(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


class WorkspaceCache:
    """Mirrors and worktrees under one root directory, shared by all workers of a host."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int = 20 * 1024**3,
        sandbox_uid: int | None = None,
        lock_timeout: float = 600.0,
        git_timeout: float = 900.0,
        secrets: Sequence[str] = (),
    ) -> None:
        self.root = root
        # Configured secret values: no commit message or pushed branch name carries one.
        self.secrets = tuple(secrets)
        self.max_bytes = max_bytes
        self.sandbox_uid = sandbox_uid
        self.lock_timeout = lock_timeout
        self.git_timeout = git_timeout
        for sub in ("mirrors", "worktrees", "locks"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_settings(cls, settings: Settings, sandbox: Sandbox) -> WorkspaceCache:
        return cls(
            settings.workspace_dir,
            max_bytes=settings.workspace_cache_bytes,
            sandbox_uid=sandbox.uid,
            secrets=settings.secret_values,
        )

    def mirror_path(self, repo: str) -> Path:
        return self.root / "mirrors" / f"{_repo_key(repo)}.git"

    def _mirror_lock(self, key: str) -> _FileLock:
        return _FileLock(self.root / "locks" / f"{key}.mirror.lock")

    def _use_lock(self, key: str) -> _FileLock:
        return _FileLock(self.root / "locks" / f"{key}.use.lock", shared=True)

    def fetch(
        self,
        repo: str,
        url: str,
        *,
        credentials: GitCredentials | None = None,
        pr_number: int | None = None,
    ) -> Path:
        """Create or update the bare mirror of ``repo``; returns its path."""
        key = _repo_key(repo)
        _check_url(url)
        with self._mirror_lock(key).held(self.lock_timeout):
            return self._fetch_locked(key, url, credentials, pr_number)

    def _fetch_locked(
        self, key: str, url: str, credentials: GitCredentials | None, pr_number: int | None
    ) -> Path:
        mirror = self.root / "mirrors" / f"{key}.git"
        if not (mirror / "HEAD").is_file():
            if mirror.exists():
                shutil.rmtree(mirror)  # a clone that died half-way
            run_git(["init", "--bare", "--quiet", str(mirror)], cwd=self.root)
        _remove_stale_locks(mirror)
        refspecs = ["+refs/heads/*:refs/remotes/origin/*"]
        if pr_number is not None:
            if pr_number < 1:
                raise WorkspaceError("PR numbers start at 1")
            refspecs.append(f"+refs/pull/{pr_number}/head:{_pull_ref(pr_number)}")
        run_git(
            ["fetch", "--quiet", "--prune", "--no-tags", "--", url, *refspecs],
            cwd=mirror,
            git_dir=mirror,
            credentials=credentials,
            timeout=self.git_timeout,
        )
        os.utime(mirror)  # last use, for eviction
        return mirror

    def prepare(
        self,
        repo: str,
        url: str,
        *,
        branch: str,
        default_branch: str,
        credentials: GitCredentials | None = None,
        pr_number: int | None = None,
        shared_branch: bool = False,
        start: str | None = None,
    ) -> Workspace:
        """Fetch, then check out ``branch`` in a worktree of its own.

        ``shared_branch`` must be set when ``branch`` is a same-repository PR's head branch
        (outside ``vibe/``); otherwise only ``vibe/`` branches are accepted. ``start`` (a
        commit id) starts ``branch`` there whatever the remote has under that name: a
        best-of-N attempt starts from the task branch's head (:mod:`bot.core.attempts`).
        """
        key = _repo_key(repo)
        _check_url(url)
        if not valid_branch(branch) or not valid_branch(default_branch):
            raise WorkspaceError(f"invalid branch name: {branch[:100]!r}")
        if branch == default_branch:
            raise PushRefused(f"refusing to work on the default branch {default_branch!r}")
        if not shared_branch and not branch.startswith(BRANCH_PREFIX):
            raise PushRefused(f"the bot only works on {BRANCH_PREFIX}* branches, not {branch!r}")
        use = self._use_lock(key).acquire(self.lock_timeout)
        held: list[_FileLock] = [use]
        try:
            branch_lock = _FileLock(self._locks(key) / f"branch-{_short_hash(branch)}.lock")
            held.append(branch_lock.acquire(self.lock_timeout))
            with self._mirror_lock(key).held(self.lock_timeout):
                mirror = self._fetch_locked(key, url, credentials, pr_number)
                if start is None:
                    begin, base = self._start_point(mirror, branch, default_branch, pr_number)
                else:
                    begin = base = _commit_of(mirror, start)
                slot, slot_lock = self._claim_slot(key, branch)
                held.append(slot_lock)
                path = self.root / "worktrees" / key / slot
                if not self._reuse_worktree(mirror, path, branch, begin):
                    self._add_worktree(mirror, path, branch, begin)
                (self._locks(key) / f"{slot}.branch").write_text(branch)
            ws = Workspace(
                cache=self,
                repo=repo,
                url=url,
                mirror=mirror,
                path=path,
                branch=branch,
                default_branch=default_branch,
                base_sha=base,
                locks=tuple(reversed(held)),
            )
            ws.settle()
            return ws
        except BaseException:
            for lock in reversed(held):
                lock.release()
            raise

    def _locks(self, key: str) -> Path:
        return self.root / "locks" / key

    def delete_branches(
        self,
        repo: str,
        url: str,
        names: Sequence[str],
        *,
        credentials: GitCredentials | None = None,
        default_branch: str | None = None,
        author: Identity | None = None,
    ) -> list[str]:
        """Delete the bot's ``vibe/`` branches ``names`` on the remote, each with a lease
        on the head the fetch just saw (a push meanwhile makes it fail); with ``author``,
        a branch whose head commit is someone else's is left alone (a person built on it:
        deleting it would drop their commit). A name the remote no longer has is skipped.
        Returns the names deleted. Works on the mirror alone, so no task's worktree or
        branch lock is needed."""
        key = _repo_key(repo)
        _check_url(url)
        for name in names:
            if not valid_branch(name) or not name.startswith(BRANCH_PREFIX):
                raise PushRefused(f"the bot only deletes its own {BRANCH_PREFIX}* branches")
            if name == default_branch:
                raise PushRefused("refusing to delete the default branch")
        deleted: list[str] = []
        with self._mirror_lock(key).held(self.lock_timeout):
            mirror = self._fetch_locked(key, url, credentials, None)
            for name in dict.fromkeys(names):
                tracking = f"refs/remotes/origin/{name}"
                status, sha, _ = run_git(
                    ["rev-parse", "--verify", "--quiet", tracking],
                    cwd=mirror,
                    git_dir=mirror,
                    check=False,
                )
                if status != 0:
                    continue
                if author is not None:
                    _, email, _ = run_git(
                        ["log", "-1", "--format=%ae", tracking], cwd=mirror, git_dir=mirror
                    )
                    if email.strip().lower() != author.email.lower():
                        log.info("kept the branch %s: its head is %s's", name, email.strip())
                        continue
                ref = f"refs/heads/{name}"
                status, out, err = run_git(
                    [
                        "push",
                        "--quiet",
                        "--porcelain",
                        "--no-verify",
                        f"--force-with-lease={ref}:{sha.strip()}",
                        "--",
                        url,
                        f":{ref}",
                    ],
                    cwd=mirror,
                    git_dir=mirror,
                    credentials=credentials,
                    check=False,
                    timeout=self.git_timeout,
                )
                if status != 0:
                    if credentials is not None and _AUTH_FAILED.search(err):
                        raise AuthenticationFailed("the remote refused the credentials")
                    secrets = credentials.secrets() if credentials else []
                    detail = redact((out + "\n" + err).strip()[-500:], secrets)
                    log.warning("could not delete the branch %s: %s", name, detail)
                    continue
                run_git(["update-ref", "-d", tracking], cwd=mirror, git_dir=mirror)
                deleted.append(name)
        return deleted

    def _claim_slot(self, key: str, branch: str) -> tuple[str, _FileLock]:
        """An idle worktree slot, preferring the one this branch used last (its files are
        closest), then the least recently used one, else a new one. Called under the
        mirror lock, so two tasks never create the same slot."""
        locks = self._locks(key)
        locks.mkdir(parents=True, exist_ok=True)
        existing = sorted(
            (p.stem for p in locks.glob("w*.lock")),
            key=lambda slot: (locks / f"{slot}.lock").stat().st_mtime,
        )

        def last_branch(slot: str) -> str:
            meta = locks / f"{slot}.branch"
            return meta.read_text() if meta.is_file() else ""

        for slot in sorted(existing, key=lambda s: last_branch(s) != branch):
            lock = _FileLock(locks / f"{slot}.lock")
            try:
                return slot, lock.acquire(0)
            except WorkspaceBusy:
                continue
        number = 1
        while f"w{number}" in existing:
            number += 1
        slot = f"w{number}"
        return slot, _FileLock(locks / f"{slot}.lock").acquire(0)

    def _reuse_worktree(self, mirror: Path, path: Path, branch: str, start: str) -> bool:
        """Bring an idle worktree to ``start`` on ``branch``: only changed files are
        written, untracked and ignored files go. False when it cannot be reused."""
        if not (path / ".git").is_file() or (path / ".git").is_symlink():
            return False
        try:
            gitdir = _own_gitdir(path)
            if gitdir.parent != mirror / "worktrees" or not gitdir.is_dir():
                return False
            _remove_stale_locks(
                mirror,
                extra=[
                    gitdir / "index.lock",
                    gitdir / "HEAD.lock",
                    mirror / "refs" / "heads" / f"{branch}.lock",
                ],
            )
            checkout = ["checkout", "--quiet", "--force", "--ignore-other-worktrees"]
            run_git([*checkout, "-B", branch, start], cwd=mirror, git_dir=gitdir, work_tree=path)
            run_git(["clean", "-ffdxq"], cwd=mirror, git_dir=gitdir, work_tree=path)
        except (WorkspaceError, OSError) as exc:
            log.warning("could not reuse the worktree %s, checking out afresh: %s", path, exc)
            return False
        return True

    def _start_point(
        self, mirror: Path, branch: str, default_branch: str, pr_number: int | None
    ) -> tuple[str, str]:
        """The commit to check out and the commit the task's changes are measured from."""
        candidates = [f"refs/remotes/origin/{branch}"]
        if pr_number is not None:
            candidates.append(_pull_ref(pr_number))
        candidates.append(f"refs/remotes/origin/{default_branch}")
        for ref in candidates:
            status, sha, _ = run_git(
                ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                cwd=mirror,
                git_dir=mirror,
                check=False,
            )
            if status == 0:
                return sha.strip(), sha.strip()
        raise WorkspaceError(f"the remote has neither {branch!r} nor {default_branch!r}")

    def _add_worktree(self, mirror: Path, path: Path, branch: str, start: str) -> None:
        if path.exists():
            shutil.rmtree(path)  # left by a crashed attempt; the remote is the truth
        run_git(["worktree", "prune"], cwd=mirror, git_dir=mirror)
        path.parent.mkdir(parents=True, exist_ok=True)
        run_git(
            ["worktree", "add", "--quiet", "--force", "-B", branch, str(path), start],
            cwd=mirror,
            git_dir=mirror,
        )

    def hand_over(self, path: Path) -> None:
        """Give the worktree to the sandbox uid, except its ``.git`` file.

        Only entries with another owner are changed: a chown changes the ctime, and git
        rewrites (rather than skips) every file whose stat data no longer matches its
        index, so touching all files would turn the next checkout into a full one."""
        if self.sandbox_uid is None:
            return
        owner = f"{self.sandbox_uid}:{self.sandbox_uid}"
        uid = str(self.sandbox_uid)
        subprocess.run(
            [
                "find",
                str(path),
                "-xdev",
                "(",
                "-path",
                str(path / ".git"),
                "-prune",
                ")",
                "-o",
                "(",
                "(",
                "!",
                "-uid",
                uid,
                "-o",
                "!",
                "-gid",
                uid,
                ")",
                "-exec",
                "chown",
                "--no-dereference",
                owner,
                "--",
                "{}",
                "+",
                ")",
            ],
            check=True,
            capture_output=True,
        )

    def prune(self, older_than: float = 24 * 3600) -> list[Path]:
        """Remove idle worktrees last used more than ``older_than`` seconds ago."""
        removed: list[Path] = []
        now = time.time()
        for repo_dir in sorted((self.root / "worktrees").iterdir()):
            key = repo_dir.name
            pruned = False
            for path in sorted(repo_dir.iterdir()):
                lock = _FileLock(self._locks(key) / f"{path.name}.lock")
                try:
                    lock.acquire(0)
                except WorkspaceBusy:
                    continue
                try:
                    if now - lock.path.stat().st_mtime >= older_than:
                        shutil.rmtree(path)
                        (self._locks(key) / f"{path.name}.branch").unlink(missing_ok=True)
                        removed.append(path)
                        pruned = True
                finally:
                    lock.release()
            mirror = self.root / "mirrors" / f"{key}.git"
            if pruned and mirror.is_dir():
                with self._mirror_lock(key).held(self.lock_timeout):
                    run_git(["worktree", "prune"], cwd=mirror, git_dir=mirror)
        return removed

    def size(self) -> int:
        return _tree_size(self.root)

    def evict(self) -> list[str]:
        """Remove least recently used, unused mirrors until the cache fits ``max_bytes``."""
        mirrors = [m for m in (self.root / "mirrors").iterdir() if m.name.endswith(".git")]
        sizes = {
            m: _tree_size(m) + _tree_size(self.root / "worktrees" / m.name[:-4]) for m in mirrors
        }
        total = sum(sizes.values())
        evicted: list[str] = []
        for mirror in sorted(mirrors, key=lambda m: m.stat().st_mtime):
            if total <= self.max_bytes:
                break
            key = mirror.name[:-4]
            use = _FileLock(self.root / "locks" / f"{key}.use.lock")
            try:
                use.acquire(0)
            except WorkspaceBusy:
                continue
            try:
                with self._mirror_lock(key).held(self.lock_timeout):
                    shutil.rmtree(self.root / "worktrees" / key, ignore_errors=True)
                    shutil.rmtree(mirror)
            finally:
                use.release()
            total -= sizes[mirror]
            evicted.append(key)
            log.info("evicted the mirror %s from the workspace cache", key)
        return evicted


def _commit_of(mirror: Path, rev: str) -> str:
    """The commit id ``rev`` (a commit id) names in the mirror."""
    if not re.fullmatch(r"[0-9a-f]{7,64}", rev):
        raise WorkspaceError(f"not a commit id: {rev[:80]!r}")
    status, sha, _ = run_git(
        ["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=mirror,
        git_dir=mirror,
        check=False,
    )
    if status != 0:
        raise WorkspaceError(f"the mirror has no commit {rev[:12]}")
    return sha.strip()


def _remove_stale_locks(mirror: Path, older_than: float = 60.0, extra: Sequence[Path] = ()) -> None:
    """Lock files a killed git left behind: by default in the namespaces only fetches
    write, plus ``extra`` (a branch's ref, a worktree's index) whose owner lock the caller
    holds. Called under the mirror lock; git holds these for milliseconds."""
    now = time.time()
    candidates = [mirror / "packed-refs.lock", mirror / "FETCH_HEAD.lock", *extra]
    for namespace in ("refs/remotes", "refs/vibe"):
        candidates += (mirror / namespace).rglob("*.lock")
    for lock in candidates:
        with contextlib.suppress(OSError):
            if lock.is_file() and now - lock.stat().st_mtime > older_than:
                lock.unlink()
                log.warning("removed the stale git lock %s", lock)


def _pull_ref(number: int) -> str:
    # Outside refs/remotes/origin/*, so that pruning the branches never removes it.
    return f"refs/vibe/pull/{number}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


class Workspace:
    """One task's worktree on its branch; holds its locks until :meth:`close`."""

    def __init__(
        self,
        *,
        cache: WorkspaceCache,
        repo: str,
        url: str,
        mirror: Path,
        path: Path,
        branch: str,
        default_branch: str,
        base_sha: str,
        locks: tuple[_FileLock, ...],
    ) -> None:
        self.cache = cache
        self.repo = repo
        self.url = url
        self.mirror = mirror
        self.path = path
        self.branch = branch
        self.default_branch = default_branch
        self.base_sha = base_sha
        self.gitdir = _own_gitdir(path)
        self._locks = locks
        self._lease: str | None = None
        self._closed = False

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def git(self, *args: str, credentials: GitCredentials | None = None, check: bool = True) -> str:
        """Run git on this worktree from the host (explicit GIT_DIR and GIT_WORK_TREE)."""
        if self._closed:
            raise WorkspaceError("the workspace is closed")
        _, out, _ = run_git(
            args,
            cwd=self.mirror,
            git_dir=self.gitdir,
            work_tree=self.path,
            credentials=credentials,
            check=check,
        )
        return out

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def _remote_tip(self) -> str | None:
        ref = f"refs/remotes/origin/{self.branch}"
        out = self.git("rev-parse", "--verify", "--quiet", ref, check=False).strip()
        return out or None

    def changed_paths(self, since: str | None = None) -> list[str]:
        """Paths that differ between ``since`` (default: the remote branch, else the base)
        and HEAD, renames as a deletion plus an addition."""
        against = since or self._remote_tip() or self.base_sha
        out = self.git("diff", "--name-only", "--no-renames", "-z", against, "HEAD", "--")
        return [p for p in out.split("\0") if p]

    def _symlinks_added(self) -> list[str]:
        """Paths that are symlinks in HEAD and were not the same symlink before (git's raw
        diff: ``:oldmode newmode oldsha newsha status``, then the path)."""
        against = self._remote_tip() or self.base_sha
        out = self.git("diff", "--raw", "-z", "--no-renames", "--no-abbrev", against, "HEAD", "--")
        fields = out.split("\0")
        return [
            path
            for meta, path in zip(fields[::2], fields[1::2], strict=False)
            if meta.split(" ")[1:2] == ["120000"]
        ]

    def dirty(self) -> bool:
        return bool(self.git("status", "--porcelain", "--untracked-files=all").strip())

    def commit(
        self, message: str, *, author: Identity, co_authors: Sequence[Identity] = ()
    ) -> str | None:
        """Commit everything in the worktree as ``author``; None when nothing changed."""
        text = message.strip()
        if not text or "\0" in text or len(text.encode()) > MAX_MESSAGE_BYTES:
            raise WorkspaceError("the commit message is empty, too long or has a NUL byte")
        self.git("add", "--all")
        status, _, _ = run_git(
            ["diff", "--cached", "--quiet"],
            cwd=self.mirror,
            git_dir=self.gitdir,
            work_tree=self.path,
            check=False,
        )
        if status == 0:
            return None
        trailers = [c.trailer for c in co_authors if c.email.lower() != author.email.lower()]
        if trailers:
            text += "\n\n" + "\n".join(dict.fromkeys(trailers))
        self._commit(text, author)
        return self.head()

    def commit_stat(self, sha: str) -> CommitStat:
        """``sha``'s diff stats against its parent (``git diff-tree --numstat``; a root
        commit against the empty tree) and its subject. A binary file counts as changed,
        with no lines (git prints ``-`` for its counts)."""
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
            raise WorkspaceError(f"not a commit id: {sha[:80]!r}")
        out = self.git(
            "diff-tree", "-r", "--root", "--no-commit-id", "--no-renames", "--numstat", "-z", sha
        )
        files = insertions = deletions = 0
        for entry in out.split("\0"):
            added, _, rest = entry.partition("\t")
            removed, _, path = rest.partition("\t")
            if not path:
                continue
            files += 1
            insertions += int(added) if added.isdigit() else 0
            deletions += int(removed) if removed.isdigit() else 0
        subject = self.git("show", "-s", "--format=%s", sha).strip()
        return CommitStat(sha, files, insertions, deletions, subject)

    def _commit(self, message: str, author: Identity) -> None:
        """Every commit of the bot, its message (trailers included) redacted: the one way a
        message reaches a pushed commit (DESIGN.md section 4 rule 8)."""
        text = redact(message, self.cache.secrets)
        run_git(
            ["commit", "--quiet", "--no-verify", "--allow-empty-message", "-m", text],
            cwd=self.mirror,
            git_dir=self.gitdir,
            work_tree=self.path,
            env=_identity_env(author),
        )

    def check_protected(self, repo_config: RepoConfig) -> None:
        """Raise :class:`ProtectedPathError` if the unpushed changes touch protected paths."""
        hits = protected_paths_hit(
            self.changed_paths(),
            repo_config.protected_paths,
            repo_config.paths.allowed,
            links=self._symlinks_added(),
        )
        if hits:
            raise ProtectedPathError(hits)

    def push(self, credentials: GitCredentials | None, repo_config: RepoConfig) -> str:
        """Push the task branch, and only it, after the branch and protected-path checks."""
        current = self.git("symbolic-ref", "--quiet", "HEAD", check=False).strip()
        if current != f"refs/heads/{self.branch}":
            raise PushRefused(f"the worktree is not on the task branch {self.branch!r}")
        if self.branch == self.default_branch:
            raise PushRefused("refusing to push to the default branch")
        if redact(self.branch, self.cache.secrets) != self.branch:
            raise PushRefused("refusing to push a branch whose name carries a secret")
        self.check_protected(repo_config)
        head = self.head()
        ref = f"refs/heads/{self.branch}"
        args = ["push", "--quiet", "--porcelain", "--no-verify"]
        if self._lease is not None:
            args.append(f"--force-with-lease={ref}:{self._lease}")
        args += ["--", self.url, f"{head}:{ref}"]
        status, out, err = run_git(
            args,
            cwd=self.mirror,
            git_dir=self.gitdir,
            work_tree=self.path,
            credentials=credentials,
            check=False,
            timeout=self.cache.git_timeout,
        )
        if status != 0:
            secrets = credentials.secrets() if credentials else []
            detail = redact((out + "\n" + err).strip()[-2000:], secrets)
            if credentials is not None and _AUTH_FAILED.search(err):
                raise AuthenticationFailed(f"the remote refused the credentials: {detail}")
            raise PushRejected(f"the remote rejected the push to {self.branch}: {detail}")
        self.git("update-ref", f"refs/remotes/origin/{self.branch}", head)
        self._lease = None
        return head

    def _bot_only(self, since: str, author: Identity) -> list[str]:
        status, _, _ = run_git(
            ["merge-base", "--is-ancestor", since, "HEAD"],
            cwd=self.mirror,
            git_dir=self.gitdir,
            work_tree=self.path,
            check=False,
        )
        if status != 0:
            raise UndoRefused(f"{since[:12]} is not an earlier commit of {self.branch}")
        log_out = self.git("log", "--format=%H %ae", f"{since}..HEAD")
        commits = []
        for line in log_out.splitlines():
            sha, _, email = line.partition(" ")
            if email.lower() != author.email.lower():
                raise UndoRefused(
                    f"commit {sha[:12]} is by {email}, not the bot: undo never removes "
                    "another person's commits"
                )
            commits.append(sha)
        return commits

    def undo(
        self,
        since: str,
        *,
        author: Identity,
        co_authors: Sequence[Identity] = (),
        mode: Literal["revert", "reset"] = "revert",
        message: str | None = None,
    ) -> str | None:
        """Undo the commits after ``since`` (the head before the last iteration).

        ``revert`` (default) adds one commit restoring ``since``'s tree; ``reset`` moves the
        branch back to ``since`` and arms the next :meth:`push` with ``--force-with-lease``
        against the pushed head. Returns the new head, or None when there is nothing to undo.
        """
        if not re.fullmatch(r"[0-9a-f]{7,64}", since):
            raise UndoRefused("undo needs a commit id")
        commits = self._bot_only(since, author)
        if not commits:
            return None
        if self.git("rev-parse", f"{since}^{{tree}}") == self.git("rev-parse", "HEAD^{tree}"):
            return None
        if mode == "reset":
            self._lease = self._remote_tip()
            self.git("reset", "--quiet", "--hard", since)
        else:
            text = message or f"Undo the last iteration ({len(commits)} commits)"
            text += "\n\nReverts:\n" + "\n".join(f"- {c}" for c in commits)
            trailers = [c.trailer for c in co_authors if c.email.lower() != author.email.lower()]
            if trailers:
                text += "\n\n" + "\n".join(dict.fromkeys(trailers))
            self.git("read-tree", "--reset", "-u", since)
            self._commit(text, author)
        self.settle()
        return self.head()

    def adopt(self, sha: str) -> str:
        """Fast-forward the branch to ``sha`` (a best-of-N attempt's commit, made on a
        branch that started at this head); refused unless HEAD is an ancestor of it, so no
        commit of the branch is ever dropped."""
        target = _commit_of(self.mirror, sha)
        status, _, _ = run_git(
            ["merge-base", "--is-ancestor", "HEAD", target],
            cwd=self.mirror,
            git_dir=self.gitdir,
            work_tree=self.path,
            check=False,
        )
        if status != 0:
            raise PushRefused(f"{target[:12]} does not follow the head of {self.branch}")
        self.git("reset", "--quiet", "--hard", target)
        self.settle()
        return self.head()

    def take_tree(
        self,
        sha: str,
        message: str,
        *,
        author: Identity,
        co_authors: Sequence[Identity] = (),
    ) -> str | None:
        """One new commit whose files are ``sha``'s (``/vibe pick``): the branch's history
        stays as it was and the change reads as one commit. None when the files are the
        same already."""
        target = _commit_of(self.mirror, sha)
        if self.git("rev-parse", f"{target}^{{tree}}") == self.git("rev-parse", "HEAD^{tree}"):
            return None
        text = message
        trailers = [c.trailer for c in co_authors if c.email.lower() != author.email.lower()]
        if trailers:
            text += "\n\n" + "\n".join(dict.fromkeys(trailers))
        self.git("read-tree", "--reset", "-u", target)
        self._commit(text, author)
        self.settle()
        return self.head()

    def discard(self) -> None:
        """Drop uncommitted changes and untracked files (a stopped iteration)."""
        self.git("reset", "--quiet", "--hard", "HEAD")
        self.git("clean", "-ffdq")
        self.settle()

    def settle(self) -> None:
        """After a host-side checkout: hand new files to the sandbox uid and record their
        stat data in the index (so the next checkout only writes what differs)."""
        self.cache.hand_over(self.path)
        self.git("update-index", "-q", "--refresh", check=False)

    def close(self) -> None:
        """Release the worktree for the next task (it stays on disk, so the next checkout
        writes only what differs) and evict old mirrors if the cache is over its size."""
        if self._closed:
            return
        self._closed = True
        for lock in self._locks:
            with contextlib.suppress(OSError):
                os.utime(lock.path)  # last use, for pruning
            lock.release()
        self.cache.evict()


def _own_gitdir(path: Path) -> Path:
    """The worktree's gitdir, read right after ``git worktree add`` (before the sandbox
    ever ran there); later commands use this value and never re-read ``.git``."""
    text = (path / ".git").read_text().strip()
    if not text.startswith("gitdir: "):
        raise WorkspaceError(f"{path} is not a git worktree")
    return Path(text.removeprefix("gitdir: "))


def _identity_env(author: Identity) -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": author.name,
        "GIT_COMMITTER_EMAIL": author.email,
    }
