"""Bare git repositories behind the fake: contents, commits, merges, smart HTTP via CGI.

Everything goes through the real ``git`` binary: commits are written with plumbing
(``hash-object``, ``update-index``, ``write-tree``, ``commit-tree``) into a temporary index
so no working tree is needed, and clone/fetch/push are served by ``git http-backend``
(https://git-scm.com/docs/git-http-backend).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

GIT = shutil.which("git") or "git"
_IDENTITY = {
    "GIT_AUTHOR_NAME": "fake-github",
    "GIT_AUTHOR_EMAIL": "fake-github@example.invalid",
    "GIT_COMMITTER_NAME": "fake-github",
    "GIT_COMMITTER_EMAIL": "fake-github@example.invalid",
}


class GitError(Exception):
    """A git command failed; the message carries its stderr."""


# The push rules GitHub enforces on receive, as a pre-receive hook of every bare repository.
# It reads what the HTTP layer knows from the environment: the protected branches and
# whether the pusher may change workflow files.
# - Protected branches: "GH006: Protected branch update failed"
#   (https://docs.github.com/en/repositories/configuring-branches-and-merges-in-your-repository/managing-protected-branches/about-protected-branches).
# - Workflow files need the Workflows permission: "refusing to allow a GitHub App to create
#   or update workflow ... without `workflows` permission"
#   (https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps).
# - Files over 100 MiB: "GH001: Large files detected"
#   (https://docs.github.com/en/repositories/working-with-files/managing-large-files/about-large-files-on-github).
PROTECTED_ENV = "FAKE_GITHUB_PROTECTED"
WORKFLOWS_ENV = "FAKE_GITHUB_MAY_CHANGE_WORKFLOWS"
MAX_FILE_BYTES = 100 * 1024 * 1024
_ZERO = "0" * 40
_PRE_RECEIVE = f"""#!{sys.executable}
import os, subprocess, sys

def git(*args, stdin=None):
    return subprocess.run(
        ["git", *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout

protected = set(os.environ.get("{PROTECTED_ENV}", "").split())
may_change_workflows = os.environ.get("{WORKFLOWS_ENV}") == "1"
problems = []
for line in sys.stdin.read().splitlines():
    old, new, ref = line.split()
    if ref in protected:
        problems.append(f"error: GH006: Protected branch update failed for {{ref}}.")
        continue
    if new == "{_ZERO}":
        continue
    since = ["--not", "--all"]  # refs are not updated yet: only what this push brings
    if not may_change_workflows:
        for commit in git("rev-list", new, *since).split():
            changed = git("diff-tree", "-r", "--root", "--no-commit-id", "--name-only", commit)
            for path in changed.splitlines():
                if path.startswith(".github/workflows/"):
                    problems.append(
                        "refusing to allow a GitHub App to create or update workflow "
                        f"`{{path}}` without `workflows` permission"
                    )
    named = [e.partition(" ") for e in git("rev-list", "--objects", new, *since).splitlines()]
    named = [(sha, path) for sha, _, path in named if path]
    if not named:
        continue
    checked = git(
        "cat-file", "--batch-check=%(objecttype) %(objectsize)",
        stdin="".join(f"{{sha}}\\n" for sha, _ in named),
    ).splitlines()
    for (sha, path), line in zip(named, checked):
        kind, size = line.split()
        if kind == "blob" and int(size) > {MAX_FILE_BYTES}:
            problems.append(
                f"error: File {{path}} is {{int(size) / 1024 / 1024:.2f}} MB; this exceeds "
                "GitHub's file size limit of 100.00 MB"
            )
            problems.append("error: GH001: Large files detected.")
for problem in dict.fromkeys(problems):
    print(problem, file=sys.stderr)
sys.exit(1 if problems else 0)
"""


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "LANG": "C",
    }
    env.update(_IDENTITY)
    if extra:
        env.update(extra)
    return env


def git(
    repo: Path, *args: str, input_: bytes | None = None, env: dict[str, str] | None = None
) -> bytes:
    proc = subprocess.run(
        [GIT, "--git-dir", str(repo), *args],
        input=input_,
        capture_output=True,
        env=_env(env),
        check=False,
        timeout=60,
    )
    if proc.returncode != 0:
        raise GitError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def init_bare(path: Path, default_branch: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [GIT, "init", "--bare", "-q", "-b", default_branch, str(path)],
        check=True,
        capture_output=True,
        env=_env(),
    )
    # http-backend refuses pushes unless receive-pack is enabled (it also is when
    # REMOTE_USER is set, which the fake always does after authenticating).
    git(path, "config", "http.receivepack", "true")
    hook = path / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(_PRE_RECEIVE)
    hook.chmod(0o755)


def resolve(repo: Path, ref: str) -> str | None:
    """The commit a branch, tag or sha names, or None."""
    if not ref or ref.startswith("-"):
        return None
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except GitError:
        return None


def branch_sha(repo: Path, branch: str) -> str | None:
    return resolve(repo, f"refs/heads/{branch}")


def heads(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname:strip=2) %(objectname)", "refs/heads")
    result: dict[str, str] = {}
    for line in out.decode().splitlines():
        name, _, sha = line.partition(" ")
        result[name] = sha
    return result


@dataclass(frozen=True)
class Entry:
    """A blob or tree at a path of a commit."""

    type: str  # "blob" or "tree"
    sha: str
    size: int
    content: bytes | None


def read_path(repo: Path, commit: str, path: str) -> Entry | None:
    spec = f"{commit}:{path.strip('/')}" if path.strip("/") else f"{commit}^{{tree}}"
    try:
        kind = git(repo, "cat-file", "-t", spec).decode().strip()
        sha = git(repo, "rev-parse", spec).decode().strip()
    except GitError:
        return None
    if kind == "blob":
        content = git(repo, "cat-file", "blob", sha)
        return Entry("blob", sha, len(content), content)
    if kind == "tree":
        return Entry("tree", sha, 0, None)
    return None


def list_tree(repo: Path, commit: str, path: str) -> list[tuple[str, str, str, int]]:
    """(name, type, sha, size) of each entry of a directory."""
    spec = f"{commit}:{path.strip('/')}" if path.strip("/") else f"{commit}^{{tree}}"
    out = git(repo, "ls-tree", "-l", spec).decode()
    entries = []
    for line in out.splitlines():
        meta, _, name = line.partition("\t")
        _mode, kind, sha, size = meta.split()
        entries.append((name, kind, sha, 0 if size == "-" else int(size)))
    return entries


def commit_files(
    repo: Path,
    branch: str,
    files: dict[str, str | bytes | None],
    message: str,
    *,
    author: str = "fake-github",
    parent_branch: str | None = None,
) -> str:
    """Commit ``files`` (None deletes a path) on ``branch``; returns the new commit sha.

    The branch starts from ``parent_branch`` when it does not exist yet. One
    ``git fast-import`` writes blobs, tree, commit and ref
    (https://git-scm.com/docs/git-fast-import).
    """
    for path in files:
        if not path or path.startswith("/") or "\n" in path or ".." in path.split("/"):
            raise ValueError(f"not a repository path: {path!r}")
    parent = branch_sha(repo, branch)
    if parent is None and parent_branch is not None:
        parent = branch_sha(repo, parent_branch)
    when = int(time.time())
    email = f"{author}@users.noreply.example.invalid"
    msg = message.encode()
    stream = [
        f"commit refs/heads/{branch}\n".encode(),
        b"mark :1\n",
        f"author {author} <{email}> {when} +0000\n".encode(),
        f"committer {author} <{email}> {when} +0000\n".encode(),
        f"data {len(msg)}\n".encode() + msg + b"\n",
    ]
    if parent is not None:
        stream.append(f"from {parent}\n".encode())
    for path, content in files.items():
        quoted = '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if content is None:
            stream.append(f"D {quoted}\n".encode())
            continue
        data = content.encode() if isinstance(content, str) else content
        stream.append(f"M 100644 inline {quoted}\ndata {len(data)}\n".encode() + data + b"\n")
    with tempfile.TemporaryDirectory() as tmp:
        marks = Path(tmp) / "marks"
        git(repo, "fast-import", "--quiet", f"--export-marks={marks}", input_=b"".join(stream))
        return marks.read_text().split()[1]


def merge(repo: Path, base: str, head_sha: str, message: str, author: str) -> str:
    """Merge ``head_sha`` into branch ``base`` (fast-forward when possible)."""
    base_sha = branch_sha(repo, base)
    if base_sha is None:
        raise GitError(f"no branch {base}")
    try:
        git(repo, "merge-base", "--is-ancestor", base_sha, head_sha)
        fast_forward = True
    except GitError:
        fast_forward = False
    if fast_forward:
        new = head_sha
    else:
        try:
            tree = git(repo, "merge-tree", "--write-tree", base_sha, head_sha).decode().split()[0]
        except GitError:
            raise GitError(f"cannot merge {head_sha} into {base}: the changes conflict") from None
        who = {"GIT_AUTHOR_NAME": author}
        new = (
            git(repo, "commit-tree", tree, "-p", base_sha, "-p", head_sha, "-m", message, env=who)
            .decode()
            .strip()
        )
    git(repo, "update-ref", f"refs/heads/{base}", new, base_sha)
    return new


@dataclass(frozen=True)
class DiffPlace:
    """Where a line of the new file sits in a pull request's diff of one file."""

    position: int  # lines below the file's first "@@" header; the line after it is 1
    diff_hunk: str  # the hunk from its header down to the line


def diff_place(repo: Path, base: str, head: str, path: str, line: int) -> DiffPlace | None:
    """Where line ``line`` of ``path`` at ``head`` sits in the diff ``base...head``, or None
    when the line is not part of the diff.

    GitHub's ``position`` is "the number of lines down from the first '@@' hunk header in
    the file": the line just below it is 1, and later hunk headers count as lines
    (https://docs.github.com/en/rest/pulls/comments#create-a-review-comment-for-a-pull-request).
    A PR's diff is three-dot: from the merge base to the head.
    """
    text = git(repo, "diff", "-U3", "--no-color", f"{base}...{head}", "--", path).decode(
        errors="replace"
    )
    lines = text.splitlines()
    first = next((i for i, t in enumerate(lines) if t.startswith("@@")), None)
    if first is None:
        return None
    new_line = 0
    hunk_start = first
    for index in range(first, len(lines)):
        text_line = lines[index]
        if text_line.startswith("@@"):
            hunk_start = index
            new_line = int(text_line.split("+", 1)[1].split(",", 1)[0].split(" ", 1)[0]) - 1
            continue
        if text_line.startswith("-") or text_line.startswith("\\"):
            continue
        new_line += 1
        if new_line == line:
            return DiffPlace(index - first, "\n".join(lines[hunk_start : index + 1]))
    return None


@dataclass(frozen=True)
class DiffLine:
    """A line a review comment may sit on: its hunk, its ``position`` and the hunk down to it."""

    hunk: int
    position: int
    diff_hunk: str


def diff_lines(repo: Path, base: str, head: str, path: str) -> dict[tuple[str, int], DiffLine]:
    """The lines of ``path`` in the PR's diff ``base...head`` by (side, line): ``RIGHT``
    added and context lines of the head, ``LEFT`` removed and context lines of the base
    ("Use LEFT for deletions that appear in red. Use RIGHT for additions that appear in
    green or unchanged lines that appear in white and are shown for context",
    https://docs.github.com/en/rest/pulls/comments#create-a-review-comment-for-a-pull-request).
    Empty when the file is not in the diff."""
    text = git(repo, "diff", "-U3", "--no-color", f"{base}...{head}", "--", path).decode(
        errors="replace"
    )
    lines = text.splitlines()
    first = next((i for i, t in enumerate(lines) if t.startswith("@@")), None)
    found: dict[tuple[str, int], DiffLine] = {}
    if first is None:
        return found
    old = new = 0
    hunk = -1
    hunk_start = first
    for index in range(first, len(lines)):
        line = lines[index]
        if line.startswith("@@"):
            hunk, hunk_start = hunk + 1, index
            header = line.split("@@")[1].split()
            old = int(header[0][1:].split(",")[0])
            new = int(header[1][1:].split(",")[0])
            continue
        if line.startswith("\\"):
            continue
        place = DiffLine(hunk, index - first, "\n".join(lines[hunk_start : index + 1]))
        if line.startswith("-"):
            found[("LEFT", old)] = place
            old += 1
        elif line.startswith("+"):
            found[("RIGHT", new)] = place
            new += 1
        else:
            found[("LEFT", old)] = place
            found[("RIGHT", new)] = place
            old += 1
            new += 1
    return found


@dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def http_backend(
    root: Path,
    path_info: str,
    method: str,
    query: str,
    content_type: str | None,
    content_encoding: str | None,
    body: bytes,
    remote_user: str,
    git_protocol: str | None = None,
    push_rules: dict[str, str] | None = None,
) -> CgiResponse:
    """Run one request through ``git http-backend`` and parse its CGI answer;
    ``push_rules`` is the environment of the pre-receive hook (:data:`PROTECTED_ENV`,
    :data:`WORKFLOWS_ENV`)."""
    env = _env(
        {
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path_info,
            "REQUEST_METHOD": method,
            "QUERY_STRING": query,
            "CONTENT_TYPE": content_type or "",
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": remote_user,
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
    )
    if content_encoding:
        env["HTTP_CONTENT_ENCODING"] = content_encoding
    if git_protocol and len(git_protocol) < 256:
        env["GIT_PROTOCOL"] = git_protocol  # the Git-Protocol header: protocol v2 if asked
    env.update(push_rules or {})
    proc = subprocess.run(
        [GIT, "http-backend"], input=body, capture_output=True, env=env, check=False, timeout=120
    )
    raw = proc.stdout
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, rest = raw.partition(b"\n\n")
    status = 200
    headers: list[tuple[str, str]] = []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    if proc.returncode != 0 and not sep:
        return CgiResponse(500, [("Content-Type", "text/plain")], proc.stderr)
    return CgiResponse(status, headers, rest)
