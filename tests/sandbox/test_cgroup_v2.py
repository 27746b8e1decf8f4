"""Finding a memory cgroup on cgroup v2 hosts (issue 14). This host binds the memory
controller to cgroup v1, so the v2 walk runs against a directory laid out as cgroupfs lays
out a delegated group (https://docs.kernel.org/admin-guide/cgroup-v2.html); the files
record what the bot wrote, as the kernel's would."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.sandbox import bwrap
from bot.sandbox.bwrap import BwrapSandbox
from bot.sandbox.cgroup import LEAF, MemoryGroup, find_memory_cgroup


def unified(tmp_path: Path, controllers: str, procs: str = "4242\n77\n") -> tuple[Path, Path]:
    """A cgroup2 mount with the bot in ``/bot.service``: (its group, /proc/self/cgroup)."""
    mount = tmp_path / "unified"
    group = mount / "bot.service"
    group.mkdir(parents=True)
    (group / "cgroup.controllers").write_text(controllers + "\n")
    (group / "cgroup.subtree_control").write_text("\n")
    (group / "cgroup.procs").write_text(procs)
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("0::/bot.service\n")
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"25 1 0:22 / /proc rw - proc proc rw\n41 31 0:38 / {mount} rw - cgroup2 cgroup2 rw\n"
    )
    return group, proc_cgroup


def test_a_delegated_v2_group_gets_a_leaf_and_the_memory_controller(tmp_path: Path) -> None:
    group, proc_cgroup = unified(tmp_path, "cpu memory pids")
    base, reason = find_memory_cgroup(proc_cgroup, tmp_path / "mountinfo")
    assert (base, reason) == (group, "")
    # The bot's processes moved to a leaf first, then children got the controller.
    assert (group / LEAF / "cgroup.procs").read_text() == "77"  # the last pid written
    assert (group / "cgroup.subtree_control").read_text() == "+memory"
    # From inside the leaf the bot finds the same base, not a deeper one.
    (group / "cgroup.subtree_control").write_text("memory\n")
    (tmp_path / "cgroup").write_text(f"0::/bot.service/{LEAF}\n")
    (group / LEAF / "cgroup.controllers").write_text("memory\n")
    (group / LEAF / "cgroup.subtree_control").write_text("\n")
    assert find_memory_cgroup(proc_cgroup, tmp_path / "mountinfo") == (group, "")
    assert not (group / LEAF / LEAF).exists()


def test_a_v2_command_group_sets_memory_max(tmp_path: Path) -> None:
    group, _ = unified(tmp_path, "memory")
    command = MemoryGroup(group, 200 * 1024**2)
    assert command.v2
    assert (command.path / "memory.max").read_text() == str(200 * 1024**2)
    assert (command.path / "memory.swap.max").read_text() == "0"
    (command.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n")
    assert command.oom_kills() == 2


@pytest.mark.parametrize(
    ("controllers", "cgroup_line", "says"),
    [
        ("cpu pids", "0::/bot.service\n", "memory controller is not delegated"),
        ("memory", "0::/elsewhere\n", "not a cgroup v2 group"),
        ("memory", "", "no cgroup v2 hierarchy"),
    ],
)
def test_unusable_v2_groups_say_why(
    tmp_path: Path, controllers: str, cgroup_line: str, says: str
) -> None:
    _, proc_cgroup = unified(tmp_path, controllers)
    proc_cgroup.write_text(cgroup_line)
    base, reason = find_memory_cgroup(proc_cgroup, tmp_path / "mountinfo")
    assert base is None
    assert says in reason


def test_no_cgroup_is_said_once_at_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(bwrap, "find_memory_cgroup", lambda: (None, "a reason for the test"))
    bwrap._warn_no_cgroup.cache_clear()
    with caplog.at_level(logging.WARNING, logger="bot.sandbox.bwrap"):
        for _ in range(3):
            assert not BwrapSandbox().memory_cgroup
    said = [r.getMessage() for r in caplog.records if "no memory cgroup" in r.getMessage()]
    assert len(said) == 1
    assert "a reason for the test" in said[0]
    assert "Delegate=yes" in said[0]
    bwrap._warn_no_cgroup.cache_clear()
