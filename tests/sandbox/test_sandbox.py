"""The bubblewrap sandbox, driven for real: isolation, limits and results."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox.bwrap import (
    BwrapSandbox,
    CommandResult,
    NoSandbox,
    SandboxError,
    SandboxLimits,
    SandboxUnavailable,
    make_sandbox,
    run_setup,
)
from bot.sandbox.cgroup import memory_cgroup_base, sweep_stale
from bot.settings import Settings
from bot.testing.loopback import LoopbackHTTPServer

from .conftest import hand_over

pytestmark = pytest.mark.bwrap

TIGHT = SandboxLimits(
    wall_seconds=5,
    memory_bytes=256 * 1024**2,
    file_bytes=1024**2,
    open_files=64,
    processes=16,
    output_bytes=4096,
    tmp_bytes=2 * 1024**2,
)


def processes_of(uid: int | None, needle: str = "") -> list[int]:
    """Host PIDs running as ``uid`` (or any uid) whose command line contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        real_uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
        if (uid is None or real_uid == uid) and needle in cmdline:
            found.append(int(entry.name))
    return found


def settle(check: object, seconds: float = 3.0) -> None:
    """Wait until ``check()`` is true; processes take a moment to be reaped."""
    assert callable(check)
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition did not settle")
        time.sleep(0.05)


def test_runs_in_worktree_as_unprivileged_user(sandbox: BwrapSandbox, workdir: Path) -> None:
    result = sandbox.run(
        "pwd; id -u; cat hello.txt; echo made > new.txt; test -r /etc/passwd", workdir=workdir
    )
    assert result.ok, result
    lines = result.stdout.splitlines()
    assert lines[0] == "/workspace"
    assert int(lines[1]) != 0
    assert lines[2] == "hello"
    assert (workdir / "new.txt").read_text() == "made\n"
    assert result.limit is None
    assert not result.truncated
    assert result.duration > 0


def test_checks_leave_no_bytecode_for_the_commit(sandbox: BwrapSandbox, workdir: Path) -> None:
    """Found by the console's diff stats: a fix of calc.py was pushed with
    __pycache__/calc.cpython-311.pyc beside it, written when the checks imported it."""
    (workdir / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (workdir / "calc.py").chmod(0o644)
    result = sandbox.run(["python3", "-c", "import calc; print(calc.add(2, 3))"], workdir=workdir)
    assert (result.exit_code, result.stdout) == (0, "5\n"), result
    assert not (workdir / "__pycache__").exists()


def test_argv_command_and_exit_code(sandbox: BwrapSandbox, workdir: Path) -> None:
    result = sandbox.run(["sh", "-c", 'echo "$1" >&2; exit 7', "sh", "two words"], workdir=workdir)
    assert result.exit_code == 7
    assert result.stderr == "two words\n"
    assert not result.ok
    assert "exit code 7" in result.describe()


def test_cwd_is_relative_to_worktree(sandbox: BwrapSandbox, workdir: Path) -> None:
    (workdir / "sub").mkdir()
    assert sandbox.run("pwd", workdir=workdir, cwd="sub").stdout == "/workspace/sub\n"
    with pytest.raises(SandboxError):
        sandbox.run("pwd", workdir=workdir, cwd="../..")
    with pytest.raises(SandboxError):
        sandbox.run("pwd", workdir=workdir, cwd="/etc")


def test_canary_secret_is_not_inside(
    sandbox: BwrapSandbox, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = "canary-3f9a1c7e5b2d"
    monkeypatch.setenv("VIBE_GITHUB_TOKEN", canary)
    monkeypatch.setenv("SOME_OTHER_SECRET", canary)
    script = (
        "env; cat /proc/self/environ; "
        "for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do cat $f 2>/dev/null; done"
    )
    result = sandbox.run(script, workdir=workdir, env={"VISIBLE": "yes"})
    assert result.ok, result
    assert "VISIBLE=yes" in result.stdout
    assert "HOME=/home/sandbox" in result.stdout
    assert canary not in result.stdout
    assert canary not in result.stderr


def test_host_loopback_is_unreachable(sandbox: BwrapSandbox, workdir: Path) -> None:
    server = LoopbackHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    probe = [
        "python3",
        "-c",
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2); print('in')",
    ]
    try:
        closed = sandbox.run(probe, workdir=workdir)
        opened = sandbox.run(probe, workdir=workdir, network=True)
    finally:
        server.shutdown()
        server.server_close()
    assert closed.exit_code != 0
    assert "in" not in closed.stdout
    # The same probe with the network on reaches the server: the test can fail.
    assert opened.ok, opened
    assert opened.stdout == "in\n"


def test_writes_outside_the_worktree_fail(
    sandbox: BwrapSandbox, workdir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    outside.chmod(0o777)  # writable by anyone: only the sandbox stands in the way
    (workdir / "escape").symlink_to(outside / "target.txt")
    (workdir / "escape-dir").symlink_to(outside)
    for command in (
        "echo pwned > escape",
        "echo pwned > escape-dir/other.txt",
        f"echo pwned > {outside}/direct.txt",
        "echo pwned > /usr/pwned",
        "echo pwned >> /etc/passwd",
        "echo pwned > /pwned",
    ):
        result = sandbox.run(command, workdir=workdir)
        assert result.exit_code != 0, command
    assert list(outside.iterdir()) == []
    assert "pwned" not in Path("/etc/passwd").read_text()


def test_tmp_and_home_are_private(sandbox: BwrapSandbox, workdir: Path) -> None:
    marker = f"vibe-private-{os.getpid()}"
    result = sandbox.run(
        f"echo x > /tmp/{marker} && echo y > $HOME/{marker} && ls /tmp $HOME /var/tmp/{marker}"
        " && python3 -c 'import multiprocessing; multiprocessing.Lock()'",  # needs /dev/shm
        workdir=workdir,
    )
    assert result.ok, result
    assert not Path(f"/tmp/{marker}").exists()
    assert sandbox.run(f"ls /tmp/{marker}", workdir=workdir).exit_code != 0


def test_fork_bomb_is_contained(sandbox: BwrapSandbox, workdir: Path) -> None:
    result = sandbox.run("bomb() { bomb | bomb & }; bomb; sleep 2", workdir=workdir, limits=TIGHT)
    assert result.limit == "processes", result
    assert "processes limit" in result.describe()
    settle(lambda: processes_of(sandbox.uid) == [])


def test_memory_bomb_is_contained(sandbox: BwrapSandbox, workdir: Path) -> None:
    bomb = "x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))"
    result = sandbox.run(["python3", "-c", bomb], workdir=workdir, limits=TIGHT)
    assert result.exit_code not in (0, None)
    assert result.limit == "memory", result
    assert result.duration < TIGHT.wall_seconds


def test_disk_filler_is_contained(sandbox: BwrapSandbox, workdir: Path) -> None:
    result = sandbox.run("head -c 50000000 /dev/zero > big.bin", workdir=workdir, limits=TIGHT)
    assert result.limit == "file_size", result
    assert (workdir / "big.bin").stat().st_size <= TIGHT.file_bytes
    tmp_fill = sandbox.run(
        "for i in 1 2 3 4; do head -c 900000 /dev/zero > /tmp/f$i || exit 3; done",
        workdir=workdir,
        limits=TIGHT,
    )
    assert tmp_fill.exit_code == 3, tmp_fill


def test_output_flood_is_capped(sandbox: BwrapSandbox, workdir: Path) -> None:
    result = sandbox.run(
        "yes flood | head -c 30000000; echo THE-END", workdir=workdir, limits=TIGHT
    )
    assert result.exit_code == 0
    assert result.truncated
    assert result.limit == "output"
    assert "bytes truncated by the sandbox" in result.stdout
    assert len(result.stdout) < TIGHT.output_bytes + 200
    assert result.stdout.startswith("flood\nflood\n")
    assert result.stdout.endswith("THE-END\n")


def test_timeout_kills_grandchildren(sandbox: BwrapSandbox, workdir: Path) -> None:
    limits = SandboxLimits(wall_seconds=1.0)
    start = time.monotonic()
    result = sandbox.run(
        "sh -c 'sleep 987.5 & sleep 987.5' & sleep 987.5 & wait", workdir=workdir, limits=limits
    )
    assert time.monotonic() - start < 3
    assert result.exit_code is None
    assert result.limit == "timeout"
    assert "wall clock" in result.describe()
    settle(lambda: processes_of(None, "987.5") == [])


def test_cancel_stops_the_command(sandbox: BwrapSandbox, workdir: Path) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    result = sandbox.run("sleep 654.5", workdir=workdir, cancel=cancel)
    timer.join()
    assert result.limit == "cancelled"
    assert result.exit_code is None
    assert result.duration < 2
    settle(lambda: processes_of(None, "654.5") == [])


def test_bad_input_is_refused(sandbox: BwrapSandbox, workdir: Path) -> None:
    for command in ("", "   ", "echo \0", [], ["", "x"]):
        with pytest.raises(SandboxError):
            sandbox.run(command, workdir=workdir)
    with pytest.raises(SandboxError):
        sandbox.run("x" * 300_000, workdir=workdir)
    with pytest.raises(SandboxError):
        sandbox.run("true", workdir=workdir / "missing")
    with pytest.raises(SandboxError):
        sandbox.run("true", workdir=workdir, env={"BAD NAME": "x"})
    with pytest.raises(SandboxError):
        SandboxLimits(wall_seconds=0)
    with pytest.raises(SandboxError):
        SandboxLimits(output_bytes=10)


def test_planted_git_file_is_refused(sandbox: BwrapSandbox, workdir: Path) -> None:
    (workdir / ".git").write_text(f"gitdir: {Path.home()}\n")
    with pytest.raises(SandboxError, match="not its own"):
        sandbox.run("true", workdir=workdir)


def test_without_bubblewrap_commands_are_refused(workdir: Path) -> None:
    missing = BwrapSandbox(bwrap="/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        missing.run("true", workdir=workdir)


def test_none_mode_warns_on_every_command(
    workdir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIBE_CANARY", "canary-for-none")
    sandbox = make_sandbox(Settings(sandbox="none"))
    assert isinstance(sandbox, NoSandbox)
    with caplog.at_level("WARNING", logger="bot.sandbox.bwrap"):
        first = sandbox.run("env", workdir=workdir)
        sandbox.run("true", workdir=workdir)
    assert first.ok
    assert "canary-for-none" not in first.stdout
    warnings = [r for r in caplog.records if "WITHOUT ISOLATION" in r.getMessage()]
    assert len(warnings) >= 3  # one at creation, one per command


def test_make_sandbox_uses_the_configured_uid(bwrap_available: None) -> None:
    sandbox = make_sandbox(Settings(sandbox_uid=4321, sandbox_memory_cgroup=False))
    assert isinstance(sandbox, BwrapSandbox)
    assert sandbox.uid == (4321 if os.geteuid() == 0 else None)
    assert not sandbox.memory_cgroup


def test_setup_stops_at_the_first_failure(sandbox: BwrapSandbox, workdir: Path) -> None:
    results: list[CommandResult] = run_setup(
        sandbox,
        ["echo one > setup.txt", "exit 4", "echo never > never.txt"],
        workdir=workdir,
        network=False,
        limits=TIGHT,
    )
    assert [r.exit_code for r in results] == [0, 4]
    assert (workdir / "setup.txt").read_text() == "one\n"
    assert not (workdir / "never.txt").exists()


@pytest.fixture(autouse=True)
def _no_leftover_sandbox_processes(sandbox: BwrapSandbox) -> Iterator[None]:
    yield
    settle(lambda: processes_of(sandbox.uid) == [] if sandbox.uid is not None else True)


UNPRIVILEGED_SCRIPT = """
import json, sys
from pathlib import Path
from bot.sandbox.bwrap import BwrapSandbox, SandboxLimits
sandbox = BwrapSandbox()
work = Path(sys.argv[1])
tight = SandboxLimits(wall_seconds=5, processes=12, memory_bytes=256 * 1024**2)
bomb = sandbox.run("bomb() { bomb | bomb & }; bomb; sleep 1", workdir=work, limits=tight)
probe = sandbox.run("id -u; echo x > made.txt; echo y > /usr/x", workdir=work)
print(json.dumps({"uid": sandbox.uid, "bomb": bomb.limit, "probe": probe.stdout,
                  "probe_exit": probe.exit_code}))
"""


def test_unprivileged_bot_uses_a_user_namespace(bwrap_available: None) -> None:
    """The bot running as an ordinary user: bwrap adds a user namespace, no setpriv."""
    if os.geteuid() != 0:
        pytest.skip("the suite already runs unprivileged: every other test covers this path")
    work = Path(tempfile.mkdtemp(prefix="vibe-unprivileged-"))
    try:
        os.chown(work, 65534, 65534)
        work.chmod(0o755)
        out = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--",
                "/usr/bin/python3",
                "-c",
                UNPRIVILEGED_SCRIPT,
                str(work),
            ],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        report = json.loads(out.stdout)
        assert report["uid"] is None
        assert report["bomb"] == "processes"
        assert report["probe"].splitlines()[0] == "65534"
        assert report["probe_exit"] != 0  # /usr is read-only
        assert (work / "made.txt").read_text() == "x\n"
    finally:
        shutil.rmtree(work)


def test_a_plain_clone_keeps_its_git_directory_read_only(
    sandbox: BwrapSandbox, workdir: Path
) -> None:
    subprocess.run(
        ["git", "init", "--quiet", str(workdir)],
        check=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(workdir)},
    )
    hand_over(workdir, sandbox.uid)
    before = (workdir / ".git" / "config").read_bytes()
    for command in (
        "echo '[core] hooksPath = /tmp' >> .git/config",
        "echo 'touch /tmp/x' > .git/hooks/post-checkout",
        "rm -rf .git",
    ):
        assert sandbox.run(command, workdir=workdir).exit_code != 0, command
    assert (workdir / ".git" / "config").read_bytes() == before
    assert not (workdir / ".git" / "hooks" / "post-checkout").exists()


def test_none_mode_returns_even_if_a_process_escapes_the_group(workdir: Path) -> None:
    sandbox = NoSandbox()
    start = time.monotonic()
    result = sandbox.run(
        "setsid sleep 321.5 & sleep 321.5", workdir=workdir, limits=SandboxLimits(wall_seconds=0.5)
    )
    try:
        assert result.limit == "timeout"
        assert time.monotonic() - start < 5
    finally:
        for pid in processes_of(None, "sleep 321.5"):
            os.kill(pid, 9)


def test_host_processes_and_files_are_invisible(
    sandbox: BwrapSandbox, workdir: Path, tmp_path: Path
) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text("canary-file-5e1f\n")
    secret_file.chmod(0o644)  # readable by anyone on the host
    script = (
        f"cat {secret_file}; ls /proc | grep -c '^[0-9]'; test -e /proc/{os.getpid()} && echo host;"
        " ls /root /home /var /opt 2>&1; echo done"
    )
    result = sandbox.run(script, workdir=workdir)
    assert "canary-file-5e1f" not in result.stdout
    assert int(result.stdout.splitlines()[0]) <= 5  # bwrap's init, the shell, ls, grep
    assert "host" not in result.stdout.splitlines()
    assert result.stdout.endswith("done\n")


def test_memory_is_bounded_across_processes(sandbox: BwrapSandbox, workdir: Path) -> None:
    """Each process stays under RLIMIT_AS; together they exceed the limit: the cgroup
    (where the host allows one) bounds the tree, and reports it exactly."""
    if not sandbox.memory_cgroup:
        pytest.skip("this host gives the bot no writable cgroup v1 memory controller")
    hog = (
        "import os, time\n"
        "for _ in range(5):\n"
        "    if os.fork() == 0:\n"
        "        b = bytearray(150 * 1024 * 1024)\n"
        "        b[::4096] = b'x' * len(b[::4096])\n"
        "        time.sleep(1.5)\n"
        "        os._exit(0)\n"
        "statuses = [os.wait()[1] for _ in range(5)]\n"
        "print(sum(1 for s in statuses if s == 0), 'survived')\n"
    )
    limits = SandboxLimits(wall_seconds=20, memory_bytes=400 * 1024**2, processes=32)
    bounded = sandbox.run(["python3", "-c", hog], workdir=workdir, limits=limits)
    assert bounded.limit == "memory", bounded
    assert int(bounded.stdout.split()[0]) < 5
    # Without the cgroup each process fits its own rlimit; the watchdog's measured sum
    # stops them instead (it used to let all five survive: issue 14).
    rlimits_only = BwrapSandbox(memory_cgroup=False)
    measured = rlimits_only.run(["python3", "-c", hog], workdir=workdir, limits=limits)
    assert measured.limit == "memory", measured
    assert "5 survived" not in measured.stdout
    base = memory_cgroup_base()
    assert base is not None

    # Every command's group is gone. The other test worker's commands may hold live groups
    # of their own meanwhile (and empty ones for the instant before their removal): a
    # leaked group is one that stays empty.
    def empty(group: Path) -> bool:
        try:
            return not (group / "cgroup.procs").read_text()
        except FileNotFoundError:  # removed since the listing
            return False

    deadline = time.monotonic() + 3.0
    while leaked := [g for g in base.glob("vibe-*") if empty(g)]:
        assert time.monotonic() < deadline, leaked
        time.sleep(0.1)


def test_memory_cgroup_detection(tmp_path: Path) -> None:
    v2_only = tmp_path / "v2"
    v2_only.write_text("0::/user.slice/session-1.scope\n")
    assert memory_cgroup_base(v2_only) is None
    assert memory_cgroup_base(tmp_path / "missing") is None
    garbage = tmp_path / "garbage"
    garbage.write_text("not a cgroup file\n\n:::\n")
    assert memory_cgroup_base(garbage) is None


def test_stale_memory_groups_are_swept(sandbox: BwrapSandbox) -> None:
    base = memory_cgroup_base()
    if base is None or not sandbox.memory_cgroup:
        pytest.skip("this host gives the bot no writable cgroup v1 memory controller")
    old, young = base / "vibe-stale-test-old", base / "vibe-stale-test-young"
    old.mkdir()
    young.mkdir()
    try:
        past = time.time() - 7200
        os.utime(old, (past, past))
        if old.stat().st_mtime > time.time() - 3600:
            pytest.skip("cgroupfs ignores timestamps here")
        assert sweep_stale(base) == 1
        assert not old.exists()
        assert young.exists()
    finally:
        for group in (old, young):
            if group.exists():
                group.rmdir()
