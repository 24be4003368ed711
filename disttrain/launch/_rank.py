"""Per-rank wrapper, run by file path: `python _rank.py LOG_DIR COMMAND...` points stdout and
stderr at LOG_DIR/rank-NNNNN.log (one ordered file, so a traceback stays whole), writes a header
line naming rank, host and pid, then execs COMMAND in this same process, so mpirun sees (and
reports) the real exit code or signal. Of disttrain it loads only disttrain.env (stdlib only),
from the same tree as the launcher that started it."""

import os
import socket
import sys


def main() -> None:
    from disttrain.env import rank_env

    log_dir, command = sys.argv[1], sys.argv[2:]
    rank = rank_env()[0]
    os.makedirs(log_dir, exist_ok=True)
    fd = os.open(os.path.join(log_dir, f"rank-{rank:05d}.log"),
                 os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"[disttrain-launch] rank {rank} host {socket.gethostname()} "
                 f"pid {os.getpid()}\n".encode())
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.execv(command[0], command)


if __name__ == "__main__":
    # NOTE: run by path, sys.path[0] is this directory; the package root is two levels up, and
    # it must be the launcher's own disttrain even where the ranks' environment has none
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
