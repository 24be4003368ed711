"""DirectoryLock: one job per checkpoint directory, by an exclusive `flock` on `<dir>/lock`.

Stdlib only (the communicator is passed in). The kernel drops the lock when the holding process
dies (SIGKILL included), so a crashed job never blocks its own restart; while the holder lives,
a second job is refused with the holder's host, pid, start time and command line, which the
holder writes into the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path

from disttrain.distributed.checkpoint_store import CheckpointRefusedError

LOCK_NAME = "lock"
_COMMAND_CHARS = 300


def _command_line() -> str:
    try:  # NOTE: /proc shows the interpreter and `-m mpi4py`; sys.argv would hide both
        with open("/proc/self/cmdline", "rb") as f:
            words = f.read().split(b"\0")
        command = " ".join(w.decode(errors="replace") for w in words if w)
    except OSError:
        command = " ".join([sys.executable, *sys.argv])
    return command[:_COMMAND_CHARS]


def describe_holder(text: str) -> str:
    """A one-line description of the holder from the lock file's content (JSON written by
    `DirectoryLock`); says so when the content is unreadable (the holder is still writing it).

    Example:
        >>> describe_holder('{"host": "n1", "pid": 7, "started": "2024-01-01T00:00:00Z"}')
        'pid 7 on host n1, started 2024-01-01T00:00:00Z'
    """
    try:
        info = json.loads(text)
        found = f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (ValueError, TypeError, KeyError):
        return "a process whose details are not readable yet"
    return found + (f", command: {info['command']}" if info.get("command") else "")


class DirectoryLock:
    """An exclusive lock on a directory for this process's lifetime (or until `release`).

    Managers of one process share the lock on a directory (they are one job): the kernel lock
    is taken by the first and dropped when the last releases it.

    Args:
        dir: the directory to lock (must exist).

    Raises:
        RuntimeError: another process holds the lock; the message names it.

    Example:
        >>> import tempfile
        >>> lock = DirectoryLock(tempfile.mkdtemp())
        >>> lock.release()
    """

    # NOTE: flock conflicts between two open() calls of one process too, so the process keeps
    # one descriptor per lock file and counts its users; keyed by the file's identity, not its
    # path, so a directory deleted and made again gets a lock of its own
    _held: dict[tuple[int, int], list[int]] = {}
    _guard = threading.Lock()

    def __init__(self, dir):
        self.path = Path(dir) / LOCK_NAME
        self._released = False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        stat = os.fstat(fd)
        self._key = (stat.st_dev, stat.st_ino)
        with self._guard:
            entry = self._held.get(self._key)
            if entry is not None:
                os.close(fd)
            else:
                entry = self._held[self._key] = [self._acquire(fd), 0]
            entry[1] += 1

    def _acquire(self, fd: int) -> int:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = describe_holder(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise CheckpointRefusedError(
                f"{self.path.parent} is in use by another job: {holder} holds {self.path}. "
                "Two jobs on one checkpoint directory overwrite each other's checkpoints: "
                "wait for that job to end (or stop it), or use another checkpoint directory"
            ) from None
        info = {"host": socket.gethostname(), "pid": os.getpid(), "command": _command_line(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return fd

    def release(self) -> None:
        """Drops this user's share of the lock; the last one unlocks the directory. Idempotent."""
        with self._guard:
            if self._released:
                return
            self._released = True
            entry = self._held[self._key]
            entry[1] -= 1
            if entry[1] == 0:
                del self._held[self._key]
                os.close(entry[0])  # NOTE: closing the last descriptor drops the flock


def lock_collectively(dir: Path, comm) -> DirectoryLock | None:
    """Rank 0 of `comm` creates and locks `dir`; its verdict is broadcast, so a refusal (or a
    directory that cannot be created) raises on every rank, never a hang. Returns rank 0's
    lock, None on the other ranks."""
    lock, refusal = None, None
    if comm.rank == 0:
        try:
            dir.mkdir(parents=True, exist_ok=True)
            lock = DirectoryLock(dir)
        except CheckpointRefusedError as e:
            refusal = (str(e), True)
        except OSError as e:
            refusal = (str(e), False)
    refusal = comm.bcast_obj(refusal)
    if refusal is not None:
        message, in_use = refusal
        error = CheckpointRefusedError if in_use else RuntimeError
        raise error(f"CheckpointManager: rank {comm.rank}: {message}")
    return lock
