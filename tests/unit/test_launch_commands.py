"""disttrain-launch's pure parts: MPI detection, the mpirun argv for Open MPI and MPICH, and
the variables exported to the ranks (no MPI needed)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from disttrain import env
from disttrain.launch import commands
from disttrain.launch.commands import Job, build_command, detect_mpi


def job(**kw):
    base = dict(nprocs=2, script="train.py", script_args=["--epochs", "3"], log_dir="/l",
                env={"A": "1", "OMP_NUM_THREADS": "2"}, python="/py")
    base.update(kw)
    return Job(**base)


@pytest.mark.parametrize("text, flavour", [
    ("mpirun (Open MPI) 5.0.11\n\nReport bugs to https://www.open-mpi.org/", "openmpi"),
    ("mpirun (Open MPI) 4.1.2", "openmpi"),
    ("HYDRA build details:\n    Version: 4.1.2\n", "mpich"),
    ("Intel(R) MPI Library for Linux* OS, Version 2021.10", "mpich"),
])
def test_detect_mpi(text, flavour):
    assert detect_mpi(text) == flavour


def test_detect_mpi_unknown_names_the_output():
    with pytest.raises(ValueError, match="something else"):
        detect_mpi("something else 1.0")


def test_openmpi_argv_as_root_without_hostfile_oversubscribes():
    argv, notes = build_command("openmpi", "mpirun", job(nprocs=4), is_root=True, cores=2)
    assert argv[:3] == ["mpirun", "-n", "4"]
    assert "--allow-run-as-root" in argv and "--oversubscribe" in argv
    assert any("root" in n for n in notes) and any("oversubscribe" in n for n in notes)
    assert argv[argv.index("-x") + 1] == "A=1"
    assert "OMP_NUM_THREADS=2" in argv
    tail = argv[argv.index(commands.RANK_WRAPPER) - 1:]
    assert tail == ["/py", commands.RANK_WRAPPER, "/l", "/py", "-m", "mpi4py", "train.py",
                    "--epochs", "3"]


def test_openmpi_argv_not_root_with_hostfile_and_passthrough():
    argv, notes = build_command("openmpi", "mpirun", job(nprocs=8, hostfile="hosts",
                                                         extra=["--bind-to", "none"]),
                                is_root=False, cores=2)
    assert argv[3:5] == ["--hostfile", "hosts"]
    assert "--allow-run-as-root" not in argv and "--oversubscribe" not in argv and not notes
    assert argv.index("--bind-to") < argv.index(commands.RANK_WRAPPER)


def test_mpich_argv():
    argv, notes = build_command("mpich", "mpiexec", job(hostfile="hosts"), is_root=True,
                                cores=1)
    assert argv[:5] == ["mpiexec", "-np", "2", "-f", "hosts"]
    assert "--allow-run-as-root" not in argv and "--oversubscribe" not in argv and not notes
    i = argv.index("-genv")
    assert argv[i:i + 3] == ["-genv", "A", "1"]


def test_job_env_defaults_threads_and_exports_dirs():
    exported = commands.job_env({}, nprocs=2, cores=8, heartbeat_dir="/h", checkpoint_dir="/c",
                                attempt=1, log_dir="/l")
    assert exported["OMP_NUM_THREADS"] == "4" and exported[env.CHECKPOINT_DIR] == "/c"
    assert exported[env.HEARTBEAT_DIR] == "/h" and exported[env.RESTART_COUNT] == "1"
    assert exported[env.LOG_DIR] == "/l"
    exported = commands.job_env({"OMP_NUM_THREADS": "3"}, 16, 8, "/h", None, 0, "/l")
    assert exported["OMP_NUM_THREADS"] == "3" and env.CHECKPOINT_DIR not in exported
    # oversubscribed: the shared rule never gives 0 threads
    assert commands.job_env({}, 16, 2, "/h", None, 0, "/l")["OMP_NUM_THREADS"] == "1"


def test_what_the_launcher_exports_is_what_the_rank_reads():
    exported = commands.job_env({}, 2, 8, "/h", "/c", 2, "/l")
    assert (env.heartbeat_dir(exported), env.checkpoint_dir(environ=exported),
            env.restart_count(exported), env.log_dir(exported)) == ("/h", "/c", 2, "/l")


def test_job_env_asks_glibc_for_huge_pages_unless_told_not_to():
    exported = commands.job_env({}, 2, 8, "/h", None, 0, "/l")
    assert exported[env.GLIBC_TUNABLES] == "glibc.malloc.hugetlb=1"
    assert exported[env.TUNE_MALLOC] == "1" and env.tune_malloc(exported)
    # the user's tunables are kept, hugetlb appended; their own tune_malloc choice wins
    kept = commands.job_env({env.GLIBC_TUNABLES: "glibc.malloc.arena_max=2",
                             env.TUNE_MALLOC: "0"}, 2, 8, "/h", None, 0, "/l")
    assert kept[env.GLIBC_TUNABLES] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert kept[env.TUNE_MALLOC] == "0"
    # a hugetlb setting of their own is left as it is
    own = commands.job_env({env.GLIBC_TUNABLES: "glibc.malloc.hugetlb=0"}, 2, 8, "/h", None, 0,
                           "/l")
    assert own[env.GLIBC_TUNABLES] == "glibc.malloc.hugetlb=0"
    off = commands.job_env({env.HUGE_PAGES: "0"}, 2, 8, "/h", None, 0, "/l")
    assert env.GLIBC_TUNABLES not in off and env.TUNE_MALLOC not in off


def _thp_mode() -> str | None:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.index("[") + 1:text.index("]")] if "[" in text else None


@pytest.mark.skipif(_thp_mode() not in ("always", "madvise")
                    or not os.path.exists("/proc/self/smaps_rollup")
                    or not (platform.libc_ver()[0] == "glibc"
                            and tuple(map(int, platform.libc_ver()[1].split(".")[:2])) >= (2, 35)),
                    reason="needs Linux transparent huge pages (always/madvise) and glibc >= 2.35")
def test_what_the_launcher_exports_puts_1_mb_arrays_on_huge_pages():
    """A rank with the launcher's allocator settings gets 1 MB arrays (a gradient's size) on
    2 MB pages; without them it gets none (what makes Open MPI's copies faster)."""
    code = ("import numpy, disttrain.backend\n"  # NOTE: the backend applies TUNE_MALLOC
            "arrays = [numpy.ones(1 << 18, numpy.float32) for _ in range(32)]\n"
            "with open('/proc/self/smaps_rollup') as f:\n"
            "    print([l.split()[1] for l in f if l.startswith('AnonHugePages')][0])")
    base = {k: v for k, v in os.environ.items()
            if k not in (env.GLIBC_TUNABLES, env.TUNE_MALLOC, env.HUGE_PAGES)}

    def huge_kb(extra):
        out = subprocess.run([sys.executable, "-c", code], env={**base, **extra},
                             capture_output=True, text=True, check=True)
        return int(out.stdout.strip())

    assert huge_kb(env.rank_allocator_env({})) >= 16 * 1024  # of the 32 MB
    assert huge_kb({}) < 4 * 1024


def test_passthrough_is_shell_split():
    assert commands.split_passthrough(["--mca btl tcp,self", "-x 'A=b c'"]) == [
        "--mca", "btl", "tcp,self", "-x", "A=b c"]


def test_parse_args_keeps_script_args():
    from disttrain.launch.__main__ import parse_args

    a = parse_args(["-n", "2", "--max-restarts", "2", "--mpirun-args", "--bind-to none",
                    "s.py", "--lr", "0.1", "-n", "5"])
    assert (a.nprocs, a.max_restarts, a.script) == (2, 2, "s.py")
    assert a.script_args == ["--lr", "0.1", "-n", "5"]
    assert a.mpirun_args == ["--bind-to none"]
