"""A sandbox that cannot start is told apart from a command that failed, and the probe that
start-up and ``/readyz`` run reports it with bwrap's own line and the fix.

A container without CAP_SYS_ADMIN is reproduced for real: we run as root, and for root the
permitted capabilities after exec are the bounding set, so a ``bwrap`` that runs under
``setpriv --bounding-set=-sys_admin,...`` fails exactly as it does in such a container.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bot import observability
from bot.sandbox.bwrap import (
    BwrapSandbox,
    SandboxLimits,
    SandboxStartFailed,
    SandboxUnavailable,
    check_sandbox,
    diagnose,
)
from bot.settings import Settings

from .conftest import hand_over

pytestmark = pytest.mark.bwrap

NAMESPACE_EPERM = "bwrap: Creating new namespace failed: Operation not permitted"

Confine = Callable[[str], Path]


@pytest.fixture
def confined(bwrap_available: None, tmp_path: Path) -> Confine:
    """A ``bwrap`` wrapper (in its own directory, so it can lead ``PATH``) that runs the
    real one with the given capabilities removed from the bounding set."""
    if os.geteuid() != 0:
        pytest.skip("dropping capabilities from the bounding set reproduces a container as root")
    setpriv, bwrap = shutil.which("setpriv"), shutil.which("bwrap")
    if setpriv is None or bwrap is None:
        pytest.skip("setpriv (util-linux) is not installed")

    def make(drop: str) -> Path:
        folder = tmp_path / f"bin-{drop.replace(',', '-')}"
        folder.mkdir()
        script = folder / "bwrap"
        script.write_text(f'#!/bin/sh\nexec {setpriv} --bounding-set={drop} -- {bwrap} "$@"\n')
        script.chmod(0o755)
        return script

    return make


def started_failures() -> float:
    value = observability.PROCESS_REGISTRY.get_sample_value(
        "vibe_sandbox_command_seconds_count", {"outcome": "start_failed"}
    )
    return value or 0.0


@pytest.mark.parametrize("memory_cgroup", [True, False], ids=["memory-cgroup", "rlimits-only"])
def test_a_sandbox_without_cap_sys_admin_raises_with_bwraps_line_and_the_fix(
    confined: Confine, workdir: Path, memory_cgroup: bool
) -> None:
    seen: list[tuple[str, float]] = []
    sandbox = BwrapSandbox(
        bwrap=str(confined("-sys_admin,-net_admin")),
        memory_cgroup=memory_cgroup,
        observe=lambda outcome, seconds: seen.append((outcome, seconds)),
    )
    with pytest.raises(SandboxStartFailed) as caught:
        sandbox.run("echo never", workdir=workdir)
    assert caught.value.detail == NAMESPACE_EPERM
    assert "CAP_SYS_ADMIN" in caught.value.fix
    assert "apparmor=unconfined" in caught.value.fix
    assert str(caught.value).startswith(f"the sandbox could not start: {NAMESPACE_EPERM}. Fix: ")
    assert isinstance(caught.value, SandboxUnavailable)  # the loop's infrastructure error
    assert [outcome for outcome, _ in seen] == ["start_failed"]


def test_wrapper_steps_failing_inside_the_sandbox_are_start_failures(
    confined: Confine, workdir: Path
) -> None:
    # bwrap makes the namespaces, then setpriv cannot switch to the sandbox uid.
    sandbox = BwrapSandbox(bwrap=str(confined("-setuid,-setgid")), memory_cgroup=False)
    with pytest.raises(SandboxStartFailed) as caught:
        sandbox.run("echo never", workdir=workdir)
    assert caught.value.detail == "setpriv: setresuid failed: Operation not permitted"
    assert "CAP_SETUID and CAP_SETGID" in caught.value.fix


def test_no_loopback_without_cap_net_admin(confined: Confine, workdir: Path) -> None:
    sandbox = BwrapSandbox(bwrap=str(confined("-net_admin")), memory_cgroup=False)
    with pytest.raises(SandboxStartFailed) as caught:
        sandbox.run("echo never", workdir=workdir)
    assert caught.value.detail.startswith("bwrap: loopback: Failed RTM_NEWADDR")
    assert "CAP_NET_ADMIN" in caught.value.fix


def test_limits_the_host_cannot_grant_are_a_start_failure(confined: Confine, workdir: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the open-files hard limit is unlimited here")
    sandbox = BwrapSandbox(bwrap=str(confined("-sys_resource")), memory_cgroup=False)
    with pytest.raises(SandboxStartFailed) as caught:
        sandbox.run("echo never", workdir=workdir, limits=SandboxLimits(open_files=hard + 1))
    assert caught.value.detail.startswith("prlimit: failed to set the NOFILE resource limit")
    assert "CAP_SYS_RESOURCE" in caught.value.fix


def test_a_command_printing_bwraps_message_is_an_ordinary_failure(
    workdir: Path, sandbox: BwrapSandbox
) -> None:
    seen: list[str] = []
    counted = BwrapSandbox(observe=lambda outcome, _: seen.append(outcome))
    assert counted.uid == sandbox.uid
    result = counted.run(f"echo '{NAMESPACE_EPERM}' >&2; exit 1", workdir=workdir)
    assert (result.exit_code, result.stderr) == (1, NAMESPACE_EPERM + "\n")
    silent = counted.run(["/bin/false"], workdir=workdir)
    assert silent.exit_code == 1
    timed_out = counted.run("sleep 5", workdir=workdir, limits=SandboxLimits(wall_seconds=0.2))
    assert timed_out.limit == "timeout"
    assert counted.run("true", workdir=workdir).ok
    assert seen == ["failed", "failed", "timeout", "ok"]


@pytest.mark.parametrize("memory_cgroup", [True, False], ids=["memory-cgroup", "rlimits-only"])
def test_the_command_runs_and_holds_neither_start_pipe(
    bwrap_available: None, tmp_path: Path, memory_cgroup: bool
) -> None:
    sandbox = BwrapSandbox(memory_cgroup=memory_cgroup)
    if memory_cgroup and not sandbox.memory_cgroup:
        pytest.skip("no writable cgroup v1 memory controller here")
    work = tmp_path / "work"
    work.mkdir()
    hand_over(work, sandbox.uid)
    result = sandbox.run(
        "readlink /proc/self/fd/0; ls /proc/self/fd | tr '\\n' ' '; echo done", workdir=work
    )
    assert result.exit_code == 0
    # stdin is /dev/null; 0-2 and ls's own directory descriptor are all it holds
    assert result.stdout == "/dev/null\n0 1 2 3 done\n"


@pytest.mark.parametrize(
    ("stderr", "fix"),
    [
        (NAMESPACE_EPERM, "CAP_SYS_ADMIN and CAP_NET_ADMIN"),
        (
            "bwrap: No permissions to create new namespace, likely because the kernel does not "
            "allow non-privileged user namespaces. See <https://deb.li/bubblewrap>",
            "kernel.unprivileged_userns_clone",
        ),
        (
            "bwrap: No permissions to create a new namespace, likely because the kernel does "
            "not allow non-privileged user namespaces.",
            "kernel.apparmor_restrict_unprivileged_userns",
        ),
        (
            "bwrap: No permissions to creating new namespace, likely because the kernel does "
            "not allow non-privileged user namespaces. On e.g. debian this can be enabled with "
            "'sysctl kernel.unprivileged_userns_clone=1'.",
            "user.max_user_namespaces",
        ),
        (
            "bwrap: Creating new namespace failed: nesting depth or "
            "/proc/sys/user/max_*_namespaces exceeded (ENOSPC)",
            "user.max_user_namespaces",
        ),
        ("bwrap: setting up uid map: Permission denied", "apparmor_restrict_unprivileged_userns"),
        ("bwrap: Failed to make / slave: Permission denied", "apparmor=unconfined"),
        ("bwrap: Can't mount proc on /newroot/proc: Operation not permitted", "systempaths"),
        ("bwrap: Can't mount proc on /newroot/proc: Operation not permitted", "procMount"),
        ("bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted", "CAP_NET_ADMIN"),
        ("setpriv: setresuid failed: Operation not permitted", "CAP_SETUID"),
        ("setpriv: setgroups failed: Operation not permitted", "CAP_SETGID"),
        ("bwrap: Unknown option --json-status-fd", "current bubblewrap"),
    ],
)
def test_diagnose_maps_known_failures_to_their_fix(stderr: str, fix: str) -> None:
    assert fix in diagnose(stderr)


def test_diagnose_quotes_an_unknown_failure_and_points_at_the_readme() -> None:
    fix = diagnose("warming up\nbwrap: Something new: Bad things\n")
    assert "'bwrap: Something new: Bad things'" in fix
    assert "infra/README.md" in fix


def test_the_probe_reports_a_container_without_capabilities(
    confined: Confine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The operator's PATH finds the confined bwrap, as the shipped image's would.
    monkeypatch.setenv("PATH", f"{confined('-sys_admin,-net_admin').parent}:{os.environ['PATH']}")
    before = started_failures()
    check = check_sandbox(Settings(data_dir=tmp_path / "data"))
    assert (check.ok, check.detail) == (False, NAMESPACE_EPERM)
    assert started_failures() == before + 1  # make_sandbox counts into the process registry
    assert check.fix is not None
    assert "CAP_SYS_ADMIN" in check.fix
    assert check.seconds > 0


def test_the_probe_runs_a_real_command(bwrap_available: None, tmp_path: Path) -> None:
    check = check_sandbox(Settings(data_dir=tmp_path / "data"))
    assert check.ok, check.detail
    assert check.fix is None
    assert "(no network)" in check.detail
    assert "egress" not in check.detail


def test_the_probe_proves_the_egress_path_when_network_is_allowed(
    bwrap_available: None, tmp_path: Path
) -> None:
    check = check_sandbox(Settings(data_dir=tmp_path / "data", sandbox_allow_network=True))
    assert check.ok, check.detail
    assert "through the allow-listed egress proxy" in check.detail


def test_the_probe_without_bwrap_gives_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    check = check_sandbox(Settings(data_dir=tmp_path / "data"))
    assert not check.ok
    assert "not installed" in check.detail
    assert check.fix is not None
    assert "apt-get install bubblewrap" in check.fix


def test_the_probe_says_there_is_no_isolation_without_a_sandbox(tmp_path: Path) -> None:
    check = check_sandbox(Settings(data_dir=tmp_path / "data", sandbox="none"))
    assert check.ok
    assert "WITHOUT ISOLATION" in check.detail
