"""Run the fake GitHub on its own: ``python -m bot.testing.fake_github``.

Try a repository's ``.github/vibe.yml`` and the bot's reactions without touching
github.com::

    python -m bot.testing.fake_github --repo acme/widgets=. --collaborator alice:write \\
        --webhook-url http://127.0.0.1:8000/webhook --webhook-secret s3cret

Changes made through its REST API (with the printed tokens) send webhooks, as on GitHub.
It prints one JSON line (base URL, App id, the path of the App's private key, the
installation, a token per collaborator, clone URLs) and serves until interrupted. Point
the bot at it with ``VIBE_GITHUB_API_URL``, ``VIBE_GITHUB_APP_ID`` and
``VIBE_GITHUB_PRIVATE_KEY_PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from bot.testing.fake_github.server import FakeGitHub
from bot.testing.fake_github.state import ROLES, Role

MAX_SNAPSHOT_BYTES = 50 * 1024 * 1024
ROLE_BY_NAME: dict[str, Role] = {role: role for role in ROLES}


class UsageError(Exception):
    """A command-line value the fake cannot use; the message says which."""


def snapshot(directory: Path) -> dict[str, str | bytes | None]:
    """The files under ``directory`` (without ``.git``), for the repository's first commit."""
    if not directory.is_dir():
        raise UsageError(f"{directory} is not a directory")
    files: dict[str, str | bytes | None] = {}
    total = 0
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory)
        if ".git" in rel.parts or not path.is_file() or path.is_symlink():
            continue
        total += path.stat().st_size
        if total > MAX_SNAPSHOT_BYTES:
            raise UsageError(f"{directory} holds more than {MAX_SNAPSHOT_BYTES} bytes")
        files[rel.as_posix()] = path.read_bytes()
    return files or {"README.md": "# empty\n"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bot.testing.fake_github", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="OWNER/NAME[=DIR]",
        help="a repository, optionally filled with the files of DIR",
    )
    parser.add_argument(
        "--collaborator",
        action="append",
        default=[],
        metavar="LOGIN:ROLE",
        help=f"role: {', '.join(ROLES)}",
    )
    parser.add_argument("--app-slug", default="vibe-bot")
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a port")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        repos: list[tuple[str, dict[str, str | bytes | None] | None]] = []
        for spec in args.repo:
            name, _, directory = spec.partition("=")
            if name.count("/") != 1 or not all(name.split("/")):
                raise UsageError(f"--repo {spec!r}: expected OWNER/NAME[=DIR]")
            repos.append((name, snapshot(Path(directory)) if directory else None))
        people: dict[str, Role] = {}
        for spec in args.collaborator:
            login, _, role = spec.partition(":")
            if not login or role not in ROLE_BY_NAME:
                raise UsageError(
                    f"--collaborator {spec!r}: expected LOGIN:ROLE with ROLE in {ROLES}"
                )
            people[login] = ROLE_BY_NAME[role]
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with (
        FakeGitHub(
            port=args.port,
            webhook_url=args.webhook_url,
            webhook_secret=args.webhook_secret,
            echo_api_events=True,
        ) as fake,
        tempfile.TemporaryDirectory(prefix="fake-github-key-") as keydir,
    ):
        for name, files in repos:
            fake.create_repo(name, files, collaborators=people)
        creds = fake.create_app(args.app_slug)
        key_path = Path(keydir) / "app.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(creds.private_key_pem)
        owners = sorted({name.split("/")[0] for name, _ in repos})
        installations = {owner: fake.install_app(owner) for owner in owners}
        info = {
            "base_url": fake.api_url,
            "app_id": creds.app_id,
            "app_slug": creds.slug,
            "private_key_path": str(key_path),
            "installations": installations,
            "tokens": {login: fake.user_token(login) for login in people},
            "clone_urls": {name: fake.clone_url(name) for name, _ in repos},
        }
        print(json.dumps(info), flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
