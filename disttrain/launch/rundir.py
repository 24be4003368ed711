"""One directory per launcher run (`<log root>/run-<UTC time>-<pid>/attempt-K/...`), the
`<log root>/latest` pointer to it, and the lease file the ranks watch to know the launcher is
alive. Stdlib only."""

from __future__ import annotations

import os
import threading
import time

LATEST = "latest"
LEASE = "launcher.lease"
LEASE_INTERVAL_S = 1.0


def new_run_dir(log_root: str, now: float | None = None, pid: int | None = None) -> str:
    """Creates and returns a fresh `<log_root>/run-<UTC time>-<pid>` directory and points
    `<log_root>/latest` at it, so reports and the console only ever read this run's files.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> os.path.basename(new_run_dir(root, now=0.0, pid=7))
        'run-19700101T000000Z-7'
        >>> os.path.basename(os.path.realpath(os.path.join(root, "latest")))
        'run-19700101T000000Z-7'
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    name = f"run-{stamp}-{os.getpid() if pid is None else pid}"
    path = os.path.join(log_root, name)
    suffix = 0
    while True:  # NOTE: exist_ok=False: two runs never share a directory, even with pid reuse
        try:
            os.makedirs(path)
            break
        except FileExistsError:
            suffix += 1
            path = os.path.join(log_root, f"{name}.{suffix}")
    point_latest(log_root, os.path.basename(path))
    return path


def point_latest(log_root: str, name: str) -> None:
    """Replaces `<log_root>/latest` with a relative symlink to `name` in one rename; where
    symlinks are impossible (some Windows and network filesystems), a text file naming it."""
    latest = os.path.join(log_root, LATEST)
    tmp = f"{latest}.tmp-{os.getpid()}"
    try:
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(name, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        with open(tmp, "w") as f:
            f.write(name + "\n")
    if os.path.isdir(latest) and not os.path.islink(latest):
        # NOTE: an old launcher's real directory named "latest" cannot be replaced by a rename
        os.remove(tmp)
        return
    os.replace(tmp, latest)


class Lease(threading.Thread):
    """Touches `<run dir>/launcher.lease` every LEASE_INTERVAL_S seconds while the launcher
    lives; ranks on other hosts kill themselves when it stops changing (disttrain/launch/
    _rank.py), so a SIGKILLed launcher leaves no job behind."""

    def __init__(self, run_dir: str):
        super().__init__(name="disttrain-launch-lease", daemon=True)
        self.path = os.path.join(run_dir, LEASE)
        self._stop_event = threading.Event()
        self.touch()

    def touch(self) -> None:
        with open(self.path, "w") as f:
            f.write(f"{os.getpid()} {time.time():.3f}\n")

    def run(self) -> None:
        while not self._stop_event.wait(LEASE_INTERVAL_S):
            try:
                self.touch()
            except OSError:
                pass  # NOTE: a full disk must not end the job; the ranks tolerate a few misses

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
