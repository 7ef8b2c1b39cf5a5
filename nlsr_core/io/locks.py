"""One writer per output: an exclusive lock per claimed path, taken at claim and held until replace
(docs/DESIGN.md §3.4).

The lock is the hidden sibling `.NAME.lock` of the output `NAME`, held with flock through the `filelock` library,
so the kernel frees it when its holder dies, even by SIGKILL. The holder writes "PID COMMAND" into it, so a
second writer can name the holder in its one-line refusal. A released lock file is unlinked while still held;
`filelock` re-checks the inode after flock, so a writer that opened the unlinked file does not get a lock
nobody else sees. Temp and aside siblings of an output belong to whoever holds its lock: they are cleaned only by
a process that holds it (`nlsr_core.io.outputs.recover`, `sweep`).

A launched training rank (`accelerate launch`, `torchrun`) writes under the lock its launcher took: the CLI sets
`ENABLED = False` there (nlsr_core reads no environment variable itself).
"""
from __future__ import annotations

import atexit
import contextlib
import os
from pathlib import Path
from typing import Iterator

from nlsr_core.errors import NlsrError

ENABLED = True
_HELD: list["OutputLock"] = []


class LockedError(NlsrError):
    """Another live process holds the output's lock; the message names its pid and command."""


def lock_path(final: Path) -> Path:
    final = Path(final)
    return final.parent / f".{final.name}.lock"


class OutputLock:
    """A held lock on one output path; `release()` unlinks its file and frees it (idempotent)."""

    def __init__(self, final: Path, lock, path: Path):
        self.final, self._lock, self.path = final, lock, path

    def release(self) -> None:
        if self._lock is None:
            return
        lock, self._lock = self._lock, None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()   # while still held: see the module docstring
        lock.release()
        with contextlib.suppress(ValueError):
            _HELD.remove(self)


def _file_lock(path: Path, command: str):
    from filelock import FileLock

    def write_holder(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)

    return FileLock(str(path), timeout=0, on_acquired=write_holder, thread_local=False)


def holder(final: Path) -> str:
    """'nlsr COMMAND (pid N)' as the lock file of `final` names its holder, or 'another process'."""
    try:
        pid, command = lock_path(final).read_text(encoding="utf-8").split(maxsplit=1)
        return f"nlsr {command.strip()} (pid {int(pid)})"
    except (OSError, ValueError):
        return "another process"


def try_lock(final: Path, command: str) -> OutputLock | None:
    """The lock of `final` when it is free (its directory must exist), else None."""
    from filelock import Timeout

    final = Path(final)
    path = lock_path(final)
    lock = _file_lock(path, command)
    try:
        lock.acquire()
    except Timeout:
        return None
    held = OutputLock(final, lock, path)
    _HELD.append(held)
    return held


def acquire(final: Path, command: str, option: str) -> OutputLock | None:
    """Hold the lock of `final` for `command`, or refuse in one line naming the holder. None when locking is off
    or the output's directory does not exist yet (nobody can be writing there; `replace` locks after mkdir)."""
    final = Path(final)
    if not ENABLED or not final.parent.is_dir():
        return None
    held = try_lock(final, command)
    if held is None:
        raise LockedError(f"{option} {final}: {holder(final)} is writing it now; expected one writer at a time "
                          "(wait for it to finish, or stop it)")
    return held


def is_free(final: Path) -> bool:
    """True when no live process holds the lock of `final` (checked by taking and releasing it)."""
    if not ENABLED or not Path(final).parent.is_dir():
        return True
    held = try_lock(final, "check")
    if held is None:
        return False
    held.release()
    return True


@contextlib.contextmanager
def held_if_free(final: Path, command: str) -> Iterator[bool]:
    """Hold the lock of `final` for the block when it is free; yields whether it was taken."""
    held = try_lock(final, command) if ENABLED else None
    try:
        yield held is not None
    finally:
        if held is not None:
            held.release()


def release_all() -> None:
    """Free every lock this process still holds (a command that failed between claim and replace)."""
    for held in list(_HELD):
        held.release()


atexit.register(release_all)
