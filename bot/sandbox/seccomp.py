"""The seccomp filter every sandboxed command runs under (bwrap ``--seccomp FD``).

bubblewrap gives the command new namespaces but leaves the kernel's unprivileged user
namespaces open: ``unshare -Ur`` inside the sandbox gives the command every capability in a
child user namespace, and with them new mount and network namespaces, ``mount`` and the
kernel code that only root used to reach. bwrap's own ``--disable-userns`` needs
``--unshare-user``, which the root model (commands switched to an unprivileged uid by
``setpriv``) does not use, so the sandbox loads this classic-BPF filter instead, built here
by hand (no libseccomp at run time). Refused, as build and test commands never need them:

- ``unshare`` and ``clone`` with any ``CLONE_NEW*`` flag, and ``setns``: EPERM;
- ``clone3``: ENOSYS, because its flags sit in memory a filter cannot read; glibc and
  other runtimes then fall back to ``clone``, which the filter can check;
- ``keyctl``, ``add_key``, ``request_key`` (the kernel keyring is not namespaced),
  ``bpf``, ``perf_event_open``, ``userfaultfd`` (kernel attack surface, also refused by
  Docker's default profile), ``io_uring_*`` (ENOSYS: callers fall back to plain I/O);
- another system-call ABI (i386 ``int 0x80``, x32): the process is killed, because the
  numbers checked here are those of the native ABI.

``ptrace`` stays allowed: it reaches only the command's own processes (same uid, own PID
namespace) and debuggers and sanitizers (LeakSanitizer) need it.

The filter format is ``struct sock_filter`` (``linux/filter.h``); ``struct seccomp_data``
and the return values are in ``linux/seccomp.h``; see
https://docs.kernel.org/userspace-api/seccomp_filter.html. bubblewrap reads the program
from the descriptor and installs it with ``PR_SET_NO_NEW_PRIVS`` just before it executes
the command (containers/bubblewrap ``bubblewrap.c``, ``--seccomp``).
"""

from __future__ import annotations

import errno
import os
import platform
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

# linux/filter.h and linux/bpf_common.h
_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x05 | 0x30 | 0x00  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x05 | 0x40 | 0x00  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K
# linux/seccomp.h
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6].
# The low half of args[0] on a little-endian machine (both machines below are).
_NR, _ARCH, _ARG0_LOW = 0, 4, 16
_X32_SYSCALL_BIT = 0x40000000

# linux/sched.h: every namespace flag. CLONE_NEWTIME (0x80) is honoured by unshare and
# clone3 only; in clone's flags that bit is part of the exit signal, so it is not checked.
_CLONE_NEW = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000
_CLONE_NEW |= 0x40000000
_CLONE_NEWTIME = 0x00000080


@dataclass(frozen=True)
class _Abi:
    audit_arch: int  # linux/audit.h
    x32_possible: bool
    numbers: dict[str, int]


# asm/unistd_64.h (x86_64) and asm-generic/unistd.h (aarch64).
ABIS: dict[str, _Abi] = {
    "x86_64": _Abi(
        0xC000003E,
        True,
        {
            "clone": 56,
            "unshare": 272,
            "setns": 308,
            "clone3": 435,
            "add_key": 248,
            "request_key": 249,
            "keyctl": 250,
            "perf_event_open": 298,
            "bpf": 321,
            "userfaultfd": 323,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
        },
    ),
    "aarch64": _Abi(
        0xC00000B7,
        False,
        {
            "clone": 220,
            "unshare": 97,
            "setns": 268,
            "clone3": 435,
            "add_key": 217,
            "request_key": 218,
            "keyctl": 219,
            "perf_event_open": 241,
            "bpf": 280,
            "userfaultfd": 282,
            "io_uring_setup": 425,
            "io_uring_enter": 426,
            "io_uring_register": 427,
        },
    ),
}
_REFUSED: tuple[tuple[str, int], ...] = (
    ("setns", errno.EPERM),
    ("clone3", errno.ENOSYS),
    ("add_key", errno.EPERM),
    ("request_key", errno.EPERM),
    ("keyctl", errno.EPERM),
    ("bpf", errno.EPERM),
    ("perf_event_open", errno.EPERM),
    ("userfaultfd", errno.EPERM),
    ("io_uring_setup", errno.ENOSYS),
    ("io_uring_enter", errno.ENOSYS),
    ("io_uring_register", errno.ENOSYS),
)


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter for ``machine`` (default: this one), or None where it is not known."""
    abi = ABIS.get(machine or platform.machine())
    if abi is None:
        return None
    ops = [
        _op(_LD_W_ABS, _ARCH),
        _op(_JEQ_K, abi.audit_arch, 1, 0),
        _op(_RET_K, RET_KILL_PROCESS),
        _op(_LD_W_ABS, _NR),
    ]
    if abi.x32_possible:
        ops += [_op(_JGE_K, _X32_SYSCALL_BIT, 0, 1), _op(_RET_K, RET_KILL_PROCESS)]
    for name, error in _REFUSED:
        ops += [_op(_JEQ_K, abi.numbers[name], 0, 1), _op(_RET_K, RET_ERRNO | error)]
    for name, mask in (("clone", _CLONE_NEW), ("unshare", _CLONE_NEW | _CLONE_NEWTIME)):
        # nr == name ? (flags & mask ? EPERM : ALLOW) : next check
        ops += [
            _op(_JEQ_K, abi.numbers[name], 0, 4),
            _op(_LD_W_ABS, _ARG0_LOW),
            _op(_JSET_K, mask, 0, 1),
            _op(_RET_K, RET_ERRNO | errno.EPERM),
            _op(_RET_K, RET_ALLOW),
        ]
    ops.append(_op(_RET_K, RET_ALLOW))
    return b"".join(ops)


def program_fd(code: bytes) -> int:
    """A descriptor positioned at the start of ``code``, for bwrap's ``--seccomp``; the
    caller closes it."""
    fd, path = tempfile.mkstemp(prefix="vibe-seccomp-")
    Path(path).unlink()
    os.write(fd, code)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
