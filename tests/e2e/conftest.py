"""Fixtures of the end-to-end tests that start MPI jobs: one place decides whether they can
run here, and one helper runs a job and fails (instead of hanging) when it does not end."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import time

import pytest
from test_mpi_suite import find_mpirun, kill_group, mpirun_prefix, skip_reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(autouse=True)
def _no_stale_session_dirs():
    """After each test, the session directories of mpiruns it killed (Open MPI 5's
    $TMPDIR/ompi.<pid>) go: an mpirun that gets such a pid later fails to start (exit 213,
    "PMIx server's listener thread failed to start"), and pid_max is 32768 here. The launcher
    cleans up after itself (disttrain/launch/process.py); these are what tests leave when
    they SIGKILL a launcher or mpirun on purpose."""
    yield
    base = pathlib.Path(os.environ.get("TMPDIR") or "/tmp")
    for path in base.glob("ompi.*"):
        pid = path.name[len("ompi."):]
        if pid.isdigit() and not _alive(int(pid)) and path.stat().st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def mpirun() -> str:
    """The mpirun to start jobs with; skips (with the reason) where MPI is not installed."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return find_mpirun()


@pytest.fixture
def run_mpi_job(mpirun):
    """run(size, argv, cwd, timeout_s=60) -> (returncode, output, elapsed_s) of
    `mpirun -n size argv`; a job still running after timeout_s is killed and the test fails."""

    def run(size: int, argv: list[str], cwd, timeout_s: float = 60):
        start = time.perf_counter()
        proc = subprocess.Popen(mpirun_prefix(mpirun, size) + argv, cwd=cwd,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the job hung (killed after {timeout_s} s); output:\n"
                        f"{kill_group(proc)}")
        return proc.returncode, output, time.perf_counter() - start

    return run
