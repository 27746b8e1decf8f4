"""No new namespaces inside the sandbox, and no keyring, bpf, perf or userfaultfd: the
seccomp filter (issue 14: ``unshare -Ur`` gave a command every capability in a child user
namespace). Normal build and test commands still work."""

from __future__ import annotations

import json
import os
import platform
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from bot.sandbox.bwrap import BwrapSandbox
from bot.sandbox.seccomp import ABIS, RET_ALLOW, program

pytestmark = pytest.mark.bwrap
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")

# Each call with arguments that would succeed (or fail differently) without the filter.
PROBE = r"""
import ctypes, errno, json, sys
numbers = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS, SIGCHLD = 0x10000000, 0x40000000, 0x20000, 17
calls = {
    "unshare_user": ("unshare", [CLONE_NEWUSER]),
    "unshare_net": ("unshare", [CLONE_NEWNET]),
    "unshare_mount": ("unshare", [CLONE_NEWNS]),
    "unshare_user_high_bits": ("unshare", [CLONE_NEWUSER | (1 << 32)]),
    "clone_user": ("clone", [CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0]),
    "clone3": ("clone3", [0, 0]),
    "setns": ("setns", [0, 0]),
    "keyctl": ("keyctl", [0, -3, 0]),
    "add_key": ("add_key", [0, 0, 0, 0, 0]),
    "bpf": ("bpf", [0, 0, 0]),
    "perf_event_open": ("perf_event_open", [0, 0, -1, -1, 0]),
    "userfaultfd": ("userfaultfd", [0]),
    "io_uring_setup": ("io_uring_setup", [1, 0]),
}
out = {}
for label, (name, args) in calls.items():
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(numbers[name]), *[ctypes.c_long(a) for a in args])
    out[label] = errno.errorcode.get(ctypes.get_errno(), "ok") if rc == -1 else "ok"
print(json.dumps(out))
"""


def test_no_namespaces_or_kernel_interfaces_inside(sandbox: BwrapSandbox, workdir: Path) -> None:
    shell = sandbox.run(
        "unshare -Ur true && echo userns; unshare -Urn true && echo netns; echo end",
        workdir=workdir,
    )
    assert shell.stdout == "end\n", shell
    assert "Operation not permitted" in shell.stderr
    numbers = ABIS[platform.machine()].numbers
    result = sandbox.run(["python3", "-c", PROBE, json.dumps(numbers)], workdir=workdir)
    assert result.ok, result
    report = json.loads(result.stdout)
    assert report.pop("clone3") == "ENOSYS"  # so libc falls back to clone
    assert report.pop("io_uring_setup") == "ENOSYS"
    assert report == dict.fromkeys(report, "EPERM"), report


def test_ordinary_commands_still_work(sandbox: BwrapSandbox, workdir: Path) -> None:
    script = (
        "set -e\n"
        "git init -q repo && cd repo\n"
        "git -c user.email=a@b -c user.name=a commit -q --allow-empty -m one\n"
        "git log --oneline | wc -l\n"
        "printf 'all:\\n\\t@echo made\\n' > Makefile && make\n"
        "python3 -c 'import threading, subprocess, multiprocessing as m\n"
        't = threading.Thread(target=print, args=("thread",)); t.start(); t.join()\n'
        'print(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip())\n'
        "with m.Pool(2) as p: print(sum(p.map(abs, [-1, -2])))'\n"
        "echo a b | (read x y; echo $y) &\nwait\n"
    )
    result = sandbox.run(script, workdir=workdir)
    assert result.stdout.split() == ["1", "made", "thread", "child", "3", "b"], result


def test_the_filter_program() -> None:
    for machine in ABIS:
        code = program(machine)
        assert code is not None
        assert len(code) % 8 == 0
        # The last instruction allows; everything refused comes before it.
        assert struct.unpack("=HBBI", code[-8:]) == (0x06, 0, 0, RET_ALLOW)
    assert program("s390x") is None


def test_without_the_filter_user_namespaces_would_open(
    sandbox: BwrapSandbox, workdir: Path
) -> None:
    """The premise: the kernel here allows unprivileged user namespaces, so the filter is
    what refuses them (when it does not, the first test proves nothing new)."""
    allowed = subprocess.run(
        [*AS_NOBODY, "unshare", "-Ur", "true"],
        capture_output=True,
        check=False,
    )
    if allowed.returncode != 0:
        pytest.skip("this kernel refuses unprivileged user namespaces anyway")
    assert sandbox.run("unshare -Ur true", workdir=workdir).exit_code != 0


def test_an_unprivileged_bot_filters_too(bwrap_available: None) -> None:
    """The bot as an ordinary user (bwrap adds a user namespace for itself): the command
    still cannot make one of its own."""
    if os.geteuid() != 0:
        pytest.skip("the suite runs unprivileged already: the first test covers this path")
    work = Path(tempfile.mkdtemp(prefix="vibe-seccomp-"))  # pytest's tmp is 0700 root
    try:
        os.chown(work, 65534, 65534)
        script = (
            "import sys\n"
            "from pathlib import Path\n"
            "from bot.sandbox.bwrap import BwrapSandbox\n"
            "r = BwrapSandbox().run('unshare -Ur true && echo userns; echo end', "
            "workdir=Path(sys.argv[1]))\n"
            "print(r.stdout, end='')\n"
        )
        out = subprocess.run(
            [*AS_NOBODY, "/usr/bin/python3", "-c", script, str(work)],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.stdout == "end\n", out
    finally:
        shutil.rmtree(work)
