"""A real git remote for workspace tests: bare repositories served over smart HTTP by
``git http-backend`` behind a loopback server. Fetching is open (a public repository);
pushing needs HTTP Basic auth with the token, so a push succeeds only if the workspace
handed the credentials to git."""

from __future__ import annotations

import base64
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.sandbox.bwrap import BwrapSandbox
from bot.testing.loopback import LoopbackHTTPServer
from bot.workspace.git import GitCredentials, Identity, WorkspaceCache

TOKEN = "ghs_workspaceTestToken0123456789abcdef"
BOT = Identity("vibe-bot[bot]", "12345+vibe-bot[bot]@users.noreply.github.com")
ANN = Identity("Ann Writer", "42+ann@users.noreply.github.com")
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Person",
    "GIT_AUTHOR_EMAIL": "person@example.com",
    "GIT_COMMITTER_NAME": "Person",
    "GIT_COMMITTER_EMAIL": "person@example.com",
    "PATH": os.environ["PATH"],
}


def sh_git(*args: str, cwd: Path | None = None) -> str:
    """Plain git for test setup and for looking at the remote."""
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout


@dataclass
class GitServer:
    root: Path
    url: str
    requests: list[tuple[str, str, bool]] = field(default_factory=list)

    def repo_url(self, name: str = "o/r") -> str:
        return f"{self.url}/{name}.git"

    def bare(self, name: str = "o/r") -> Path:
        return self.root / f"{name}.git"

    def commit_on(self, branch: str, files: dict[str, str], name: str = "o/r") -> str:
        """Push a commit by another person to the remote (what a human would do)."""
        work = self.root.parent / f"human-{len(self.requests)}-{branch.replace('/', '-')}"
        if work.exists():
            subprocess.run(["rm", "-rf", str(work)], check=True)
        sh_git("clone", "--quiet", "--branch", branch, str(self.bare(name)), str(work))
        for path, text in files.items():
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        sh_git("add", "--all", cwd=work)
        sh_git("commit", "--quiet", "-m", f"human change on {branch}", cwd=work)
        sh_git("push", "--quiet", "origin", branch, cwd=work)
        return sh_git("rev-parse", "HEAD", cwd=work).strip()

    def tip(self, branch: str, name: str = "o/r") -> str | None:
        result = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=self.bare(name),
            env=GIT_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout.strip() or None


def _handler(server: GitServer) -> type[http.server.BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: object) -> None:
            return

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            authorized = self.headers.get("Authorization") == expected
            pushing = "git-receive-pack" in path or "service=git-receive-pack" in query
            server.requests.append((self.command, self.path, authorized))
            body = self._body() if self.command == "POST" else b""
            if pushing and not authorized:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            env = {
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REQUEST_METHOD": self.command,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                "REMOTE_USER": "x-access-token" if authorized else "",
                "REMOTE_ADDR": "127.0.0.1",
                **GIT_ENV,
            }
            proc = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
            )
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode().split("\r\n"):
                name, _, value = line.partition(": ")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve

    return Handler


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitServer]:
    """Serve ``o/r``: a repository with a README and a source file on ``main``."""
    root = tmp_path / "remote"
    state = GitServer(root=root, url="")
    httpd = LoopbackHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "README.md").write_text("# r\n")
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("print('hello')\n")
    sh_git("init", "--quiet", "--initial-branch=main", cwd=seed)
    sh_git("add", "--all", cwd=seed)
    sh_git("commit", "--quiet", "-m", "initial", cwd=seed)
    (root / "o").mkdir(parents=True)
    sh_git("clone", "--quiet", "--bare", str(seed), str(state.bare()))
    sh_git("config", "http.receivepack", "true", cwd=state.bare())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def sandbox(bwrap_available: None) -> BwrapSandbox:
    return BwrapSandbox()


@pytest.fixture
def cache(tmp_path: Path, sandbox: BwrapSandbox) -> WorkspaceCache:
    return WorkspaceCache(tmp_path / "cache", sandbox_uid=sandbox.uid, lock_timeout=5.0)


@pytest.fixture
def creds() -> GitCredentials:
    return GitCredentials(TOKEN)
