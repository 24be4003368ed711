"""Per-rank wrapper, run by file path: `python _rank.py LOG_DIR COMMAND...` points stdout and
stderr at LOG_DIR/rank-NNNNN.log (one ordered file, so a traceback stays whole), writes a header
line naming rank, host and pid, writes the "started" beat (`<heartbeat dir>/rank-NNNNN.started`:
the launcher's start-up deadline tells "never started" from "hung in start-up" by it), forks a
small watcher that SIGKILLs the rank when the launcher dies, then execs COMMAND in this same
process, so mpirun sees (and reports) the real exit code or signal. Of disttrain it loads only
disttrain.env and disttrain.files (stdlib only), from the same tree as the launcher."""

import json
import os
import signal
import socket
import sys
import time

WATCH_INTERVAL_S = 1.0
# NOTE: well above NFS's shortest attribute cache (acregmin, 3 s), so a rank on another host
# never mistakes a cached mtime for a dead launcher; on the launcher's host the pid check is
# faster (about WATCH_INTERVAL_S)
LEASE_STALE_S = 15.0


def main() -> None:
    from disttrain import env

    log_dir, command = sys.argv[1], sys.argv[2:]
    rank = env.rank_env()[0]
    host = socket.gethostname()
    os.makedirs(log_dir, exist_ok=True)
    fd = os.open(os.path.join(log_dir, f"rank-{rank:05d}.log"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"[disttrain-launch] rank {rank} host {host} pid {os.getpid()}\n".encode())
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    _write_started(env.heartbeat_dir(), rank, host)
    lease = env.launcher_lease()
    if lease is not None:
        _fork_watcher(rank, host, lease)
    os.execv(command[0], command)


def _write_started(directory: str | None, rank: int, host: str) -> None:
    if not directory:
        return
    from disttrain.files import atomic_write

    os.makedirs(directory, exist_ok=True)
    record = {"rank": rank, "host": host, "pid": os.getpid(), "start_time": time.time()}
    with atomic_write(os.path.join(directory, f"rank-{rank:05d}.started"), durable=False) as tmp:
        with open(tmp, "w") as f:
            json.dump(record, f)


def _fork_watcher(rank: int, host: str, lease) -> None:
    """Forks the watcher; the parent returns (and execs the rank's command, same pid)."""
    rank_pid = os.getpid()
    if os.fork() != 0:
        return
    try:
        os.closerange(3, 1 << 16)  # NOTE: hold no pipe or socket of mpirun's open
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the rank, not for us
        why = _watch(rank_pid, host, lease)
        if why:
            os.write(2, f"[disttrain-launch] rank {rank}: {why}; killing this rank (pid "
                        f"{rank_pid}) so no job outlives its launcher\n".encode())
            os.kill(rank_pid, signal.SIGKILL)
    finally:
        os._exit(0)


def _watch(rank_pid: int, host: str, lease) -> str | None:
    """Waits until the rank exits (None) or the launcher is gone (the reason)."""
    same_host = lease.host == host
    seen, changed_at = None, time.monotonic()
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != rank_pid:
            return None  # the rank exited: this process was re-parented
        if same_host and not _alive(lease.pid):
            return f"the launcher (pid {lease.pid} on {lease.host}) is gone"
        try:
            stamp = os.stat(lease.path).st_mtime_ns
        except OSError:
            stamp = None
        now = time.monotonic()
        if stamp is not None and stamp != seen:
            seen, changed_at = stamp, now
        # NOTE: a lease never seen (no shared filesystem) cannot be judged; one seen and then
        # unchanged for LEASE_STALE_S (by this host's clock: no skew between hosts) is dead
        elif seen is not None and now - changed_at > LEASE_STALE_S:
            return (f"the launcher's lease {lease.path} has not been renewed for "
                    f"{now - changed_at:.0f} s (launcher pid {lease.pid} on {lease.host})")


def _alive(pid: int) -> bool:
    if os.path.isdir("/proc/self"):  # NOTE: Linux: a zombie launcher is dead too
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


if __name__ == "__main__":
    # NOTE: run by path, sys.path[0] is this directory; the package root is two levels up, and
    # it must be the launcher's own disttrain even where the ranks' environment has none
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
