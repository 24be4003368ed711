"""Fixtures of the end-to-end tests that start MPI jobs: one place decides whether they can
run here, and one helper runs a job and fails (instead of hanging) when it does not end."""

from __future__ import annotations

import subprocess
import time

import pytest
from test_mpi_suite import find_mpirun, kill_group, mpirun_prefix, skip_reason


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
