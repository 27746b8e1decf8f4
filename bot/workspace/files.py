"""Host-side access to worktree files that never leaves the worktree.

Sandboxed commands own a task's worktree: any name in it may be replaced by a symlink, a
FIFO, a huge file or a loop at any time, including between the host's check and its read.
Every host-side read or write of worktree content therefore goes through a descriptor
opened *beneath* the worktree's root, with every path component resolved by the kernel:

- ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`` (Linux 5.6): the kernel
  refuses, with ``EXDEV``, any resolution that would leave the directory, through ``..``,
  an absolute path or a symlink at any component, atomically with the open
  (https://man7.org/linux/man-pages/man2/openat2.2.html). ``follow=False`` adds
  ``RESOLVE_NO_SYMLINKS``: no component may be a symlink at all.
- Where ``openat2`` is missing (older kernels, seccomp filters answering ``ENOSYS`` or
  ``EPERM``), the same rules walked component by component: each one opened with
  ``O_NOFOLLOW`` from its parent's descriptor, a symlink's target read with
  ``readlinkat`` and resolved from the directory that holds it, ``..`` never above the root.

Reads are bounded (``max_bytes``), refuse anything but regular files before reading (a
FIFO is opened with ``O_NONBLOCK`` so it cannot block), and listings are capped. Failures
are :class:`OSError` subclasses so callers turn them into one clear line.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

# include/uapi/linux/openat2.h
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
# openat2 has number 437 on every architecture: it was added after the syscall tables were
# unified (arch/*/syscall.tbl, include/uapi/asm-generic/unistd.h).
_SYS_OPENAT2 = 437
# The kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS, fs/namei.c).
MAX_SYMLINKS = 40
_CHUNK = 64 * 1024
_RETRIES = 8


class OutsideRoot(OSError):
    """The path leaves the root (``..``, an absolute path or a symlink pointing out)."""

    def __init__(self, rel: str) -> None:
        super().__init__(errno.EXDEV, "leads outside the worktree", rel)


class NotRegularFile(OSError):
    """The path names a directory, FIFO, socket or device where a regular file is needed."""

    def __init__(self, rel: str, kind: str) -> None:
        code = errno.EISDIR if kind == "directory" else errno.EINVAL
        super().__init__(code, f"is a {kind}, not a regular file", rel)
        self.kind = kind


class TooLarge(OSError):
    """The file holds more bytes than the caller's cap."""

    def __init__(self, rel: str, size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"{size} bytes is more than the limit of {limit}", rel)
        self.size = size
        self.limit = limit


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _openat2(dir_fd: int, rel: str, flags: int, mode: int, resolve: int) -> int:
    # The kernel refuses a mode unless a file may be created (O_TMPFILE includes O_DIRECTORY).
    creates = flags & os.O_CREAT or flags & os.O_TMPFILE == os.O_TMPFILE
    how = _OpenHow(flags, mode if creates else 0, resolve)
    path = os.fsencode(rel)
    for _ in range(_RETRIES):
        fd = _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(dir_fd),
            ctypes.c_char_p(path),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        # EAGAIN: a concurrent rename raced a ".." lookup; the kernel asks for a retry.
        if code != errno.EAGAIN:
            if code == errno.EXDEV:
                raise OutsideRoot(rel)
            raise OSError(code, os.strerror(code), rel)
    raise OSError(errno.EAGAIN, "the path kept changing while it was opened", rel)


@cache
def openat2_supported() -> bool:
    """Whether this kernel (and any seccomp filter around us) lets ``openat2`` through."""
    try:
        fd = _openat2(-100, "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, 0)
    except OSError:
        return False
    os.close(fd)
    return True


def _components(rel: str) -> list[str]:
    if "\0" in rel:
        raise OSError(errno.EINVAL, "the path contains a NUL byte", rel)
    if rel.startswith("/"):
        raise OutsideRoot(rel)
    return [part for part in rel.split("/") if part not in ("", ".")]


def open_beneath_portable(
    root: int, rel: str, flags: int = os.O_RDONLY, mode: int = 0o644, *, follow: bool = True
) -> int:
    """:func:`open_beneath` without ``openat2``: the same rules, one component at a time."""
    parts = _components(rel)
    stack = [os.dup(root)]
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(stack) == 1:
                    raise OutsideRoot(rel)
                os.close(stack.pop())
                continue
            last = not parts
            if last:
                try:
                    return os.open(
                        name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=stack[-1]
                    )
                except OSError as exc:
                    if exc.errno != errno.ELOOP or not follow or flags & os.O_NOFOLLOW:
                        raise OSError(exc.errno, exc.strerror, rel) from None
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            else:
                fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            try:
                kind = os.fstat(fd).st_mode
                if stat.S_ISDIR(kind):
                    stack.append(fd)
                    fd = -1
                    continue
                if not stat.S_ISLNK(kind):
                    raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), rel)
                if not follow:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                links += 1
                if links > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                target = os.readlink("", dir_fd=fd)
            finally:
                if fd >= 0:
                    os.close(fd)
            if target.startswith("/"):
                raise OutsideRoot(rel)
            parts[:0] = _components(target)
        return os.open(".", flags | os.O_CLOEXEC, mode, dir_fd=stack[-1])
    finally:
        for held in stack:
            os.close(held)


def open_beneath(
    root: int | Path, rel: str, flags: int = os.O_RDONLY, mode: int = 0o644, *, follow: bool = True
) -> int:
    """A descriptor for ``rel`` resolved beneath ``root`` (a directory descriptor or path).

    Raises :class:`OutsideRoot` when any component would leave ``root``; with
    ``follow=False`` any symlink on the way (the last component included) fails with
    ``ELOOP``. ``O_CLOEXEC`` is always added."""
    if isinstance(root, Path):
        with open_root(root) as root_fd:
            return open_beneath(root_fd.fd, rel, flags, mode, follow=follow)
    _components(rel)
    if not openat2_supported():
        return open_beneath_portable(root, rel, flags, mode, follow=follow)
    resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | (0 if follow else RESOLVE_NO_SYMLINKS)
    return _openat2(root, rel or ".", flags | os.O_CLOEXEC, mode, resolve)


@dataclass
class RootDir:
    """An open worktree root; use as a context manager."""

    fd: int

    def __enter__(self) -> RootDir:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def open_root(root: Path) -> RootDir:
    """Open the worktree's root directory (the caller's own, trusted path)."""
    return RootDir(os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))


def file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


def read_fd(fd: int, rel: str, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of a regular file's descriptor; :class:`TooLarge` beyond."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFile(rel, file_kind(info.st_mode))
    if info.st_size > max_bytes:
        raise TooLarge(rel, info.st_size, max_bytes)
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:  # grew since fstat
            raise TooLarge(rel, total, max_bytes)


def read_beneath(root: int | Path, rel: str, max_bytes: int, *, follow: bool = True) -> bytes:
    """The content of the regular file ``rel`` beneath ``root``, at most ``max_bytes``.

    Opened with ``O_NONBLOCK`` so that a FIFO cannot block, and refused by type before any
    byte is read (:class:`NotRegularFile`), or by size (:class:`TooLarge`)."""
    fd = open_beneath(root, rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, follow=follow)
    try:
        return read_fd(fd, rel, max_bytes)
    finally:
        os.close(fd)


def read_head_beneath(root: int | Path, rel: str, max_bytes: int, *, follow: bool = True) -> bytes:
    """The first ``max_bytes`` of the regular file ``rel`` beneath ``root``, whatever its
    size (checked by type first, as :func:`read_beneath` does)."""
    fd = open_beneath(root, rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, follow=follow)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(rel, file_kind(info.st_mode))
        chunks: list[bytes] = []
        total = 0
        while total < max_bytes:
            chunk = os.read(fd, min(_CHUNK, max_bytes - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def readlink_beneath(root: int | Path, rel: str) -> str:
    """The target text of the symlink ``rel`` (its parents resolved beneath ``root``)."""
    fd = open_beneath(root, rel, os.O_PATH | os.O_NOFOLLOW, follow=False)
    try:
        if not stat.S_ISLNK(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a symbolic link", rel)
        return os.readlink("", dir_fd=fd)
    finally:
        os.close(fd)


def makedirs_beneath(
    root: int, rel: str, *, on_create: Callable[[int, str], None] | None = None
) -> None:
    """Create the directory ``rel`` and its missing parents, following no symlink.

    ``on_create(parent_fd, name)`` runs for each directory made (to hand it to the sandbox's
    uid)."""
    fd = os.dup(root)
    try:
        for name in _components(rel):
            if name == "..":
                raise OutsideRoot(rel)
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            else:
                if on_create is not None:
                    on_create(fd, name)
            child = os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Entry:
    """One name found by :func:`walk_beneath`; ``kind`` as :func:`file_kind` says it, or
    ``"cut"`` when a directory held more names than the walk reads from one directory."""

    path: str
    kind: str


def _entry_kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "symbolic link"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return file_kind(entry.stat(follow_symlinks=False).st_mode)


def walk_beneath(
    root: int,
    rel: str = "",
    *,
    prune: Callable[[str, str], bool] | None = None,
    max_names_per_dir: int = 100_000,
    max_depth: int = 64,
) -> Iterator[Entry]:
    """Every name under the directory ``rel``, as ``os.walk`` orders them (a directory's
    other entries sorted, then each subdirectory in turn); symlinks are reported, never
    followed.

    Each directory is opened from its parent's descriptor with ``O_NOFOLLOW``, so a
    directory swapped for a symlink during the walk is skipped, not entered. ``prune(path,
    name)`` drops a subdirectory; a directory with more than ``max_names_per_dir`` names
    yields that many and then an entry of kind ``"cut"``; nothing deeper than
    ``max_depth`` is entered. Unreadable or vanished directories are skipped."""
    base = open_beneath(root, rel, os.O_RDONLY | os.O_DIRECTORY, follow=False)
    prefix = "/".join(_components(rel))
    yield from _walk(base, prefix, prune, max_names_per_dir, max_depth)


def _walk(
    fd: int,
    prefix: str,
    prune: Callable[[str, str], bool] | None,
    max_names: int,
    depth: int,
) -> Iterator[Entry]:
    try:
        names: list[tuple[str, str]] = []
        cut = False
        with os.scandir(fd) as listing:
            for entry in listing:
                if len(names) >= max_names:
                    cut = True
                    break
                try:
                    names.append((entry.name, _entry_kind(entry)))
                except OSError:
                    continue  # vanished since the listing
        names.sort()
        subdirs = []
        for name, kind in names:
            path = f"{prefix}/{name}" if prefix else name
            if kind == "directory":
                if prune is None or not prune(path, name):
                    subdirs.append((name, path))
                continue
            yield Entry(path, kind)
        if cut:
            yield Entry(prefix or ".", "cut")
        if depth <= 0:
            return
        for name, path in subdirs:
            try:
                child = os.open(
                    name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError:
                continue  # replaced, removed or unreadable since the listing
            yield Entry(path, "directory")
            yield from _walk(child, path, prune, max_names, depth - 1)
    finally:
        os.close(fd)
