"""Per-rank wrapper, run by file path (never imported, so the disttrain package is not loaded):
`python _rank.py LOG_DIR COMMAND...` points stdout and stderr at LOG_DIR/rank-NNNNN.log (one
ordered file, so a traceback stays whole), writes a header line naming rank, host and pid, then
execs COMMAND in this same process, so mpirun sees (and reports) the real exit code or signal."""

import os
import socket
import sys

RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")


def main() -> None:
    log_dir, command = sys.argv[1], sys.argv[2:]
    rank = next((int(os.environ[v]) for v in RANK_VARS if v in os.environ), 0)
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
    main()
