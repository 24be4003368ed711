"""Killing a job's whole process tree: mpirun runs in its own session (start_new_session), and
Open MPI puts each rank in its own process group but leaves it in mpirun's session, so the
session id (plus the parent links, for anything that called setsid) finds every process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable


def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, session id) of `pid` from /proc, None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] in ("Z", "X"):
            return None  # NOTE: a zombie is dead already; its parent or init reaps it
        return int(fields[1]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def job_processes(root: int) -> set[int]:
    """Every live process in `root`'s session or below it (Linux /proc; {root} elsewhere)."""
    if not os.path.isdir("/proc"):
        return {root}
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                table[int(name)] = st
    found = {pid for pid, (_, sid) in table.items() if sid == root}
    found.add(root)
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found & (set(table) | {root})


def _signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_session(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM to mpirun and all its processes, SIGKILL to whatever remains after `grace` s;
    returns when mpirun is reaped and no process of the job is left."""
    pids = job_processes(proc.pid)
    if proc.poll() is None or len(pids) > 1:
        _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        pids = job_processes(proc.pid) - ({proc.pid} if proc.returncode is not None else set())
        if not pids:
            break
        time.sleep(0.05)
    else:
        while True:
            pids = job_processes(proc.pid) - ({proc.pid} if proc.poll() is not None else set())
            if not pids:
                break
            _signal_all(pids, signal.SIGKILL)
            time.sleep(0.05)
    proc.wait()


# NOTE: Open MPI 5 (PRRTE) keeps its session directory, with the PMIx server's rendezvous
# files, in $TMPDIR/ompi.<mpirun's pid>. A killed mpirun leaves it behind, and a later mpirun
# that gets the same pid (pid_max is 32768 on many machines) fails at once with "The PMIx
# server's listener thread failed to start" (exit 213): seen twice in ~10 runs of our test suite.
_CLEAN_AND_EXEC = ('d="${TMPDIR:-/tmp}/ompi.$$"; [ -O "$d" ] && rm -rf -- "$d"; '
                   'exec "$@"')


def with_fresh_session_dir(argv: list[str]) -> list[str]:
    """`argv` run through /bin/sh, which first removes a session directory left under its own
    pid (it keeps the pid: it execs mpirun, so the directory is stale by definition) and
    owned by this user. Elsewhere than Linux, `argv` itself."""
    if not sys.platform.startswith("linux") or not os.path.exists("/bin/sh"):
        return argv
    return ["/bin/sh", "-c", _CLEAN_AND_EXEC, "sh", *argv]


def remove_session_dir(pid: int) -> None:
    """Removes the session directory of the (now reaped) mpirun `pid`, if it left one."""
    path = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"ompi.{pid}")
    try:
        if os.stat(path).st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
    except OSError:
        pass


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_launcher() -> Callable[[], None] | None:
    """A Popen preexec_fn that makes the child (mpirun) get SIGKILL when the launcher dies,
    even by SIGKILL (Linux PR_SET_PDEATHSIG); None where prctl is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    launcher = os.getpid()

    def preexec() -> None:
        # NOTE: prctl is resolved above, in the parent: between fork and exec only this call
        # runs, nothing that could take a lock another launcher thread held at fork time
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != launcher:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec
